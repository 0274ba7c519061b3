"""Load time: ``rawbpf load`` until "attached" (wall s, peak RSS) against ``bpftool prog loadall``; kernel.

Measures the monitor object (programs/claude_monitor.o) and the five-tracepoint CO-RE corpus object
(tests/data/tracepoints5.o); each figure is the median of several cold process starts. ``*_s`` is measured
from spawning the process (interpreter start-up included); ``*_self_reported_s`` is what rawbpf prints.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List

from tools.bench.common import MONITOR_OBJ, ROOT, Context, bpffs_dir, median, rawbpf_load, run, scratch

TP5 = ROOT / "tests" / "data" / "tracepoints5.o"


def _rawbpf(obj: Path, runs: int) -> Dict[str, float]:
    walls: List[float] = []
    reported: List[float] = []
    rss: List[float] = []
    for i in range(runs + 1):  # the first start only fills the bytecode cache
        with bpffs_dir("load") as pins, scratch("load-log") as logs, rawbpf_load(obj, pins, logs) as d:
            if i == 0:
                continue
            walls.append(d.attached_s)
            reported.append(d.reported_s)
            rss.append(d.rss_mb)
    return {"s": round(median(walls), 4), "self_s": round(median(reported), 4), "rss_mb": round(max(rss), 1)}


def _bpftool(obj: Path, runs: int) -> float:
    walls = []
    for _ in range(runs):
        with bpffs_dir("bpftool") as pins:
            t0 = time.perf_counter()
            run(["bpftool", "prog", "loadall", str(obj), str(pins), "pinmaps", str(pins / "maps")],
                timeout=60)
            walls.append(time.perf_counter() - t0)
    return round(median(walls), 4)


def run_section(ctx: Context) -> Dict[str, Any]:
    runs = 3 if ctx.quick else 7
    out: Dict[str, Any] = {}
    try:
        mon = _rawbpf(MONITOR_OBJ, runs)
        out["rawbpf_s"], out["rawbpf_rss_mb"] = mon["s"], mon["rss_mb"]
        out["rawbpf_self_reported_s"] = mon["self_s"]
    except Exception as err:
        out["rawbpf_s"] = out["rawbpf_rss_mb"] = f"error: {err}"
    try:
        out["bpftool_s"] = _bpftool(MONITOR_OBJ, runs) if MONITOR_OBJ.exists() else "error: monitor not built"
    except Exception as err:
        out["bpftool_s"] = f"error: {err}"
    try:
        tp5 = _rawbpf(TP5, runs)
        out["tracepoints5_rawbpf_s"], out["tracepoints5_rawbpf_rss_mb"] = tp5["s"], tp5["rss_mb"]
        out["tracepoints5_rawbpf_self_reported_s"] = tp5["self_s"]
    except Exception as err:
        out["tracepoints5_rawbpf_s"] = f"error: {err}"
    try:
        out["tracepoints5_bpftool_s"] = _bpftool(TP5, runs)
    except Exception as err:
        out["tracepoints5_bpftool_s"] = f"error: {err}"
    out["runs"] = runs
    return out
