"""Claude sessions in the monitor's log: each Claude root process with its process tree; pure, no syscalls.

One pass over the records (any iterable, e.g. :meth:`rawbpf.logfile.LogReader.records` across rotated
files) builds, per Claude root, every process of its tree (:class:`Proc`: images it exec'd, exit, files,
connections, DNS answers) keyed by ``exec_id`` (``boot id:tgid:start time``, unique across boots), falling
back to the pid for logs written before records carried ``exec_id``. Records join their session by
``root_exec_id`` (else ``root_pid``), processes their parent by ``parent_exec_id`` (else ``ppid``), connection
outcomes their connect by ``conn_id``.
"""

from __future__ import annotations

import errno as _errno
import ipaddress
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

from rawbpf.errors import ConfigError

__tier__ = "files"

__all__ = [
    "Proc",
    "Session",
    "Log",
    "find_sessions",
    "load_sessions",
    "select_session",
    "errno_name",
    "claude_version",
    "CHANGE_OPS",
]

#: file operations that change something on disk (``read`` is not one)
CHANGE_OPS = frozenset(
    {"create", "write", "truncate", "delete", "rename", "mkdir", "rmdir", "chmod", "chown", "link", "symlink"}
)
_VERSION = re.compile(r"(?:/versions/|claude-code@|claude-code-)(\d+\.\d+[0-9A-Za-z.+-]*)")
_EINPROGRESS = -_errno.EINPROGRESS
_LOG_TYPES = frozenset({"header", "lost", "missing", "crash", "gap"})  # records of the log, not of a process
_TRANSCRIPT = re.compile(
    r"/\.claude/projects/[^/]+/([0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12})\.jsonl\Z")


def errno_name(ret: Any) -> str:
    """``-111`` → ``ECONNREFUSED`` (``"0"`` for success)."""
    if not isinstance(ret, int):
        return str(ret)
    if ret == 0:
        return "0"
    return _errno.errorcode.get(-ret, str(ret))


def claude_version(path: Any) -> Optional[str]:
    """The Claude Code version named by an executable's path (``…/claude/versions/2.1.197``), or None."""
    if not isinstance(path, str):
        return None
    m = _VERSION.search(path)
    return m.group(1) if m else None


@dataclass
class Proc:
    """One process of a session's tree (one ``exec_id``; an exec in place adds an image, not a process)."""

    key: str
    pid: int
    parent_key: Optional[str] = None
    ppid: Optional[int] = None
    comm: str = ""
    argv: List[str] = field(default_factory=list)
    filename: Optional[str] = None
    cwd: Optional[str] = None
    images: List[Dict[str, Any]] = field(default_factory=list)
    origin: Optional[str] = None
    session_id: Optional[str] = None
    traceparent: Optional[str] = None
    uid: Optional[int] = None
    first_ts: Optional[int] = None
    start: Optional[int] = None
    end: Optional[int] = None
    exit_code: Optional[int] = None
    signal: Optional[int] = None
    core_dumped: bool = False
    duration_ns: Optional[int] = None
    seen_at_start: bool = False
    children: List[str] = field(default_factory=list)
    files: List[Dict[str, Any]] = field(default_factory=list)
    connects: List[Dict[str, Any]] = field(default_factory=list)
    dns: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def started(self) -> Optional[int]:
        """When the process started (from its exit's duration when its exec was not seen), else first seen."""
        if self.start is not None:
            return self.start
        if self.end is not None and isinstance(self.duration_ns, int):
            return self.end - self.duration_ns
        return self.first_ts

    @property
    def failed(self) -> bool:
        return bool(self.signal) or (isinstance(self.exit_code, int) and self.exit_code != 0)


