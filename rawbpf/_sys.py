"""The one syscall choke point: bpf(2), perf_event_open(2), ioctl, close, mount, statfs. Touches the kernel.

Nothing else in the package calls libc directly. Every failure becomes a :class:`~rawbpf.errors.SyscallError`
(also an ``OSError``) whose message starts with what was being done (``what``), then the errno text, then a
hint when one is known (EPERM → privileges, E2BIG → attr/size too large, EINVAL → the caller's context).

The kernel is reached through one replaceable :class:`Backend` (``bpf``, ``perf_event_open``, ``ioctl`` and
``close`` of the fds they return, each answering a result or ``-errno`` as the raw syscalls do):
:class:`LibcBackend` by default, a fake in unit tests (:func:`use_backend`), so every failure path of loading
and attaching can be exercised without root.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
from typing import Iterator, Mapping, Optional, Protocol

from rawbpf.consts import Cmd
from rawbpf.errors import HINTS, NotSupportedError, SyscallError

__tier__ = "kernel"

# (bpf, perf_event_open) per machine; the generic table (aarch64, riscv64, loongarch64) shares numbers.
_SYSCALLS = {
    "x86_64": (321, 298),
    "amd64": (321, 298),
    "aarch64": (280, 241),
    "arm64": (280, 241),
    "riscv64": (280, 241),
    "loongarch64": (280, 241),
}

_libc: Optional[ctypes.CDLL] = None

#: hints used when the caller gives none for an errno (the one table, in rawbpf.errors)
DEFAULT_HINTS: Mapping[int, str] = HINTS


def libc() -> ctypes.CDLL:
    """The C library, loaded once with ``use_errno``."""
    global _libc
    if _libc is None:
        lib = _open_libc()
        lib.syscall.restype = ctypes.c_long
        lib.ioctl.restype = ctypes.c_int
        lib.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
        lib.mount.restype = ctypes.c_int
        lib.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                              ctypes.c_void_p]
        lib.statfs.restype = ctypes.c_int
        _libc = lib
    return _libc


def _open_libc() -> ctypes.CDLL:
    """The C library the interpreter already runs on (``dlopen(NULL)``: no search, and no ``ldconfig -p``
    child process as ``ctypes.util.find_library`` starts); searched for by name only when that handle
    lacks ``syscall``."""
    lib = ctypes.CDLL(None, use_errno=True)
    if hasattr(lib, "syscall"):
        return lib
    from ctypes.util import find_library

    return ctypes.CDLL(find_library("c") or None, use_errno=True)


def syscall_numbers(machine: Optional[str] = None) -> tuple[int, int]:
    """(bpf, perf_event_open) syscall numbers for ``machine`` (default: this one)."""
    m = (machine or os.uname().machine).lower()
    try:
        return _SYSCALLS[m]
    except KeyError:
        raise NotSupportedError(f"bpf syscalls on machine '{m}'",
                                why="rawbpf knows x86_64 and aarch64") from None


def _fail(what: str, err: int, hints: Optional[Mapping[int, str]]) -> SyscallError:
    hint = (hints or {}).get(err, "")
    if not hint and err in (_errno.EPERM, _errno.EACCES) and has_bpf_caps():
        hint = (f"{_errno.errorcode[err]} although the caller has CAP_BPF/CAP_PERFMON: a program type, "
                "attach point or operation this kernel does not allow")
    hint = hint or DEFAULT_HINTS.get(err, "")
    return SyscallError(what, err, hint)


_CAP_SYS_ADMIN, _CAP_PERFMON, _CAP_BPF = 21, 38, 39


def has_bpf_caps() -> bool:
    """Whether this process holds CAP_SYS_ADMIN, or CAP_BPF and CAP_PERFMON (from /proc/self/status)."""
    try:
        with open("/proc/self/status") as f:
            caps = next((int(ln.split()[1], 16) for ln in f if ln.startswith("CapEff:")), 0)
    except (OSError, ValueError):
        return False
    return bool(caps >> _CAP_SYS_ADMIN & 1) or bool(caps >> _CAP_BPF & 1 and caps >> _CAP_PERFMON & 1)


class Backend(Protocol):
    """What the kernel-facing code needs from the kernel; each call returns its result or ``-errno``."""

    def bpf(self, cmd: int, attr: ctypes.Structure, size: int) -> int: ...

    def perf_event_open(self, attr: ctypes.Structure, pid: int, cpu: int, group_fd: int,
                        flags: int) -> int: ...

    def ioctl(self, fd: int, request: int, arg: int) -> int: ...

    def close(self, fd: int) -> None: ...


class LibcBackend:
    """The real kernel, through libc's ``syscall`` and ``ioctl``."""

    def __init__(self) -> None:
        self._bpf_nr: Optional[ctypes.c_long] = None
        self._perf_nr: Optional[ctypes.c_long] = None

    def bpf(self, cmd: int, attr: ctypes.Structure, size: int) -> int:
        if self._bpf_nr is None:
            self._bpf_nr = ctypes.c_long(syscall_numbers()[0])
        ret = libc().syscall(self._bpf_nr, ctypes.c_long(cmd), ctypes.byref(attr), ctypes.c_long(size))
        return int(ret) if ret >= 0 else -ctypes.get_errno()

    def perf_event_open(self, attr: ctypes.Structure, pid: int, cpu: int, group_fd: int, flags: int) -> int:
        if self._perf_nr is None:
            self._perf_nr = ctypes.c_long(syscall_numbers()[1])
        ret = libc().syscall(self._perf_nr, ctypes.byref(attr), ctypes.c_long(pid), ctypes.c_long(cpu),
                             ctypes.c_long(group_fd), ctypes.c_ulong(flags))
        return int(ret) if ret >= 0 else -ctypes.get_errno()

    def ioctl(self, fd: int, request: int, arg: int) -> int:
        ret = libc().ioctl(fd, request, ctypes.c_void_p(arg))
        return int(ret) if ret >= 0 else -ctypes.get_errno()

    def close(self, fd: int) -> None:
        try:
            os.close(fd)
        except OSError:
            pass


