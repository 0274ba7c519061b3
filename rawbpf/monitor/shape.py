"""Turn decoded kernel records of claude_monitor into the log's record schema; pure, no syscalls.

The kernel sends compact structs (see programs/claude_monitor.c); a BTF-driven decoder turns them into dicts
keyed by the C member names. This module makes the user-facing record (DESIGN §3): names the record kind,
converts the CLOCK_MONOTONIC stamp to wall-clock ns, splits and redacts argv, formats addresses (an
IPv4-mapped IPv6 address is written as plain IPv4), names the endpoint, and drops the fields that only
describe the wire format (lengths, padding).

What the record kinds, match reasons and flag bits are called comes from the object's own BTF enums
(:class:`Catalog`), so the C file stays the single source of truth.

Identity fields are composed here from what the kernel sends: ``exec_id`` from the host's boot id, the pid and
the process's start time (in 10 ms ticks, the precision ``/proc`` gives for processes found at start, so an id
computed from either source is the same); the cgroup path from the kernel's cgroup id through an injected
resolver (:mod:`rawbpf.monitor.cgroups` reads sysfs); the working directory from its components.
"""

from __future__ import annotations

import errno
import ipaddress
import os.path
import socket
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Union

from rawbpf.monitor.redact import redact_argv
from rawbpf.monitor.shape_files import FileShaping

__tier__ = "pure"

FAMILIES: Dict[int, str] = {socket.AF_INET: "inet", socket.AF_INET6: "inet6", socket.AF_UNIX: "unix"}
_HEADER = ("pid", "tid", "ppid", "uid", "euid", "root_pid", "depth")
#: nanoseconds per USER_HZ tick: the precision of exec_id's start time
TICK_NS = 10_000_000
#: the login uid of a process that never logged in
AUID_UNSET = 0xFFFFFFFF
#: bits of an exec record's ``env`` (enum env_flags) and the allowlisted variable each stands for
ENV_NAMES = {1: "CLAUDE_CODE_SESSION_ID", 2: "CLAUDECODE", 4: "CLAUDE_PID", 8: "CLAUDE_CODE_CHILD_SESSION",
             16: "TRACEPARENT", 32: "CLAUDE_PROJECT_DIR"}
ENV_TRUNCATED = 64
#: handshake errors with a name of their own in connect_result's ``result``
CONN_ERRORS = {errno.ECONNREFUSED: "refused", errno.ETIMEDOUT: "timeout", errno.ECONNRESET: "reset",
               errno.EHOSTUNREACH: "unreachable", errno.ENETUNREACH: "unreachable"}


def exec_id(boot_id: str, pid: int, start_ns: int) -> Optional[str]:
    """``<boot id, 12 hex>-<pid>-<start in 10 ms ticks since boot>``: unique across boots of a host (a pid is
    not reused within a tick), and the same whether the start came from the kernel or from /proc."""
    if not pid:
        return None
    boot = boot_id.replace("-", "")[:12] or "0"
    return f"{boot}-{pid}-{start_ns // TICK_NS}"


def tty_name(dev: int) -> Optional[str]:
    """A controlling terminal's name from the kernel's (major << 20) | minor; None for none."""
    if not dev:
        return None
    major, minor = dev >> 20, dev & 0xFFFFF
    if 136 <= major <= 143:
        return f"pts/{(major - 136) * 256 + minor}"
    if major == 4:
        return f"tty{minor}" if minor < 64 else f"ttyS{minor - 64}"
    if major == 5:
        return {0: "tty", 1: "console", 2: "ptmx"}.get(minor, f"5:{minor}")
    return f"{major}:{minor}"


def join_cwd(components: bytes, length: int, truncated: bool) -> str:
    """The working directory from its components as the kernel sends them (leaf first, NUL-terminated);
    a path cut at its top starts with ``…/``."""
    parts = [c.decode(errors="replace") for c in components[: max(0, length)].split(b"\0") if c]
    path = "/" + "/".join(reversed(parts))
    return "…" + path if truncated else path


