"""fill_datasecs, fixup_externs and sanitized, without a kernel (the kernel tests load what they produce)."""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path
from typing import Dict, Tuple

import pytest
from elftools.elf.elffile import ELFFile

from rawbpf.btf import (
    BTF,
    BtfFeatures,
    BtfType,
    EnumValue,
    Kind,
    fill_datasecs,
    fixup_externs,
    marshal,
    sanitized,
)
from rawbpf.btf import core as co
from rawbpf.btf.ext import CoreRelo, CoreReloKind
from rawbpf.btf.pretty import dump_raw
from rawbpf.btf.types import FUNC_GLOBAL, FUNC_STATIC, VAR_GLOBAL_ALLOCATED, VAR_STATIC
from rawbpf.errors import BTFError

DATA = Path(__file__).resolve().parents[1] / "data"


def elf_btf(path: Path) -> Tuple[BTF, Dict[str, int], Dict[str, Dict[str, int]]]:
    with path.open("rb") as f:
        elf = ELFFile(f)
        btf = BTF.parse(elf.get_section_by_name(".BTF").data())
        sizes = {s.name: s["sh_size"] for s in elf.iter_sections()}
        syms: Dict[str, Dict[str, int]] = {}
        for s in elf.get_section_by_name(".symtab").iter_symbols():
            if s["st_info"]["type"] == "STT_OBJECT" and isinstance(s["st_shndx"], int):
                syms.setdefault(elf.get_section(s["st_shndx"]).name, {})[s.name] = s["st_value"]
    return btf, sizes, syms


def test_fill_datasecs_from_elf_sizes_and_symbols() -> None:
    btf, sizes, syms = elf_btf(DATA / "globals.o")
    fill_datasecs(btf, sizes, syms, hidden=["getppid_hits"])
    secs = {t.name: t for t in btf.own_types() if t.kind == Kind.DATASEC}
    assert set(secs) >= {".bss", ".data", ".rodata", "license"}
    for name, t in secs.items():
        assert t.size == sizes[name]
        offs = [v.offset for v in t.vars]
        assert offs == sorted(offs)
        for v in t.vars:
            var = btf[v.type]
            if var.linkage != VAR_STATIC or var.name == "getppid_hits":
                assert v.offset == syms[name][var.name], var.name
    assert btf.get("getppid_hits").linkage == VAR_STATIC  # hidden visibility: static, like libbpf
    assert btf.get("target_tgid").linkage != VAR_STATIC


def test_fill_datasecs_failures_name_the_section_and_variable() -> None:
    btf, sizes, syms = elf_btf(DATA / "globals.o")
    with pytest.raises(BTFError, match=r"datasec '\.bss': no ELF section size"):
        fill_datasecs(btf.copy(), {k: v for k, v in sizes.items() if k != ".bss"}, syms)
    syms[".bss"].pop("bss_u64")
    with pytest.raises(BTFError, match=r"datasec '\.bss': no ELF symbol for var 'bss_u64'"):
        fill_datasecs(btf, sizes, syms)


def filled_externs() -> BTF:
    from rawbpf.elf import load_spec

    path = DATA / "btf" / "externs.o"
    btf, sizes, syms = elf_btf(path)
    spec = load_spec(str(path))
    fixup_externs(btf, {e.name: e.offset for e in spec.externs.values() if e.kind == "kconfig"})
    fill_datasecs(btf, sizes, syms)
    return btf


def test_extern_datasecs_are_rewritten_exactly_as_libbpf_loads_them() -> None:
    # golden: `bpftool btf dump id N format raw` of the BTF libbpf 1.1 loaded for externs.o on Linux 6.18
    want = (DATA / "btf" / "libbpf" / "externs.o.raw").read_text()
    assert dump_raw(filled_externs()) == want


def test_extern_fixup_details() -> None:
    btf = filled_externs()
    dummy = btf.get("dummy_ksym", Kind.VAR)
    ksyms = btf.get(".ksyms", Kind.DATASEC)
    assert [(v.type, v.offset, v.size) for v in ksyms.vars][:2] == [(dummy.id, 0, 4), (dummy.id, 4, 4)]
    assert btf.get("bpf_task_acquire", Kind.FUNC).linkage == FUNC_GLOBAL
    assert btf.get("LINUX_KERNEL_VERSION").linkage == VAR_GLOBAL_ALLOCATED
    assert btf.get(".kconfig").size == 5
    with pytest.raises(BTFError, match=r"'\.kconfig': no offset for extern 'CONFIG_BPF_SYSCALL'"):
        fixup_externs(elf_btf(DATA / "btf" / "externs.o")[0], {"LINUX_KERNEL_VERSION": 0})


