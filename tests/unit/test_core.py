"""User-space CO-RE against the committed target BTF (core_target.o) and against this machine's vmlinux.

The expected decisions for core_local.o were checked against libbpf 1.1 (tests/kernel/test_core_libbpf.py
repeats that comparison on every run where libbpf-dev and root are available).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import given, settings
from hypothesis import strategies as st

from rawbpf.btf import BTF, Kind
from rawbpf.btf import core as co
from rawbpf.btf.ext import BTFExt, CoreRelo, CoreReloKind
from rawbpf.errors import RelocationError

DATA = Path(__file__).resolve().parents[1] / "data"
ROOT_DATA_MONITOR = Path(__file__).resolve().parents[2] / "programs" / "claude_monitor.o"
K = CoreReloKind
POISON = struct.pack("<BBhi", 0x85, 0, 0, 0xBAD2310)


def load(path: Path) -> Tuple[BTF, BTFExt, Dict[str, bytes]]:
    with path.open("rb") as f:
        elf = ELFFile(f)
        btf = BTF.parse(elf.get_section_by_name(".BTF").data())
        ext = BTFExt.parse(elf.get_section_by_name(".BTF.ext").data(), btf)
        code = {s.name: bytes(s.data()) for s in elf.iter_sections() if s["sh_flags"] & 0x4}
    return btf, ext, code


LOCAL, EXT, CODE = load(DATA / "btf" / "core_local.o")
TARGET = load(DATA / "btf" / "core_target.o")[0]

# (insn, kind, new value or None when poisoned) — what libbpf 1.1 does with core_target.o as vmlinux
EXPECTED = [
    (2, K.FIELD_BYTE_OFFSET, 44), (17, K.FIELD_BYTE_OFFSET, 56), (24, K.FIELD_BYTE_OFFSET, 40),
    (35, K.FIELD_EXISTS, 0), (38, K.FIELD_BYTE_OFFSET, None), (49, K.FIELD_BYTE_SIZE, 32),
    (51, K.FIELD_BYTE_OFFSET, 88), (53, K.FIELD_BYTE_OFFSET, 132), (57, K.FIELD_BYTE_OFFSET, 64),
    (62, K.FIELD_BYTE_SIZE, 4), (65, K.FIELD_LSHIFT_U64, 56), (66, K.FIELD_SIGNED, 0),
    (68, K.FIELD_RSHIFT_U64, 63), (70, K.FIELD_RSHIFT_U64, 63), (76, K.FIELD_BYTE_OFFSET, 64),
    (81, K.FIELD_BYTE_SIZE, 4), (84, K.FIELD_LSHIFT_U64, 51), (85, K.FIELD_SIGNED, 1),
    (87, K.FIELD_RSHIFT_U64, 59), (89, K.FIELD_RSHIFT_U64, 59), (94, K.FIELD_SIGNED, 0),
    (96, K.FIELD_BYTE_OFFSET, 48), (98, K.FIELD_BYTE_OFFSET, None), (101, K.FIELD_BYTE_OFFSET, 44),
    (102, K.TYPE_EXISTS, 1), (104, K.TYPE_EXISTS, 0), (106, K.TYPE_SIZE, 144), (108, K.TYPE_SIZE, 8),
    (110, K.TYPE_ID_LOCAL, 5), (113, K.TYPE_ID_TARGET, 9), (116, K.ENUMVAL_EXISTS, 1),
    (119, K.ENUMVAL_VALUE, 20), (122, K.ENUMVAL_EXISTS, 0), (126, K.ENUMVAL_VALUE, None),
    (129, K.FIELD_BYTE_OFFSET, 11), (140, K.FIELD_BYTE_OFFSET, 4), (151, K.FIELD_BYTE_OFFSET, 0),
    (158, K.FIELD_BYTE_OFFSET, 152), (164, K.TYPE_EXISTS, 1), (165, K.TYPE_EXISTS, 1),
]


def insn(buf: bytes, i: int) -> Tuple[int, int, int, int]:
    return struct.unpack_from("<BBhi", buf, i * 8)


def relocate(section: str = "socket", **kw: object) -> Tuple[bytearray, List[co.AppliedRelo]]:
    buf = bytearray(CODE[section])
    done = co.relocate_program(buf, EXT.core_relos[section], LOCAL, TARGET,
                               line_of=EXT.source_lines(section), prog_name="p", **kw)  # type: ignore[arg-type]
    return buf, done


def test_every_relocation_matches_libbpf() -> None:
    _, done = relocate()
    got = [(a.insn, a.kind, None if a.poisoned else a.new) for a in done]
    assert got == EXPECTED
    assert {a.kind for a in done} == set(CoreReloKind) - {K.TYPE_MATCHES}


def test_instructions_are_patched_like_libbpf() -> None:
    orig = CODE["socket"]
    buf, _ = relocate()
    assert insn(buf, 2)[3] == 44 and insn(buf, 2)[0] == insn(orig, 2)[0]  # ALU imm
    code, _, off, _ = insn(buf, 96)  # LDX: offset moved, u32 load narrowed to the target's u16
    assert off == 48 and code & 0x18 == 0x08 and insn(orig, 96)[0] & 0x18 == 0x00
    assert insn(buf, 101)[2] == 44  # ST: t->pid = 5
    assert bytes(buf[98 * 8: 99 * 8]) == POISON  # signed field narrowed: poisoned, as libbpf does
    assert bytes(buf[38 * 8: 39 * 8]) == POISON  # missing field
    assert bytes(buf[126 * 8: 128 * 8]) == POISON * 2  # ld_imm64: both halves
    assert insn(buf, 113)[3] == 9 and insn(buf, 114)[3] == 0  # ld_imm64 type id
    changed = {i for i in range(len(buf) // 8) if buf[i * 8: i * 8 + 8] != orig[i * 8: i * 8 + 8]}
    touched = {a for a, _, _ in EXPECTED} | {127}
    assert changed <= touched


def test_poisoned_relocations_say_what_is_missing() -> None:
    _, done = relocate()
    by = {a.insn: a for a in done}
    assert by[38].reason == "no field struct task.missing_field in the target BTF"
    assert by[126].reason == "no enumerator enum state_kind::ST_GONE in the target BTF"
    assert "matching type and size" in by[98].reason
    assert by[38].source.startswith("./core_local.c:") and "missing_field" in by[38].source
    assert by[53].local == "struct task.inner_arr[2].a" and by[51].local == "struct task.arr[2][1]"
    assert by[129].local == "struct task___v2.comm[3]"
    assert "poisoned" in by[38].describe() and "-> 44" in by[2].describe()


def test_strict_mode_refuses_to_poison() -> None:
    with pytest.raises(RelocationError) as err:
        relocate(strict=True)
    msg = str(err.value)
    assert msg.startswith("program 'p': CO-RE relocation #4 (field_byte_offset of struct task.missing_field)")
    assert "[at ./core_local.c:" in msg
    assert msg.endswith("no field struct task.missing_field in the target BTF")


def test_ambiguous_candidates_are_an_error_naming_type_field_and_line() -> None:
    with pytest.raises(RelocationError) as err:
        relocate("socket/ambiguous")
    msg = str(err.value)
    assert "\n" not in msg
    assert "(field_byte_offset of struct amb.x)" in msg
    assert "[at ./core_local.c:" in msg and "field offset ambiguity" in msg


def test_flavors_and_candidates() -> None:
    assert co.essential_name("task_struct___flavor") == "task_struct"
    assert co.essential_name("a___b___c") == "a___b"
    assert co.essential_name("x____y") == "x____y"  # four underscores: not a flavor separator
    assert co.essential_name("___x") == "___x" and co.essential_name("foo") == "foo"
    rel = co.Relocator(LOCAL, TARGET)
    dup = LOCAL.get("dup", Kind.STRUCT).id
    assert [TARGET[i].name for _, i in rel.candidates(dup)] == ["dup___a", "dup___b"]
    v2 = LOCAL.get("task___v2").id
    assert [TARGET[i].name for _, i in rel.candidates(v2)] == ["task"]
    assert rel.candidates(LOCAL.get("no_such_type").id) == []


def mov_r0(imm: int) -> bytearray:
    return bytearray(struct.pack("<BBhi", 0xB7, 0, 0, imm))


@pytest.mark.parametrize(("name", "want"), [("m_ok", 1), ("m_bad", 0), ("task", 0), ("u", 1)])
def test_type_matches(name: str, want: int) -> None:
    buf = mov_r0(1)
    relo = CoreRelo(0, LOCAL.get(name).id, "0", K.TYPE_MATCHES)
    (done,) = co.relocate_program(buf, [relo], LOCAL, TARGET)
    assert done.new == want and insn(buf, 0)[3] == want


def test_type_matches_rules() -> None:
    # local task has fields the target lacks (missing_field): exists, but does not match
    assert co.types_are_compat(LOCAL, LOCAL.get("task").id, TARGET, TARGET.get("task").id)
    assert not co.types_match(LOCAL, LOCAL.get("task").id, TARGET, TARGET.get("task").id)
    assert co.types_match(LOCAL, LOCAL.get("state_kind").id, TARGET, TARGET.get("state_kind").id) is False
    assert co.types_match(TARGET, TARGET.get("state_kind").id, LOCAL, LOCAL.get("state_kind").id)


def test_relocation_records_from_the_linker_as_index_pairs() -> None:
    class Rec:
        def __init__(self, r: CoreRelo) -> None:
            self.type_id, self.kind, self.access_str_off = r.type_id, int(r.kind), r.access_str_off

    pairs = [(r.insn_off // 8, Rec(r)) for r in EXT.core_relos["socket"]]
    buf = bytearray(CODE["socket"])
    done = co.relocate_program(buf, pairs, LOCAL, TARGET)
    assert [(a.insn, a.kind, None if a.poisoned else a.new) for a in done] == EXPECTED
    assert bytes(buf) == bytes(relocate()[0])


@pytest.mark.parametrize(("relo", "buf", "message"), [
    (CoreRelo(0, 5, "0:99", K.FIELD_BYTE_OFFSET), mov_r0(0), "member #99 beyond struct task"),
    (CoreRelo(0, 5, "x", K.FIELD_BYTE_OFFSET), mov_r0(0), "bad access string 'x'"),
    (CoreRelo(0, 5, "0:1", K.TYPE_EXISTS), mov_r0(1), "type relocation with access string '0:1'"),
    (CoreRelo(4, 5, "0:1", K.FIELD_BYTE_OFFSET), mov_r0(4), "misaligned instruction offset 4"),
    (CoreRelo(8, 5, "0:1", K.FIELD_BYTE_OFFSET), mov_r0(4), "instruction 1 is outside the program"),
    (CoreRelo(0, 5, "0:1", K.FIELD_BYTE_OFFSET), mov_r0(7), "has imm 7, expected 4"),
    (CoreRelo(0, 5, "0:1", K.FIELD_BYTE_OFFSET), bytearray(struct.pack("<BBhi", 0x05, 0, 4, 0)),
     "code 0x05) cannot be relocated"),
    (CoreRelo(0, 5, "0:1", K.FIELD_BYTE_OFFSET), bytearray(struct.pack("<BBhi", 0x61, 0x10, 9, 0)),
     "has offset 9, expected 4"),
    (CoreRelo(0, 5, "0:5:1", K.FIELD_BYTE_OFFSET), mov_r0(0), "(at #2) steps into int, not a struct"),
])
def test_bad_relocations_are_one_line_errors(relo: CoreRelo, buf: bytearray, message: str) -> None:
    with pytest.raises(RelocationError, match=re.escape(message)) as err:
        co.relocate_program(buf, [relo], LOCAL, TARGET, prog_name="bad")
    assert "\n" not in str(err.value) and str(err.value).startswith("program 'bad': CO-RE relocation #0")


def test_anonymous_local_types_cannot_be_relocated() -> None:
    anon = next(t for t in TARGET.own_types() if t.kind == Kind.UNION and not t.name)
    with pytest.raises(RelocationError, match="anonymous types cannot be relocated"):
        co.relocate_program(mov_r0(1), [CoreRelo(0, anon.id, "0", K.TYPE_EXISTS)], TARGET, LOCAL)


# ------------------------------------------------------------------------------------------- vmlinux

VMLINUX = "/sys/kernel/btf/vmlinux"
needs_vmlinux = pytest.mark.skipif(not os.path.exists(VMLINUX), reason="no /sys/kernel/btf/vmlinux")


def bpftool_members(struct_name: str) -> Dict[str, int]:
    out = subprocess.run(["bpftool", "btf", "dump", "file", VMLINUX, "format", "raw"], check=True,
                         capture_output=True, text=True).stdout
    m = re.search(rf"^\[\d+\] STRUCT '{struct_name}' size=\d+ vlen=\d+\n((?:\t.*\n)*)", out, re.M)
    assert m is not None
    return {a: int(b) // 8 for a, b in re.findall(r"\t'(\w+)' type_id=\d+ bits_offset=(\d+)", m.group(1))}


@needs_vmlinux
def test_vmlinux_task_struct_offsets_agree_with_bpftool() -> None:
    from rawbpf.btf import kernel

    btf, ext, code = load(DATA / "core.o")
    sec = "tp/syscalls/sys_enter_getppid"
    buf = bytearray(code[sec])
    done = co.relocate_program(buf, ext.core_relos[sec], btf, kernel.targets())
    got = {a.local.split(".", 1)[1]: a.new for a in done
           if a.kind == K.FIELD_BYTE_OFFSET and a.local.startswith("struct task_struct.")}
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool not installed: offsets computed but not cross-checked")
    want = bpftool_members("task_struct")
    for name in ("pid", "tgid", "comm", "real_parent", "start_time"):
        assert got[name] == want[name], name
    flavor = {a.local: a.new for a in done if a.local.startswith("struct task_struct___flavor.")}
    assert flavor["struct task_struct___flavor.tgid"] == want["tgid"]
    assert flavor["struct task_struct___flavor.real_parent"] == want["real_parent"]


@needs_vmlinux
def test_vmlinux_is_indexed_lazily() -> None:
    from rawbpf.btf import kernel

    vm = BTF.parse(Path(VMLINUX).read_bytes(), lazy=True)
    assert vm.decoded_count == 0
    btf, ext, code = load(DATA / "core.o")
    sec = "tp/syscalls/sys_enter_getppid"
    co.relocate_program(bytearray(code[sec]), ext.core_relos[sec], btf, co.Targets(vm))
    assert len(vm) > 50_000
    assert 0 < vm.decoded_count < 200, "CO-RE must decode only the types it walks"
    assert kernel.vmlinux() is kernel.vmlinux()  # parsed once per process


def _candidates_both_ways(local: BTF, blob: bytes) -> None:
    """find_candidates for every named local type, by scanning and from the name index, agree."""
    from rawbpf.btf.match import find_candidates

    scanned, indexed = BTF.parse(blob, lazy=True), BTF.parse(blob, lazy=True)
    scanned.INDEX_AFTER, indexed.INDEX_AFTER = 10**9, 0  # type: ignore[misc]
    named = [t.id for t in local.own_types() if t.name]
    for tid in named:
        assert find_candidates(local, tid, scanned) == find_candidates(local, tid, indexed), local[tid].name
    assert scanned.name_index() is None and indexed.name_index() is not None


def test_candidates_are_the_same_from_the_name_index() -> None:
    with (DATA / "btf" / "core_target.o").open("rb") as f:
        blob = ELFFile(f).get_section_by_name(".BTF").data()
    _candidates_both_ways(LOCAL, blob)


@needs_vmlinux
def test_vmlinux_candidates_are_the_same_from_the_name_index() -> None:
    """What user-space CO-RE of the monitor resolves against vmlinux (it once took 28 s of CPU, a scan of
    vmlinux's name table per lookup; the index makes it one pass)."""
    btf = load(ROOT_DATA_MONITOR)[0]
    _candidates_both_ways(btf, Path(VMLINUX).read_bytes())


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 60), st.lists(st.integers(0, 40), min_size=1, max_size=5), st.sampled_from(list(K)),
       st.sampled_from([0xB7, 0x07, 0x61, 0x62, 0x18, 0x05, 0x85]), st.integers(-40, 200))
