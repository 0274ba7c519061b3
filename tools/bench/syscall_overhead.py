"""What the monitor adds to connect(): ns per call without it, with it (untracked caller), tracked; kernel.

A UDP connect() to 127.0.0.1 sends no packet, so the syscall and its two tracepoints dominate the figure.
Baseline runs are taken before and after the monitor runs and pooled, which cancels slow drift on a shared
machine; each figure is a median of runs.
"""

from __future__ import annotations

from typing import Any, Dict, List

from tools.bench.common import MONITOR_OBJ, Context, bpffs_dir, last_json, median, rawbpf_load, run, scratch


def _runs(cmd: List[str], times: int) -> List[float]:
    return [float(last_json(run(cmd))["ns_per_op"]) for _ in range(times)]


def run_section(ctx: Context) -> Dict[str, Any]:
    n = "50000" if ctx.quick else "200000"
    times = 3 if ctx.quick else 7
    loop = [str(ctx.helper("connect_loop")), n]
    tracked = [str(ctx.tracked("connect_loop")), n]
    base = _runs(loop, times)
    with bpffs_dir("sys") as pins, scratch("sys-log") as logs, rawbpf_load(MONITOR_OBJ, pins, logs):
        with_mon = _runs(loop, times)
        with_tracked = _runs(tracked, times)
    base += _runs(loop, times)
    b, m = median(base), median(with_mon)
    return {
        "connect_baseline_ns": round(b, 1),
        "connect_with_monitor_ns": round(m, 1),
        "connect_tracked_with_monitor_ns": round(median(with_tracked), 1),
        "added_ns": round(m - b, 1),
        "runs": times,
        "calls_per_run": int(n),
    }
