"""A stand-in for the kernel behind rawbpf's one syscall entry (:mod:`rawbpf._sys`), for unit tests.

Every ``bpf`` command, ``perf_event_open`` and ``ioctl`` lands here. Objects get real descriptors (of
/dev/null), so an fd the code forgets is a real leak and a stray ``os.close`` hits nothing else; the fake
knows which it handed out and which came back, so a test can ask what is still open. Commands answer
success by default; a test scripts refusals by command (and by call number or object name), with a verifier
log when it wants one.
"""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from rawbpf.consts import Cmd

Handler = Callable[[Any], int]

#: commands whose success is a new fd, and the kind of object it is
_NEW_FD = {Cmd.MAP_CREATE: "map", Cmd.PROG_LOAD: "program", Cmd.BTF_LOAD: "btf", Cmd.LINK_CREATE: "link",
           Cmd.RAW_TRACEPOINT_OPEN: "link", Cmd.OBJ_GET: "pin", Cmd.ENABLE_STATS: "stats"}


@dataclass
class Call:
    """One call the code made: ``bpf`` with its command, ``perf_event_open`` or ``ioctl``."""

    kind: str
    cmd: int = 0
    name: str = ""
    log_size: int = 0
    result: int = 0


@dataclass
class FakeKernel:
    open: Dict[int, str] = field(default_factory=dict)
    calls: List[Call] = field(default_factory=list)
    bad_closes: List[int] = field(default_factory=list)
    _handlers: Dict[int, Handler] = field(default_factory=dict)
    _counts: Dict[int, int] = field(default_factory=dict)

    # -- scripting ------------------------------------------------------------------------------------------

    def on(self, cmd: Cmd, handler: Handler) -> None:
        """Answer ``cmd`` with ``handler(attr)`` (a result or ``-errno``) instead of the default."""
        self._handlers[int(cmd)] = handler

    def refuse(self, cmd: Cmd, err: int, *, nth: Optional[int] = None, name: str = "", log: str = "") -> None:
        """Refuse ``cmd`` with ``err``: its ``nth`` call (1-based), the object called ``name``, or every call;
        with ``log``, a PROG_LOAD or BTF_LOAD that asked for a log gets it (ENOSPC while it does not fit)."""

        def handler(attr: Any) -> int:
            count = self._counts[int(cmd)]
            hit = (nth is None or count == nth) and (not name or _name_of(cmd, attr) == name)
            if not hit:
                return self.default(cmd, attr)
            if log:
                wrote = write_log(cmd, attr, log)
                if wrote is not None and wrote < len(log) + 1:
                    return -errno.ENOSPC
            return -err

        self.on(cmd, handler)

    # -- what happened --------------------------------------------------------------------------------------

    def bpf_calls(self, cmd: Cmd) -> List[Call]:
        return [c for c in self.calls if c.kind == "bpf" and c.cmd == int(cmd)]

    def leaked(self) -> List[Tuple[int, str]]:
        """Descriptors handed out and not closed."""
        return sorted(self.open.items())

    # -- the backend ----------------------------------------------------------------------------------------

    def new_fd(self, kind: str) -> int:
        fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self.open[fd] = kind
        return fd

    def default(self, cmd: int, attr: Any) -> int:
        kind = _NEW_FD.get(Cmd(cmd)) if cmd in Cmd._value2member_map_ else None
        if kind is not None:
            return self.new_fd(kind)
        return 0

    def bpf(self, cmd: int, attr: Any, size: int) -> int:
        self._counts[cmd] = self._counts.get(cmd, 0) + 1
        call = Call("bpf", cmd, _name_of(Cmd(cmd), attr), _log_size(Cmd(cmd), attr))
        self.calls.append(call)
        handler = self._handlers.get(cmd)
        call.result = handler(attr) if handler is not None else self.default(cmd, attr)
        return call.result

    def perf_event_open(self, attr: Any, pid: int, cpu: int, group_fd: int, flags: int) -> int:
        call = Call("perf_event_open")
        self.calls.append(call)
        call.result = self.new_fd("perf_event")
        return call.result

    def ioctl(self, fd: int, request: int, arg: int) -> int:
        self.calls.append(Call("ioctl", request))
        return 0 if fd in self.open else -errno.EBADF

    def close(self, fd: int) -> None:
        if self.open.pop(fd, None) is None:
            self.bad_closes.append(fd)
            return
        os.close(fd)


def _name_of(cmd: Cmd, attr: Any) -> str:
    field_name = {Cmd.MAP_CREATE: "map_name", Cmd.PROG_LOAD: "prog_name"}.get(cmd)
    return bytes(getattr(attr, field_name)).rstrip(b"\0").decode() if field_name else ""


def _log_size(cmd: Cmd, attr: Any) -> int:
    if cmd == Cmd.PROG_LOAD:
        return int(attr.log_size) if attr.log_level else 0
    if cmd == Cmd.BTF_LOAD:
        return int(attr.btf_log_size) if attr.btf_log_level else 0
    return 0


def write_log(cmd: Cmd, attr: Any, text: str) -> Optional[int]:
    """Write ``text`` into the log buffer of a PROG_LOAD/BTF_LOAD attr as the kernel does (truncated to fit,
    NUL-terminated, the full size in log_true_size); returns the buffer's size, or None without a log."""
    prefix = "" if cmd == Cmd.PROG_LOAD else "btf_"
    level, buf, size = (int(getattr(attr, prefix + f)) for f in ("log_level", "log_buf", "log_size"))
    if not level or not buf or not size:
        return None
    data = text.encode()[: size - 1] + b"\0"
    ctypes.memmove(buf, data, len(data))
    setattr(attr, prefix + "log_true_size", len(text.encode()) + 1)
    return size
