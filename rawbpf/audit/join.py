"""Join a session's kernel records with its transcript: tool calls, what no call explains, findings; pure.

The result of :func:`build_report` is plain JSON-able data, the stable structure ``rawbpf report --json``
prints
(``format: rawbpf.report/1``; documented in the README). How a tool call was joined is always stated in its
``join`` field, never guessed silently:

- ``command``: a process of the session whose command line holds the command (or pattern) Claude asked for,
  started inside the call's window (``tool_use`` to ``tool_result``, or to the end of a background task);
- ``traceparent``: a process carrying the same W3C ``traceparent`` as a process already joined to the call;
- ``file``: for Write/Edit-like calls, file changes by Claude itself on the requested path inside the window;
- ``window``: the only tool-started process (``origin: tool``) in the window whose command line did not match
  any call; ``window-ambiguous`` when several calls' windows hold it (``candidates`` lists them);
- ``none``: nothing in the log belongs to the call (a Read, or records lost).

Everything under a joined process (its whole subtree, by ancestry) belongs to the call. The session itself is
joined to its transcript by ``session_id`` when the log carries it, else by the transcript path the monitor
saw Claude open, else by the file given on the command line.
"""

from __future__ import annotations

import bisect
import os
import re
from collections import Counter
from typing import Any, Dict, List, Optional, Set, Tuple

from rawbpf.audit.sessions import CHANGE_OPS, Log, Proc, Session, errno_name
from rawbpf.audit.transcript import ToolCall, Transcript

__tier__ = "files"

_CLAUDE_TMP = re.compile(r"/claude-[0-9a-f]+(?:-cwd)?(?:/|\Z)")

__all__ = ["REPORT_FORMAT", "build_report", "session_summary", "connection_label", "in_tree"]

REPORT_FORMAT = "rawbpf.report/1"
#: a call's window opens this long before its ``tool_use`` entry (Claude may start a tool while it still
#: writes
#: the entry) and closes this long after its result (transcript stamps are ms, the log's come from the kernel)
WINDOW_BEFORE_NS = 100_000_000
WINDOW_AFTER_NS = 20_000_000
_FILE_TOOLS = ("file_path", "notebook_path")


def in_tree(path: Optional[str], root: Optional[str]) -> bool:
    """Whether ``path`` is ``root`` or lies under it."""
    if not path or not root:
        return False
    root = root.rstrip("/") or "/"
    return path == root or path.startswith(root if root == "/" else root + "/")


def _claude_state(path: Optional[str]) -> bool:
    """Claude Code's own state: ``~/.claude/``, ``~/.claude.json*``, and under ``$TMPDIR`` its per-user
    directory ``claude-<uid>/`` (background task output) and the ``claude-<hex>-cwd`` files its Bash tool
    leaves the shell's last directory in."""
    if not path:
        return False
    return "/.claude/" in path or os.path.basename(path).startswith(".claude.json") or \
        _CLAUDE_TMP.search(path) is not None


def _shown(f: Dict[str, Any]) -> bool:
    """A file record the report shows: a change or a sensitive read, not of a device (``/dev/null``...)."""
    path = f.get("path") or ""
    return (f.get("op") in CHANGE_OPS or bool(f.get("sensitive"))) and not path.startswith("/dev/")


def connection_label(c: Dict[str, Any]) -> str:
    """``anthropic-api``, ``example.com:443`` or ``10.0.0.1:80`` (unix sockets by path)."""
    if c.get("endpoint"):
        return str(c["endpoint"])
    if c.get("family") == "unix":
        return f"unix:{c.get('addr') or '?'}"
    host = c.get("host") or c.get("addr") or "?"
    if c.get("family") == "inet6" and not c.get("host") and ":" in str(host):
        host = f"[{host}]"
    return f"{host}:{c.get('port')}" if c.get("port") is not None else str(host)


def _outcome(c: Dict[str, Any]) -> str:
    if c.get("result"):
        return str(c["result"])
    ret = c.get("ret")
    if ret == -115:
        return "in progress"
    return errno_name(ret) if isinstance(ret, int) else "?"


def _is_net(c: Dict[str, Any]) -> bool:
    return c.get("family") in ("inet", "inet6")


