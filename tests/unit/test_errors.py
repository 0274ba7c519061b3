"""Error formatting and the pure helpers of the kernel layer (no syscalls, no root)."""

from __future__ import annotations

import errno
import pickle

import pytest

from rawbpf import _sys
from rawbpf.consts import BPF_F_MMAPABLE, MapType
from rawbpf.errors import ConfigError, NotSupportedError, RawBPFError, SyscallError, VerifierError
from rawbpf.kbtf import BTFLoadError, _reason
from rawbpf.maps import _check_create, _pack, parse_cpu_list, sanitize_name
from rawbpf.programs import failing_insn

LOG = """func#0 @0
0: R1=ctx() R10=fp0
0: (b7) r2 = 0                        ; R2_w=0
1: (85) call bpf_map_lookup_elem#1
R1 type=scalar expected=map_ptr
processed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
"""


def test_syscall_error_is_oserror_with_context_and_hint() -> None:
    err = SyscallError("create map 'm'", errno.EPERM)
    assert isinstance(err, OSError) and isinstance(err, RawBPFError)
    assert err.errno == errno.EPERM
    assert str(err) == "create map 'm': operation not permitted (need CAP_BPF/CAP_PERFMON or root)"
    assert err.summary() == str(err)
    custom = SyscallError("update map 'm'", errno.E2BIG, "the map is full")
    assert str(custom) == "update map 'm': argument list too long (the map is full)"


def test_sys_hints_fill_in_by_errno() -> None:
    e = _sys._fail("load program 'p'", errno.E2BIG, None)
    assert "larger than the kernel allows" in str(e)
    e2 = _sys._fail("load program 'p'", errno.EINVAL, {errno.EINVAL: "bad attach type"})
    assert str(e2) == "load program 'p': invalid argument (bad attach type)"


def test_errors_survive_pickling() -> None:
    err = SyscallError("open pin /x", errno.ENOENT)
    again = pickle.loads(pickle.dumps(err))
    assert again.errno == errno.ENOENT and str(again).startswith("open pin /x: ")
    verr = VerifierError("load program 'p'", errno.EACCES, LOG, insn_index=1, source="p.c:3: x = f();")
    v2 = pickle.loads(pickle.dumps(verr))
    assert str(v2) == str(verr) and v2.log == LOG and v2.insn_index == 1


def test_verifier_error_summary_tail_detail() -> None:
    err = VerifierError("load program 'p'", errno.EACCES, LOG, insn_index=failing_insn(LOG))
    assert err.reason == "R1 type=scalar expected=map_ptr"
    assert str(err) == "load program 'p': verifier rejected program: R1 type=scalar expected=map_ptr (insn 1)"
    assert "\n" not in err.summary()
    assert err.tail(2).splitlines() == ["R1 type=scalar expected=map_ptr", LOG.splitlines()[-1]]
    assert err.detail().endswith(LOG.rstrip())
    with_src = VerifierError("load program 'p'", errno.EACCES, LOG, insn_index=1, source="p.c:3: v = f(k);")
    assert with_src.summary().endswith("[at p.c:3: v = f(k);]")


def test_verifier_error_with_only_statistics_falls_back_to_errno() -> None:
    err = VerifierError("load program 'p'", errno.EINVAL, "processed 1 insns (limit 1000000)\n")
    assert err.reason == "invalid argument"


def test_failing_insn_takes_the_last_printed_instruction() -> None:
    assert failing_insn(LOG) == 1
    assert failing_insn("from 4 to 6: R0=1\n6: (95) exit\n12: R1=ctx()\n") == 6
    assert failing_insn("") is None


