"""BTF parser: committed objects against bpftool goldens, byte-identical re-encoding, queries, bad input."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path
from typing import List

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawbpf.btf import BTF, BtfFeatures, BtfType, EnumValue, Kind, marshal, sanitized
from rawbpf.btf.pretty import dump_raw, format_c
from rawbpf.errors import BTFError

DATA = Path(__file__).resolve().parents[1] / "data"
GOLDEN = DATA / "btf" / "golden"


def section(path: Path, name: str) -> bytes:
    with path.open("rb") as f:
        sec = ELFFile(f).get_section_by_name(name)
        assert sec is not None, f"{path.name} has no {name}"
        return bytes(sec.data())


def golden_blobs() -> List[Path]:
    return sorted(GOLDEN.glob("*.raw"))


def blob_of(golden: Path) -> bytes:
    name = golden.name[: -len(".raw")]
    src = DATA / "btf" / name if (DATA / "btf" / name).exists() else DATA / name
    return src.read_bytes() if name.endswith(".btf") else section(src, ".BTF")


def kinds() -> BTF:
    return BTF.parse(section(DATA / "btf" / "kinds.o", ".BTF"))


@pytest.mark.parametrize("golden", golden_blobs(), ids=lambda p: p.name)
def test_parse_matches_bpftool_raw_dump(golden: Path) -> None:
    btf = BTF.parse(blob_of(golden))
    assert dump_raw(btf) == golden.read_text(), f"{golden.name}: object rebuilt? run make testdata-btf"


@pytest.mark.parametrize("golden", golden_blobs(), ids=lambda p: p.name)
def test_marshal_is_byte_identical_and_round_trips(golden: Path) -> None:
    raw = blob_of(golden)
    btf = BTF.parse(raw)
    assert marshal(btf) == raw
    assert BTF.parse(marshal(btf)) == btf


def test_goldens_cover_every_kind() -> None:
    seen = set()
    for g in golden_blobs():
        seen |= {t.kind for t in BTF.parse(blob_of(g)).own_types()}
    assert seen == set(Kind) - {Kind.UNKN}


def test_changed_names_are_appended_and_round_trip() -> None:
    btf = kinds()
    t = btf.get("nested", Kind.STRUCT)
    t.name = "renamed_nested"
    t.members[0].name = "first_renamed"
    again = BTF.parse(marshal(btf))
    assert again[t.id].name == "renamed_nested"
    assert again[t.id].members[0].name == "first_renamed"
    assert again == btf


def test_big_endian_blob_parses_to_the_same_types() -> None:
    btf = kinds()
    btf.byte_order = "big"
    be = marshal(btf)
    assert be[:2] == b"\xeb\x9f"
    parsed = BTF.parse(be)
    assert parsed.byte_order == "big"
    assert parsed == kinds()
    assert marshal(parsed) == be


def test_lookups_and_sizes() -> None:
    btf = kinds()
    nested = btf.get("nested", Kind.STRUCT)
    assert btf.find("nested_t").kind == Kind.TYPEDEF  # type: ignore[union-attr]
    assert btf.find("nope") is None
    assert [t.kind for t in btf.find_all("fwd_only")] == [Kind.FWD]
    with pytest.raises(BTFError, match="no type struct 'nope'"):
        btf.get("nope", Kind.STRUCT)
    assert btf.resolve(btf.get("nested_t").id) == nested.id
    assert btf.size_of(btf.get("nested_t").id) == 128
    assert btf.size_of(btf.find("g_bss_buf").id) == 32  # type: ignore[union-attr]
    with pytest.raises(BTFError, match="has no size"):
        btf.size_of(btf.get("helper").id)
    # members through anonymous union/struct
    tid, bits, bf = btf.field(nested.id, "y")
    assert (btf.type_name(tid), bits, bf) == ("short", 48, 0)
    path = btf.member_path(nested.id, "y")
    assert path is not None and [m.name for m, _ in path] == ["", "", "y"]
    assert btf.field(nested.id, "named.inner_a")[1] == 64
    tid, bits, bf = btf.field(nested.id, "bits.d")
    assert (bits, bf) == (832 + 23, 41)
    with pytest.raises(BTFError, match="has no member 'zz'"):
        btf.field(nested.id, "zz")


def test_type_names_and_c_format() -> None:
    btf = kinds()
    nested = btf.get("nested", Kind.STRUCT)
    by = {m.name: m.type for m in nested.members}
    assert btf.type_name(by["fwd"]) == "struct fwd_only *"
    assert btf.type_name(by["fwdu"]) == "union fwd_union *"
    assert btf.type_name(by["matrix"]) == "int[2][3]"
    assert btf.type_name(by["cv"]) == "const volatile int"
    assert btf.type_name(0) == "void"
    text = format_c(btf, nested.id)
    assert "\tint matrix[2][3];" in text
    assert "\tint (*cb)(int, char *);" in text
    assert "\tunsigned long long d : 41;" in format_c(btf, btf.get("bits").id)
    assert '\tint __attribute__((btf_type_tag("user"))) *tagged;' in text
    assert format_c(btf, btf.get("color").id).startswith("enum color {\n\tRED = 0,")
    assert format_c(btf, btf.get("helper").id) == "static int helper(int a, nested_t *n);"


def test_kinds_carry_their_flags() -> None:
    btf = BTF.parse((DATA / "btf" / "handmade.btf").read_bytes())
    big = btf.get("big", Kind.ENUM64)
    assert big.signed and big.values == [EnumValue("M", -5), EnumValue("H", 1 << 40)]
    assert btf.get("ubig").values[0].value == (1 << 64) - 1
    assert btf.get("senum").values[0].value == -1 and btf.get("senum").signed
    assert btf.get("ext").linkage == 2
    bits = btf.get("bits", Kind.STRUCT)
    assert bits.kind_flag and [m.bitfield_size for m in bits.members] == [3, 13, 7, 41, 0]
    assert btf.get("fwd_union").kind_flag and not btf.get("fwd_only").kind_flag
    tag = next(t for t in btf.own_types() if t.kind == Kind.DECL_TAG and t.name == "param")
    assert tag.component_idx == 0
    assert btf.get("s_const").linkage == 0 and btf.get("g_counter").linkage == 1


def test_split_btf_extends_its_base() -> None:
    base = kinds()
    split = BTF(strings=b"", words=[], offsets=[], base=base)
    int_id = base.get("int").id
    sid = split.add(BtfType(0, Kind.TYPEDEF, "split_int", type=int_id))
    split.add(BtfType(0, Kind.PTR, type=sid))
    raw = marshal(split)
    parsed = BTF.parse(raw, base=base)
    assert parsed.start_id == len(base)
    assert parsed[sid].name == "split_int" and parsed.resolve(sid + 1) == sid + 1
    assert parsed.resolve(sid) == int_id
    assert parsed.find("split_int").id == sid  # type: ignore[union-attr]
    assert parsed.find("nested").id == base.get("nested").id  # type: ignore[union-attr]
    assert marshal(parsed) == raw
    with pytest.raises(BTFError, match=r"out of range|beyond the last id"):
        BTF.parse(raw)  # the same blob without its base refers to missing types


def header(**kw: int) -> bytes:
    f = dict(magic=0xEB9F, version=1, flags=0, hdr_len=24, type_off=0, type_len=0, str_off=0, str_len=1)
    f.update(kw)
    return struct.pack("<HBBIIIII", *f.values())


@pytest.mark.parametrize(("blob", "message"), [
    (b"", "too short for a header"),
    (header(magic=0x1234) + b"\0", "bad magic 0x1234"),
    (header(version=2) + b"\0", "unsupported version 2"),
    (header(flags=1) + b"\0", "unsupported header flags"),
    (header(hdr_len=12) + b"\0", "bad header length 12"),
    (header(str_len=8) + b"\0", "overrun"),
    (header(str_len=0) + b"", "must start with an empty string"),
    (header(str_len=2) + b"\0a", "not NUL-terminated"),
    (header(type_len=12, str_off=12) + struct.pack("<III", 0, 30 << 24, 0) + b"\0", "unknown kind 30"),
    (header(type_len=12, str_off=12) + struct.pack("<III", 0, 1 << 24, 4) + b"\0", "runs past the end"),
    (header(type_len=12, str_off=12) + struct.pack("<III", 0, 2 << 24, 9) + b"\0", "type id 9, beyond"),
    (header(type_len=12, str_off=12) + struct.pack("<III", 50, 2 << 24, 0) + b"\0", "string offset 50 out"),
    (header(type_len=6, str_off=6) + b"\0" * 7, "not 4-byte aligned"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_malformed_blobs_are_one_line_btf_errors(blob: bytes, message: str) -> None:
    with pytest.raises(BTFError, match=message) as err:
        BTF.parse(blob)
    assert "\n" not in str(err.value) and str(err.value).startswith("btf: ")


_SEED = section(DATA / "btf" / "kinds.o", ".BTF")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_SEED) - 1), st.integers(0, 255)), min_size=1, max_size=8),
       st.integers(0, len(_SEED)))
def test_mutated_btf_raises_only_btf_error(edits: List[tuple], cut: int) -> None:
    blob = bytearray(_SEED)
    for pos, val in edits:
        blob[pos] = val
    blob = blob[: max(cut, 24)] if cut < len(_SEED) // 4 else blob
    try:
        btf = BTF.parse(bytes(blob))
    except BTFError:
        return
    # whatever parsed must be usable without crashing
    for t in btf.own_types():
        btf.type_name(t.id)
        format_c(btf, t.id)
        try:
            btf.size_of(t.id)
            btf.resolve(t.id)
        except BTFError:
            pass
    dump_raw(btf)
    BTF.parse(marshal(btf))
    try:
        BTF.parse(marshal(sanitized(btf, BtfFeatures.none())))
    except BTFError:
        pass


VMLINUX = Path("/sys/kernel/btf/vmlinux")


@pytest.mark.skipif(not VMLINUX.exists() or shutil.which("bpftool") is None,
                    reason="needs /sys/kernel/btf/vmlinux and bpftool")
def test_the_running_kernels_btf_parses_like_bpftool_and_re_encodes_byte_identically() -> None:
    raw = VMLINUX.read_bytes()
    btf = BTF.parse(raw)
    want = subprocess.run(["bpftool", "btf", "dump", "file", str(VMLINUX), "format", "raw"], check=True,
                          capture_output=True, text=True).stdout
    assert dump_raw(btf) == want
    assert marshal(btf) == raw


def test_copy_is_independent_and_equal() -> None:
    btf = kinds()
    dup = btf.copy()
    assert dup == btf and dup is not btf
    nested = dup.get("nested", Kind.STRUCT)
    nested.members[0].name = "changed"
    nested.members.append(nested.members[0])
    dup.get("color").values[0].value = 99
    dup.get("g_bss_buf").type = 3
    next(t for t in dup.own_types() if t.kind == Kind.ARRAY).array.nelems = 77  # type: ignore[union-attr]
    next(t for t in dup.own_types() if t.kind == Kind.DATASEC).vars[0].offset = 5
    assert btf == kinds() and dup != btf