def _session_has_origin(sess: Session) -> bool:
    return any(p.origin for p in sess.procs.values())


def _is_tool_proc(p: Proc) -> bool:
    return p.origin == "tool"


def _descendants(sess: Session, key: str) -> List[str]:
    out, stack = [], [key]
    while stack:
        k = stack.pop()
        out.append(k)
        p = sess.procs.get(k)
        if p is not None:
            stack.extend(reversed(p.children))
    return out


def _cmd_text(p: Proc) -> str:
    return "\x00".join(" ".join(img.get("argv") or ()) for img in p.images) or " ".join(p.argv)


def _command_matches(cmd: str, text: str) -> bool:
    if not cmd or not text:
        return False
    if cmd in text:
        return True
    quoted = cmd.replace("'", "'\\''")
    if quoted in text:
        return True
    # a command line cut at the argv limit still names the start of the command
    return len(text) >= 64 and cmd[:48] in text


def _latest_begun(calls: List[ToolCall], t: Optional[int]) -> ToolCall:
    """Of calls whose windows hold time ``t``: the latest that had begun by then (the ms stamps of the
    transcript allowed for), else the earliest."""
    begun = [c for c in calls if (c.ts_use or 0) <= (t or 0) + 1_000_000]
    if begun:
        return max(begun, key=lambda c: c.ts_use or 0)
    return min(calls, key=lambda c: c.ts_use or 0)


class _Windows:
    """The calls whose windows hold a given time, without scanning every call: windows sorted by start; long
    ones (background jobs, calls with no result) are always checked."""

    LONG_NS = 60 * 1_000_000_000

    def __init__(self, calls: List[ToolCall], window: Any) -> None:
        spans = sorted(((window(c), c) for c in calls), key=lambda x: x[0][0])
        self.short = [(lo, hi, c) for (lo, hi), c in spans if hi - lo <= self.LONG_NS]
        self.long = [(lo, hi, c) for (lo, hi), c in spans if hi - lo > self.LONG_NS]
        self.los = [lo for lo, _, _ in self.short]
        self.span = max((hi - lo for lo, hi, _ in self.short), default=0)

    def at(self, t: Optional[int]) -> List[ToolCall]:
        if t is None:
            return []
        out = []
        i = bisect.bisect_right(self.los, t) - 1
        while i >= 0 and self.los[i] >= t - self.span:
            _, hi, c = self.short[i]
            if hi >= t:
                out.append(c)
            i -= 1
        out.extend(c for lo, hi, c in self.long if lo <= t <= hi)
        return out


