"""The highest exec rate of a tracked tree logged with zero dropped records; kernel.

A tracked root ("claude") spawns a static no-op program at a target rate from two workers; after each step the
log must hold one exec record per successful spawn, and no `lost` record may have appeared. The rate climbs
until a step drops records or the machine cannot spawn faster; the figure is the best clean achieved rate.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List

from tools.bench.common import MONITOR_OBJ, Context, bpffs_dir, last_json, rawbpf_load, run, scratch
from tools.bench.logs import tree_counts

LADDER = [1000, 2500, 5000, 7500, 10000, 12500, 15000, 20000, 0]  # 0: as fast as the machine goes


def _settle(log_dir: Path, root: int, expect: int, timeout: float = 5.0) -> Dict[str, int]:
    """Wait until the daemon has logged ``expect`` exec records of the tree (or the timeout passes)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = tree_counts(log_dir, root)
        if counts.get("exec", 0) >= expect or time.monotonic() > deadline:
            return counts
        time.sleep(0.25)


def run_section(ctx: Context) -> Dict[str, Any]:
    secs = "1" if ctx.quick else "2"
    storm = str(ctx.tracked("exec_storm"))
    tiny = str(ctx.helper("tiny_true"))
    steps: List[Dict[str, Any]] = []
    best = 0.0
    with bpffs_dir("storm") as pins, scratch("storm-log") as logs, rawbpf_load(MONITOR_OBJ, pins, logs):
        lost_before = tree_counts(logs, -1)["lost"]
        for rate in LADDER:
            res = last_json(run([storm, str(rate), secs, "2", tiny], timeout=120))
            counts = _settle(logs, int(res["pid"]), int(res["execs"]))
            lost = counts["lost"] - lost_before
            lost_before = counts["lost"]
            dropped = int(res["execs"]) - counts.get("exec", 0) + lost
            step = {"target": rate or "max", "achieved": round(float(res["rate"])),
                    "execs": int(res["execs"]), "logged": counts.get("exec", 0), "lost": lost,
                    "dropped": dropped}
            steps.append(step)
            if dropped > 0:
                break
            best = max(best, float(res["rate"]))
            if rate and float(res["rate"]) < 0.8 * rate:
                break  # the machine cannot spawn faster; the last clean step is the figure
    last = steps[-1]
    return {"execs_per_s": round(best), "dropped": 0 if last["dropped"] <= 0 else last["dropped"],
            "dropped_at_rate": last["achieved"] if last["dropped"] > 0 else None, "steps": steps}