def absolute(filename: str, cwd: Optional[str]) -> str:
    """An exec'd filename made absolute against the working directory it was exec'd from."""
    if not filename or filename.startswith("/") or not cwd or cwd.startswith("…"):
        return filename
    return os.path.normpath(os.path.join(cwd, filename))


def conn_result(result: Any, error: int) -> str:
    """connect_result's ``result``: established, refused, timeout, reset, unreachable, or the errno's name
    (``closed`` when the socket was closed before the handshake ended)."""
    name = result if isinstance(result, str) else ("established" if int(result) == 0 else "failed")
    if name.lower() in ("established", "conn_established"):
        return "established"
    if not error:
        return "closed"
    return CONN_ERRORS.get(error) or errno.errorcode.get(error, f"errno {error}")


def _enum_names(btf: Any, name: str, prefix: str) -> Dict[int, str]:
    t = btf.find(name) if btf is not None else None
    if t is None:
        return {}
    out = {}
    for v in t.values:
        n = v.name[len(prefix):] if v.name.startswith(prefix) else v.name
        out[int(v.value)] = n.lower()
    return out


@dataclass
class Catalog:
    """Names of record kinds (``enum rec_type``), match reasons (``enum match_kind``) and flag bits
    (``enum rec_flags``), and the struct of each kind (``struct record_types``), read from BTF."""

    kinds: Dict[int, str] = field(default_factory=dict)
    structs: Dict[str, str] = field(default_factory=dict)
    matches: Dict[int, str] = field(default_factory=dict)
    flags: Dict[int, str] = field(default_factory=dict)

    @classmethod
    def from_btf(cls, btf: Any) -> Catalog:
        """Read the catalogue from the object's BTF (a :class:`rawbpf.btf.BTF`)."""
        cat = cls(
            kinds={k: v for k, v in _enum_names(btf, "rec_type", "REC_").items() if v != "kinds"},
            matches=_enum_names(btf, "match_kind", "MATCH_"),
            flags=_enum_names(btf, "rec_flags", "RF_"),
        )
        table = btf.find("record_types") if btf is not None else None
        for m in getattr(table, "members", ()) or ():
            t = btf[btf.resolve(m.type)]
            arr = getattr(t, "array", None)
            if arr is None:
                continue
            inner = btf[btf.resolve(arr.type)]
            if inner.name:
                cat.structs[m.name] = inner.name
        return cat

    def kind_of(self, value: Any) -> str:
        """The kind name of a decoded ``type`` field (an int, or an enum name such as ``REC_EXEC``)."""
        if isinstance(value, str):
            return value[4:].lower() if value.startswith("REC_") else value.lower()
        return self.kinds.get(int(value), f"unknown-{value}")


def text(value: Any) -> str:
    """A C string member as str (decoders may give str or bytes); stops at the first NUL."""
    if isinstance(value, (bytes, bytearray, memoryview, list, tuple)):
        value = bytes(value).split(b"\0", 1)[0].decode(errors="replace")
    return str(value).split("\0", 1)[0]


