"""Checks that the committed BPF test corpus in tests/data is what its README says (pyelftools only).

A corpus object that silently lost a section, a program or its BTF would make loader tests pass or fail for
the wrong reason; these tests catch that without a compiler or root.
"""

from __future__ import annotations

import importlib.util
import io
import struct
from pathlib import Path
from types import ModuleType
from typing import Dict, List, Set

import pytest
from elftools.elf.elffile import ELFFile

DATA = Path(__file__).resolve().parents[1] / "data"
ROOT = DATA.parents[1]
EM_BPF = "EM_BPF"

# object -> {section: {function symbols defined in it}}
PROGRAMS: Dict[str, Dict[str, Set[str]]] = {
    "globals": {"tp/syscalls/sys_enter_getppid": {"on_getppid"}, "socket": {"copy_globals"}},
    "maps_btf": {
        "socket": {"tail_one", "tail_three", "tail_entry", "use_maps"},
        "tp/syscalls/sys_enter_getppid": {"perf_out"},
    },
    "maps_legacy": {"socket": {"use_legacy"}},
    "subprogs": {"socket": {"prog_a", "prog_b"}, ".text": {"leaf", "chain_mid", "chain_top", "global_mix"}},
    "callbacks": {"socket": {"run_loop", "run_for_each"}, ".text": {"loop_cb", "each_cb"}},
    "core": {"tp/syscalls/sys_enter_getppid": {"on_getppid"}},
    "tracepoints5": {
        "tp/sched/sched_process_exec": {"tp5_exec"},
        "tp/sched/sched_process_fork": {"tp5_fork"},
        "tp/sched/sched_process_exit": {"tp5_exit"},
        "tp/syscalls/sys_enter_connect": {"tp5_connect_enter"},
        "tp/syscalls/sys_exit_connect": {"tp5_connect_exit"},
    },
    "attach_kinds": {
        "tp/syscalls/sys_enter_getppid": {"tp_getppid", "tp_getppid_second"},
        "tracepoint/syscalls/sys_exit_getppid": {"tracepoint_getppid"},
        "raw_tp/sys_enter": {"raw_tp_sys_enter"},
        "raw_tracepoint/sys_exit": {"raw_tracepoint_sys_exit"},
        "tp_btf/sched_process_fork": {"tp_btf_fork"},
        "uprobe//lib/x86_64-linux-gnu/libc.so.6:getppid": {"uprobe_getppid"},
        "uretprobe//lib/x86_64-linux-gnu/libc.so.6:getppid": {"uretprobe_getppid"},
        "uprobe": {"uprobe_manual"},
    },
    "sections_misc": {
        "socket": {"misc_socket"},
        "xdp": {"misc_xdp"},
        "tc": {"misc_tc"},
        "classifier": {"misc_classifier"},
        "cgroup_skb/ingress": {"misc_cgroup_skb"},
        "kprobe/do_nanosleep": {"misc_kprobe"},
        "fentry/do_nanosleep": {"misc_fentry"},
        "lsm/file_open": {"misc_lsm"},
        "rawbpf_unknown/thing": {"misc_unknown"},
    },
    "no_license": {"socket": {"unlicensed"}, "tracepoint/syscalls/sys_enter_getppid": {"gpl_helper"}},
    "verifier_reject": {"socket": {"deref_unchecked"}},
    "kconfig_virtual": {"socket": {"read_virtual"}},
    "kconfig_unknown": {"socket": {"read_unknown"}},
    "linked_statics": {"socket": {"entry_1", "entry_2"}},
    "ksym_exists": {"syscall": {"probe_kfuncs"}},
    "naked_btf": {"socket": {"naked_ret", "counted"}},
    "struct_ops_prog": {"struct_ops/rb_ssthresh": {"rb_ssthresh"}},
    "struct_ops_tcp": {
        "struct_ops/rb_init": {"rb_init"}, "struct_ops/rb_ssthresh": {"rb_ssthresh"},
        "struct_ops/rb_cong_avoid": {"rb_cong_avoid"}, "struct_ops/rb_undo_cwnd": {"rb_undo_cwnd"},
    },
    "struct_ops_link": {
        "struct_ops/rb_init": {"rb_init"}, "struct_ops/rb_ssthresh": {"rb_ssthresh"},
        "struct_ops/rb_cong_avoid": {"rb_cong_avoid"}, "struct_ops/rb_undo_cwnd": {"rb_undo_cwnd"},
    },
}

