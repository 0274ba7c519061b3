"""Find Claude processes already running when the monitor starts, and their descendants; reads /proc only.

The kernel program identifies Claude at exec time, so processes started before the monitor must be handed to
it: this module applies the same rules as the program (comm names, path rules on the executable and argv[0],
path rules on an interpreter's script argument) to every process in ``/proc``, then walks the parent links so
each descendant gets the ``root_pid`` and ``depth`` the program would have given it. A Claude process whose
ancestor is already Claude belongs to the ancestor's tree, as it would in the kernel.

The ``/proc`` root is injectable so unit tests run against a fake tree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence

from rawbpf.monitor.config import MonitorConfig, PathRule

__tier__ = "files"

#: nanoseconds per USER_HZ tick: /proc/PID/stat reports start times in ticks (USER_HZ is 100 on Linux)
TICK_NS = 10_000_000
#: the environment variables whose values may be read (the kernel program's allowlist); no other value is kept
ENV_ALLOWLIST = ("CLAUDE_CODE_SESSION_ID", "CLAUDECODE", "CLAUDE_PID", "CLAUDE_CODE_CHILD_SESSION",
                 "TRACEPARENT")
#: read by name only (its presence tells a hook or MCP server from a tool call)
ENV_NAME_ONLY = ("CLAUDE_PROJECT_DIR",)


@dataclass
class ProcInfo:
    """What /proc says about one process."""

    pid: int
    ppid: int
    comm: str
    start_ticks: int
    uid: int = 0
    exe: str = ""
    argv: List[str] = field(default_factory=list)
    euid: int = 0
    auid: Optional[int] = None
    tty_nr: int = 0
    cwd: str = ""
    cgroup: Optional[str] = None
    env: Dict[str, str] = field(default_factory=dict)  # allowlisted variables only ("" for name-only ones)


def allowlisted_env(data: bytes) -> Dict[str, str]:
    """The allowlisted variables of a NUL-separated environment block; every other value is dropped unread."""
    out: Dict[str, str] = {}
    for item in data.split(b"\0"):
        name, eq, value = item.partition(b"=")
        if not eq:
            continue
        key = name.decode(errors="replace")
        if key in ENV_ALLOWLIST:
            out[key] = value.decode(errors="replace")
        elif key in ENV_NAME_ONLY:
            out[key] = ""
    return out


def attribute(entry: SeedEntry, parent: Optional[Attribution]) -> Attribution:
    """The program's rule at exec, from a seeded process's environment and its parent's attribution: a root
    is ``claude`` with no session of its own; others take origin, session id and traceparent from their
    environment when it has them, else from the parent."""
    env = entry.proc.env
    up = parent if (parent is not None and entry.depth > 0) else Attribution()
    if entry.depth == 0:
        return Attribution("claude", None, env.get("TRACEPARENT") or None)
    return Attribution(origin_of(env) or up.origin, env.get("CLAUDE_CODE_SESSION_ID") or up.session_id,
                       env.get("TRACEPARENT") or up.traceparent)


def attribute_trees(entries: List[SeedEntry]) -> None:
    """Fill ``attr`` and ``root_start_ns`` of entries listed parents first (as find_trees lists them); a root
    takes the first session id seen among its descendants, as the program gives it."""
    by_pid = {e.proc.pid: e for e in entries}
    for e in entries:
        parent = by_pid.get(e.proc.ppid)
        e.attr = attribute(e, parent.attr if parent is not None and e.depth > 0 else None)
        root = by_pid.get(e.root_pid)
        e.root_start_ns = root.start_ns if root is not None else e.start_ns
    for e in entries:
        root = by_pid.get(e.root_pid)
        if root is not None and root is not e and root.attr.session_id is None and e.attr.session_id:
            root.attr.session_id = e.attr.session_id


def origin_of(env: Dict[str, str]) -> Optional[str]:
    """The program's origin rule on an environment (None: not decided by it)."""
    if "CLAUDE_CODE_SESSION_ID" not in env:
        return None
    if "CLAUDE_CODE_CHILD_SESSION" in env:
        return "hook" if "CLAUDE_PROJECT_DIR" in env else "tool"
    return "mcp" if "CLAUDE_PROJECT_DIR" in env else None


@dataclass
class Attribution:
    """What the program's attribution of a process would be: origin, session id, traceparent."""

    origin: str = "claude"
    session_id: Optional[str] = None
    traceparent: Optional[str] = None


@dataclass
class SeedEntry:
    """A process to track from the start: its /proc facts plus its place in a Claude tree."""

    proc: ProcInfo
    root_pid: int
    depth: int
    match: Optional[str]  # why a root matched ("comm", "path", "script"); None for descendants
    attr: Attribution = field(default_factory=Attribution)
    root_start_ns: int = 0

    @property
    def start_ns(self) -> int:
        """The start time as the program stores a coarse identity (ticks * 10 ms)."""
        return self.proc.start_ticks * TICK_NS