def raw(value: Any) -> bytes:
    """A byte-array member as bytes (decoders may give bytes, a list of ints or latin-1 text)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (list, tuple)):
        return bytes(value)
    return str(value).encode("latin-1", errors="replace")


def split_argv(data: bytes, length: int) -> List[str]:
    """NUL-separated strings of the first ``length`` bytes; a cut-off last string is kept."""
    data = data[: max(0, length)]
    if not data:
        return []
    if data.endswith(b"\0"):
        data = data[:-1]
    return [a.decode(errors="replace") for a in data.split(b"\0")]


def format_addr(family: int, addr: bytes, path: bytes = b"", path_len: int = 0) -> str:
    """inet: dotted quad; inet6: RFC 5952 text, IPv4-mapped written as IPv4; unix: the path, ``@name`` for
    an abstract socket, ``""`` for an unnamed one."""
    if family == socket.AF_INET:
        return str(ipaddress.IPv4Address(addr[:4]))
    if family == socket.AF_INET6:
        ip6 = ipaddress.IPv6Address(addr[:16])
        return str(ip6.ipv4_mapped) if ip6.ipv4_mapped is not None else str(ip6)
    if family == socket.AF_UNIX:
        p = path[: max(0, min(path_len, len(path)))]
        if p.startswith(b"\0"):
            return "@" + p[1:].rstrip(b"\0").decode(errors="replace")
        return p.split(b"\0", 1)[0].decode(errors="replace")
    return ""


_ORIGINS = {1: "claude", 2: "tool", 3: "hook", 4: "mcp"}

# What one kernel record becomes: nothing, one log record, or several (a TCP capture holding two DNS
# messages; an exit ending a stream with a message half received)
Shaped = Union[Dict[str, Any], List[Dict[str, Any]], None]


def _one_or_many(records: List[Dict[str, Any]]) -> Shaped:
    if not records:
        return None
    return records[0] if len(records) == 1 else records


class Shaper:
    """Callable turning a decoded kernel record into a log record (``seq`` is added by the log writer)."""

    def __init__(self, catalog: Catalog, boot_offset_ns: int, *, redact: bool = True, boot_id: str = "",
                 cgroup_path: Optional[Callable[[int], Optional[str]]] = None,
                 files: Optional[FileShaping] = None) -> None:
        self.catalog = catalog
        self.boot_offset_ns = boot_offset_ns
        self.redact = redact
        self.boot_id = boot_id
        self.cgroup_path = cgroup_path
        self.files = files if files is not None else FileShaping()
        self._kinds = frozenset(catalog.kinds.values())  # membership per record: a set, not a dict view
        self._boot = boot_id.replace("-", "")[:12] or "0"  # exec_id's prefix, three times per record

    def _header(self, rec: Dict[str, Any], out: Dict[str, Any]) -> None:
        """Identity and attribution fields every monitor record carries."""
        pid, ppid, root, boot = out["pid"], out["ppid"], out["root_pid"], self._boot
        get = rec.get
        # exec_id() inlined: same text, without re-deriving the boot prefix for each of the three
        out["exec_id"] = f"{boot}-{pid}-{int(get('start', 0)) // TICK_NS}" if pid else None
        out["parent_exec_id"] = f"{boot}-{ppid}-{int(get('parent_start', 0)) // TICK_NS}" if ppid else None
        out["root_exec_id"] = f"{boot}-{root}-{int(get('root_start', 0)) // TICK_NS}" if root else None
        auid = int(rec.get("auid", AUID_UNSET))
        out["auid"] = None if auid == AUID_UNSET else auid
        out["tty"] = tty_name(int(rec.get("tty", 0)))
        cg = int(rec.get("cgroup_id", 0))
        out["cgroup"] = self.cgroup_path(cg) if (self.cgroup_path is not None and cg) else None
        attr = rec.get("attr") or {}
        out["origin"] = self.origin_name(attr.get("origin", 0))
        out["session_id"] = text(attr.get("session_id", "")) or None
        out["traceparent"] = text(attr.get("traceparent", "")) or None

    @staticmethod
    def origin_name(value: Any) -> Optional[str]:
        """The ``origin`` field from a decoded ``attr.origin`` (an enum label or a number); None when
        unknown."""
        if not isinstance(value, str):
            value = _ORIGINS.get(int(value), "unknown")
        value = value.lower().removeprefix("origin_")
        return None if value == "unknown" else value

    def _match(self, value: Any) -> Optional[str]:
        if isinstance(value, str):
            name = value[6:].lower() if value.startswith("MATCH_") else value.lower()
        else:
            name = self.catalog.matches.get(int(value), str(value))
        return None if name == "inherited" else name

    def __call__(self, rec: Dict[str, Any]) -> Shaped:
        kind = self.catalog.kind_of(rec.get("type", 0))
        if kind not in self._kinds:
            return rec  # not a monitor record (e.g. the decoder's "raw" for bytes it could not decode): as is
        flags = int(rec.get("flags", 0))
        out: Dict[str, Any] = {"type": kind, "ts": int(rec.get("ts", 0)) + self.boot_offset_ns}
        for k in _HEADER:
            out[k] = int(rec.get(k, 0))
        out["comm"] = text(rec.get("comm", ""))
        out["seen_at_start"] = bool(flags & 1)
        self._header(rec, out)
        if out["session_id"] is None:  # the root's session learnt from its transcript, before any child's
            out["session_id"] = self.files.session_of(out["root_pid"])
        if kind == "exec":
            argv = split_argv(raw(rec.get("argv", b"")), int(rec.get("argv_len", 0)))
            if self.redact:
                argv, _ = redact_argv(argv)
            cut = bool(rec.get("cwd_truncated", 0))
            cwd_raw = rec.get("cwd", b"")
            if isinstance(cwd_raw, str):  # the decoder took cwd_len bytes and decoded them already
                cwd_raw = cwd_raw.encode("utf-8", "surrogatepass")
                cwd = join_cwd(cwd_raw, len(cwd_raw), cut)
            else:
                cwd = join_cwd(raw(cwd_raw), int(rec.get("cwd_len", 0)), cut)
            env = int(rec.get("env", 0))
            out.update(filename=absolute(text(rec.get("filename", "")), cwd), argv=argv,
                       argv_truncated=bool(rec.get("argv_truncated", 0)),
                       match=self._match(rec.get("match", 0)), cwd=cwd, cwd_truncated=cut,
                       claude_env=[n for bit, n in ENV_NAMES.items() if env & bit],
                       claude_env_truncated=bool(env & ENV_TRUNCATED),
                       claude_pid=int(rec.get("claude_pid", 0)) or None)
        elif kind == "fork":
            out["child_pid"] = int(rec.get("child_pid", 0))
        elif kind == "exit":
            out.update(exit_code=int(rec.get("exit_code", 0)), signal=int(rec.get("signal", 0)),
                       core_dumped=bool(rec.get("core_dumped", 0)),
                       duration_ns=int(rec.get("duration_ns", 0)))
            ended = self.files.end_process(out["pid"])  # messages its TCP streams left unfinished
            if ended:
                return [*ended, out]
        elif kind == "connect":
            fam = int(rec.get("family", 0))
            endpoint = text(rec.get("endpoint", ""))
            out.update(family=FAMILIES.get(fam, str(fam)),
                       addr=format_addr(fam, raw(rec.get("addr", b"")), raw(rec.get("path", b"")),
                                        int(rec.get("path_len", 0))),
                       port=int(rec.get("port", 0)), ret=int(rec.get("ret", 0)), endpoint=endpoint or None,
                       conn_id=int(rec.get("conn_id", 0)) or None)
            self.files.name_connect(out)
        elif kind == "connect_result":
            error = int(rec.get("error", 0))
            out.update(conn_id=int(rec.get("conn_id", 0)) or None,
                       result=conn_result(rec.get("result", 0), error), error=error or None,
                       latency_ns=int(rec.get("latency_ns", 0)))
            out["host"] = self.files.host_of_conn(out["conn_id"])
        elif kind == "file":
            return self.files.file(rec, out, raw(rec.get("data", b"")))
        elif kind in ("dns", "tls"):
            fam = int(rec.get("family", 0))
            n = int(rec.get("data_len", 0))
            out.update(family=FAMILIES.get(fam, str(fam)),
                       addr=format_addr(socket.AF_INET6, raw(rec.get("addr", b""))),
                       port=int(rec.get("port", 0)), sent=bool(rec.get("sent", 0)),
                       size=int(rec.get("size", 0)))
            data = raw(rec.get("data", b""))[:n]
            if kind == "tls":
                return self.files.tls(rec, out, data)
            return _one_or_many(self.files.dns(rec, out, data))
        elif kind == "rename":
            out.update(old_comm=text(rec.get("old_comm", "")), new_comm=text(rec.get("new_comm", "")),
                       match=self._match(rec.get("match", 0)), thread=bool(flags & 4))
        return out
