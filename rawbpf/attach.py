"""Attach programs to tracepoints, raw tracepoints, tp_btf and uprobes through a Link, and register struct_ops
maps. Touches the kernel.

Every attach function returns a :class:`Link`; closing the Link detaches the program
(unless the link is pinned). Tracepoints and uprobes go through a perf event: a BPF perf link
(``BPF_LINK_CREATE`` with attach type ``BPF_PERF_EVENT``, Linux 5.15+) when the kernel has it, otherwise the
older ``PERF_EVENT_IOC_SET_BPF`` + ``PERF_EVENT_IOC_ENABLE`` ioctls, in which case the Link owns the perf
event fd itself and cannot be pinned.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple, Union

from rawbpf import _sys, bpffs
from rawbpf import tracefs as _tracefs
from rawbpf._closing import Closing
from rawbpf._fd import FD
from rawbpf._types import (
    BPF_LINK_TYPE_PERF_EVENT,
    BPF_LINK_TYPE_RAW_TRACEPOINT,
    BPF_LINK_TYPE_TRACING,
    BPF_PERF_EVENT_TRACEPOINT,
    BPF_PERF_EVENT_UPROBE,
    BPF_PERF_EVENT_URETPROBE,
    PERF_EVENT_IOC_DISABLE,
    PERF_EVENT_IOC_ENABLE,
    PERF_EVENT_IOC_SET_BPF,
    PERF_FLAG_FD_CLOEXEC,
    PERF_TYPE_TRACEPOINT,
    LinkCreateAttr,
    LinkDetachAttr,
    LinkInfoStruct,
    MapElemAttr,
    PerfEventAttr,
    RawTracepointAttr,
)
from rawbpf.consts import AttachType, Cmd, ProgType
from rawbpf.errors import ConfigError, NotSupportedError, SyscallError
from rawbpf.maps import ENOTSUPP, Map
from rawbpf.programs import Program

__tier__ = "kernel"

TRACEFS_DIRS = _tracefs.TRACEFS_DIRS
UPROBE_PMU = "/sys/bus/event_source/devices/uprobe"

_NAMED_PERF_EVENTS = (BPF_PERF_EVENT_TRACEPOINT, BPF_PERF_EVENT_UPROBE, BPF_PERF_EVENT_URETPROBE)

# errnos meaning "this kernel has no BPF perf link": fall back to the ioctls
_NO_PERF_LINK = (_errno.EINVAL, _errno.EOPNOTSUPP, ENOTSUPP, _errno.E2BIG)

PathArg = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class LinkInfo:
    """What BPF_OBJ_GET_INFO_BY_FD says about a link (``target`` is the tracepoint/function name if known)."""

    id: int
    type: int
    prog_id: int
    target: str = ""
    attach_type: int = 0
    target_btf_id: int = 0
    perf_event_type: int = 0


class Link(FD):
    """One attachment. Closing it detaches the program (unless pinned); for an ioctl-attached perf event,
    closing the perf event fd it owns is what detaches."""

    kind = "link"

    def __init__(self, fd: int, *, owned: bool = True, what: str = "", perf_fd: int = -1,
                 via_ioctl: bool = False) -> None:
        super().__init__(fd, owned=owned)
        self.what = what
        #: True when attached with PERF_EVENT_IOC_SET_BPF (the fd is then the perf event, not a bpf link)
        self.via_ioctl = via_ioctl
        self._perf_fd = perf_fd

    @classmethod
    def from_pin(cls, path: PathArg) -> Link:
        """Open the link pinned at ``path`` (closing this Link does not detach while the pin exists)."""
        what = f"link pinned at {os.fspath(path)}"
        return cls._wrap_new(bpffs.get(path, f"open {what}"), what)

    @classmethod
    def from_id(cls, link_id: int) -> Link:
        """Open a link by its kernel id."""
        fd = _sys.get_fd_by_id(Cmd.LINK_GET_FD_BY_ID, link_id, f"open link id {link_id}")
        return cls._wrap_new(fd, f"link id {link_id}")

    @classmethod
    def _wrap_new(cls, fd: int, what: str) -> Link:
        kind = _sys.fd_kind(fd)
        if kind != "link":
            _sys.close(fd)
            raise ConfigError(f"open {what}: not a link (a {kind or 'non-bpf'} object)")
        return cls(fd, what=what)

    @property
    def label(self) -> str:
        """How messages name this link ("link of program 'x' to tracepoint a/b")."""
        if self.what.startswith("attach "):
            return "link of " + self.what[len("attach "):]
        return self.what or f"link fd {self._fd}"

    def pin(self, path: PathArg) -> None:
        """Pin at ``path``: the program stays attached after this process exits, until unpinned."""
        if self.via_ioctl:
            raise NotSupportedError(f"pin {self.label}", "5.15",
                                    "attached through a perf event ioctl, not a bpf link")
        bpffs.pin(self.fd, path, f"pin {self.label} at {os.fspath(path)}")

    def info(self) -> LinkInfo:
        """Kernel info about the link (id, type, program id, target name)."""
        if self.via_ioctl:
            raise NotSupportedError(f"info of {self.label}", "5.15", "not a bpf link (perf event ioctl)")
        what = f"inspect {self.label}"
        raw = LinkInfoStruct()
        _sys.obj_get_info(self.fd, raw, what)
        target = ""
        name = ctypes.create_string_buffer(256)
        if raw.type == BPF_LINK_TYPE_RAW_TRACEPOINT:
            raw2 = LinkInfoStruct()
            raw2.tp_name, raw2.tp_name_len = ctypes.addressof(name), 256
            _sys.obj_get_info(self.fd, raw2, what)
            target = name.value.decode(errors="replace")
        elif raw.type == BPF_LINK_TYPE_PERF_EVENT and raw.perf_event_type in _NAMED_PERF_EVENTS:
            # tracepoint.tp_name and uprobe.file_name share the offset (and so do their lengths)
            raw2 = LinkInfoStruct()
            raw2.perf_name, raw2.perf_name_len = ctypes.addressof(name), 256
            try:
                _sys.obj_get_info(self.fd, raw2, what)
                target = name.value.decode(errors="replace")
                if raw.perf_event_type != BPF_PERF_EVENT_TRACEPOINT:
                    target += f":{raw2.perf_uprobe_offset:#x}"
            except SyscallError:
                target = ""
        return LinkInfo(id=raw.id, type=raw.type, prog_id=raw.prog_id, target=target,
                        attach_type=raw.tracing_attach_type if raw.type == BPF_LINK_TYPE_TRACING else 0,
                        target_btf_id=raw.tracing_target_btf_id if raw.type == BPF_LINK_TYPE_TRACING else 0,
                        perf_event_type=raw.perf_event_type if raw.type == BPF_LINK_TYPE_PERF_EVENT else 0)

    @property
    def id(self) -> int:
        return self.info().id

    def detach(self) -> None:
        """Detach now, even while pinned (BPF_LINK_DETACH), then close.

        Kernels implement forced detach only for some link types (not for perf-event, raw tracepoint or
        tracing links as of 6.18): for those this raises NotSupportedError and changes nothing; unpin the link
        and close every fd instead."""
        if not self.via_ioctl:
            try:
                _sys.bpf(Cmd.LINK_DETACH, LinkDetachAttr(link_fd=self.fd), f"detach {self.label}")
            except SyscallError as err:
                if err.errno in (_errno.EOPNOTSUPP, ENOTSUPP, _errno.EINVAL):
                    why = "this link type has no BPF_LINK_DETACH; unpin it and close it"
                    raise NotSupportedError(f"forced detach of {self.label}", None, why) from err
                raise
        elif self._fd >= 0:
            try:
                _sys.ioctl(self._fd, PERF_EVENT_IOC_DISABLE, 0, f"disable {self.label}")
            except SyscallError:
                pass
        self.close()

    def close(self) -> None:
        super().close()
        pfd, self._perf_fd = self._perf_fd, -1
        if pfd >= 0:
            _sys.close(pfd)

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"fd={self._fd}"
        how = " ioctl" if self.via_ioctl else ""
        return f"<Link {self.label!r}{how} {state}>"


def iter_link_ids() -> Iterator[int]:
    """Ids of every BPF link in the kernel right now (BPF_LINK_GET_NEXT_ID)."""
    return _sys.iter_ids(Cmd.LINK_GET_NEXT_ID)


# --- perf events ---------------------------------------------------------------------------------


def tracefs_root(what: str = "") -> str:
    """The tracefs directory (``/sys/kernel/tracing`` or the debugfs copy), mounted first if it is missing."""
    return _tracefs.ensure_mounted(what)


def tracepoint_id(category: str, name: str, tracefs: Optional[str] = None, *, what: str = "") -> int:
    """The id of tracepoint ``category:name`` from tracefs (``events/<category>/<name>/id``)."""
    what = what or f"tracepoint {category}/{name}"
    for part in (category, name):
        if not part or "/" in part or part in (".", ".."):
            raise ConfigError(f"{what}: bad tracepoint name")
    root = tracefs or tracefs_root(what)
    path = os.path.join(root, "events", category, name, "id")
    try:
        with open(path) as f:
            return int(f.read().strip())
    except FileNotFoundError:
        if not os.path.isdir(os.path.join(root, "events")):
            raise ConfigError(f"{what}: tracefs not found at {root}") from None
        raise ConfigError(f"{what}: no such tracepoint (no {path})") from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"{what}: cannot read {path}: {err}") from err


def _open_perf_event(attr: PerfEventAttr, pid: int, cpu: int, what: str) -> int:
    attr.size = ctypes.sizeof(PerfEventAttr)
    return _sys.perf_event_open(attr, pid, cpu, -1, PERF_FLAG_FD_CLOEXEC, what, hints={
        _errno.ENOENT: "no such event",
        _errno.EINVAL: "the kernel refused the perf event attributes",
        _errno.EACCES: "need CAP_PERFMON or root (or lower kernel.perf_event_paranoid)",
    })


def _attach_perf_event(prog: Program, pfd: int, what: str, use_perf_link: Optional[bool],
                       cookie: int) -> Link:
    """Attach ``prog`` to the perf event ``pfd`` (consumed: owned by the Link, or closed)."""
    try:
        if use_perf_link is not False:
            attr = LinkCreateAttr(prog_fd=prog.fd, target_fd=pfd, attach_type=AttachType.PERF_EVENT)
            attr.perf_cookie = cookie
            try:
                lfd = _sys.bpf(Cmd.LINK_CREATE, attr, what)
            except SyscallError as err:
                if use_perf_link or err.errno not in _NO_PERF_LINK:
                    raise
            else:
                # the perf link holds its own reference to the perf event
                _sys.close(pfd)
                pfd = -1
                return Link(lfd, what=what)
        if cookie:
            raise NotSupportedError(f"{what}: bpf cookie", "5.15", "needs a bpf perf link")
        _sys.ioctl(pfd, PERF_EVENT_IOC_SET_BPF, prog.fd, what, hints={
            _errno.EEXIST: "a program is already attached to this event",
            _errno.EINVAL: "the program type does not match the event",
        })
        _sys.ioctl(pfd, PERF_EVENT_IOC_ENABLE, 0, what)
        link = Link(pfd, what=what, via_ioctl=True)
        pfd = -1
        return link
    finally:
        if pfd >= 0:
            _sys.close(pfd)


def attach_tracepoint(prog: Program, category: str, name: str, *, use_perf_link: Optional[bool] = None,
                      cookie: int = 0, tracefs: Optional[str] = None) -> Link:
    """Attach a tracepoint program to ``category:name`` (e.g. ``syscalls``, ``sys_enter_execve``).

    ``use_perf_link``: None tries a BPF perf link and falls back to the ioctls; True insists on the link;
    False uses the ioctls."""
    what = f"attach {prog.label} to tracepoint {category}/{name}"
    tp_id = tracepoint_id(category, name, tracefs, what=what)
    attr = PerfEventAttr(type=PERF_TYPE_TRACEPOINT, config=tp_id, sample_period=1, wakeup_events=1)
    pfd = _open_perf_event(attr, -1, 0, what)
    return _attach_perf_event(prog, pfd, what, use_perf_link, cookie)


def attach_raw_tracepoint(prog: Program, name: str, *, cookie: int = 0) -> Link:
    """Attach a raw tracepoint program to the kernel tracepoint ``name`` (e.g. ``sched_process_exec``)."""
    what = f"attach {prog.label} to raw tracepoint {name}"
    if not name or "/" in name:
        raise ConfigError(f"{what}: bad tracepoint name")
    buf = ctypes.create_string_buffer(name.encode())
    attr = RawTracepointAttr(name=ctypes.addressof(buf), prog_fd=prog.fd, cookie=cookie)
    fd = _sys.bpf(Cmd.RAW_TRACEPOINT_OPEN, attr, what, hints={
        _errno.ENOENT: "no such tracepoint",
        _errno.EINVAL: "not a raw tracepoint program, or the tracepoint cannot take it",
    })
    return Link(fd, what=what)


def attach_tracing(prog: Program, *, attach_type: Optional[int] = None, cookie: int = 0,
                   use_link_create: Optional[bool] = None) -> Link:
    """Attach a tracing program (tp_btf, fentry/fexit) to the target chosen at load (``attach_btf_id``).

    Uses BPF_LINK_CREATE with the program's expected attach type; for tp_btf on kernels whose LINK_CREATE does
    not take raw tracepoints, falls back to BPF_RAW_TRACEPOINT_OPEN with no name (``use_link_create``: None
    tries both, True/False picks one)."""
    atype = prog.expected_attach_type if attach_type is None else attach_type
    what = f"attach {prog.label} (tracing)"
    if use_link_create is not False:
        attr = LinkCreateAttr(prog_fd=prog.fd, attach_type=atype)
        attr.tracing_cookie = cookie
        try:
            return Link(_sys.bpf(Cmd.LINK_CREATE, attr, what), what=what)
        except SyscallError as err:
            if use_link_create or atype != AttachType.TRACE_RAW_TP or err.errno not in _NO_PERF_LINK:
                raise
    rattr = RawTracepointAttr(name=0, prog_fd=prog.fd, cookie=cookie)
    return Link(_sys.bpf(Cmd.RAW_TRACEPOINT_OPEN, rattr, what), what=what)


# --- uprobes -------------------------------------------------------------------------------------


def _pmu_type(pmu_dir: str, what: str) -> int:
    try:
        with open(os.path.join(pmu_dir, "type")) as f:
            return int(f.read().strip())
    except (OSError, ValueError) as err:
        raise NotSupportedError(f"{what}: uprobe perf pmu", "4.17",
                                f"cannot read {pmu_dir}/type: {err}") from err


def _retprobe_bit(pmu_dir: str, what: str) -> int:
    path = os.path.join(pmu_dir, "format", "retprobe")
    try:
        with open(path) as f:
            text = f.read().strip()  # "config:0"
        field, _, bit = text.partition(":")
        if field != "config":
            raise ValueError(text)
        return int(bit.split("-")[0])
    except (OSError, ValueError) as err:
        raise NotSupportedError(f"{what}: uretprobe", "4.17", f"cannot read {path}: {err}") from err


LIB_DIRS = ("/lib64", "/usr/lib64", "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
            "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib", "/usr/lib", "/usr/local/lib")


def resolve_binary(binary: str) -> str:
    """An absolute path for ``binary``: as given, or without a slash searched in PATH (programs) and the
    usual library directories (names containing ".so")."""
    if os.sep not in binary:
        import shutil  # only here: its import pulls in the compression modules

        found = shutil.which(binary)
        if found:
            return os.path.abspath(found)
        if ".so" in binary:
            for d in LIB_DIRS:
                cand = os.path.join(d, binary)
                if os.path.isfile(cand):
                    return os.path.realpath(cand)
    path = os.path.abspath(binary)
    if not os.path.isfile(path):
        raise ConfigError(f"uprobe binary {binary}: no such file")
    return path


def symbol_offset(binary: str, symbol: str) -> int:
    """The file offset of function ``symbol`` in ELF ``binary`` (symtab, then dynsym), for a uprobe.

    Prefers a global definition over weak over local; refuses a name defined at different addresses.
    Reads the file only (no syscalls beyond open/read)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    what = f"uprobe {binary}:{symbol}"
    try:
        with open(binary, "rb") as f:
            elf = ELFFile(f)
            found: List[Tuple[int, int]] = []  # (rank, address)
            rank = {"STB_GLOBAL": 0, "STB_WEAK": 1, "STB_LOCAL": 2, "STB_GNU_UNIQUE": 0}
            for secname in (".symtab", ".dynsym"):
                sec = elf.get_section_by_name(secname)
                if not isinstance(sec, SymbolTableSection):
                    continue
                for sym in sec.get_symbol_by_name(symbol) or ():
                    if sym["st_info"]["type"] not in ("STT_FUNC", "STT_GNU_IFUNC", "STT_LOOS"):
                        continue
                    if sym["st_shndx"] == "SHN_UNDEF" or not sym["st_value"]:
                        continue
                    found.append((rank.get(sym["st_info"]["bind"], 3), int(sym["st_value"])))
                if found:
                    break
            if not found:
                raise ConfigError(f"{what}: no function symbol '{symbol}' defined in {binary}")
            best = min(r for r, _ in found)
            addrs = sorted({a for r, a in found if r == best})
            if len(addrs) > 1:
                raise ConfigError(f"{what}: '{symbol}' is defined at {len(addrs)} addresses; give an offset")
            addr = addrs[0]
            for seg in elf.iter_segments():
                if seg["p_type"] != "PT_LOAD":
                    continue
                start = int(seg["p_vaddr"])
                if start <= addr < start + int(seg["p_memsz"]):
                    return addr - start + int(seg["p_offset"])
            if elf["e_type"] == "ET_REL":
                raise ConfigError(f"{what}: {binary} is a relocatable object, not an executable")
            raise ConfigError(f"{what}: address {addr:#x} of '{symbol}' is in no loadable segment")
    except ELFError as err:
        raise ConfigError(f"{what}: {binary} is not a valid ELF file: {err}") from err
    except OSError as err:
        raise ConfigError(f"{what}: cannot read {binary}: {err.strerror or err}") from err


