"""load_spec over the committed corpus: programs, maps with every field, globals, relocations, bad input."""

from __future__ import annotations

import mmap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawbpf.consts import (
    BPF_F_MMAPABLE,
    BPF_F_NO_PREALLOC,
    BPF_F_NUMA_NODE,
    BPF_F_RDONLY_PROG,
    MapType,
    ProgType,
)
from rawbpf.elf import adjust_ringbuf_size, internal_map_name, load_spec, object_name
from rawbpf.errors import ObjectError, RawBPFError
from rawbpf.spec import MapKind, Pinning, RelocKind

DATA = Path(__file__).resolve().parent.parent / "data"


def spec(name: str):  # type: ignore[no-untyped-def]
    return load_spec(DATA / name)


def test_attach_kinds_programs_and_targets() -> None:
    s = spec("attach_kinds.o")
    want = {
        "tp_getppid": (ProgType.TRACEPOINT, "tracepoint", "syscalls/sys_enter_getppid"),
        "tp_getppid_second": (ProgType.TRACEPOINT, "tracepoint", "syscalls/sys_enter_getppid"),
        "tracepoint_getppid": (ProgType.TRACEPOINT, "tracepoint", "syscalls/sys_exit_getppid"),
        "raw_tp_sys_enter": (ProgType.RAW_TRACEPOINT, "raw_tracepoint", "sys_enter"),
        "raw_tracepoint_sys_exit": (ProgType.RAW_TRACEPOINT, "raw_tracepoint", "sys_exit"),
        "tp_btf_fork": (ProgType.TRACING, "tracing", "sched_process_fork"),
        "uprobe_getppid": (ProgType.KPROBE, "uprobe", "/lib/x86_64-linux-gnu/libc.so.6:getppid"),
        "uretprobe_getppid": (ProgType.KPROBE, "uretprobe", "/lib/x86_64-linux-gnu/libc.so.6:getppid"),
        "uprobe_manual": (ProgType.KPROBE, "uprobe", ""),
    }
    got = {n: (p.type, p.attach_kind, p.attach_to) for n, p in s.programs.items()}
    assert got == want
    # two programs in one section, split by their FUNC symbols
    a, b = s.programs["tp_getppid"], s.programs["tp_getppid_second"]
    assert a.section == b.section and a.section_offset == 0 and b.section_offset == a.insn_count
    assert s.license == "GPL"


def test_sections_misc_types_and_unknown_section_kept_for_inspect() -> None:
    s = spec("sections_misc.o")
    assert s.programs["misc_xdp"].type == ProgType.XDP
    assert s.programs["misc_tc"].type == s.programs["misc_classifier"].type == ProgType.SCHED_CLS
    assert s.programs["misc_cgroup_skb"].type == ProgType.CGROUP_SKB
    assert s.programs["misc_kprobe"].attach_to == "do_nanosleep"
    assert s.programs["misc_fentry"].type == ProgType.TRACING
    assert s.programs["misc_lsm"].type == ProgType.LSM
    unknown = s.programs["misc_unknown"]
    assert not unknown.known_section and unknown.section == "rawbpf_unknown/thing"
    with pytest.raises(
        ObjectError, match=r"^object 'sections_misc.o': section 'rawbpf_unknown/thing': unknown"
    ):
        load_spec(DATA / "sections_misc.o", strict=True)


def test_btf_maps_every_field() -> None:
    m = spec("maps_btf.o").maps
    assert m["pinned_hash"].type == MapType.HASH and m["pinned_hash"].pinning == Pinning.BY_NAME
    assert (m["pinned_hash"].key_size, m["pinned_hash"].value_size, m["pinned_hash"].max_entries) == (
        4,
        16,
        128,
    )
    assert m["pinned_hash"].btf_key_type_id and m["pinned_hash"].btf_value_type_id
    assert (m["sized_array"].key_size, m["sized_array"].value_size) == (4, 8)
    assert m["sized_array"].btf_key_type_id == 0  # key_size/value_size form has no BTF types
    assert m["percpu"].type == MapType.PERCPU_ARRAY
    assert m["lru"].numa_node == 0 and m["lru"].flags & BPF_F_NUMA_NODE
    assert m["lpm"].flags & BPF_F_NO_PREALLOC and m["lpm"].key_size == 8
    assert m["bloom"].map_extra == 3 and m["bloom"].key_size == 0
    assert m["queue"].type == MapType.QUEUE
    ring = m["events"]
    assert ring.declared_max_entries == 5000 and ring.max_entries == adjust_ringbuf_size(5000)
    assert m["perf_events"].max_entries == 0
    assert m["jump_table"].type == MapType.PROG_ARRAY and m["jump_table"].value_size == 4
    assert sorted(m["jump_table"].contents) == [(1, "tail_one"), (3, "tail_three")]
    outer = m["outer_array"]
    assert outer.inner is not None and outer.inner.type == MapType.ARRAY and outer.inner.value_size == 8
    assert sorted(outer.contents) == [(0, "inner_b"), (1, "inner_a")]
    assert m["outer_hash"].inner is not None and m["outer_hash"].inner.type == MapType.HASH
    assert all(x.kind == MapKind.BTF for x in m.values())