def kinds_btf() -> BTF:
    return elf_btf(DATA / "btf" / "kinds.o")[0]


def test_sanitising_replaces_each_kind_like_libbpf_and_keeps_ids() -> None:
    btf = kinds_btf()
    before = dump_raw(btf)
    out = sanitized(btf, BtfFeatures.none())
    assert dump_raw(btf) == before and len(out) == len(btf)
    for t, o in zip(btf.own_types(), out.own_types()):
        k = t.kind
        if k in (Kind.VAR, Kind.DECL_TAG):
            assert (o.kind, o.size, o.int_bits, o.name) == (Kind.INT, 1, 8, t.name)
        elif k == Kind.DATASEC:
            assert o.kind == Kind.STRUCT and o.name == t.name.replace(".", "_")
            assert [(m.name, m.type, m.bits_offset) for m in o.members] == [
                (btf[v.type].name, v.type, v.offset * 8) for v in t.vars]
        elif k == Kind.FUNC_PROTO:
            assert o.kind == Kind.ENUM and o.size == 4
            assert [v.value for v in o.values] == [p.type for p in t.params]
            assert all(v.name for v in o.values)
        elif k == Kind.FUNC:
            assert (o.kind, o.type) == (Kind.TYPEDEF, t.type)
        elif k == Kind.FLOAT:
            assert (o.kind, o.name, o.size, o.members) == (Kind.STRUCT, "", t.size, [])
        elif k == Kind.TYPE_TAG:
            assert (o.kind, o.name, o.type) == (Kind.CONST, "", t.type)
        else:
            assert o == t


def test_sanitising_single_features() -> None:
    btf = kinds_btf()
    helper = btf.get("helper", Kind.FUNC)
    helper.linkage = FUNC_GLOBAL
    out = sanitized(btf, dataclasses.replace(BtfFeatures(), func_global=False))
    assert out.get("helper").linkage == FUNC_STATIC and out.get("helper").kind == Kind.FUNC
    bss = btf.get(".bss")
    bss.name = "?.bss"
    out = sanitized(btf, dataclasses.replace(BtfFeatures(), qmark_datasec=False))
    assert out[bss.id].name == "_.bss"
    assert sanitized(btf, BtfFeatures()) == btf


def test_enum64_becomes_a_union_of_one_byte_placeholders() -> None:
    btf = BTF.parse((DATA / "btf" / "handmade.btf").read_bytes())
    n = len(btf)
    out = sanitized(btf, dataclasses.replace(BtfFeatures(), enum64=False))
    assert len(out) == n + 1 and out[n].name == "enum64_placeholder" and out[n].size == 1
    big = out.get("big")
    assert big.kind == Kind.UNION and big.size == 8 and {m.type for m in big.members} == {n}
    senum = out.get("senum")
    assert not senum.kind_flag and senum.values == [EnumValue("NEG", 0xFFFFFFFF)]
    assert BTF.parse(marshal(out)) == out


def test_core_enum_value_from_an_enum64_target_uses_ld_imm64() -> None:
    target = BTF.parse((DATA / "btf" / "handmade.btf").read_bytes())
    local = BTF(strings=b"\0", words=[], offsets=[])
    local.add(BtfType(0, Kind.ENUM, "big", size=4, values=[EnumValue("M", 1), EnumValue("H", 2)]))
    buf = bytearray(struct.pack("<BBhiBBhi", 0x18, 1, 0, 2, 0, 0, 0, 0))
    (done,) = co.relocate_program(buf, [CoreRelo(0, 1, "1", CoreReloKind.ENUMVAL_VALUE)], local, target)
    lo, hi = struct.unpack_from("<i", buf, 4)[0], struct.unpack_from("<i", buf, 12)[0]
    assert done.new == 1 << 40 and (lo, hi) == (0, 1 << 8)
    buf = bytearray(struct.pack("<BBhiBBhi", 0x18, 1, 0, 1, 0, 0, 0, 0))
    (done,) = co.relocate_program(buf, [CoreRelo(0, 1, "0", CoreReloKind.ENUMVAL_VALUE)], local, target)
    assert done.new == (-5) & ((1 << 64) - 1)
    assert struct.unpack_from("<ii", buf, 4)[0] == -5 and struct.unpack_from("<i", buf, 12)[0] == -1