def _read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def read_proc(proc_root: str, pid: int) -> Optional[ProcInfo]:
    """One process's facts, or None if it vanished or is a kernel thread."""
    base = os.path.join(proc_root, str(pid))
    stat = _read(os.path.join(base, "stat"))
    if not stat:
        return None
    # comm may contain spaces and parentheses: the fields after it follow the last ')'
    head, _, tail = stat.rpartition(b")")
    fields = tail.split()
    try:
        comm = head.split(b"(", 1)[1].decode(errors="replace")
        ppid = int(fields[1])
        start = int(fields[19])
    except (IndexError, ValueError):
        return None
    cmdline = _read(os.path.join(base, "cmdline")) or b""
    if not cmdline:
        return None  # kernel threads (and zombies) have no command line
    argv = [a.decode(errors="replace") for a in cmdline.rstrip(b"\0").split(b"\0")]
    try:
        exe = os.readlink(os.path.join(base, "exe"))
    except OSError:
        exe = ""
    uid = euid = 0
    status = _read(os.path.join(base, "status")) or b""
    for line in status.splitlines():
        if line.startswith(b"Uid:"):
            parts = line.split()
            if len(parts) > 2 and parts[1].isdigit() and parts[2].isdigit():
                uid, euid = int(parts[1]), int(parts[2])
            break
    try:
        cwd = os.readlink(os.path.join(base, "cwd"))
    except OSError:
        cwd = ""
    loginuid = (_read(os.path.join(base, "loginuid")) or b"").strip()
    auid = int(loginuid) if loginuid.isdigit() and int(loginuid) != 0xFFFFFFFF else None
    cgroup = None
    for line in (_read(os.path.join(base, "cgroup")) or b"").splitlines():
        if line.startswith(b"0::"):
            cgroup = line[3:].decode(errors="replace")
    try:
        tty_nr = int(fields[4])
    except (IndexError, ValueError):
        tty_nr = 0
    env = allowlisted_env(_read(os.path.join(base, "environ")) or b"")
    return ProcInfo(pid=pid, ppid=ppid, comm=comm, start_ticks=start, uid=uid, exe=exe, argv=argv, euid=euid,
                    auid=auid, tty_nr=tty_nr, cwd=cwd, cgroup=cgroup, env=env)


def scan(proc_root: str = "/proc") -> Dict[int, ProcInfo]:
    """Every user process in ``proc_root`` by pid (threads are not listed at the top level)."""
    out: Dict[int, ProcInfo] = {}
    try:
        names = os.listdir(proc_root)
    except OSError:
        return out
    for name in names:
        if name.isdigit():
            info = read_proc(proc_root, int(name))
            if info is not None:
                out[info.pid] = info
    return out


def path_matches(rules: Sequence[PathRule], path: str) -> bool:
    """The program's path rule test: a substring, or the whole last path component."""
    for rule in rules:
        if rule.basename:
            if path.rsplit("/", 1)[-1] == rule.text:
                return True
        elif rule.text in path:
            return True
    return False


def match_reason(cfg: MonitorConfig, p: ProcInfo) -> Optional[str]:
    """Why the program would have started tracking this process at its exec, or None."""
    if p.comm in cfg.comms:
        return "comm"
    if path_matches(cfg.path_rules, p.exe) or (p.argv and path_matches(cfg.path_rules, p.argv[0])):
        return "path"
    if p.comm in cfg.interpreters and len(p.argv) > 1 and path_matches(cfg.path_rules, p.argv[1]):
        return "script"
    return None


def find_trees(
    cfg: MonitorConfig, procs: Dict[int, ProcInfo], *, exclude: Iterable[int] = ()
) -> List[SeedEntry]:
    """Claude roots and all their descendants, roots first, then breadth first by depth."""
    skip = set(exclude)
    children: Dict[int, List[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    reasons = {pid: r for pid, p in procs.items() if pid not in skip and (r := match_reason(cfg, p))}

    def has_matching_ancestor(pid: int) -> bool:
        seen = set()
        cur = procs[pid].ppid
        while cur in procs and cur not in seen:
            if cur in reasons:
                return True
            seen.add(cur)
            cur = procs[cur].ppid
        return False

    out: List[SeedEntry] = []
    done = set()
    for root in sorted(reasons):
        if has_matching_ancestor(root):
            continue
        queue = [(root, 0)]
        while queue:
            pid, depth = queue.pop(0)
            if pid in done or pid in skip:
                continue
            done.add(pid)
            out.append(SeedEntry(procs[pid], root, depth, reasons.get(pid) if depth == 0 else None))
            queue.extend((c, depth + 1) for c in sorted(children.get(pid, ())))
    return out