def test_btf_load_error_and_reason() -> None:
    log = "magic: 0xeb9f\nversion: 1\nflags: 0x0\nhdr_len: 24\n[1] INT x size=4\n[2] PTR (anon) type_id=9\n" \
          "type_id=9 Invalid type_id\n"
    assert _reason(log) == "type_id=9 Invalid type_id"
    err = BTFLoadError("load btf 'obj'", _reason(log), log, errno.EINVAL)
    assert str(err) == "load btf 'obj': kernel refused btf: type_id=9 Invalid type_id"
    assert err.tail(1) == "type_id=9 Invalid type_id" and "--- btf log ---" in err.detail()


def test_btf_reason_names_the_type_of_a_bad_member() -> None:
    log = ("magic: 0xeb9f\n[1] INT int size=4\n[2] STRUCT s size=4 vlen=1\n"
           "\tm type_id=9 bits_offset=0 Invalid member\n")
    assert _reason(log) == "[2] STRUCT s size=4 vlen=1: m type_id=9 bits_offset=0 Invalid member"
    assert _reason("magic: 0xeb9f\nversion: 1\n") == ""


def test_not_supported_names_release() -> None:
    e = NotSupportedError("BPF ring buffer maps", "5.8")
    assert str(e) == "BPF ring buffer maps is not supported by this kernel (needs Linux 5.8 or later)"


def test_syscall_numbers() -> None:
    assert _sys.syscall_numbers("x86_64") == (321, 298)
    assert _sys.syscall_numbers("aarch64") == (280, 241)
    with pytest.raises(NotSupportedError, match="machine 'sparc'"):
        _sys.syscall_numbers("sparc")


def test_cpu_list_parsing() -> None:
    assert parse_cpu_list("0") == 1
    assert parse_cpu_list("0-3\n") == 4
    assert parse_cpu_list("0-3,8-11") == 12
    assert parse_cpu_list("0,2,5") == 6
    for bad in ("", "a-b", ","):
        with pytest.raises(RawBPFError, match="parse cpu list"):
            parse_cpu_list(bad)


def test_names_are_sanitised_for_the_kernel() -> None:
    assert sanitize_name("handle-exec:v2") == "handle_exec_v2"
    assert sanitize_name("a" * 40) == "a" * 15
    assert sanitize_name(".rodata") == ".rodata"


def test_pack_keys_and_values() -> None:
    assert _pack(1, 4, "k") == b"\1\0\0\0"
    assert _pack(-1, 2, "k") == b"\xff\xff"
    assert _pack(b"ab", 2, "k") == b"ab"
    assert _pack(True, 1, "k") == b"\1"
    with pytest.raises(ConfigError, match="k 256 does not fit in 1 bytes"):
        _pack(256, 1, "k")
    with pytest.raises(ConfigError, match="k is 3 bytes, the map wants 2"):
        _pack(b"abc", 2, "k")
    with pytest.raises(ConfigError, match="must be bytes or int, not str"):
        _pack("x", 2, "k")


