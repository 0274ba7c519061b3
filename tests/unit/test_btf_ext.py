""".BTF.ext: func/line info and CO-RE records of the committed objects, re-encoding, packers, bad input."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import List, Tuple

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawbpf.btf import BTF, Kind
from rawbpf.btf.ext import (
    BTFExt,
    CoreRelo,
    CoreReloKind,
    FuncInfo,
    pack_core_relos,
    pack_func_info,
    pack_line_info,
)
from rawbpf.errors import BTFError

DATA = Path(__file__).resolve().parents[1] / "data"
OBJECTS = sorted(p for p in [*DATA.glob("*.o"), *DATA.glob("btf/*.o")]
                 if p.name not in ("bad_btf.o", "truncated.o", "wrong_machine.o"))


def sections(path: Path) -> Tuple[bytes, bytes]:
    with path.open("rb") as f:
        elf = ELFFile(f)
        btf, ext = elf.get_section_by_name(".BTF"), elf.get_section_by_name(".BTF.ext")
        return bytes(btf.data()), (bytes(ext.data()) if ext is not None else b"")


def load(path: Path) -> Tuple[BTF, BTFExt, bytes]:
    raw_btf, raw_ext = sections(path)
    btf = BTF.parse(raw_btf)
    return btf, BTFExt.parse(raw_ext, btf), raw_ext


@pytest.mark.parametrize("path", OBJECTS, ids=lambda p: p.name)
def test_every_object_re_encodes_byte_identically(path: Path) -> None:
    btf, ext, raw = load(path)
    assert ext.marshal(btf) == raw
    assert BTFExt.parse(ext.marshal(btf), btf) == ext


@pytest.mark.parametrize("path", OBJECTS, ids=lambda p: p.name)
def test_line_info_quotes_the_committed_source(path: Path) -> None:
    _, ext, _ = load(path)
    assert ext.line_info, "every corpus object is built with -g"
    for recs in ext.line_info.values():
        for r in recs:
            assert r.file.startswith("./"), "objects are built with -fdebug-prefix-map"
            src = (path.parent / r.file).read_text().splitlines()
            assert r.line_text in ("", src[r.line - 1])  # clang leaves the text empty for some records
            assert 0 <= r.col <= len(r.line_text.expandtabs(8)) + 1


@pytest.mark.parametrize("path", OBJECTS, ids=lambda p: p.name)
def test_func_info_names_the_elf_functions(path: Path) -> None:
    btf, ext, _ = load(path)
    with path.open("rb") as f:
        elf = ELFFile(f)
        symtab = elf.get_section_by_name(".symtab")
        funcs = {(elf.get_section(s["st_shndx"]).name, s["st_value"]): s.name for s in symtab.iter_symbols()
                 if s["st_info"]["type"] == "STT_FUNC"}
    for sec, recs in ext.func_info.items():
        for r in recs:
            t = btf[r.type_id]
            assert t.kind == Kind.FUNC
            assert funcs[(sec, r.insn_off)] == t.name


def test_core_object_records() -> None:
    btf, ext, _ = load(DATA / "core.o")
    relos = ext.core_relos["tp/syscalls/sys_enter_getppid"]
    kinds = {r.kind for r in relos}
    assert {CoreReloKind.FIELD_BYTE_OFFSET, CoreReloKind.FIELD_EXISTS, CoreReloKind.FIELD_BYTE_SIZE,
            CoreReloKind.FIELD_SIGNED, CoreReloKind.FIELD_LSHIFT_U64, CoreReloKind.FIELD_RSHIFT_U64,
            CoreReloKind.TYPE_EXISTS, CoreReloKind.TYPE_SIZE, CoreReloKind.TYPE_ID_TARGET,
            CoreReloKind.ENUMVAL_EXISTS, CoreReloKind.ENUMVAL_VALUE} <= kinds
    for r in relos:
        assert r.insn_off % 8 == 0
        assert btf.string_at(r.access_str_off) == r.access
    first = relos[0]
    assert btf[first.type_id].name == "task_struct" and first.access.startswith("0:")
    enum = next(r for r in relos if r.kind == CoreReloKind.ENUMVAL_VALUE)
    assert btf[enum.type_id].name == "pid_type"
    assert btf[enum.type_id].values[int(enum.access)].name == "PIDTYPE_SID"
    lookup = ext.source_lines("tp/syscalls/sys_enter_getppid")
    assert lookup(0).startswith("./core.c:") and "bpf_get_current_pid_tgid" in lookup(0)
    assert lookup(first.insn_off // 8).startswith("./core.c:")
    assert ext.source_lines("nope")(0) == ""


def test_packers_use_the_kernel_layouts() -> None:
    _, ext, _ = load(DATA / "core.o")
    li = ext.line_info["tp/syscalls/sys_enter_getppid"][:2]
    raw = pack_line_info(li, insn_base=10)
    assert len(raw) == 32
    insn, file_off, line_off, line_col = struct.unpack_from("=IIII", raw, 16)
    assert (insn, file_off, line_off) == (10 + li[1].insn_off // 8, li[1].file_name_off, li[1].line_off)
    assert (line_col >> 10, line_col & 0x3FF) == (li[1].line, li[1].col)
    assert pack_func_info([FuncInfo(16, 7)], insn_base=3) == struct.pack("=II", 5, 7)
    relo = CoreRelo(24, 5, "0:1", CoreReloKind.FIELD_EXISTS, 99)
    assert pack_core_relos([relo], insn_base=2) == struct.pack("=IIII", 40, 5, 99, 2)


def ext_blob(fi: bytes = b"", li: bytes = b"", cr: bytes = b"", hdr_len: int = 32, **kw: int) -> bytes:
    hdr = dict(magic=0xEB9F, version=1, flags=0, hdr_len=hdr_len, fi_off=0, fi_len=len(fi), li_off=len(fi),
               li_len=len(li), cr_off=len(fi) + len(li), cr_len=len(cr))
    hdr.update(kw)
    return struct.pack("<HBBIIIIIII", *hdr.values()) + fi + li + cr


def core_btf() -> BTF:
    return load(DATA / "core.o")[0]


@pytest.mark.parametrize(("blob", "message"), [
    (b"\x9f", "too short"),
    (ext_blob(magic=0x1111), "bad magic"),
    (ext_blob(version=3), "unsupported version 3"),
    (ext_blob(hdr_len=16), "bad header length 16"),
    (ext_blob(fi=struct.pack("<I", 4)), "record size 4 is invalid"),
    (ext_blob(fi=struct.pack("<III", 8, 1, 0)), "section name offset 1 is outside|has no records"),
    (ext_blob(fi=struct.pack("<IIII", 8, 0, 0, 0)), "has no records"),
    (ext_blob(fi=struct.pack("<IIIII", 8, 0, 3, 0, 0)), "3 records overrun"),
    (ext_blob(fi_len=400), "overruns the section"),
    (ext_blob(cr=struct.pack("<IIIIIII", 16, 0, 1, 0, 5, 1, 77)), "unknown CO-RE relocation kind 77"),
    (ext_blob(cr=struct.pack("<IIIIIII", 16, 0, 1, 0, 5000, 1, 0)), "type id 5000"),
    (ext_blob(cr=struct.pack("<IIIIIII", 16, 0, 1, 0, 5, 0, 0)), "empty access string"),
    (ext_blob(li=struct.pack("<IIIIIII", 16, 0, 1, 0, 99999, 0, 0)), "line_info file name offset 99999"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_malformed_ext_is_one_line_btf_error(blob: bytes, message: str) -> None:
    with pytest.raises(BTFError, match=message) as err:
        BTFExt.parse(blob, core_btf())
    assert "\n" not in str(err.value) and str(err.value).startswith("btf.ext: ")


def test_short_header_without_core_relos_and_larger_records() -> None:
    btf = core_btf()
    fi = struct.pack("<IIIIII", 12, 0, 1, 8, 4, 0xDEAD)  # 12-byte records: a field this parser does not know
    ext = BTFExt.parse(ext_blob(fi=fi, hdr_len=24)[:24] + fi, btf)
    assert ext.func_info == {"": [FuncInfo(8, 4)]} and ext.func_info_rec_size == 12
    assert ext.core_relos == {}


_BTF_RAW, _EXT_RAW = sections(DATA / "core.o")
_BTF = BTF.parse(_BTF_RAW)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_EXT_RAW) - 1), st.integers(0, 255)), min_size=1, max_size=6))
def test_mutated_ext_raises_only_btf_error(edits: List[tuple]) -> None:
    blob = bytearray(_EXT_RAW)
    for pos, val in edits:
        blob[pos] = val
    try:
        BTFExt.parse(bytes(blob), _BTF)
    except BTFError:
        pass


def test_big_endian_ext_round_trips() -> None:
    btf, ext, raw = load(DATA / "core.o")
    btf.byte_order = "big"
    be = ext.marshal(btf)
    assert be[:2] == b"\xeb\x9f" and len(be) == len(raw)
    assert BTFExt.parse(be, btf) == ext