def test_arbitrary_relocations_raise_only_relocation_error(type_id: int, access: List[int],
                                                          kind: CoreReloKind, code: int, imm: int) -> None:
    buf = bytearray(struct.pack("<BBhi", code, 0x21, imm if code in (0x61, 0x62) else 0, imm) * 2)
    relo = CoreRelo(0, type_id, ":".join(map(str, access)), kind)
    try:
        done = co.relocate_program(buf, [relo], LOCAL, TARGET)
    except RelocationError as err:
        assert "\n" not in str(err)
        return
    assert len(done) == 1 and len(buf) == 16


def one_field_task(field_name: str, make_type: Callable[[BTF, int], int]) -> Tuple[BTF, int]:
    """A local BTF with ``struct task { <type> <field_name>; }``; returns it and the struct's id."""
    from rawbpf.btf import BtfType, Member

    local = BTF(strings=b"\0", words=[], offsets=[])
    int_id = local.add(BtfType(0, Kind.INT, "int", size=4, int_bits=32, int_encoding=1))
    ftype = make_type(local, int_id)
    sid = local.add(BtfType(0, Kind.STRUCT, "task", size=8, members=[Member(field_name, ftype, 0)]))
    return local, sid


def _same(_: BTF, int_id: int) -> int:
    return int_id