@dataclass
class Session:
    """One Claude root process and everything its tree did."""

    key: str
    root_key: str
    root_pid: int
    procs: Dict[str, Proc] = field(default_factory=dict)
    session_ids: Counter = field(default_factory=Counter)
    transcripts: List[str] = field(default_factory=list)
    transcript_ids: List[str] = field(default_factory=list)  # session ids named by transcript file names
    host: Optional[str] = None
    boot_id: Optional[str] = None
    records: int = 0
    first_ts: Optional[int] = None
    last_ts: Optional[int] = None

    @property
    def root(self) -> Proc:
        return self.procs[self.root_key]

    @property
    def session_id(self) -> Optional[str]:
        """The Claude session id: the one the root carries, else the most common in its tree."""
        if self.root.session_id:
            return self.root.session_id
        if self.session_ids:
            return str(self.session_ids.most_common(1)[0][0])
        return self.transcript_ids[-1] if self.transcript_ids else None

    @property
    def transcript(self) -> Optional[str]:
        return self.transcripts[-1] if self.transcripts else None

    @property
    def start(self) -> Optional[int]:
        s = self.root.started
        return s if s is not None else self.first_ts

    @property
    def end(self) -> Optional[int]:
        """The root's exit, or None while it runs (as far as the log knows)."""
        return self.root.end

    @property
    def version(self) -> Optional[str]:
        for img in reversed(self.root.images):
            v = claude_version(img.get("filename"))
            if v:
                return v
            for a in img.get("argv") or ()[:1]:
                v = claude_version(a)
                if v:
                    return v
        return None


@dataclass
class Log:
    """What one pass over a log found: the sessions, and the loss the log itself reports."""

    sessions: List[Session]
    lost: List[Tuple[int, int, str]]  # (ts, count, reason)
    records: int
    first_ts: Optional[int]
    last_ts: Optional[int]
    #: records the reader could not give: torn at the end of a file (a writer killed mid-write), and missing
    #: between files (rotated away before they were read)
    torn: int = 0
    missing: int = 0
    #: where seq numbers skip, as the reader marks it: (ts of the next record, count, reason)
    missing_marks: List[Tuple[int, int, str]] = field(default_factory=list)
    #: windows the monitor was not running (its ``crash`` records): (since, until)
    blind: List[Tuple[int, int]] = field(default_factory=list)
    #: damaged regions the writer found and skipped (``gap`` records)
    damaged: int = 0

    def blind_during(self, start: Optional[int], end: Optional[int]) -> List[Tuple[int, int]]:
        """Windows without a monitor that overlap ``start``..``end`` (None: open end)."""
        return [(a, b) for a, b in self.blind if (end is None or a <= end) and (start is None or b >= start)]

    def missing_between(self, start: Optional[int], end: Optional[int]) -> int:
        """Records missing from the log (seq skips) marked between two times."""
        return sum(c for ts, c, _ in self.missing_marks
                   if (start is None or ts >= start) and (end is None or ts <= end))

    def lost_between(self, start: Optional[int], end: Optional[int]) -> int:
        """Records lost (``lost`` records) between two times (None: open end)."""
        n = 0
        for ts, count, _ in self.lost:
            if (start is None or ts >= start) and (end is None or ts <= end):
                n += count
        return n


def _str(v: Any) -> Optional[str]:
    if v.__class__ is str:
        return v or None
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    return v if isinstance(v, str) and v else None


def _answers(v: Any) -> List[str]:
    """Addresses in a ``dns`` record's ``answers`` (strings, or maps with ``data``/``addr``/``address``)."""
    out: List[str] = []
    for a in v if isinstance(v, list) else ():
        if isinstance(a, dict):
            a = a.get("data") or a.get("addr") or a.get("address")
        a = _str(a)
        if a:
            try:
                out.append(str(ipaddress.ip_address(a)))
            except ValueError:
                continue
    return out