_backend: Backend = LibcBackend()


def use_backend(backend: Backend) -> Backend:
    """Send every later bpf/perf_event_open/ioctl/close to ``backend``; returns the previous one (tests)."""
    global _backend
    previous, _backend = _backend, backend
    return previous


def bpf(cmd: Cmd, attr: ctypes.Structure, what: str, *, hints: Optional[Mapping[int, str]] = None,
        size: Optional[int] = None) -> int:
    """bpf(cmd, &attr, sizeof attr): the result (an fd or 0); raises SyscallError(what, errno).

    EINTR is retried; EAGAIN too for PROG_LOAD and BTF_LOAD (the verifier returns it when interrupted).
    """
    n = ctypes.sizeof(attr) if size is None else size
    retry_eagain = cmd in (Cmd.PROG_LOAD, Cmd.BTF_LOAD)
    err = 0
    for _attempt in range(5):
        ret = _backend.bpf(int(cmd), attr, n)
        if ret >= 0:
            return ret
        err = -ret
        if err == _errno.EINTR or (err == _errno.EAGAIN and retry_eagain):
            continue
        raise _fail(what, err, hints)
    raise _fail(what, err, hints)


def perf_event_open(attr: ctypes.Structure, pid: int, cpu: int, group_fd: int, flags: int, what: str, *,
                    hints: Optional[Mapping[int, str]] = None) -> int:
    """perf_event_open(2): a new perf event fd (the caller owns it); raises SyscallError(what, errno)."""
    while True:
        ret = _backend.perf_event_open(attr, pid, cpu, group_fd, flags)
        if ret >= 0:
            return ret
        if -ret != _errno.EINTR:
            raise _fail(what, -ret, hints)


def ioctl(fd: int, request: int, arg: int, what: str, *, hints: Optional[Mapping[int, str]] = None) -> int:
    """ioctl(fd, request, arg) with an integer argument (an fd or a flag); raises SyscallError."""
    ret = _backend.ioctl(fd, request, arg)
    if ret < 0:
        raise _fail(what, -ret, hints)
    return ret