@pytest.mark.parametrize(("mtype", "k", "v", "n", "flags", "match"), [
    (MapType.HASH, 4, 4, 0, 0, "max_entries must be > 0"),
    (MapType.PERCPU_ARRAY, 2, 4, 4, 0, "keys are 4-byte indexes"),
    (MapType.STACK, 4, 4, 4, 0, "stack maps have no key"),
    (MapType.BLOOM_FILTER, 0, 0, 4, 0, "value_size must be > 0"),
    (MapType.RINGBUF, 4, 0, 4096, 0, "key_size 0 and value_size 0"),
    (MapType.RINGBUF, 0, 0, 4096 * 3, 0, "power of 2"),
    (MapType.PROG_ARRAY, 4, 8, 4, 0, "values are 4-byte fds"),
    (MapType.STACK_TRACE, 4, 12, 4, 0, "arrays of u64"),
    (MapType.HASH_OF_MAPS, 4, 4, 4, 0, "needs inner_map_fd"),
    (MapType.HASH, 4, 1 << 32, 4, 0, "value_size must be an integer"),
])
def test_map_parameter_checks(mtype: MapType, k: int, v: int, n: int, flags: int, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as ei:
        _check_create("map 'x'", mtype, k, v, n, flags, -1)
    assert str(ei.value).startswith("create map 'x': ") and "\n" not in str(ei.value)


def test_valid_map_parameters_pass() -> None:
    for args in ((MapType.HASH, 4, 8, 10, 0), (MapType.QUEUE, 0, 8, 10, 0),
                 (MapType.RINGBUF, 0, 0, 1 << 16, 0), (MapType.ARRAY, 4, 8, 1, BPF_F_MMAPABLE),
                 (MapType.LPM_TRIE, 8, 4, 4, 1),
                 (MapType.ARENA, 0, 0, 1, BPF_F_MMAPABLE)):  # flag policy is the kernel's (arena, array)
        _check_create("map 'ok'", *args, -1)


def test_only_the_choke_point_touches_libc() -> None:
    from pathlib import Path

    pkg = Path(__file__).resolve().parents[2] / "rawbpf"
    offenders = []
    for path in pkg.rglob("*.py"):
        if path.name == "_sys.py" and path.parent == pkg:
            continue
        text = path.read_text()
        for needle in ("ctypes.CDLL", "CDLL(", "find_library", ".syscall(", "use_errno"):
            if needle in text:
                offenders.append(f"{path.relative_to(pkg)}: {needle}")
    assert offenders == [], "only rawbpf/_sys.py may call libc"


def test_context_is_a_field_set_once_in_front_of_the_message() -> None:
    err = SyscallError("load program 'p'", errno.EPERM)
    assert err.with_context("object 'o': section 'tp/x'") is err
    err.with_context("object 'other'")  # the context nearest the failure wins
    assert err.context == "object 'o': section 'tp/x'"
    assert err.message() == "load program 'p': operation not permitted (need CAP_BPF/CAP_PERFMON or root)"
    assert str(err) == f"object 'o': section 'tp/x': {err.message()}" and err.summary() == str(err)
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.errno == errno.EPERM
    plain = ConfigError("bad value").with_context("--set x")
    assert str(pickle.loads(pickle.dumps(plain))) == "--set x: bad value"


def test_kernel_refusals_share_one_base() -> None:
    from rawbpf.errors import BTFError, KernelRefusal
    from rawbpf.errors import BTFLoadError as FromErrors

    assert FromErrors is BTFLoadError  # rawbpf.kbtf re-exports the one in errors.py
    btf = BTFLoadError("load btf", "[2] PTR type_id=9 Invalid type_id", "magic: 0xeb9f\n[2] PTR\nbad\n",
                       errno.EINVAL)
    ver = VerifierError("load program 'p'", errno.EACCES, LOG)
    for err in (btf, ver):
        assert isinstance(err, KernelRefusal) and isinstance(err, SyscallError) and isinstance(err, OSError)
        assert err.tail(1) and err.log and err.reason
        assert f"--- {err.log_name} ---" in err.detail()
    assert isinstance(btf, BTFError) and btf.errno_name == "EINVAL" and ver.errno_name == "EACCES"
    assert str(pickle.loads(pickle.dumps(btf.with_context("object 'o': section '.BTF'")))) == str(btf)


def test_errno_names_come_from_errno() -> None:
    from rawbpf.errors import ENOTSUPP

    assert SyscallError("x", errno.ENOSPC).errno_name == "ENOSPC"
    assert SyscallError("x", ENOTSUPP).errno_name == "ENOTSUPP"


def test_libc_is_the_interpreters_own_without_a_search() -> None:
    """The C library comes from dlopen(NULL): ctypes.util.find_library would start an ``ldconfig -p`` child
    (a fork and exec at every start of the CLI)."""
    import subprocess
    import sys

    code = ("import sys, rawbpf._sys as s; lib = s.libc(); assert lib.syscall and lib.statfs; "
            "print('ctypes.util' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