class _Joiner:
    def __init__(self, sess: Session, log: Log, tr: Optional[Transcript]) -> None:
        self.sess = sess
        self.log = log
        self.tr = tr
        self.owner: Dict[str, str] = {}  # proc key -> tool_use_id
        self.how: Dict[str, str] = {}  # tool_use_id -> join method
        self.candidates: Dict[str, List[str]] = {}
        self.tops: Dict[str, List[str]] = {}  # tool_use_id -> top-level proc keys
        self.call_files: Dict[str, List[Tuple[Proc, Dict[str, Any]]]] = {}
        self.proc_how: Dict[str, str] = {}  # top process key -> how it was joined
        self.end = sess.end if sess.end is not None else log.last_ts

    def window(self, c: ToolCall) -> Tuple[int, int]:
        lo = (c.ts_use if c.ts_use is not None else (self.sess.start or 0)) - WINDOW_BEFORE_NS
        end = c.ts_end
        if end is None:
            end = self.end if self.end is not None else 1 << 62
        return lo, end + WINDOW_AFTER_NS

    def _claim(self, key: str, call: str, how: str) -> None:
        self.tops.setdefault(call, []).append(key)
        self.proc_how[key] = how
        for k in _descendants(self.sess, key):
            self.owner.setdefault(k, call)
        if self.how.get(call) in (None, "none", "window", "window-ambiguous") or how == "command":
            self.how[call] = how if self.how.get(call) != "command" else "command"

    def run(self) -> None:
        if self.tr is None:
            return
        sess, calls = self.sess, self.tr.calls
        has_origin = _session_has_origin(sess)
        root = sess.root
        tops: List[Proc] = []
        helpers: List[Proc] = []
        for p in sess.procs.values():
            if p.key == root.key:
                continue
            parent = sess.procs.get(p.parent_key) if p.parent_key else None
            if has_origin:
                if _is_tool_proc(p) and (parent is None or not _is_tool_proc(parent)):
                    tops.append(p)
                elif p.origin == "claude" and parent is not None and parent.origin == "claude":
                    helpers.append(p)
            elif parent is root or (parent is not None and parent.key == root.key):
                tops.append(p)
        tops.sort(key=lambda p: p.started or 0)
        windows = _Windows(calls, self.window)

        unmatched: List[Proc] = []
        for p in tops:
            text = _cmd_text(p)
            t = p.started
            hits = [
                c
                for c in windows.at(t)
                if isinstance(c.input.get("command"), str) and _command_matches(c.input["command"], text)
            ]
            if hits:
                best = _latest_begun(hits, t)
                self._claim(p.key, best.tool_use_id, "command")
            else:
                unmatched.append(p)
        # the same traceparent as a process already joined (only when it tells calls apart)
        by_tp: Dict[str, Set[str]] = {}
        for k, call in self.owner.items():
            tp = sess.procs[k].traceparent
            if tp and tp != root.traceparent:
                by_tp.setdefault(tp, set()).add(call)
        rest: List[Proc] = []
        for p in unmatched:
            owners = by_tp.get(p.traceparent or "", set())
            if len(owners) == 1:
                self._claim(p.key, next(iter(owners)), "traceparent")
            else:
                rest.append(p)
        for p in rest:
            if not has_origin:
                continue  # without origin, a child of Claude in a window may be Claude's own helper
            cands = [c for c in windows.at(p.started) if not c.name.startswith(("Write", "Edit"))]
            if not cands:
                continue
            best = _latest_begun(cands, p.started)
            if len(cands) == 1:
                self._claim(p.key, best.tool_use_id, "window")
            else:
                self._claim(p.key, best.tool_use_id, "window-ambiguous")
                self.candidates.setdefault(best.tool_use_id, [])
                for c in cands:
                    if c.tool_use_id not in self.candidates[best.tool_use_id]:
                        self.candidates[best.tool_use_id].append(c.tool_use_id)
        # Claude's own helpers started for a call (rg for Grep/Glob): their command line names the target
        for p in helpers:
            if p.key in self.owner:
                continue
            text = _cmd_text(p)
            for c in windows.at(p.started):
                target = c.input.get("pattern") if isinstance(c.input.get("pattern"), str) else None
                if target and len(target) >= 3 and target in text:
                    self._claim(p.key, c.tool_use_id, "command")
                    break
        # Write/Edit: Claude writes the file itself (a temporary file renamed over it); each change goes to
        # the latest call on that path that had begun by then
        writers = [p for p in sess.procs.values() if p.key not in self.owner and p.origin in (None, "claude")]
        paths: Dict[str, str] = {}
        for c in calls:
            path = next((c.input[k] for k in _FILE_TOOLS if isinstance(c.input.get(k), str)), "")
            if path:
                paths[c.tool_use_id] = path
        file_windows = _Windows([c for c in calls if c.tool_use_id in paths], self.window)
        for p in writers:
            for f in p.files:
                hits = []
                for c in file_windows.at(f.get("ts")):
                    path = paths[c.tool_use_id]
                    if f.get("path") == path or f.get("path2") == path or \
                            (f.get("path") or "").startswith(path + ".tmp."):
                        hits.append(c)
                if not hits:
                    continue
                best = _latest_begun(hits, f.get("ts"))
                self.call_files.setdefault(best.tool_use_id, []).append((p, f))
                self.how.setdefault(best.tool_use_id, "file")


def _ms(ns: Optional[int]) -> Optional[float]:
    return None if ns is None else round(ns / 1e6, 3)