class _Builder:
    """The one pass: records in, sessions out."""

    def __init__(self) -> None:
        self.sessions: Dict[str, Session] = {}
        self.order: List[str] = []
        self.by_root_pid: Dict[int, str] = {}
        self.proc_session: Dict[str, str] = {}
        self.pid_key: Dict[int, str] = {}  # pid-keyed fallback when records carry no exec_id
        self.ended: Set[str] = set()  # processes whose exit was seen
        self.gen = 0
        self.conns: Dict[Tuple[str, Any], Dict[str, Any]] = {}
        self.names: Dict[str, Dict[str, str]] = {}  # session key -> address -> host (from DNS answers)
        self.host: Optional[str] = None
        self.boot_id: Optional[str] = None
        self.lost: List[Tuple[int, int, str]] = []
        self.missing: List[Tuple[int, int, str]] = []
        self.pending_missing: List[Tuple[int, str]] = []
        self.blind: List[Tuple[int, int]] = []
        self.damaged = 0
        self.records = 0
        self.first_ts: Optional[int] = None
        self.last_ts: Optional[int] = None

    # -- keys

    def _proc_key(self, rec: Dict[str, Any], pid: int) -> str:
        k = _str(rec.get("exec_id"))
        if k:
            return k
        known = self.pid_key.get(pid)
        if known is not None and not (known in self.ended and rec.get("type") == "exec"):
            return known  # records that trail a process's exit (folded file writes) are still its own
        self.gen += 1
        k = f"{self.boot_id or 'boot'}:{pid}:#{self.gen}"
        self.pid_key[pid] = k
        return k

    def _session(self, rec: Dict[str, Any], pid: int, key: str, ts: Optional[int]) -> Optional[Session]:
        root_pid = rec.get("root_pid")
        root_key = _str(rec.get("root_exec_id"))
        if not isinstance(root_pid, int):
            return None
        is_root = (root_key == key) if root_key else (root_pid == pid)
        if root_key is None:
            if is_root and rec.get("type") == "exec" and root_pid in self.by_root_pid:
                prev = self.sessions[self.by_root_pid[root_pid]]
                if prev.root.end is not None and (ts is None or prev.root.end <= ts):
                    # the pid was reused by a new Claude root (no exec_id in this log to tell them apart)
                    del self.by_root_pid[root_pid]
                    if self.pid_key.get(pid) == prev.root_key:
                        del self.pid_key[pid]
                        key = self._proc_key(rec, pid)
            skey = self.by_root_pid.get(root_pid)
            if skey is None:
                rkey = key if is_root else self._proc_key({}, root_pid)
                skey = rkey
        else:
            skey = root_key
        sess = self.sessions.get(skey)
        if sess is None:
            rkey = root_key or (key if is_root else skey)
            sess = Session(key=skey, root_key=rkey, root_pid=root_pid, host=self.host, boot_id=self.boot_id)
            sess.procs[rkey] = Proc(key=rkey, pid=root_pid)
            self.sessions[skey] = sess
            self.order.append(skey)
            self.by_root_pid[root_pid] = skey
            self.proc_session[rkey] = skey
        return sess

    # -- records

    def feed(self, rec: Dict[str, Any]) -> None:
        self.records += 1
        get = rec.get
        ts = get("ts")
        if ts.__class__ is not int:
            ts = None
        else:
            if self.first_ts is None:
                self.first_ts = ts
            self.last_ts = ts
        rtype = get("type")
        if self.pending_missing and rtype != "header" and ts is not None:
            # a skip in seq is placed at the next record's time (the header of a new file has the writer's)
            self.missing.extend((ts, c, why) for c, why in self.pending_missing)
            self.pending_missing = []
        pid = get("pid")
        if pid.__class__ is not int or rtype in _LOG_TYPES:  # a header's pid is the writer's
            self._log_record(rec, rtype, ts)
            return
        key, root_key = get("exec_id"), get("root_exec_id")
        sess: Optional[Session] = None
        if key.__class__ is str and root_key.__class__ is str and key and root_key:
            sess = self.sessions.get(root_key)  # the common case: a known session, keyed by exec ids
        else:
            key = self._proc_key(rec, pid)
        if sess is None:
            sess = self._session(rec, pid, key, ts)
            if sess is None:
                return
        sess.records += 1
        if ts is not None:
            if sess.first_ts is None:
                sess.first_ts = ts
            sess.last_ts = ts
        proc = sess.procs.get(key)
        if proc is None:
            proc = Proc(key=key, pid=pid)
            sess.procs[key] = proc
            self.proc_session[key] = sess.key
        if proc.first_ts is None:
            proc.first_ts = ts
        self._identity(sess, proc, rec)
        handler = _HANDLERS.get(rtype)  # type: ignore[arg-type]
        if handler is not None:
            handler(self, sess, proc, rec, ts)

    def _log_record(self, rec: Dict[str, Any], rtype: Any, ts: Optional[int]) -> None:
        """Records of the log itself rather than of a process."""
        if rtype == "header":
            self.host = _str(rec.get("host")) or self.host
            self.boot_id = _str(rec.get("boot_id")) or self.boot_id
        elif rtype == "lost":
            c = rec.get("count")
            self.lost.append((ts or 0, c if isinstance(c, int) else 0, str(rec.get("reason") or "")))
        elif rtype == "missing":  # marked by the reader where seq numbers skip
            c = rec.get("count")
            self.pending_missing.append((c if isinstance(c, int) else 0, str(rec.get("reason") or "")))
        elif rtype == "crash":  # the monitor was not running from `since` to `until`
            since, until = rec.get("since"), rec.get("until")
            if isinstance(since, int) and isinstance(until, int):
                self.blind.append((since, until))
        elif rtype == "gap":
            self.damaged += 1

    def _identity(self, sess: Session, proc: Proc, rec: Dict[str, Any]) -> None:
        get = rec.get
        if proc.parent_key is None and proc.key != sess.root_key:
            pk = _str(get("parent_exec_id"))
            ppid = get("ppid")
            if pk is None and isinstance(ppid, int):
                pk = self.pid_key.get(ppid)
            if pk is not None and pk != proc.key:
                proc.parent_key = pk
                parent = sess.procs.get(pk)
                if parent is None:
                    parent = Proc(key=pk, pid=ppid if isinstance(ppid, int) else -1)
                    sess.procs[pk] = parent
                parent.children.append(proc.key)
        if proc.ppid is None:  # the first record of a process: what does not change
            ppid = get("ppid")
            proc.ppid = ppid if isinstance(ppid, int) else None
            uid = get("uid")
            proc.uid = uid if isinstance(uid, int) else None
            if not proc.comm:
                proc.comm = _str(get("comm")) or ""
            if proc.cwd is None:
                proc.cwd = _str(get("cwd"))
        # what may be learnt later (the root's session id, its transcript)
        sid = get("session_id")
        if sid:
            sid = _str(sid)
            if sid:
                sess.session_ids[sid] += 1
                if proc.session_id is None:
                    proc.session_id = sid
        if proc.origin is None:
            proc.origin = _str(get("origin"))
        if proc.traceparent is None:
            proc.traceparent = _str(get("traceparent"))
        tpath = get("transcript")
        if tpath:  # the transcript's path, or ``true`` on the file record of Claude opening it
            tpath = _str(get("path")) if tpath is True else _str(tpath)
            if tpath and tpath not in sess.transcripts:
                sess.transcripts.append(tpath)

    def _exec(self, sess: Session, proc: Proc, rec: Dict[str, Any], ts: Optional[int]) -> None:
        argv = [
            a.decode("utf-8", "replace") if isinstance(a, bytes) else str(a) for a in rec.get("argv") or ()
        ]
        img: Dict[str, Any] = {
            "ts": ts,
            "filename": _str(rec.get("filename")),
            "argv": argv,
            "cwd": _str(rec.get("cwd")),
            "argv_truncated": bool(rec.get("argv_truncated")),
        }
        proc.images.append(img)
        proc.argv = argv
        proc.filename = img["filename"]
        if img["cwd"]:
            proc.cwd = img["cwd"]
        comm = _str(rec.get("comm"))
        if comm:
            proc.comm = comm
        if proc.start is None:
            proc.start = ts
        if rec.get("seen_at_start"):
            proc.seen_at_start = True

    def _exit(self, sess: Session, proc: Proc, rec: Dict[str, Any], ts: Optional[int]) -> None:
        proc.end = ts
        for attr in ("exit_code", "signal", "duration_ns"):
            v = rec.get(attr)
            if isinstance(v, int):
                setattr(proc, attr, v)
        proc.core_dumped = bool(rec.get("core_dumped"))
        self.ended.add(proc.key)

    def _fork(self, sess: Session, proc: Proc, rec: Dict[str, Any], ts: Optional[int]) -> None:
        child = rec.get("child_pid")
        if isinstance(child, int) and not _str(rec.get("exec_id")):
            known = self.pid_key.get(child)
            if known is None or known in self.ended:  # a new process (possibly a reused pid)
                self.gen += 1
                known = self.pid_key[child] = f"{self.boot_id or 'boot'}:{child}:#{self.gen}"
            ckey = known
            if ckey not in sess.procs:
                sess.procs[ckey] = Proc(
                    key=ckey,
                    pid=child,
                    parent_key=proc.key,
                    ppid=proc.pid,
                    first_ts=ts,
                    start=ts,
                    comm=proc.comm,
                )
                proc.children.append(ckey)

    def _connect(self, sess: Session, proc: Proc, rec: Dict[str, Any], ts: Optional[int]) -> None:
        ret = rec.get("ret")
        addr = _str(rec.get("addr"))
        conn = {
            "ts": ts,
            "family": _str(rec.get("family")),
            "addr": addr,
            "port": rec.get("port"),
            "endpoint": _str(rec.get("endpoint")),
            "host": _str(rec.get("host")),
            "ret": ret,
            "conn_id": rec.get("conn_id"),
            "result": None,
            "latency_ns": None,
            "tid": rec.get("tid"),
        }
        if conn["host"] is None and addr is not None:
            conn["host"] = self.names.get(sess.key, {}).get(addr)
        if isinstance(ret, int) and ret != _EINPROGRESS:
            conn["result"] = "established" if ret == 0 else errno_name(ret)
        proc.connects.append(conn)
        if rec.get("conn_id") is not None:
            self.conns[(sess.key, rec.get("conn_id"))] = conn

    def _connect_result(self, sess: Session, proc: Proc, rec: Dict[str, Any], ts: Optional[int]) -> None:
        conn = self.conns.get((sess.key, rec.get("conn_id")))
        if conn is None:  # its connect was not seen (rotated away): keep the outcome on its own
            conn = {
                "ts": ts,
                "family": _str(rec.get("family")),
                "addr": _str(rec.get("addr")),
                "port": rec.get("port"),
                "endpoint": _str(rec.get("endpoint")),
                "host": None,
                "ret": None,
                "conn_id": rec.get("conn_id"),
                "result": None,
                "latency_ns": None,
                "tid": rec.get("tid"),
            }
            proc.connects.append(conn)
        conn["result"] = _str(rec.get("result")) or conn["result"]
        if isinstance(rec.get("latency_ns"), int):
            conn["latency_ns"] = rec["latency_ns"]
        host = _str(rec.get("host"))
        if host:
            conn["host"] = host
        if conn.get("endpoint") is None and _str(rec.get("endpoint")):
            conn["endpoint"] = _str(rec.get("endpoint"))

    def _file(self, sess: Session, proc: Proc, rec: Dict[str, Any], ts: Optional[int]) -> None:
        f = {
            "ts": ts,
            "op": _str(rec.get("op")) or "?",
            "path": _str(rec.get("path")),
            "path2": _str(rec.get("path2")),
            "ret": rec.get("ret"),
            "count": rec.get("count"),
            "sensitive": bool(rec.get("sensitive")),
            "tid": rec.get("tid"),
        }
        proc.files.append(f)
        path = _str(rec.get("path"))
        if proc.key == sess.root_key and path and f["op"] in ("create", "write") and ".jsonl" in path:
            m = _TRANSCRIPT.search(path)  # Claude writing its transcript, also where the monitor did not say
            if m and path not in sess.transcripts:
                sess.transcripts.append(path)
                sess.transcript_ids.append(m.group(1))

    def _dns(self, sess: Session, proc: Proc, rec: Dict[str, Any], ts: Optional[int]) -> None:
        answers = rec.get("answers")
        d: Dict[str, Any] = {
            "ts": ts,
            "qname": _str(rec.get("qname")),
            "qtype": rec.get("qtype"),
            "rcode": rec.get("rcode"),
            "answers": answers if isinstance(answers, list) else [],
        }
        proc.dns.append(d)
        if d["qname"]:
            names = self.names.setdefault(sess.key, {})
            for a in _answers(answers):
                names[a] = d["qname"].rstrip(".")

    def result(self) -> Log:
        self.missing.extend((self.last_ts or 0, c, why) for c, why in self.pending_missing)
        self.pending_missing = []
        return Log(
            sessions=[self.sessions[k] for k in self.order],
            lost=self.lost,
            records=self.records,
            first_ts=self.first_ts,
            last_ts=self.last_ts,
            missing_marks=self.missing,
            blind=self.blind,
            damaged=self.damaged,
        )