def attach_uprobe(prog: Program, binary: str, symbol: str = "", offset: int = 0, *, retprobe: bool = False,
                  pid: int = -1, use_perf_link: Optional[bool] = None, cookie: int = 0,
                  pmu_dir: str = UPROBE_PMU) -> Link:
    """Attach a kprobe-type program as a uprobe (or uretprobe) on ``binary``.

    ``symbol`` (optional) is resolved to its file offset and ``offset`` added; without it ``offset`` is the
    file offset itself. ``pid`` -1 probes every process running the binary."""
    if not isinstance(prog.type, int) or prog.type != ProgType.KPROBE:
        kind = prog.type.name.lower() if isinstance(prog.type, ProgType) else str(prog.type)
        raise ConfigError(f"attach {prog.label} as uprobe: needs a kprobe-type program, not {kind}")
    path = resolve_binary(binary)
    where = f"{path}:{symbol}" + (f"+{offset:#x}" if offset else "") if symbol else f"{path}:{offset:#x}"
    what = f"attach {prog.label} to {'uretprobe' if retprobe else 'uprobe'} {where}"
    file_off = (symbol_offset(path, symbol) if symbol else 0) + offset
    if file_off < 0:
        raise ConfigError(f"{what}: negative offset")
    ptype = _pmu_type(pmu_dir, what)
    config = 1 << _retprobe_bit(pmu_dir, what) if retprobe else 0
    cpath = ctypes.create_string_buffer(os.fsencode(path))
    attr = PerfEventAttr(type=ptype, config=config, config1=ctypes.addressof(cpath), config2=file_off,
                         sample_period=1, wakeup_events=1)
    pfd = _open_perf_event(attr, pid if pid >= 0 else -1, 0 if pid < 0 else -1, what)
    return _attach_perf_event(prog, pfd, what, use_perf_link, cookie)