# object -> data sections it must carry
DATA_SECTIONS: Dict[str, List[str]] = {
    "globals": [".rodata", ".data", ".bss", ".rodata.custom", ".data.custom", ".rodata.str1.1"],
    "maps_btf": [".maps"],
    "maps_legacy": ["maps"],
    "callbacks": [".maps", ".bss"],
    "core": [".bss"],
    "tracepoints5": [".maps"],
    "verifier_reject": [".maps"],
    "struct_ops_tcp": [".struct_ops", ".bss"],
    "struct_ops_link": [".struct_ops.link", ".bss"],
}

MAPS: Dict[str, Set[str]] = {
    "maps_btf": {
        "pinned_hash", "sized_array", "percpu", "lru", "lpm", "events", "perf_events", "inner_a", "inner_b",
        "outer_array", "outer_hash", "bloom", "queue", "jump_table",
    },
    "maps_legacy": {"legacy_hash", "legacy_array"},
}

GOOD = sorted(PROGRAMS)


def _elf(name: str) -> ELFFile:
    return ELFFile(io.BytesIO((DATA / f"{name}.o").read_bytes()))


def _functions(elf: ELFFile) -> Dict[str, Set[str]]:
    symtab = elf.get_section_by_name(".symtab")
    out: Dict[str, Set[str]] = {}
    for sym in symtab.iter_symbols():
        if sym["st_info"]["type"] == "STT_FUNC" and isinstance(sym["st_shndx"], int):
            out.setdefault(elf.get_section(sym["st_shndx"]).name, set()).add(sym.name)
    return out


def _symbols_in(elf: ELFFile, section: str) -> Set[str]:
    idx = next(i for i, s in enumerate(elf.iter_sections()) if s.name == section)
    symtab = elf.get_section_by_name(".symtab")
    return {
        s.name for s in symtab.iter_symbols()
        if s["st_shndx"] == idx and s["st_info"]["type"] == "STT_OBJECT"
    }


def test_every_source_has_an_object_and_a_readme_entry() -> None:
    readme = (DATA / "README.md").read_text()
    halves = {"linked_statics_1", "linked_statics_2"}  # linked into linked_statics.o by bpftool
    sources = {p.stem for p in DATA.glob("*.c")} - halves | {"linked_statics"}
    assert sources == set(PROGRAMS) | {"wrong_machine"}
    assert all(f"{h}.c" in readme for h in halves)
    for obj in [*sources, "truncated", "bad_btf"]:
        assert (DATA / f"{obj}.o").is_file(), obj
        assert f"{obj}.o" in readme, obj
    assert "not_elf.bin" in readme


@pytest.mark.parametrize("name", GOOD)
def test_object_is_a_bpf_elf_with_its_programs(name: str) -> None:
    elf = _elf(name)
    assert elf.elfclass == 64 and elf.little_endian
    assert elf["e_machine"] == EM_BPF and elf["e_type"] == "ET_REL"
    funcs = _functions(elf)
    for section, names in PROGRAMS[name].items():
        sec = elf.get_section_by_name(section)
        assert sec is not None, f"{name}.o lacks section {section!r}"
        assert sec["sh_flags"] & 0x4, f"{section} is not executable"
        assert funcs.get(section, set()) == names, section
        assert sec.data_size % 8 == 0


@pytest.mark.parametrize("name", GOOD)
def test_object_carries_btf_ext_and_license(name: str) -> None:
    elf = _elf(name)
    for sec in (".BTF", ".BTF.ext"):
        assert elf.get_section_by_name(sec) is not None, f"{name}.o lacks {sec}"
    btf = elf.get_section_by_name(".BTF").data()
    assert struct.unpack_from("<H", btf)[0] == 0xEB9F
    lic = elf.get_section_by_name("license")
    if name == "no_license":
        assert lic is None
    else:
        assert lic is not None and lic.data().rstrip(b"\0") == b"GPL"


