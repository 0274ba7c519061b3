"""``rawbpf sessions`` and ``rawbpf report``: each Claude session in the log, and one session told as a story.

Both read the log only (any copy of it: no /proc, no live maps). ``report`` joins the session with Claude
Code's transcript (the file the monitor saw Claude open, or ``--transcript``) and prints findings, prompts,
tool calls with the processes, files and connections each caused, and what no tool call explains; ``--json``
prints the same structure (``rawbpf.report/1``), ``--html FILE`` writes it as one self-contained page.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import glob
import json
import os
import re
import shlex
import socket
import sys
from typing import Any, Dict, Iterator, List, Optional, Tuple

import click

from rawbpf.cli.common import log_dir_option
from rawbpf.errors import ConfigError
from rawbpf.termsafe import escape, escape_json

__tier__ = "files"

_EVAL = re.compile(r"eval '((?:[^']|'\\'')*)'")
FILES_SHOWN = 8  # file changes shown per process; --json has them all
_SEV = {"high": "HIGH", "medium": "MEDIUM", "low": "LOW", "info": "INFO"}


def _time(ns: Optional[int], date: bool = False) -> str:
    if ns is None:
        return "-"
    d = _dt.datetime.fromtimestamp(ns / 1e9)
    return d.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S.") + (
        "" if date else f"{(ns // 1_000_000) % 1000:03d}"
    )


def duration(ns: Optional[int]) -> str:
    """``850 ms``, ``3.2 s``, ``4 min 10 s``, ``2 h 5 min``."""
    if ns is None:
        return "-"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.0f} ms" if ns >= 1_000_000 else f"{ns / 1e6:.1f} ms"
    s = ns / 1e9
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


def short_command(argv: List[str]) -> str:
    """A process's command line for people: the command a Bash-tool shell ``eval``\\ s, else argv joined."""
    if len(argv) >= 3 and argv[0].endswith(("bash", "sh")) and argv[1] == "-c":
        m = _EVAL.search(argv[2])
        if m:
            inner = m.group(1).replace("'\\''", "'")
            return f"{argv[0].rsplit('/', 1)[-1]} -c {shlex.quote(inner)}"
    text = " ".join(a if a and not re.search(r"\s", a) else json.dumps(a, ensure_ascii=False) for a in argv)
    return text if len(text) <= 160 else text[:157] + "…"


def _user(uid: Optional[int], host: Optional[str]) -> str:
    if uid is None:
        return "-"
    if host and host == socket.gethostname():
        try:
            import pwd

            return pwd.getpwuid(uid).pw_name
        except (KeyError, ImportError):
            pass
    return str(uid)


def _conns(counts: Dict[str, int], limit: int = 3) -> str:
    items = list(counts.items())
    text = ", ".join(f"{k} ({v})" if v > 1 else k for k, v in items[:limit])
    return text + (f", +{len(items) - limit}" if len(items) > limit else "") if text else "-"


def _status(t: Dict[str, Any]) -> str:
    if t.get("running"):
        return "running"
    if t.get("signal"):
        return f"killed by signal {t['signal']}" + (" (core)" if t.get("core_dumped") else "")
    if t.get("exit_code") is None:
        return "exited"
    return f"exit {t['exit_code']}"


# -- sessions


@click.command("sessions")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per session (NDJSON).")
@click.option("--since", metavar="WHEN", help="Only sessions active from WHEN on: 10m, 2h, 2026-11-21T08:30.")
@log_dir_option
def sessions(as_json: bool, since: Optional[str], log_dir: str) -> None:
    """List the Claude sessions in the log: start, duration, user, cwd, version and what each did."""
    with _no_cycle_gc():
        _sessions(as_json, since, log_dir)


