"""Reading the monitor's log for the benchmarks through rawbpf.logfile.LogReader; files only."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator, List

from tools.bench.common import Unavailable


def records(log_dir: Path) -> Iterator[Dict[str, Any]]:
    """Every record in the log directory, oldest first (rotated files included)."""
    try:
        from rawbpf.logfile import LogReader
    except ImportError as err:
        raise Unavailable("rawbpf.logfile.LogReader is not available yet") from err
    with LogReader(str(log_dir)) as reader:
        yield from reader.records()


def tree_counts(log_dir: Path, root_pid: int) -> Dict[str, int]:
    """Records per type in the tree rooted at ``root_pid`` and the total the monitor reported lost."""
    counts: Dict[str, int] = {"lost": 0}
    for rec in records(log_dir):
        kind = str(rec.get("type"))
        if kind == "lost":
            counts["lost"] += int(rec.get("count", 0))
        elif rec.get("root_pid") == root_pid and rec.get("pid") != root_pid:
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def by_pid(log_dir: Path, pid: int, kind: str) -> List[Dict[str, Any]]:
    return [r for r in records(log_dir) if r.get("type") == kind and r.get("pid") == pid]
