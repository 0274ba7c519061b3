"""rawbpf loads what libbpf loads and refuses with the kernel's reason, against the real kernel."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from rawbpf.collection import Collection
from rawbpf.consts import ProgType
from rawbpf.elf import load_spec
from rawbpf.errors import VerifierError

DATA = Path(__file__).resolve().parent.parent / "data"


def test_object_without_license_loads_and_gpl_only_helper_is_named() -> None:
    spec = load_spec(DATA / "no_license.o")
    with Collection.load(spec, programs=["unlicensed"]) as coll:
        prog = coll.programs["unlicensed"]
        assert prog.type == ProgType.SOCKET_FILTER and prog.fd >= 0
    with pytest.raises(VerifierError) as info:
        Collection.load(spec, programs=["gpl_helper"])
    msg = info.value.summary()
    assert "'bpf_probe_read_kernel' is GPL-only" in msg and "gpl_helper" in msg
    assert "need CAP_BPF" not in msg


def test_refused_before_verifying_names_the_errno() -> None:
    """A program the kernel refuses before its verifier runs (no log to quote): the error names the errno."""
    spec = load_spec(DATA / "sections_misc.o")
    spec.programs["misc_socket"].flags = 1 << 30  # no such prog_flags bit: EINVAL on every kernel, unverified
    with pytest.raises(Exception) as info:
        Collection.load(spec, programs=["misc_socket"])
    msg = str(info.value)
    assert getattr(info.value, "errno", None) == errno.EINVAL, msg
    assert "invalid argument" in msg and "misc_socket" in msg, msg
    assert "need CAP_BPF" not in msg and "relocat" not in msg.split(":")[-1], msg
    # fentry: refused by this VM's policy before verification (EPERM), loaded by a stock Debian 6.1
    try:
        Collection.load(load_spec(DATA / "sections_misc.o"), programs=["misc_fentry"]).close()
    except Exception as err:  # whichever error rawbpf raises, its text is what is checked
        msg = str(err)
        assert "EPERM" in msg or "ENOTSUPP" in msg or "not supported" in msg, msg
        assert "need CAP_BPF" not in msg and "relocat" not in msg.split(":")[-1], msg


def test_arena_map_flags_are_left_to_the_kernel() -> None:
    """BPF_F_MMAPABLE is the kernel's policy (arena maps require it): rawbpf asks, the kernel answers.

    This kernel refuses arenas as a policy (EPERM as root); the answer must be the kernel's errno, not a
    rawbpf-side "only for array maps"."""
    from rawbpf.consts import BPF_F_MMAPABLE, MapType
    from rawbpf.errors import SyscallError
    from rawbpf.maps import Map

    try:
        with Map.create(MapType.ARENA, 0, 0, 1, name="rb_arena_t", flags=BPF_F_MMAPABLE) as m:
            assert m.fd >= 0
    except SyscallError as err:
        assert err.errno != 0 and "only for array maps" not in str(err)
        assert "need CAP_BPF" not in str(err)


def test_virtual_kconfig_values_are_filled() -> None:
    """LINUX_HAS_SYSCALL_WRAPPER (strong), LINUX_HAS_BPF_COOKIE and LINUX_KERNEL_VERSION (weak) get the
    running kernel's values, as libbpf fills them; a weak one must not silently read 0."""
    from rawbpf.externs import kernel_version_code

    with Collection.load(load_spec(DATA / "kconfig_virtual.o")) as coll:
        assert coll.programs["read_virtual"].test_run(bytes(64)).retval == 1  # x86_64 wraps syscalls
        v = coll.variables
        assert (v["has_wrapper"], v["has_cookie"]) == (1, 1)
        assert v["kernel_version"] == kernel_version_code() != 0


def test_weak_unknown_virtual_kconfig_value_loads_as_zero() -> None:
    """A weak LINUX_* extern no loader fills reads 0 and the object loads, as with libbpf."""
    with Collection.load(load_spec(DATA / "kconfig_unknown.o")) as coll:
        assert coll.programs["read_unknown"].test_run(bytes(64)).retval == 7


def test_two_static_functions_of_one_name_in_a_linked_object() -> None:
    """Each entry program calls its own file's static `scale` (found by .text offset, not by name)."""
    with Collection.load(load_spec(DATA / "linked_statics.o")) as coll:
        # a 64-byte packet: skb->len is 50 (the Ethernet header is pulled)
        assert coll.programs["entry_1"].test_run(bytes(64)).retval == 50 * 10 + 1
        assert coll.programs["entry_2"].test_run(bytes(64)).retval == 50 * 100 + 2


def test_ksym_exists_is_true_for_a_present_kfunc_and_keeps_its_calls() -> None:
    """bpf_task_from_pid (Linux 6.2) where the kernel has it: found and called. On 6.1 it is absent: the
    object loads all the same, ksym_exists is false and its guarded call is never made."""
    import os

    from kernel_limits import release, version

    from rawbpf.btf import Kind
    from rawbpf.btf.kernel import vmlinux

    has = vmlinux().find("bpf_task_from_pid", Kind.FUNC) is not None
    assert has or version(release()) < (6, 2), f"bpf_task_from_pid is missing on Linux {release()}"
    with Collection.load(load_spec(DATA / "ksym_exists.o")) as coll:
        assert coll.programs["probe_kfuncs"].test_run(b"").retval == (os.getpid() if has else 0)
        assert (coll.variables["present"], coll.variables["missing"]) == (int(has), 0)


def test_prog_array_slot_naming_an_unloaded_program_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    spec = load_spec(DATA / "maps_btf.o")
    with caplog.at_level("WARNING", logger="rawbpf"), \
            Collection.load(spec, programs=["tail_entry", "tail_one"]) as coll:
        table = coll.maps["jump_table"]
        slot1 = table.lookup(1)
        assert slot1 is not None and int.from_bytes(slot1, "little") > 0  # tail_one's id
        assert table.lookup(3) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("prog-array 'jump_table' slot 3 names program 'tail_three', which was not loaded" in w
               for w in warnings), warnings
    assert all("\n" not in w for w in warnings)


def test_btf_the_kernel_refuses_is_optional(caplog: pytest.LogCaptureFixture) -> None:
    """clang's unnamed parameter of a __naked function makes the kernel refuse the BTF; libbpf then loads
    without BTF (no func/line info), and so does rawbpf, after one warning line."""
    spec = load_spec(DATA / "naked_btf.o")
    with caplog.at_level("WARNING", logger="rawbpf"), Collection.load(spec) as coll:
        assert coll.btf is None
        assert coll.programs["naked_ret"].test_run(bytes(64)).retval == 42
        assert coll.programs["counted"].test_run(bytes(64)).retval == 1
        assert coll.variables["runs"] == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "Invalid arg#1" in warnings[0] and "loading without BTF" in warnings[0]
