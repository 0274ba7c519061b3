"""Where rawbpf loads what libbpf loads and says why the kernel refused: the pure parts (no root)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from rawbpf import _sys
from rawbpf.elf import load_spec
from rawbpf.errors import ENOTSUPP, RelocationError, VerifierError, explain_refusal

DATA = Path(__file__).resolve().parent.parent / "data"

GPL_LOG = """0: R1=ctx() R10=fp0
0: (b7) r1 = 0                        ; R1_w=0
1: (7b) *(u64 *)(r10 -8) = r1         ; R1_w=0 R10=fp0 fp-8_w=0
2: (bf) r1 = r10                      ; R1_w=fp0 R10=fp0
5: (85) call bpf_probe_read_kernel#113
cannot call GPL-restricted function from non-GPL compatible program
processed 5 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
"""

CORE_ONLY_LOG = """libbpf: prog 'p': relo #0: <byte_off> [7] struct task_struct.pid (0:60 @ offset 2456)
CO-RE relocating [7] struct task_struct: found target candidate [123] struct task_struct in vmlinux
insn #3 relocated, imm 2456 -> 2456
processed 0 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
"""


def test_object_without_license_parses_with_an_empty_license() -> None:
    spec = load_spec(DATA / "no_license.o")
    assert spec.license == ""
    assert {p.name for p in spec.programs.values()} == {"unlicensed", "gpl_helper"}
    assert all(p.license == "" for p in spec.programs.values())


def test_gpl_only_helper_is_named_as_the_reason() -> None:
    err = VerifierError("load program 'gpl_helper'", errno.EINVAL, GPL_LOG)
    assert err.reason.startswith("'bpf_probe_read_kernel' is GPL-only")
    assert 'SEC("license")' in err.summary()


def test_refusal_before_verifying_names_the_errno_not_a_core_line() -> None:
    for err, word in ((errno.EPERM, "EPERM"), (ENOTSUPP, "ENOTSUPP")):
        reason = explain_refusal(CORE_ONLY_LOG, err)
        assert word in reason and "relocat" not in reason
    # a real verifier failure with instructions processed keeps the log's own reason
    bad = GPL_LOG.replace("cannot call GPL-restricted function from non-GPL compatible program",
                          "R1 invalid mem access 'scalar'")
    assert explain_refusal(bad, errno.EPERM) == "R1 invalid mem access 'scalar'"


def test_capability_hint_only_when_the_caller_lacks_them(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(_sys, "has_bpf_caps", lambda: False)
    assert "need CAP_BPF/CAP_PERFMON or root" in str(_sys._fail("load program 'p'", errno.EPERM, None))
    monkeypatch.setattr(_sys, "has_bpf_caps", lambda: True)
    msg = str(_sys._fail("load program 'p'", errno.EPERM, None))
    assert "need CAP_BPF" not in msg and "has CAP_BPF/CAP_PERFMON" in msg


def test_virtual_kconfig_values_without_a_kernel_config(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from rawbpf import externs

    spec = load_spec(DATA / "kconfig_virtual.o")
    monkeypatch.setattr(externs, "kernel_version_code", lambda release=None: 0x061200)
    monkeypatch.setattr(externs, "kallsyms", lambda path="/proc/kallsyms": {"__x64_sys_bpf": 1})
    monkeypatch.setattr(externs, "machine", lambda: "x86_64")
    externs.fill_kconfig(spec, config={})  # none of them is in the kernel config
    kmap = next(m for m in spec.maps.values() if m.section == ".kconfig")
    assert kmap.data is not None
    values = {e.name: bytes(kmap.data[e.offset:e.offset + e.size]) for e in spec.externs.values()}
    assert values["LINUX_HAS_SYSCALL_WRAPPER"] == b"\1" and values["LINUX_HAS_BPF_COOKIE"] == b"\1"
    assert int.from_bytes(values["LINUX_KERNEL_VERSION"], "little") == 0x061200
    monkeypatch.setattr(externs, "kallsyms", lambda path="/proc/kallsyms": {"__ia32_sys_bpf": 1})
    externs.fill_kconfig(spec, config={})
    assert kmap.data[spec.externs["LINUX_HAS_SYSCALL_WRAPPER"].offset] == 0


def test_weak_unknown_virtual_kconfig_value_reads_zero_and_a_strong_one_is_refused() -> None:
    """libbpf's rule for LINUX_* externs it does not fill: weak ones read 0 (like a weak CONFIG_ value the
    kernel config lacks), strong ones refuse the object."""
    from rawbpf import externs

    spec = load_spec(DATA / "kconfig_unknown.o")
    ext = spec.externs["LINUX_RAWBPF_NOT_A_VIRTUAL_VALUE"]
    assert ext.weak
    kmap = next(m for m in spec.maps.values() if m.section == ".kconfig")
    assert kmap.data is not None
    kmap.data[ext.offset:ext.offset + ext.size] = b"\xff" * ext.size
    externs.fill_kconfig(spec, config={})
    assert bytes(kmap.data[ext.offset:ext.offset + ext.size]) == bytes(ext.size)
    ext.weak = False
    with pytest.raises(RelocationError, match="unknown virtual extern 'LINUX_RAWBPF_NOT_A_VIRTUAL_VALUE'"):
        externs.fill_kconfig(spec, config={})


def test_linked_object_with_two_static_functions_of_one_name() -> None:
    from rawbpf.linker import link

    spec = load_spec(DATA / "linked_statics.o")
    scales = sorted(s.section_offset for s in spec.subprograms.values() if s.name == "scale")
    assert len(scales) == 2
    firsts = {}
    for name in ("entry_1", "entry_2"):
        linked = link(spec, name)
        assert [n for n, _ in linked.layout] == [name, "scale"]
        firsts[name] = bytes(linked.insns[len(spec.programs[name].insns):])
    assert firsts["entry_1"] != firsts["entry_2"]  # each program got its own file's function


def test_kfunc_address_becomes_a_btf_id_load_and_a_missing_weak_one_zero() -> None:
    from rawbpf.consts import BPF_PSEUDO_BTF_ID
    from rawbpf.linker import ExternValue, decode, link, patch_data

    spec = load_spec(DATA / "ksym_exists.o")
    linked = link(spec, "probe_kfuncs")
    externs = {"bpf_task_from_pid": ExternValue("kfunc", btf_id=4242),
               "bpf_task_release": ExternValue("kfunc", btf_id=4243),
               "bpf_rawbpf_no_such_kfunc": ExternValue("kfunc", btf_id=0)}
    maps = {m: 100 + i for i, m in enumerate(spec.maps)}
    patch_data(linked, maps, externs)
    loads = {r.target: r.insn for r in linked.relocations if r.target in externs and
             decode(linked.insns, r.insn)[0] == 0x18}
    assert set(loads) == {"bpf_task_from_pid", "bpf_rawbpf_no_such_kfunc"}
    _code, _dst, src, _off, imm = decode(linked.insns, loads["bpf_task_from_pid"])
    assert (src, imm) == (BPF_PSEUDO_BTF_ID, 4242)
    _code, _dst, src, _off, imm = decode(linked.insns, loads["bpf_rawbpf_no_such_kfunc"])
    assert (src, imm) == (0, 0)