@pytest.mark.parametrize("name", sorted(DATA_SECTIONS))
def test_data_sections(name: str) -> None:
    elf = _elf(name)
    for section in DATA_SECTIONS[name]:
        assert elf.get_section_by_name(section) is not None, f"{name}.o lacks {section}"


@pytest.mark.parametrize("name", sorted(MAPS))
def test_map_symbols(name: str) -> None:
    elf = _elf(name)
    section = ".maps" if name == "maps_btf" else "maps"
    assert _symbols_in(elf, section) == MAPS[name]


def test_globals_variables_by_section() -> None:
    elf = _elf("globals")
    assert _symbols_in(elf, ".rodata") == {"cfg_u32", "cfg_u64", "cfg_bool", "cfg_name"}
    assert _symbols_in(elf, ".data") == {"data_counter", "data_u64"}
    assert _symbols_in(elf, ".rodata.custom") == {"custom_ro"}
    assert _symbols_in(elf, ".data.custom") == {"custom_data"}
    assert {"bss_u32", "bss_u64", "bss_bool", "bss_name", "target_tgid"} <= _symbols_in(elf, ".bss")
    assert b"from .rodata.str1.1" in elf.get_section_by_name(".rodata.str1.1").data()


def test_source_files_are_path_independent() -> None:
    for obj in [*GOOD, "wrong_machine"]:
        assert str(ROOT).encode() not in (DATA / f"{obj}.o").read_bytes(), obj


def test_core_has_core_relocations() -> None:
    ext = _elf("core").get_section_by_name(".BTF.ext").data()
    # btf_ext_header: magic u16, version u8, flags u8, hdr_len u32, func/line info off+len, core_relo off+len
    magic, _v, _f, hdr_len = struct.unpack_from("<HBBI", ext)
    assert magic == 0xEB9F and hdr_len >= 32
    core_relo_len = struct.unpack_from("<I", ext, 28)[0]
    assert core_relo_len > 16 * 20  # dozens of relocation records


def test_not_elf() -> None:
    data = (DATA / "not_elf.bin").read_bytes()
    assert data and not data.startswith(b"\x7fELF")


def test_wrong_machine_is_x86_64() -> None:
    assert _elf("wrong_machine")["e_machine"] == "EM_X86_64"


def test_truncated_is_a_prefix_cut_before_the_section_headers() -> None:
    whole = (DATA / "globals.o").read_bytes()
    cut = (DATA / "truncated.o").read_bytes()
    assert whole.startswith(cut) and len(cut) == len(whole) // 2
    (shoff,) = struct.unpack_from("<Q", cut, 0x28)
    assert shoff > len(cut)


def _corrupt_btf_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("corrupt_btf", ROOT / "tools" / "corrupt_btf.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bad_btf_differs_from_its_source_only_in_one_btf_kind() -> None:
    good = (DATA / "subprogs.o").read_bytes()
    bad = (DATA / "bad_btf.o").read_bytes()
    assert len(good) == len(bad)
    diff = [i for i in range(len(good)) if good[i] != bad[i]]
    btf = _elf("subprogs").get_section_by_name(".BTF")
    start = btf["sh_offset"]
    assert diff and all(start <= i < start + btf["sh_size"] for i in diff)
    hdr_len, type_off = struct.unpack_from("<II", good, start + 4)
    (info,) = struct.unpack_from("<I", bad, start + hdr_len + type_off + 4)
    assert (info >> 24) & 0x1F == 31
    assert _corrupt_btf_tool().corrupt(good) == bad


def test_verifier_reject_has_line_info_for_the_bad_line() -> None:
    src = (DATA / "verifier_reject.c").read_text().splitlines()
    bad_line = next(i + 1 for i, line in enumerate(src) if "VERIFIER_REJECTS_HERE" in line)
    assert bad_line == 21  # the README names this line
    btf = _elf("verifier_reject").get_section_by_name(".BTF").data()
    assert b"VERIFIER_REJECTS_HERE" in btf  # line_info source text lives in the BTF string table