def _ptr(b: BTF, int_id: int) -> int:
    from rawbpf.btf import BtfType

    return b.add(BtfType(0, Kind.PTR, type=int_id))


def _enum(name: str) -> Callable[[BTF, int], int]:
    def make(b: BTF, _: int) -> int:
        from rawbpf.btf import BtfType, EnumValue

        return b.add(BtfType(0, Kind.ENUM, name, size=4, values=[EnumValue("X", 1)]))
    return make


def _char_array(b: BTF, int_id: int) -> int:
    from rawbpf.btf import Array, BtfType

    ch = b.add(BtfType(0, Kind.INT, "char", size=1, int_bits=8))
    return b.add(BtfType(0, Kind.ARRAY, array=Array(ch, int_id, 3)))


@pytest.mark.parametrize(("field_name", "make", "exists"), [
    ("comm", _same, 0),  # int vs char[32]
    ("comm", _char_array, 1),  # array dimensions may differ, element types must agree
    ("parent", _ptr, 1),  # any two pointers
    ("parent", _same, 0),  # int vs pointer
    ("state", _same, 1),  # any two integers (long long vs int)
    ("kind", _enum("state_kind___mine"), 1),  # enum names agree without flavors
    ("kind", _enum("other_kind"), 0),
    ("kind", _enum(""), 1),  # anonymous enums are compatible with any
])
def test_field_compatibility_rules(field_name: str, make: Callable[[BTF, int], int], exists: int) -> None:
    local, sid = one_field_task(field_name, make)
    (done,) = co.relocate_program(mov_r0(1), [CoreRelo(0, sid, "0:0", K.FIELD_EXISTS)], local, TARGET)
    assert done.new == exists