def _sessions(as_json: bool, since: Optional[str], log_dir: str) -> None:
    from rawbpf.audit.join import session_summary
    from rawbpf.cli.common import parse_since

    since_ns = parse_since(since) if since else None
    log = _load(log_dir)
    rows = [session_summary(s, log) for s in log.sessions]
    for r in rows:
        r["claude_version"] = r["claude_version"] or installed_version(r["exe"], r["host"])
    if since_ns is not None:
        rows = [r for r in rows if r["running"] or (r["end"] or 0) >= since_ns]
    if as_json:
        for r in rows:
            click.echo(escape_json(json.dumps(r, ensure_ascii=False)))
        return
    if not rows:
        click.echo("-- no Claude sessions in the log --", err=True)
        return
    head = (
        "SESSION",
        "PID",
        "START",
        "DURATION",
        "USER",
        "VERSION",
        "CMDS",
        "FAIL",
        "FILES",
        "SENS",
        "LOST",
        "CONNECTIONS",
        "CWD",
    )
    table: List[Tuple[str, ...]] = [head]
    for r in rows:
        c = r["counts"]
        dur = duration(r["duration_ns"])
        table.append(
            (
                r["session_id"] or "-",
                str(r["root_pid"]),
                _time(r["start"], date=True),
                f"running {dur}" if r["running"] else dur,
                _user(r["uid"], r["host"]),
                r["claude_version"] or "-",
                str(c["commands"]),
                str(c["failed_commands"]),
                str(c["files_changed"]),
                str(c["sensitive_reads"]),
                str(c["lost_records"]),
                _conns(c["connections"]),
                r["cwd"] or "-",
            )
        )
    table = [tuple(escape(cell) for cell in row) for row in table]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    right = {1, 6, 7, 8, 9, 10}
    for row in table:
        cells = [row[i].rjust(widths[i]) if i in right else row[i].ljust(widths[i]) for i in range(len(head))]
        click.echo("  ".join(cells).rstrip())


def installed_version(exe: Optional[str], host: Optional[str]) -> Optional[str]:
    """The version of an npm-installed Claude Code from its ``package.json`` (only on the host that wrote the
    log, where the path still means the same file)."""
    if not exe or host != socket.gethostname():
        return None
    d = os.path.dirname(os.path.realpath(exe))  # the `claude` symlink on PATH leads to the package
    for cand in (os.path.join(d, "package.json"), os.path.join(os.path.dirname(d), "package.json")):
        try:
            with open(cand) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("name") == "@anthropic-ai/claude-code":
            v = data.get("version")
            return v if isinstance(v, str) else None
    return None


def _load(log_dir: str) -> Any:
    from rawbpf.audit.sessions import load_sessions
    from rawbpf.logfile import iter_files

    if not os.path.isdir(log_dir):
        raise ConfigError(f"log directory {log_dir}: not found (give --log-dir)")
    if not iter_files(log_dir):
        raise ConfigError(f"log directory {log_dir}: holds no rawbpf log (give --log-dir)")
    return load_sessions(log_dir)


