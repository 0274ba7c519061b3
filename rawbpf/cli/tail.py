"""``rawbpf tail``: print the msgpack log, optionally following it across rotation; needs no privileges.

Reads every file of the log directory in order (:class:`rawbpf.logfile.LogReader`); ``-f`` keeps following
like ``tail -F`` without losing or repeating a record. ``--json`` prints one JSON object per line with the
record's own keys (byte strings as hex); the default is one readable, aligned line per record
(:mod:`rawbpf.cli.tail_format`). File ``header`` records are shown only with ``--type header``. ``-f`` starts
with the last 10 records like ``tail -f``; Ctrl-C ends it with status 0 and a closed pipe with SIGPIPE, as
``tail -f | head`` does.

Nothing is hidden: a damaged region is skipped with one line on stderr naming the file, offset and bytes
skipped (``-f`` keeps following), and where records are missing from the sequence (rotated away before they
were read, or in a damaged region) a ``missing`` line stands in their place, also with ``--json``.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Sequence, Set

import click

from rawbpf.cli.common import log_dir_option, parse_since
from rawbpf.cli.ending import die_of_sigpipe, flush_stdout
from rawbpf.cli.tail_format import KNOWN_TYPES, TextFormat
from rawbpf.errors import ConfigError
from rawbpf.termsafe import escape, escape_json

__tier__ = "files"



def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def json_line(rec: Dict[str, Any]) -> str:
    """One record as a line of JSON: its exact keys and values (byte strings as hex), with the characters
    JSON leaves raw but a terminal acts on (DEL, C1, lone surrogates) written as \\u escapes."""
    return escape_json(json.dumps(_jsonable(rec), ensure_ascii=False))


class Select:
    """Which records to show: ``--type``, ``--pid``, ``--root``, ``--session``, ``--since``.

    ``--session`` also takes the records of a session's Claude root and its helpers that carry no session id
    (those from before the id was known): the roots seen with the id (``root_exec_id``, else ``root_pid``) are
    remembered, and :meth:`learn` can be fed the log in a first pass so that earlier records count too.
    """

    def __init__(self, types: Set[str], pids: Set[int], roots: Set[int], session: Optional[str],
                 since: Optional[int]) -> None:
        self.types, self.pids, self.roots, self.session, self.since = types, pids, roots, session, since
        self.session_roots: Set[Any] = set()

    def _root_key(self, rec: Dict[str, Any]) -> Any:
        return rec.get("root_exec_id") or rec.get("root_pid")

    def learn(self, rec: Dict[str, Any]) -> None:
        sid = rec.get("session_id")
        if self.session and isinstance(sid, str) and sid.startswith(self.session):
            key = self._root_key(rec)
            if key is not None:
                self.session_roots.add(key)

    def __call__(self, rec: Dict[str, Any]) -> bool:
        rtype = rec.get("type")
        if rtype == "missing" and "seq" not in rec:  # the reader's own note of records it could not show
            return True
        if self.types:
            if rtype not in self.types:
                return False
        elif rtype == "header":
            return False
        if self.pids and rec.get("pid") not in self.pids and rec.get("root_pid") not in self.pids:
            return False
        if self.roots and rec.get("root_pid") not in self.roots:
            return False
        if self.session:
            self.learn(rec)
            if self._root_key(rec) not in self.session_roots:
                return False
        if self.since is not None:
            ts = rec.get("ts")
            if not isinstance(ts, int) or ts < self.since:
                return False
        return True


def split_types(values: Sequence[str]) -> Set[str]:
    """``--type exec,connect --type exit`` → {exec, connect, exit}."""
    return {t.strip() for v in values for t in v.split(",") if t.strip()}


def _home_of() -> Callable[[int], Optional[str]]:
    cache: Dict[int, Optional[str]] = {}

    def home(uid: int) -> Optional[str]:
        if uid not in cache:
            try:
                import pwd

                cache[uid] = pwd.getpwuid(uid).pw_dir
            except (KeyError, ImportError):
                cache[uid] = None
        return cache[uid]

    return home


def use_color(choice: str, stream: Any) -> bool:
    """``--color auto``: only on a terminal, and not when ``NO_COLOR`` is set or ``TERM=dumb``."""
    if choice == "always":
        return True
    if choice == "never":
        return False
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def stdout_closed() -> bool:
    """The reader of our stdout pipe has gone (POLLERR on the write end), as ``tail -f`` checks while idle."""
    import select

    try:
        fd = sys.stdout.fileno()
        if not stat.S_ISFIFO(os.fstat(fd).st_mode) and not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return False
        p = select.poll()
        p.register(fd, 0)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in p.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _type_known(log_dir: str, t: str) -> bool:
    """An unknown type name is accepted only when some record in the log has it (objects other than the
    monitor write their own types)."""
    from rawbpf.logfile import LogReader

    if t in KNOWN_TYPES:
        return True
    if not os.path.isdir(log_dir):
        return False
    with LogReader(log_dir, on_damage=lambda *a: None) as reader:
        return any(rec.get("type") == t for rec in reader.records())


@click.command("tail")
@click.option("-f", "--follow", is_flag=True,
              help="Keep printing new records, across rotation; starts with the last 10 (-n, --from-start).")
@click.option("-n", "--lines", "count", type=click.IntRange(min=0), default=None,
              help="Only the last N matching records (then follow, with -f). Default: all; 10 with -f.")
@click.option("--from-start", is_flag=True, help="With -f: print the whole log first, then follow.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (NDJSON), every field exact.")
@click.option("--type", "types", multiple=True, metavar="T[,T…]",
              help=f"Only records of these types (repeatable, or comma-separated): {', '.join(KNOWN_TYPES)}.")
@click.option("--pid", "pids", multiple=True, type=int, metavar="P",
              help="Only records of process P or of the tree it roots (pid or root_pid; repeatable).")
@click.option("--root", "roots", multiple=True, type=int, metavar="PID",
              help="Only records of the Claude process PID and everything it started (root_pid; repeatable).")
@click.option("--session", metavar="ID", help="Only records of the Claude session ID (or a unique prefix).")
@click.option("--since", metavar="WHEN", help="Only records from WHEN on: 10m, 2h, 2026-11-21T08:30, 08:30.")
@click.option("--tree", is_flag=True,
              help="Indent by depth under each Claude root (without -f: each root's records together).")
@click.option("--color", "--colour", "color", type=click.Choice(["auto", "always", "never"]), default="auto",
              show_default=True, help="Colour the text output (auto: only on a terminal, unless NO_COLOR).")
@click.option("--utc", is_flag=True, help="Times in UTC (marked Z) instead of local time.")
@click.option("--poll-interval", type=click.FloatRange(min=0.01), default=0.2, show_default=True,
              hidden=True)
@log_dir_option
def tail(follow: bool, count: Optional[int], from_start: bool, as_json: bool, types: Sequence[str],
         pids: Sequence[int], roots: Sequence[int], session: Optional[str], since: Optional[str], tree: bool,
         color: str, utc: bool, poll_interval: float, log_dir: str) -> None:
    """Print the records of the log in LOG_DIR, oldest first, across all its files.

    One aligned line per record: time, pid[/tid], comm, type and what happened. Ctrl-C ends -f quietly
    (status 0); a closed pipe (| head) ends it like tail -f does (SIGPIPE, status 141).
    """
    tset = split_types(types)
    unknown = sorted(t for t in tset if not _type_known(log_dir, t))
    if unknown:
        raise click.UsageError(f"--type {','.join(unknown)}: no such record type "
                               f"(known: {', '.join(KNOWN_TYPES)})")
    if from_start and count is not None:
        raise click.UsageError("-n and --from-start: give one of them")
    if from_start and not follow:
        raise click.UsageError("--from-start goes with -f (without -f the whole log is printed)")
    if as_json and tree:
        raise click.UsageError("--tree is for the text output, not --json")
    since_ns = parse_since(since) if since else None
    if follow and count is None and not from_start and since_ns is None:
        count = 10  # like tail -f
    sel = Select(tset, set(pids), set(roots), session, since_ns)
    fmt = TextFormat(utc=utc, color=use_color(color, sys.stdout), tree=tree, home_of=_home_of())
    try:
        shown = _run(log_dir, follow, count, as_json, sel, fmt, tree, since_ns, poll_interval)
    except KeyboardInterrupt:  # Ctrl-C is how -f is meant to end
        flush_stdout()
        sys.exit(0)
    except BrokenPipeError:
        die_of_sigpipe()
    if not shown and not follow:
        click.echo("-- no records --", err=True)


def _run(log_dir: str, follow: bool, count: Optional[int], as_json: bool, sel: Select, fmt: TextFormat,
         tree: bool, since_ns: Optional[int], poll_interval: float) -> int:
    """Print what is selected; returns how many records were printed."""
    from rawbpf.logfile import LogReader

    if follow:
        while not os.path.isdir(log_dir):  # like tail -F: wait for the log to appear
            time.sleep(poll_interval)
            if stdout_closed():
                raise BrokenPipeError
    out = sys.stdout
    shown = [0]

    def emit(rec: Dict[str, Any]) -> None:
        out.write((json_line(rec) if as_json else fmt.line(rec)) + "\n")
        shown[0] += 1

    def damage(path: str, offset: int, n: int) -> None:
        out.flush()
        click.echo(f"rawbpf: tail: {escape(path)}: skipped {n} damaged bytes at offset {offset}", err=True)

    def closed() -> bool:
        if stdout_closed():
            raise BrokenPipeError
        return False

    with LogReader(log_dir, on_damage=damage, mark_missing=True) as reader:
        if not follow and not reader.files():
            raise ConfigError(f"log dir {log_dir}: holds no rawbpf log (give the monitor's --log-dir)")
        if sel.session:  # a first pass: which Claude roots belong to the session
            with LogReader(log_dir, on_damage=lambda *a: None) as pre:
                for rec in pre.records(since_ns=since_ns):
                    sel.learn(rec)
        last_seq: Optional[int] = None
        grouped = tree and not follow
        if grouped and count is None:  # each root's lines together, formatted in log order (kept as text)
            groups: Dict[Any, List[str]] = {}
            for i, rec in enumerate(reader.records(since_ns=since_ns)):
                if sel(rec):
                    groups.setdefault(_root_key(rec, i), []).append(fmt.line(rec))
            for lines in groups.values():
                out.write("".join(line + "\n" for line in lines))
                shown[0] += len(lines)
            out.flush()
            _report(reader)
            return shown[0]
        if count is not None or grouped:
            keep: Deque[Dict[str, Any]] = deque(maxlen=count)
            last: Optional[Dict[str, Any]] = None
            for rec in reader.records(since_ns=since_ns):
                last = rec
                if sel(rec) and count != 0:
                    keep.append(rec)
            for rec in (_by_root(keep) if grouped else keep):
                emit(rec)
            out.flush()
            if last is not None and isinstance(last.get("seq"), int):
                last_seq = last["seq"]
            if not follow:
                _report(reader)
                return shown[0]
        stream = reader.records(follow=follow, poll_interval=poll_interval, since_ns=since_ns,
                                start_after_seq=last_seq, stop=closed if follow else None)
        for rec in stream:
            if sel(rec):
                emit(rec)
                if follow:
                    out.flush()
        out.flush()
        _report(reader)
    return shown[0]


def _by_root(records: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Each Claude root's records together (roots in order of their first record, each in log order);
    records of no tree (the log's own) keep their place among the roots."""
    groups: Dict[Any, List[Dict[str, Any]]] = {}
    for i, rec in enumerate(records):
        groups.setdefault(_root_key(rec, i), []).append(rec)
    return [rec for group in groups.values() for rec in group]


def _root_key(rec: Dict[str, Any], i: int) -> Any:
    key = rec.get("root_exec_id") or rec.get("root_pid")
    return key if key is not None else ("log", i)


def _report(reader: Any) -> None:
    if reader.torn:
        click.echo(f"rawbpf: tail: skipped {reader.torn} torn record(s) at the end of a file "
                   "(a writer was killed mid-write)", err=True)
    if reader.missing:
        click.echo(f"rawbpf: tail: {reader.missing} record(s) missing (rotated away before they were read, "
                   "or in a damaged region; each place is marked by a 'missing' line)", err=True)