def test_explain_poison_answers_the_verifiers_riddle() -> None:
    relos = EXT.core_relos["socket"]
    lines = EXT.source_lines("socket")
    why = co.explain_poison(relos, LOCAL, 38, TARGET, line_of=lines, prog_name="local_prog")
    assert why.startswith("program 'local_prog': CO-RE relocation #4 (field_byte_offset of struct "
                          "task.missing_field) [at ./core_local.c:")
    assert why.endswith("no field struct task.missing_field in the target BTF")
    assert "enum state_kind::ST_GONE" in co.explain_poison(relos, LOCAL, 127, TARGET)  # ld_imm64, 2nd half
    assert "not a pointer or unsigned integer" in co.explain_poison(relos, LOCAL, 98, TARGET)
    assert co.explain_poison(relos, LOCAL, 2, TARGET) == ""  # relocated fine
    assert co.explain_poison(relos, LOCAL, 0, TARGET) == ""  # no relocation there


def test_resolve_without_patching() -> None:
    rel = co.Relocator(LOCAL, TARGET)
    task = LOCAL.get("task", Kind.STRUCT).id
    spec, res = rel.resolve(task, "0:1", K.FIELD_BYTE_OFFSET)
    assert spec.describe() == "struct task.tgid" and (res.orig_val, res.new_val, res.poison) == (4, 40, False)
    assert res.target is not None and res.target.describe() == "struct task.tgid"
    with pytest.raises(RelocationError, match=r"CO-RE field_byte_offset of type \[\d+\] '0:77': "):
        rel.resolve(task, "0:77", K.FIELD_BYTE_OFFSET)
