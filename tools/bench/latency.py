"""Event-to-log latency: kernel timestamp of a tracked connect() to the record being readable; kernel.

A tracked root ("claude") makes one connect() every 10 ms while a thread follows the log; each record's
latency is the wall time at which the follower (polling every 5 ms) saw it minus the record's `ts`.
Reported: p50, p99, max.
"""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any, Dict, List

from tools.bench.common import MONITOR_OBJ, Context, Unavailable, bpffs_dir, last_json, rawbpf_load, scratch


def _percentile(values: List[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100.0 * (len(ordered) - 1))))
    return ordered[k]


def run_section(ctx: Context) -> Dict[str, Any]:
    try:
        from rawbpf.logfile import LogReader
    except ImportError as err:
        raise Unavailable("rawbpf.logfile.LogReader is not available yet") from err
    n = 200 if ctx.quick else 1000
    loop = str(ctx.tracked("connect_loop"))
    seen: List[Dict[str, Any]] = []
    stop = threading.Event()
    failure: List[str] = []
    with bpffs_dir("lat") as pins, scratch("lat-log") as logs, rawbpf_load(MONITOR_OBJ, pins, logs):
        proc = subprocess.Popen([loop, str(n), "udp", "9", "10000"], stdout=subprocess.PIPE, text=True)

        def follow() -> None:
            try:
                for rec in LogReader(str(logs)).records(follow=True, poll_interval=0.005):
                    if rec.get("type") == "connect" and rec.get("pid") == proc.pid:
                        seen.append({"ts": int(rec["ts"]), "seen": time.time_ns()})
                    if stop.is_set() or len(seen) >= n:
                        return
            except Exception as err:
                failure.append(f"log follower: {err}")

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        out, _ = proc.communicate(timeout=120)
        last_json(out)
        follower.join(timeout=10)
        stop.set()
    if failure:
        raise RuntimeError(failure[0])
    if len(seen) < n // 2:
        raise RuntimeError(f"only {len(seen)} of {n} connect records reached the log")
    lat_ms = [(s["seen"] - s["ts"]) / 1e6 for s in seen]
    return {"event_to_log_p99_ms": round(_percentile(lat_ms, 99), 2),
            "event_to_log_p50_ms": round(_percentile(lat_ms, 50), 2),
            "event_to_log_max_ms": round(max(lat_ms), 2), "events": len(seen), "sent": n}