@contextlib.contextmanager
def _no_cycle_gc() -> Iterator[None]:
    """The commands build ~10 objects per record and free none of them before they end: the cycle collector
    would only rescan them (a third of the time of a 100 k-record report)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# -- report


def find_transcript(sess: Any, given: Optional[str]) -> Tuple[Optional[str], str]:
    """(path, source): ``--transcript``, else the file the monitor saw Claude open, else Claude's usual place
    for the session id (``~owner/.claude/projects/*/<session>.jsonl``, on the host that wrote the log)."""
    if given:
        return given, "given"
    if sess.transcript:
        return sess.transcript, "log"
    sid = sess.session_id
    if not sid or not re.fullmatch(r"[A-Za-z0-9_-]+", sid):
        return None, ""
    homes = []
    if sess.root.uid is not None and sess.host == socket.gethostname():
        try:
            import pwd

            homes.append(pwd.getpwuid(sess.root.uid).pw_dir)
        except (KeyError, ImportError):
            pass
    for home in homes:
        hits = glob.glob(os.path.join(home, ".claude", "projects", "*", sid + ".jsonl"))
        if hits:
            return hits[0], "found"
    return None, ""


@click.command("report")
@click.argument("session", metavar="SESSION|PID|latest")
@click.option(
    "--json", "as_json", is_flag=True, help="The joined report as one JSON document (rawbpf.report/1)."
)
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Also write the report as one self-contained HTML page.",
)
@click.option(
    "--transcript",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Claude's transcript of the session (default: the file the monitor saw it open).",
)
@log_dir_option
def report(
    session: str, as_json: bool, html_file: Optional[str], transcript: Optional[str], log_dir: str
) -> None:
    """What one Claude session did: findings, prompts, each tool call with the processes, files and
    connections it caused, and what no tool call explains."""
    with _no_cycle_gc():
        _report(session, as_json, html_file, transcript, log_dir)


def _report(session: str, as_json: bool, html_file: Optional[str], transcript: Optional[str],
            log_dir: str) -> None:
    from rawbpf.audit.join import build_report
    from rawbpf.audit.sessions import select_session
    from rawbpf.audit.transcript import TranscriptUnreadable, read_transcript

    log = _load(log_dir)
    sess = select_session(log, session)
    path, source = find_transcript(sess, transcript)
    tr, status, error = None, "not recorded", ""
    if path:
        try:
            tr = read_transcript(path)
            status = "read"
        except TranscriptUnreadable as err:
            if source == "given":
                raise ConfigError(f"transcript {err}") from None
            status, error = "unreadable", err.reason
    rep = build_report(
        sess, log, tr, transcript_status=status, transcript_error=error, transcript_source=source
    )
    if path and tr is None:
        rep["transcript"]["path"] = path
    s = rep["session"]
    s["claude_version"] = s["claude_version"] or installed_version(s["exe"], s["host"])
    if html_file:
        from rawbpf.audit.html import render_html

        try:
            with open(html_file, "w", encoding="utf-8") as f:
                f.write(render_html(rep))
        except OSError as err:
            raise ConfigError(f"--html {html_file}: {os.strerror(err.errno or 0).lower()}") from None
    if as_json:
        click.echo(escape_json(json.dumps(rep, ensure_ascii=False)))
    else:
        out = sys.stdout
        for line in format_report(rep):
            out.write(escape(line) + "\n")
    if html_file:
        click.echo(f"rawbpf: wrote {html_file}", err=True)


def format_report(rep: Dict[str, Any]) -> List[str]:
    """The report as text lines for a terminal."""
    from rawbpf.audit.join import walk_tree

    s, t = rep["session"], rep["transcript"]
    lines: List[str] = []
    root = rep["root"]
    state = (
        f"running ({duration(s['duration_ns'])} so far)"
        if s["running"]
        else f"{_time(s['end'])}, {duration(s['duration_ns'])}, {_status(root)}"
    )
    lines.append(
        f"Claude session {s['session_id'] or '(id unknown)'}  pid {s['root_pid']}  "
        f"claude {s['claude_version'] or '?'}  user {_user(s['uid'], s['host'])}"
    )
    where = f"{s['cwd']} (./ below)" if s["cwd"] else "?"
    lines.append(f"  cwd {where}   {_time(s['start'], date=True)} → {state}")
    if t["status"] == "read":
        how = {"session_id": "joined by session id", "transcript": "the file the monitor saw Claude open",
               "given": "given with --transcript", "found": "found by session id"}.get(t["join"], t["join"])
        lines.append(f"  transcript {t['path']} ({how})")
    elif t["status"] == "unreadable":
        lines.append(f"  transcript {t['path']}: cannot read it: {t['error']}; tool calls are not shown")
    else:
        lines.append(
            "  transcript: not recorded in the log (give --transcript FILE); tool calls are not shown"
        )
    c = s["counts"]
    lines.append(
        f"  {c['commands']} commands ({c['failed_commands']} failed), {c['files_changed']} files changed, "
        f"{c['sensitive_reads']} sensitive reads, {sum(c['connections'].values())} connections, "
        f"{c['lost_records']} records lost"
    )
    lg = rep["log"]
    if not s.get("start_seen", True):
        lines.append("  the log begins after this session started (Claude's exec was rotated away): "
                     "what it did before is not here")
    if lg.get("missing") or lg.get("torn"):
        missing, torn = lg.get("missing", 0), lg.get("torn", 0)
        lines.append(f"  the log is incomplete: {missing} record(s) rotated away before they were read, "
                     f"{torn} torn at the end of a file")
    if t.get("skipped"):
        lines.append(f"  {t['skipped']} transcript line(s) were not JSON and were skipped")
    lines.append("")
    f = rep["findings"]
    lines.append(f"Findings ({len(f)})" if f else "Findings: none")
    for x in f:
        ref = f"  [{x['tool_use_id']}]" if x.get("tool_use_id") else ""
        lines.append(f"  {_SEV.get(x['severity'], x['severity']):<6}  {x['summary']}{ref}")
    by_prompt: Dict[Optional[int], List[Dict[str, Any]]] = {}
    for call in rep["calls"]:
        by_prompt.setdefault(call["prompt"], []).append(call)
    prompts = rep["prompts"]
    if None in by_prompt:
        lines.append("")
        lines.append("Before any prompt")
        for call in by_prompt[None]:
            lines.extend(_call_lines(call, s["cwd"]))
    for p in prompts:
        lines.append("")
        text = p["text"].strip().replace("\n", " ")
        label = f"Prompt {p['index'] + 1}"
        if p["kind"] == "task-notification":
            label = "Task notification"
            m = re.search(r"<summary>(.*?)</summary>", text)
            text = m.group(1) if m else text
        lines.append(f"{label}  {_time(p['ts'])}  {json.dumps(text[:200], ensure_ascii=False)}")
        for call in by_prompt.get(p["index"], []):
            lines.extend(_call_lines(call, s["cwd"]))
    u = rep["unexplained"]
    lines.append("")
    lines.append("Not explained by a tool call")
    names = {
        "claude": "Claude Code itself",
        "hook": "hooks",
        "mcp": "MCP servers",
        "tool": "tool commands with no matching call",
        "unknown": "other processes",
    }
    for kind in ("claude", "hook", "mcp", "tool", "unknown"):
        trees = u["processes"].get(kind)
        if not trees:
            continue
        count = sum(len(walk_tree(x)) for x in trees)
        lines.append(f"  {names[kind]}: {count} process{'es' if count != 1 else ''}")
        for tree in trees:
            lines.extend(_tree_lines(tree, 4, s["cwd"]))
    if u["connections"]:
        lines.append("  connections:")
        for x in _group_conns(u["connections"]):
            lines.append(f"    {x}")
    if u["dns"]:
        names_q = sorted({d["qname"] for d in u["dns"] if d.get("qname")})
        lines.append(f"  name lookups: {', '.join(names_q)}")
    if u["files"]:
        lines.append(f"  files ({len(u['files'])}):")
        for x in u["files"][:20]:
            lines.append(f"    {_file_text(x)}  (pid {x['pid']})")
        if len(u["files"]) > 20:
            lines.append(f"    … {len(u['files']) - 20} more (--json has all)")
    for o in u["outlived"]:
        what = short_command(o["argv"]) or o["comm"]
        lines.append(
            f"  outlived the session: {o['pid']} {what} "
            + (
                f"still running {duration(o['after_ns'])} after Claude exited"
                if o["running"]
                else f"{duration(o['after_ns'])} longer than Claude"
            )
        )
    lines.append(f"  records lost in the session's window: {u['lost_records']}")
    base = (s["cwd"] or "").rstrip("/")
    if len(base) > 1:  # below the header, paths under the session's cwd are shown as ./…
        lines[2:] = [line.replace(base + "/", "./") for line in lines[2:]]
    return lines


def _file_text(x: Dict[str, Any]) -> str:
    text = f"{x['op']} {x['path']}" + (f" → {x['path2']}" if x.get("path2") else "")
    if x.get("sensitive"):
        text += "  [sensitive]"
    if x.get("claude_state"):
        text += "  (Claude's own)"
    if isinstance(x.get("ret"), int) and x["ret"] < 0:
        from rawbpf.audit.sessions import errno_name

        text += f"  ({errno_name(x['ret'])})"
    if isinstance(x.get("count"), int) and x["count"] > 1:
        text += f"  x{x['count']}"
    return text


def _group_conns(conns: List[Dict[str, Any]]) -> List[str]:
    groups: Dict[Tuple[str, str], int] = {}
    for x in conns:
        key = (x["label"], x["result"])
        groups[key] = groups.get(key, 0) + 1
    return [f"{label} {result}" + (f" x{n}" if n > 1 else "") for (label, result), n in groups.items()]


def _tree_lines(t: Dict[str, Any], indent: int, cwd: Optional[str] = None) -> List[str]:
    """A process and its subtree; its cwd is shown where it differs from its parent's."""
    pad = " " * indent
    what = short_command(t["argv"]) if t["argv"] else f"{t['comm'] or '?'} (forked, no exec)"
    line = f"{pad}{t['pid']:>7}  {what}   {_status(t)}"
    if t.get("duration_ns") is not None and not t.get("running"):
        line += f", {duration(t['duration_ns'])}"
    if t.get("cwd") and t["cwd"] != cwd:
        line += f"   (cwd {t['cwd']})"
    out = [line]
    done = [x for x in t["files"] if not (isinstance(x.get("ret"), int) and x["ret"] < 0)]
    for x in done[:FILES_SHOWN]:
        out.append(f"{pad}         file {_file_text(x)}")
    more, failed = len(done) - FILES_SHOWN, len(t["files"]) - len(done)
    if more > 0 or failed:
        parts = [f"{more} more file changes"] if more > 0 else []
        parts += [f"{failed} failed attempts"] if failed else []
        out.append(f"{pad}         file … {', '.join(parts)} (--json has them all)")
    seen: Dict[Tuple[str, str], int] = {}
    for x in t["connections"]:  # repeats of the same outcome are counted, not listed
        key = (x["label"], x["result"])
        seen[key] = seen.get(key, 0) + 1
        if seen[key] == 1:
            lat = f" {duration(x['latency_ns'])}" if x.get("latency_ns") else ""
            out.append(f"{pad}         net  {x['label']} {x['result']}{lat}")
    for (label, result), n in seen.items():
        if n > 1:
            for i, line in enumerate(out):
                if line.startswith(f"{pad}         net  {label} {result}"):
                    out[i] = f"{line} x{n}"
                    break
    for d in t["dns"]:
        answers = ", ".join(map(str, d.get("answers") or [])) or d.get("rcode")
        out.append(f"{pad}         dns  {d['qname']} → {answers}")
    for ch in t["children"]:
        out.extend(_tree_lines(ch, indent + 2, t.get("cwd")))
    return out


def _call_lines(call: Dict[str, Any], cwd: Optional[str]) -> List[str]:
    out = []
    bg = " (background)" if call["background"] else ""
    err = "  → error" if call.get("is_error") else ""
    target = call["target"].replace("\n", " ")
    if len(target) > 120:
        target = target[:117] + "…"
    if call["ts_end"] and call["ts_use"]:
        span = duration(call["ts_end"] - call["ts_use"])
    elif call["background"]:
        span = "its end is not in the transcript"
    else:
        span = "no result in the transcript"
    out.append(f"  {_time(call['ts_use'])}  {call['tool']}{bg}  {target}{err}")
    join = call["join"]
    if call["candidates"]:
        join += f" between {', '.join(call['candidates'])}"
    out.append(f"      {call['tool_use_id']}  joined by {join}, {span}")
    for t in call["processes"]:
        lines = _tree_lines(t, 4, cwd)
        if t.get("joined_by") and t["joined_by"] != call["join"]:
            lines[0] += f"   [joined by {t['joined_by']}]"
        out.extend(lines)
    if not call["processes"]:  # Write/Edit: Claude's own file changes for the call
        for x in call["files"]:
            out.append(f"           file {_file_text(x)}  (pid {x['pid']})")
    return out