def close(fd: int) -> None:
    """Close an fd, ignoring EBADF (the caller has already forgotten it)."""
    _backend.close(fd)


def mount(source: str, target: str, fstype: str, what: str, flags: int = 0) -> None:
    """mount(2) with no data; raises SyscallError(what, errno)."""
    ret = libc().mount(source.encode(), target.encode(), fstype.encode(), flags, None)
    if ret != 0:
        err = ctypes.get_errno()
        raise _fail(what, err, {_errno.EPERM: "need root or CAP_SYS_ADMIN"})


def die_with_parent(sig: int) -> None:
    """prctl(PR_SET_PDEATHSIG): this process gets ``sig`` when its parent exits (for a child's preexec)."""
    libc().prctl(1, sig, 0, 0, 0)  # PR_SET_PDEATHSIG


class _Statfs(ctypes.Structure):
    # f_type is the first word on every 64-bit Linux ABI rawbpf supports; the rest is room to spare.
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_long * 31)]


def statfs_type(path: str) -> Optional[int]:
    """The filesystem magic of ``path`` (statfs f_type), or None if it cannot be stat'ed."""
    buf = _Statfs()
    if libc().statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        return None
    return int(buf.f_type) & 0xFFFFFFFF


# --- object helpers shared by maps, programs, links and BTF (still the one place that calls bpf(2)) -------


def obj_get_info(fd: int, info: ctypes.Structure, what: str, *, size: Optional[int] = None) -> int:
    """BPF_OBJ_GET_INFO_BY_FD into ``info``; returns the number of bytes the kernel filled in."""
    from rawbpf._types import InfoAttr, ptr

    attr = InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info) if size is None else size, info=ptr(info))
    bpf(Cmd.OBJ_GET_INFO_BY_FD, attr, what)
    return int(attr.info_len)


def get_fd_by_id(cmd: Cmd, obj_id: int, what: str, open_flags: int = 0) -> int:
    """BPF_{PROG,MAP,BTF,LINK}_GET_FD_BY_ID: a new fd the caller owns."""
    from rawbpf._types import GetIdAttr

    if not 0 < obj_id < 1 << 32:
        raise SyscallError(what, _errno.EINVAL, f"id {obj_id} is out of range")
    attr = GetIdAttr(start_id=obj_id, open_flags=open_flags)
    return bpf(cmd, attr, what, hints={_errno.ENOENT: f"no object with id {obj_id}"})


def next_id(cmd: Cmd, start: int) -> Optional[int]:
    """BPF_{PROG,MAP,BTF,LINK}_GET_NEXT_ID: the next id after ``start``, or None at the end."""
    from rawbpf._types import GetIdAttr

    attr = GetIdAttr(start_id=start)
    try:
        bpf(cmd, attr, f"{cmd.name.lower()} after {start}")
    except SyscallError as err:
        if err.errno == _errno.ENOENT:
            return None
        raise
    return int(attr.next_id)


def iter_ids(cmd: Cmd) -> Iterator[int]:
    """Every id the kernel has right now for a *_GET_NEXT_ID command, in increasing order."""
    cur = 0
    while True:
        nxt = next_id(cmd, cur)
        if nxt is None:
            return
        yield nxt
        cur = nxt


# /proc/self/fd link targets; a link fd is "bpf_link" when created and "bpf-link" when opened from a pin
_FD_KINDS = {"anon_inode:bpf-map": "map", "anon_inode:bpf-prog": "program", "anon_inode:bpf_link": "link",
             "anon_inode:bpf-link": "link", "anon_inode:btf": "btf", "anon_inode:[perf_event]": "perf_event"}


def fd_kind(fd: int) -> str:
    """What kind of BPF object an fd refers to ("map", "program", "link", "btf", "perf_event"), or ""."""
    try:
        return _FD_KINDS.get(os.readlink(f"/proc/self/fd/{fd}"), "")
    except OSError:
        return ""