def _file_json(p: Proc, f: Dict[str, Any]) -> Dict[str, Any]:
    out = {k: f.get(k) for k in ("ts", "op", "path", "path2", "ret", "count", "sensitive")}
    out["pid"] = p.pid
    if isinstance(f.get("ret"), int) and f["ret"] < 0:
        out["error"] = errno_name(f["ret"])  # EEXIST, EACCES...
    if _claude_state(f.get("path")):
        out["claude_state"] = True  # Claude Code's own bookkeeping (its Bash tool's cwd file, ~/.claude/...)
    return out


def _conn_json(p: Proc, c: Dict[str, Any]) -> Dict[str, Any]:
    out = {
        k: c.get(k)
        for k in ("ts", "family", "addr", "port", "host", "endpoint", "ret", "latency_ns", "conn_id")
    }
    out["result"] = _outcome(c)
    out["label"] = connection_label(c)
    out["pid"] = p.pid
    return out


class _Renderer:
    """Turns processes into JSON trees limited to a set of keys."""

    def __init__(self, sess: Session, end: Optional[int]) -> None:
        self.sess = sess
        self.end = end

    def node(self, key: str, allowed: Optional[Set[str]] = None) -> Dict[str, Any]:
        p = self.sess.procs[key]
        kids = [k for k in p.children if k in self.sess.procs and (allowed is None or k in allowed)]
        kids.sort(key=lambda k: self.sess.procs[k].started or 0)
        start = p.started
        return {
            "exec_id": p.key,
            "pid": p.pid,
            "ppid": p.ppid,
            "comm": p.comm,
            "argv": p.argv,
            "filename": p.filename,
            "cwd": p.cwd,
            "origin": p.origin,
            "uid": p.uid,
            "images": len(p.images),
            "start": start,
            "end": p.end,
            "duration_ns": p.duration_ns
            if p.duration_ns is not None
            else (p.end - start if p.end is not None and start is not None else None),
            "running": p.end is None,
            "exit_code": p.exit_code,
            "signal": p.signal,
            "core_dumped": p.core_dumped,
            "failed": p.failed,
            "seen_at_start": p.seen_at_start,
            "files": [_file_json(p, f) for f in p.files if _shown(f)],
            "connections": [_conn_json(p, c) for c in p.connects],
            "dns": [{k: d.get(k) for k in ("ts", "qname", "qtype", "rcode", "answers")} for d in p.dns],
            "children": [self.node(k, allowed) for k in kids],
        }


