"""What ``rawbpf status`` shows about shipping: one status file per destination, kept by the running
shipper next to its cursor, and the cursors themselves when no shipper runs; touches files only.

``<log-dir>/ship-<key>.status.json`` is replaced atomically about once a second while ``rawbpf ship`` runs
and removed when it stops. Whether a shipper runs is decided by its lock (``ship-<key>.lock``, held with
``flock``), so a status file left by a killed shipper is recognised as stale. "Records behind" is the
newest seq in the log minus the cursor.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
import time
from typing import Any, Dict, List, Optional

from rawbpf.ship.cursor import PREFIX, SUFFIX, cursor_files, read_cursor

__tier__ = "files"

__all__ = ["write_status", "remove_status", "collect", "format_text"]


def _status_path(log_dir: str, key: str) -> str:
    return os.path.join(log_dir, f"{PREFIX}{key}.status.json")


def write_status(log_dir: str, data: Dict[str, Any]) -> None:
    """Replace a destination's status file atomically (best effort: status never stops shipping)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".ship-status-", dir=log_dir)
    except OSError:
        return
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, sort_keys=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, _status_path(log_dir, str(data["key"])))
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def remove_status(log_dir: str, key: str) -> None:
    try:
        os.unlink(_status_path(log_dir, key))
    except OSError:
        pass


def _locked(path: str) -> bool:
    """Whether a running shipper holds the lock file ``path``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as err:
        return err.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)
    return False


def _last_seq(log_dir: str) -> Optional[int]:
    from rawbpf.logfile import LogReader

    try:
        with LogReader(log_dir) as reader:
            last = reader.tail(1)
    except Exception:
        return None
    seq = last[0].get("seq") if last else None
    return seq if isinstance(seq, int) else None


def collect(log_dir: str) -> List[Dict[str, Any]]:
    """Every destination that has a cursor in ``log_dir``: running or not, connected, cursor, records
    behind, last error, counters."""
    out: List[Dict[str, Any]] = []
    paths = cursor_files(log_dir)
    keys = {os.path.basename(p)[len(PREFIX):-len(SUFFIX)] for p in paths}
    try:
        keys |= {n[len(PREFIX):-len(".status.json")] for n in os.listdir(log_dir)
                 if n.startswith(PREFIX) and n.endswith(".status.json")}
    except OSError:
        return []
    if not keys:
        return []
    newest = _last_seq(log_dir)
    for key in sorted(keys):
        running = _locked(os.path.join(log_dir, f"{PREFIX}{key}.lock"))
        d: Dict[str, Any] = {"key": key, "running": running, "connected": False}
        if running:
            try:
                with open(_status_path(log_dir, key)) as f:
                    d.update(json.load(f))
            except (OSError, ValueError):
                pass
            d["running"] = True
        try:
            cur = read_cursor(os.path.join(log_dir, f"{PREFIX}{key}{SUFFIX}"))
        except Exception as err:
            cur = None
            d["last_error"] = str(err)
        if cur is not None:
            d.setdefault("url", cur.url)
            d["cursor"] = {"seq": cur.seq, "file": cur.file, "updated": cur.updated}
        d.setdefault("url", key)
        seq = (d.get("cursor") or {}).get("seq")
        d["log_seq"] = newest
        d["behind"] = (newest - seq if seq is not None else newest + 1) if newest is not None else None
        out.append(d)
    return out


def _ago(ns: int) -> str:
    s = max(0, int((time.time_ns() - ns) / 1e9))
    return f"{s}s ago" if s < 120 else f"{s // 60}m ago" if s < 7200 else f"{s // 3600}h ago"


def format_text(dests: List[Dict[str, Any]]) -> str:
    """Readable lines, one block per destination (pure)."""
    lines = ["shipping:"]
    for d in dests:
        if not d.get("running"):
            state = "not running"
        elif d.get("fatal"):
            state = f"stopped: {d['fatal']}"
        else:
            state = "connected" if d.get("connected") else "not connected"
        cur = d.get("cursor") or {}
        seq = cur.get("seq")
        behind = d.get("behind")
        lines.append(f"  {d.get('url')}: {state}; cursor {'-' if seq is None else seq}"
                     f"{' (' + cur['file'] + ')' if cur.get('file') else ''}, "
                     f"behind {'?' if behind is None else behind}")
        c = d.get("counters")
        if c:
            lines.append(f"    sent {c.get('sent', 0)}, acked {c.get('acked', 0)}, "
                         f"resent {c.get('resent', 0)}, "
                         f"unshipped {c.get('unshipped', 0)}, waiting for ack {d.get('inflight', 0)}, "
                         f"connects {c.get('connects', 0)}, failures {c.get('failures', 0)}")
        if d.get("last_error"):
            when = f" ({_ago(d['last_error_at'])})" if d.get("last_error_at") else ""
            lines.append(f"    last error: {d['last_error']}{when}")
    return "\n".join(lines)