def test_ringbuf_rounding() -> None:
    page = mmap.PAGESIZE
    assert adjust_ringbuf_size(0) == 0
    assert adjust_ringbuf_size(page) == page
    assert adjust_ringbuf_size(page * 4) == page * 4
    assert adjust_ringbuf_size(page * 3) == page * 4
    assert adjust_ringbuf_size(1) == page
    assert adjust_ringbuf_size(page + 1) == page * 2


def test_legacy_maps() -> None:
    s = spec("maps_legacy.o")
    assert set(s.maps) == {"legacy_hash", "legacy_array"}
    assert all(m.kind == MapKind.LEGACY for m in s.maps.values())
    relos = s.programs["use_legacy"].relocations
    assert {r.target for r in relos if r.kind == RelocKind.MAP} == {"legacy_hash", "legacy_array"}


def test_global_data_maps_and_variables() -> None:
    s = spec("globals.o")
    names = set(s.maps)
    assert {
        "globals.rodata",
        "globals.data",
        "globals.bss",
        ".rodata.custom",
        ".data.custom",
        ".rodata.str1.1",
    } == names
    ro = s.maps["globals.rodata"]
    assert ro.flags & BPF_F_RDONLY_PROG and ro.flags & BPF_F_MMAPABLE and ro.frozen and ro.max_entries == 1
    assert s.maps[".rodata.str1.1"].flags == BPF_F_RDONLY_PROG  # no BTF vars: not mmapable, like libbpf
    assert s.maps["globals.bss"].data == bytearray(s.maps["globals.bss"].value_size)
    v = s.variables
    assert v["cfg_u32"].readonly and not v["data_counter"].readonly
    assert int.from_bytes(v["cfg_u32"].value(s), "little") == 7
    assert int.from_bytes(v["cfg_u64"].value(s), "little") == 0x1122334455667788
    assert v["cfg_name"].value(s).rstrip(b"\0") == b"rawbpf"
    assert int.from_bytes(v["data_counter"].value(s), "little") == 42
    assert v["custom_ro"].section == ".rodata.custom"
    assert v["cfg_name"].type_name.endswith("char[16]")


def test_relocations_by_target() -> None:
    s = spec("subprogs.o")
    a = s.programs["prog_a"]
    kinds = [r.kind for r in a.relocations]
    assert kinds.count(RelocKind.CALL) == 2 and kinds.count(RelocKind.DATA) == 1
    assert set(s.subprograms) == {"leaf", "chain_mid", "chain_top", "global_mix"}
    assert not s.subprograms["leaf"].is_global and s.subprograms["global_mix"].is_global
    cb = spec("callbacks.o")
    assert any(r.kind == RelocKind.SUBPROG_ADDR for r in cb.programs["run_loop"].relocations)


def test_btf_ext_cut_per_function() -> None:
    s = spec("subprogs.o")
    for p in (*s.programs.values(), *s.subprograms.values()):
        assert p.func_info and p.func_info[0].insn == 0, p.name
        assert all(0 <= li.insn < p.insn_count for li in p.line_info)
    core = spec("core.o")
    assert core.core_relo_count() == len(core.programs["on_getppid"].core_relos) > 10
    assert any(r.access for r in core.programs["on_getppid"].core_relos)


def test_names_follow_libbpf() -> None:
    assert object_name("/x/my_object_name.bpf.o") == "my_object_name"
    assert internal_map_name("my_object_name", ".rodata") == "my_objec.rodata"
    assert internal_map_name("my_object_name", ".bss") == "my_objec.bss"
    assert internal_map_name("my_object_name", ".kconfig") == "my_obje.kconfig"
    assert internal_map_name("obj", ".rodata.abracadabra") == ".rodata.abracad"


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("not_elf.bin", r"^object 'not_elf.bin': not an ELF file$"),
        ("wrong_machine.o", r"^object 'wrong_machine.o': not a BPF object \(machine EM_X86_64\)$"),
        ("truncated.o", r"^object 'truncated.o': malformed ELF: "),
        ("bad_btf.o", r"^object 'bad_btf.o': section '.BTF': bad BTF: "),
    ],
)
def test_bad_objects_one_line(name: str, pattern: str) -> None:
    with pytest.raises(ObjectError, match=pattern) as info:
        load_spec(DATA / name)
    assert "\n" not in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(ObjectError, match=r"^object '/nonexistent/x.o': no such file or directory$"):
        load_spec("/nonexistent/x.o")


def test_bytes_input_and_determinism() -> None:
    raw = (DATA / "globals.o").read_bytes()
    a, b = load_spec(raw, name="globals"), load_spec(DATA / "globals.o")
    assert a.programs["copy_globals"].insns == b.programs["copy_globals"].insns
    assert list(a.maps) == list(b.maps)


_SEED = (DATA / "subprogs.o").read_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.integers(0, len(_SEED) - 1), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(16, len(_SEED)),
)
def test_corrupt_objects_raise_only_rawbpf_errors(edits: list, cut: int) -> None:
    data = bytearray(_SEED[:cut])
    for off, val in edits:
        if off < len(data):
            data[off] = val
    try:
        load_spec(bytes(data), name="fuzz")
    except RawBPFError as err:
        assert "\n" not in str(err)