_HANDLERS = {
    "exec": _Builder._exec,
    "exit": _Builder._exit,
    "fork": _Builder._fork,
    "connect": _Builder._connect,
    "connect_result": _Builder._connect_result,
    "file": _Builder._file,
    "dns": _Builder._dns,
}


def find_sessions(records: Iterable[Dict[str, Any]]) -> Log:
    """Group log records (in log order) into Claude sessions."""
    b = _Builder()
    for rec in records:
        b.feed(rec)
    return b.result()


def load_sessions(log_dir: str) -> Log:
    """:func:`find_sessions` over every file of the log in ``log_dir`` (reads files only)."""
    from rawbpf.logfile import LogReader

    with LogReader(log_dir, mark_missing=True) as reader:
        log = find_sessions(reader.records())
        log.torn, log.missing = reader.torn, reader.missing
        return log


def select_session(log: Log, spec: str) -> Session:
    """The session ``spec`` names: ``latest`` (the last one started, among those with a Claude session id when
    any has one: a process merely named ``claude`` is not a Claude Code session), a Claude session id (or a
    unique prefix of one), or a pid (the Claude root's, else any process of the session)."""
    sessions = log.sessions
    if not sessions:
        raise ConfigError("no Claude session in the log")
    s = spec.strip()
    if s == "latest":
        real = [x for x in sessions if x.session_id] or sessions
        return max(real, key=lambda x: x.start or 0)
    if s.isdigit():
        pid = int(s)
        roots = [x for x in sessions if x.root_pid == pid]
        if not roots:
            roots = [x for x in sessions if any(p.pid == pid for p in x.procs.values())]
        if roots:
            return max(roots, key=lambda x: x.start or 0)
    exact = [x for x in sessions if x.session_id == s or x.key == s]
    if exact:
        return max(exact, key=lambda x: x.start or 0)
    pref = [x for x in sessions if (x.session_id or "").startswith(s)] if len(s) >= 4 else []
    ids = {x.session_id for x in pref}
    if len(ids) == 1:
        return max(pref, key=lambda x: x.start or 0)
    if len(ids) > 1:
        raise ConfigError(f"session '{spec}' is ambiguous: {', '.join(sorted(i for i in ids if i))}")
    raise ConfigError(f"no Claude session '{spec}' in the log (see rawbpf sessions)")