# --- struct_ops ----------------------------------------------------------------------------------


_STRUCT_OPS_HINTS = {
    _errno.EEXIST: "a struct_ops of this name is already registered, by another load or left behind by one",
    _errno.EBUSY: "this struct_ops map is already registered",
    _errno.EINVAL: "the kernel refused the value: a member it requires is unset, or a program was loaded "
                   "for another member",
    ENOTSUPP: "this kernel cannot register this struct",
}


class StructOpsRegistration(Closing):
    """A struct_ops map registered by updating key 0 (a ``.struct_ops`` map, without BPF_F_LINK).

    The kernel keeps the registration, and the map, until key 0 is deleted: :meth:`close` does that. It
    uses the Map it was given, which must stay open until then (a Collection closes its registrations
    first). A context manager; closing twice does nothing."""

    def __init__(self, m: Map, what: str) -> None:
        self._map: Optional[Map] = m
        self.what = what

    @property
    def closed(self) -> bool:
        return self._map is None

    @property
    def label(self) -> str:
        return self.what

    def close(self) -> None:
        """Unregister (BPF_MAP_DELETE_ELEM of key 0)."""
        m, self._map = self._map, None
        if m is not None and not m.closed:
            m.delete(0)

    def __repr__(self) -> str:
        return f"<StructOpsRegistration {self.what!r} {'closed' if self.closed else 'registered'}>"


