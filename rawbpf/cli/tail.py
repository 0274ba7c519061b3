"""``rawbpf tail``: print the msgpack log, optionally following it across rotation; needs no privileges.

Reads every file of the log directory in order (:class:`rawbpf.logfile.LogReader`); ``-f`` keeps following
like ``tail -F`` without losing or repeating a record. ``--json`` prints one JSON object per line with the
record's own keys (byte strings as hex); the default is one readable line per record: local time, type, pid
and comm, then the record's other fields. File ``header`` records are shown only with ``--type header``.

Nothing is hidden: a damaged region is skipped with one line on stderr naming the file, offset and bytes
skipped (``-f`` keeps following), and where records are missing from the sequence (rotated away before they
were read, or in a damaged region) a ``missing`` line stands in their place, also with ``--json``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import sys
import time
from collections import deque
from typing import Any, Deque, Dict, Iterable, Iterator, Optional, Sequence, Set

import click

from rawbpf.cli.common import log_dir_option
from rawbpf.errors import ConfigError
from rawbpf.termsafe import escape, escape_json

__tier__ = "files"

# fields every monitor record has that the readable line shows up front or leaves out
_FRONT = ("seq", "ts", "type", "pid", "comm")
_QUIET = {"tid", "ppid", "uid", "root_pid", "depth", "flags"}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: Optional[float] = None) -> int:
    """``--since`` → ns since the epoch. Accepts ``90s``/``10m``/``2h``/``1d`` ago, an ISO date or time
    (``2026-11-21``, ``2026-11-21T08:30``, ``08:30:15`` today, local time), or epoch seconds
    (``@1763700000``)."""
    now = time.time() if now is None else now
    t = text.strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", t)
    if m:
        return int((now - float(m.group(1)) * _UNITS[m.group(2)]) * 1e9)
    if t.startswith("@") and re.fullmatch(r"@\d+(\.\d+)?", t):
        return int(float(t[1:]) * 1e9)
    if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?", t):
        today = _dt.datetime.fromtimestamp(now).date().isoformat()
        t = f"{today}T{t}"
    try:
        when = _dt.datetime.fromisoformat(t.replace(" ", "T", 1))
    except ValueError:
        raise ConfigError(f"--since '{text}': expected e.g. 10m, 2h, 2026-11-21T08:30, 08:30 or @EPOCH") \
            from None
    return int(when.timestamp() * 1e9)


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _value_text(v: Any) -> str:
    if isinstance(v, bytes):
        return v.hex() if v else "''"
    if isinstance(v, str):
        text = escape(v)  # no control character reaches the terminal; backslashes are escaped
        return '"' + text.replace('"', '\\"') + '"' if (not text or re.search(r"[\s\"=]", text)) \
            else text
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_value_text(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{escape(str(k))}={_value_text(x)}" for k, x in v.items()) + "}"
    return escape(str(v))


def json_line(rec: Dict[str, Any]) -> str:
    """One record as a line of JSON: its exact keys and values (byte strings as hex), with the characters
    JSON leaves raw but a terminal acts on (DEL, C1, lone surrogates) written as \\u escapes."""
    return escape_json(json.dumps(_jsonable(rec), ensure_ascii=False))


def format_time(ts: Any) -> str:
    if not isinstance(ts, int):
        return "-"
    d = _dt.datetime.fromtimestamp(ts / 1e9)
    return d.strftime("%Y-%m-%d %H:%M:%S.") + f"{(ts // 1000) % 1_000_000:06d}"


def format_record(rec: Dict[str, Any]) -> str:
    """One readable line: time, type, pid/comm, then the other fields as key=value."""
    parts = [format_time(rec.get("ts")), f"{escape(str(rec.get('type', '?'))):<8}"]
    pid, comm = rec.get("pid"), rec.get("comm")
    if pid is not None or comm is not None:
        who = escape(f"{pid if pid is not None else '-'}")
        if comm:
            who += f"/{escape(str(comm))}"
        parts.append(f"{who:<22}")
    rest = [f"{escape(str(k))}={_value_text(v)}" for k, v in rec.items()
            if k not in _FRONT and k not in _QUIET]
    return " ".join(parts + rest).rstrip()


def _matches(rec: Dict[str, Any], types: Set[str], pids: Set[int], since: Optional[int]) -> bool:
    rtype = rec.get("type")
    if rtype == "missing" and "seq" not in rec:  # the reader's own note of records it could not show
        return True
    if types:
        if rtype not in types:
            return False
    elif rtype == "header":
        return False
    if pids and rec.get("pid") not in pids and rec.get("root_pid") not in pids:
        return False
    if since is not None:
        ts = rec.get("ts")
        if not isinstance(ts, int) or ts < since:
            return False
    return True


def select_records(records: Iterable[Dict[str, Any]], types: Set[str], pids: Set[int],
                   since: Optional[int]) -> Iterator[Dict[str, Any]]:
    for rec in records:
        if _matches(rec, types, pids, since):
            yield rec


@click.command("tail")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new records, across rotation.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (NDJSON), the record's keys.")
@click.option("--type", "types", multiple=True, metavar="T", help="Only records of type T (repeatable).")
@click.option("--pid", "pids", multiple=True, type=int, metavar="P",
              help="Only records of process P or of the tree it roots (pid or root_pid; repeatable).")
@click.option("--since", metavar="WHEN", help="Only records from WHEN on: 10m, 2h, 2026-11-21T08:30, 08:30.")
@click.option("-n", "--lines", "count", type=click.IntRange(min=0), default=None,
              help="Print only the last N matching records (then follow, with -f).")
@click.option("--poll-interval", type=click.FloatRange(min=0.01), default=0.2, show_default=True,
              hidden=True)
@log_dir_option
def tail(follow: bool, as_json: bool, types: Sequence[str], pids: Sequence[int], since: Optional[str],
         count: Optional[int], poll_interval: float, log_dir: str) -> None:
    """Print the records of the log in LOG_DIR, oldest first, across all its files."""
    from rawbpf.logfile import LogReader

    since_ns = parse_since(since) if since else None
    if follow:
        while not os.path.isdir(log_dir):  # like tail -F: wait for the log to appear
            time.sleep(poll_interval)
    tset, pset = set(types), set(pids)
    out = sys.stdout
    emit = (lambda r: out.write(json_line(r) + "\n")) if as_json else (
        lambda r: out.write(format_record(r) + "\n"))
    def damage(path: str, offset: int, n: int) -> None:
        out.flush()
        click.echo(f"rawbpf: tail: {escape(path)}: skipped {n} damaged bytes at offset {offset}", err=True)

    with LogReader(log_dir, on_damage=damage, mark_missing=True) as reader:
        last_seq: Optional[int] = None
        if count is not None:
            keep: Deque[Dict[str, Any]] = deque(maxlen=count)
            last: Optional[Dict[str, Any]] = None
            for rec in reader.records(since_ns=since_ns):
                last = rec
                if _matches(rec, tset, pset, since_ns) and count:
                    keep.append(rec)
            for rec in keep:
                emit(rec)
            out.flush()
            if last is not None and isinstance(last.get("seq"), int):
                last_seq = last["seq"]
            if not follow:
                _report(reader)
                return
        stream = reader.records(follow=follow, poll_interval=poll_interval, since_ns=since_ns,
                                start_after_seq=last_seq)
        for rec in select_records(stream, tset, pset, since_ns):
            emit(rec)
            if follow:
                out.flush()
        _report(reader)


def _report(reader: Any) -> None:
    if reader.torn:
        click.echo(f"rawbpf: tail: skipped {reader.torn} torn record(s) at the end of a file "
                   "(a writer was killed mid-write)", err=True)
    if reader.missing:
        click.echo(f"rawbpf: tail: {reader.missing} record(s) missing (rotated away before they were read, "
                   "or in a damaged region; each place is marked by a 'missing' line)", err=True)