def walk_tree(node: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Every node of a report process tree (``children`` lists), the root first."""
    out, stack = [], [node]
    while stack:
        n = stack.pop()
        out.append(n)
        stack.extend(n["children"])
    return out


def session_summary(sess: Session, log: Log) -> Dict[str, Any]:
    """The one-line view of a session (``rawbpf sessions``): times, who, where, and counts."""
    root = sess.root
    has_origin = _session_has_origin(sess)
    commands = failed = sensitive = 0
    changed: Set[str] = set()
    conns: Counter = Counter()
    for p in sess.procs.values():
        is_cmd = p.origin == "tool" if has_origin else p.key != root.key
        if is_cmd:
            commands += len(p.images) or (1 if p.start is not None else 0)
            failed += 1 if p.failed and p.images else 0  # a fork that never exec'd is no command
        for f in p.files:
            if f.get("sensitive"):
                sensitive += 1
            elif (
                f.get("op") in CHANGE_OPS
                and f.get("path")
                and (f.get("ret") in (None, 0))
                and not _claude_state(f.get("path"))
                and _shown(f)
            ):
                if f.get("op") == "rename" and f.get("path2"):
                    changed.discard(f["path"])  # a temporary file renamed into place counts as its target
                    changed.add(f["path2"])
                else:
                    changed.add(f["path"])
        for c in p.connects:
            if c.get("family") != "unix":
                conns[connection_label(c)] += 1
    end = sess.end
    start = sess.start
    return {
        "key": sess.key,
        "session_id": sess.session_id,
        "root_pid": sess.root_pid,
        "root_exec_id": root.key,
        "start": start,
        "end": end,
        "running": end is None,
        "duration_ns": (end if end is not None else (sess.last_ts or start or 0)) - start
        if start is not None
        else None,
        "uid": root.uid,
        "cwd": root.cwd,
        "claude_version": sess.version,
        "argv": root.argv,
        "exe": root.filename,
        "start_seen": bool(root.images),  # false: Claude's exec is not in the log (rotated away, or older)
        "host": sess.host,
        "transcript": sess.transcript,
        "counts": {
            "commands": commands,
            "failed_commands": failed,
            "files_changed": len(changed),
            "sensitive_reads": sensitive,
            "connections": dict(conns.most_common()),
            "lost_records": log.lost_between(start, end),
            "records": sess.records,
            "processes": len(sess.procs),
        },
    }


def build_report(
    sess: Session,
    log: Log,
    transcript: Optional[Transcript] = None,
    *,
    transcript_status: str = "",
    transcript_error: str = "",
    transcript_source: str = "",
) -> Dict[str, Any]:
    """The joined report of one session (see the module docstring and the README for the structure)."""
    j = _Joiner(sess, log, transcript)
    j.run()
    summary = session_summary(sess, log)
    root = sess.root
    start, end = summary["start"], sess.end
    last = log.last_ts
    r = _Renderer(sess, end)
    cwd = root.cwd or (transcript.cwd if transcript else None)
    if transcript is not None:
        # what the log does not carry (older monitors), the transcript does: said in the *_from fields
        for key, value in (("claude_version", transcript.version), ("session_id", transcript.session_id),
                           ("cwd", transcript.cwd)):
            if not summary[key] and value:
                summary[key] = value
                summary[f"{key}_from"] = "transcript"
    # how the session met its transcript
    session_join = None
    if transcript is not None:
        # by session id only when the records carry it (not when it was read from the file's name)
        if transcript.session_id and (transcript.session_id in sess.session_ids
                                      or transcript.session_id == root.session_id):
            session_join = "session_id"
        elif transcript_source == "log":
            session_join = "transcript"
        else:
            session_join = transcript_source or "given"
    calls_json: List[Dict[str, Any]] = []
    claimed_files: Set[int] = set()
    owned: Dict[str, Set[str]] = {}
    for k, v in j.owner.items():
        owned.setdefault(v, set()).add(k)
    for c in transcript.calls if transcript else []:
        tops = sorted(j.tops.get(c.tool_use_id, []), key=lambda k: sess.procs[k].started or 0)
        allowed = owned.get(c.tool_use_id, set())
        trees = [dict(r.node(k, allowed), joined_by=j.proc_how.get(k)) for k in tops]
        nodes = [n for t in trees for n in walk_tree(t)]
        files = [f for n in nodes for f in n["files"]]
        for p, f in j.call_files.get(c.tool_use_id, []):
            claimed_files.add(id(f))
            if _shown(f):
                files.append(_file_json(p, f))
        lo, hi = j.window(c)
        calls_json.append(
            {
                "tool_use_id": c.tool_use_id,
                "tool": c.name,
                "target": c.target,
                "input": _trim_input(c.input),
                "prompt": c.prompt_index,
                "sidechain": c.sidechain,
                "ts_use": c.ts_use,
                "ts_result": c.ts_result,
                "ts_end": c.ts_end,
                "background": c.background_task is not None,
                "background_status": c.done_status,
                "background_exit_code": c.done_exit_code,
                "is_error": c.is_error,
                "result": c.result_text[:500],
                "join": j.how.get(c.tool_use_id, "none"),
                "candidates": j.candidates.get(c.tool_use_id, []),
                "processes": trees,
                "files": sorted(files, key=lambda f: f.get("ts") or 0),
                "connections": sorted(
                    [x for n in nodes for x in n["connections"]], key=lambda x: x.get("ts") or 0
                ),
                "dns": [d for n in nodes for d in n["dns"]],
                "window": [lo + WINDOW_BEFORE_NS, hi - WINDOW_AFTER_NS],
            }
        )
    # what no tool call explains
    unexplained_keys = {k for k in sess.procs if k not in j.owner and k != root.key}
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for k in sorted(unexplained_keys, key=lambda k: sess.procs[k].started or 0):
        p = sess.procs[k]
        parent = p.parent_key
        if parent in unexplained_keys:
            continue  # shown under its parent
        if p.origin in ("hook", "mcp", "claude", "tool"):
            kind = {"claude": "claude", "hook": "hook", "mcp": "mcp", "tool": "tool"}[p.origin]
        else:
            kind = "unknown"
        groups.setdefault(kind, []).append(r.node(k, unexplained_keys))
    own = [p for k, p in sess.procs.items() if k not in j.owner]
    own_conns = sorted([_conn_json(p, c) for p in own for c in p.connects], key=lambda x: x.get("ts") or 0)
    own_files = sorted(
        [
            _file_json(p, f)
            for p in own
            for f in p.files
            if id(f) not in claimed_files and _shown(f)
        ],
        key=lambda x: x.get("ts") or 0,
    )
    own_dns = [
        dict(pid=p.pid, **{k: d.get(k) for k in ("ts", "qname", "qtype", "rcode", "answers")})
        for p in own
        for d in p.dns
    ]
    outlived = []
    if end is not None:
        for p in sess.procs.values():
            if p.key == root.key:
                continue
            if p.end is None:
                outlived.append(
                    {
                        "pid": p.pid,
                        "exec_id": p.key,
                        "argv": p.argv,
                        "comm": p.comm,
                        "running": True,
                        "after_ns": (last - end) if last is not None else None,
                        "tool_use_id": j.owner.get(p.key),
                    }
                )
            elif p.end > end:
                outlived.append(
                    {
                        "pid": p.pid,
                        "exec_id": p.key,
                        "argv": p.argv,
                        "comm": p.comm,
                        "running": False,
                        "after_ns": p.end - end,
                        "tool_use_id": j.owner.get(p.key),
                    }
                )
    lost = log.lost_between(start, end)
    report: Dict[str, Any] = {
        "format": REPORT_FORMAT,
        "session": summary,
        "transcript": {
            "path": transcript.path if transcript else (sess.transcript or None),
            "status": transcript_status or ("read" if transcript else "not recorded"),
            "error": transcript_error or None,
            "join": session_join,
            "session_id": transcript.session_id if transcript else None,
            "entries": transcript.entries if transcript else 0,
            "skipped": transcript.skipped if transcript else 0,
        },
        "prompts": [
            {"index": p.index, "ts": p.ts, "text": p.text, "kind": p.kind}
            for p in (transcript.prompts if transcript else [])
        ],
        "calls": calls_json,
        "unexplained": {
            "processes": groups,
            "connections": own_conns,
            "files": own_files,
            "dns": own_dns,
            "outlived": outlived,
            "lost_records": lost,
        },
        "root": r.node(root.key, {root.key}),
        "log": {"records": log.records, "first_ts": log.first_ts, "last_ts": last, "torn": log.torn,
                "missing": log.missing, "missing_in_session": log.missing_between(start, end),
                "damaged": log.damaged, "blind": [list(w) for w in log.blind_during(start, end)]},
    }
    report["findings"] = _findings(report, sess, cwd, j)
    return report


def _trim_input(inp: Dict[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in inp.items():
        if isinstance(v, str) and len(v) > 2000:
            v = v[:2000] + "…"
        out[k] = v
    return out


def _findings(report: Dict[str, Any], sess: Session, cwd: Optional[str], j: _Joiner) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []
    sev = {"high": 0, "medium": 1, "low": 2, "info": 3}

    def add(kind: str, severity: str, summary: str, **detail: Any) -> None:
        out.append({"kind": kind, "severity": severity, "summary": summary, **detail})

    for p in sess.procs.values():
        call = j.owner.get(p.key)
        for f in p.files:
            if f.get("sensitive"):
                ret = f.get("ret")
                refused = isinstance(ret, int) and ret < 0  # an attempt the kernel refused is still one
                add(
                    "sensitive_read",
                    "high",
                    f"{p.comm or p.pid} tried to read {f.get('path')} ({errno_name(ret)})" if refused
                    else f"{p.comm or p.pid} read {f.get('path')}",
                    pid=p.pid,
                    exec_id=p.key,
                    path=f.get("path"),
                    op=f.get("op"),
                    ret=ret,
                    ts=f.get("ts"),
                    tool_use_id=call,
                )
    hosts: Dict[str, Dict[str, Any]] = {}
    for p in sess.procs.values():
        for c in p.connects:
            if not _is_net(c) or c.get("endpoint"):
                continue
            label = connection_label(c)
            h = hosts.setdefault(
                label, {"count": 0, "pids": [], "results": Counter(), "ts": c.get("ts"), "calls": []}
            )
            h["count"] += 1
            if p.pid not in h["pids"]:
                h["pids"].append(p.pid)
            h["results"][_outcome(c)] += 1
            call = j.owner.get(p.key)
            if call and call not in h["calls"]:
                h["calls"].append(call)
    for label, h in hosts.items():
        results = ", ".join(f"{k} {v}x" if v > 1 else k for k, v in h["results"].most_common())
        add(
            "unnamed_host",
            "info" if label.endswith(":53") else "medium",
            f"connection to {label}, not a named endpoint ({results})",
            target=label,
            count=h["count"],
            pids=h["pids"],
            ts=h["ts"],
            tool_use_ids=h["calls"],
        )
    for p in sess.procs.values():
        for f in p.files:
            op = f.get("op")
            if op not in ("delete", "rmdir", "rename") or f.get("ret") not in (None, 0):
                continue
            path = f.get("path")
            if in_tree(path, cwd) or (p.origin in (None, "claude") and _claude_state(path)):
                continue
            add(
                "delete_outside_tree",
                "medium",
                f"{p.comm or p.pid} {'renamed away' if op == 'rename' else 'deleted'} {path} outside {cwd}",
                pid=p.pid,
                exec_id=p.key,
                path=path,
                op=op,
                ts=f.get("ts"),
                tool_use_id=j.owner.get(p.key),
            )
    for call in report["calls"]:
        for t in call["processes"]:
            if t["failed"]:
                what = f"killed by signal {t['signal']}" if t["signal"] else f"exit {t['exit_code']}"
                add(
                    "failed_command",
                    "low",
                    f"{call['tool']} {call['target']!r} failed ({what})",
                    tool_use_id=call["tool_use_id"],
                    pid=t["pid"],
                    exit_code=t["exit_code"],
                    signal=t["signal"],
                    ts=t["end"],
                )
    for kind, trees in report["unexplained"]["processes"].items():
        if kind != "tool":
            continue
        for t in trees:
            if t["failed"]:
                add(
                    "failed_command",
                    "low",
                    f"{' '.join(t['argv'])[:120]!r} failed (exit {t['exit_code']})",
                    tool_use_id=None,
                    pid=t["pid"],
                    exit_code=t["exit_code"],
                    signal=t["signal"],
                    ts=t["end"],
                )
    for o in report["unexplained"]["outlived"]:
        if o["running"]:
            add(
                "left_running",
                "medium",
                f"{' '.join(o['argv'])[:120] or o['comm']} (pid {o['pid']}) still running when the log ends, "
                f"{_secs(o['after_ns'])} after Claude exited",
                pid=o["pid"],
                exec_id=o["exec_id"],
                tool_use_id=o["tool_use_id"],
            )
        else:
            add(
                "outlived_session",
                "low",
                f"{' '.join(o['argv'])[:120] or o['comm']} (pid {o['pid']}) ran {_secs(o['after_ns'])} after "
                "Claude exited",
                pid=o["pid"],
                exec_id=o["exec_id"],
                tool_use_id=o["tool_use_id"],
            )
    for a, b in report["log"]["blind"]:
        add("monitor_down", "high", f"the monitor was not running for {_secs(b - a)} during the session: "
            "what Claude did then is not in the log", since=a, until=b, ts=a)
    if report["log"]["missing_in_session"]:
        n = report["log"]["missing_in_session"]
        add("records_missing", "medium", f"{n} record(s) of the session's time are missing from the log "
            "(rotated away or damaged)", count=n)
    lost = report["unexplained"]["lost_records"]
    if lost:
        add(
            "lost_records",
            "medium",
            f"{lost} record(s) lost during the session: the report may be incomplete",
            count=lost,
        )
    out.sort(key=lambda f: (sev.get(f["severity"], 9), f.get("ts") or 0))
    return out


def _secs(ns: Optional[int]) -> str:
    if ns is None:
        return "?"
    if ns < 1_000_000_000:
        return f"{ns // 1_000_000} ms"
    s = ns / 1e9
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"