def register_struct_ops(m: Map, value: bytes, *, link: bool, what: str = ""
                        ) -> Union[Link, StructOpsRegistration]:
    """Register a struct_ops map whose value (program fds in place) is ``value``.

    Without BPF_F_LINK the update of key 0 registers it and the returned :class:`StructOpsRegistration`
    deletes it again; with BPF_F_LINK (``link=True``) the update only readies the value and a
    BPF_LINK_CREATE (attach type BPF_STRUCT_OPS) registers it: the returned :class:`Link` owns the
    registration, which ends when the link is closed (and unpinned) or detached."""
    what = what or f"register struct_ops {m.label}"
    kbuf = ctypes.c_uint32(0)
    vbuf = ctypes.create_string_buffer(bytes(value), max(len(value), 1))
    attr = MapElemAttr(map_fd=m.fd, key=ctypes.addressof(kbuf), value=ctypes.addressof(vbuf), flags=0)
    _sys.bpf(Cmd.MAP_UPDATE_ELEM, attr, what, hints=_STRUCT_OPS_HINTS)
    if not link:
        return StructOpsRegistration(m, what)
    lattr = LinkCreateAttr(prog_fd=m.fd, attach_type=AttachType.STRUCT_OPS)
    fd = _sys.bpf(Cmd.LINK_CREATE, lattr, what, hints=_STRUCT_OPS_HINTS)
    return Link(fd, what=what)
