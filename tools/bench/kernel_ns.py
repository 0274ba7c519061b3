"""Kernel cost of the monitor's handlers: BPF stats (run time / count) under connect and exec loops; kernel.

connect_untracked: a process the monitor does not track calls connect() in a loop; the figure is the summed
handler time of the connect handlers per connect() call. connect_tracked: the same loop run as "claude" (a
tracked root). exec_tracked: a tracked root spawns a static no-op program repeatedly; summed exec-handler time
per exec. Per-program figures are kept under "handlers" so a regression points at its handler.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List

from tools.bench.common import (
    MONITOR_OBJ,
    Context,
    Unavailable,
    bpf_stats,
    bpffs_dir,
    last_json,
    pinned_prog_ids,
    prog_stats,
    rawbpf_load,
    run,
    scratch,
)


def _delta(before: Dict[str, Dict[str, int]], after: Dict[str, Dict[str, int]]) -> Dict[str, Dict[str, int]]:
    return {n: {k: after[n][k] - before[n][k] for k in ("run_cnt", "run_time_ns")} for n in after}


def _per_event(delta: Dict[str, Dict[str, int]], match: Callable[[str], bool]) -> float:
    """Summed run time of the matching handlers divided by the events (the busiest handler's run count)."""
    chosen = {n: d for n, d in delta.items() if match(n)}
    if not chosen:
        raise Unavailable(f"no matching handler among {sorted(delta)}")
    events = max(d["run_cnt"] for d in chosen.values())
    if events == 0:
        raise RuntimeError(f"handlers {sorted(chosen)} never ran")
    return round(sum(d["run_time_ns"] for d in chosen.values()) / events, 1)


def _measure(ids: Dict[str, int], cmd: List[str]) -> Dict[str, Dict[str, int]]:
    before = prog_stats(ids)
    last_json(run(cmd, timeout=300))
    return _delta(before, prog_stats(ids))


def run_section(ctx: Context) -> Dict[str, Any]:
    n = "50000" if ctx.quick else "300000"
    loop = str(ctx.helper("connect_loop"))
    tracked_loop = str(ctx.tracked("connect_loop"))
    storm = str(ctx.tracked("exec_storm"))
    tiny = str(ctx.helper("tiny_true"))
    out: Dict[str, Any] = {"handlers": {}}
    with bpffs_dir("kns") as pins, scratch("kns-log") as logs, bpf_stats(), \
            rawbpf_load(MONITOR_OBJ, pins, logs):
        ids = pinned_prog_ids(pins)
        if not ids:
            raise Unavailable("rawbpf load pinned no programs or links under --pin-dir")

        def is_connect(name: str) -> bool:
            return "connect" in name

        def is_exec(name: str) -> bool:
            return "exec" in name

        d = _measure(ids, [loop, n])
        out["connect_untracked"] = _per_event(d, is_connect)
        out["handlers"]["connect_untracked"] = d
        d = _measure(ids, [tracked_loop, n])
        out["connect_tracked"] = _per_event(d, is_connect)
        out["handlers"]["connect_tracked"] = d
        d = _measure(ids, [storm, "2000", "1" if ctx.quick else "3", "2", tiny])
        out["exec_tracked"] = _per_event(d, is_exec)
        out["handlers"]["exec_tracked"] = d
        out["exec_tracked_all_handlers_per_exec"] = _per_event(d, lambda name: True)
    return out
