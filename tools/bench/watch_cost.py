"""What watching costs: the monitor's own CPU on an idle host and during a busy tracked session, and its RSS
after a million records; kernel.

CPU is the daemon's user + kernel time (/proc/PID/stat, all threads) plus the run time of its BPF programs
(BPF stats), over a measured window, as a percentage of one CPU and as CPU seconds per hour. "Idle" is this
host as it is, with no tracked process: the programs still run for every untracked event of everything else
running here, and return early. "Busy" is a tracked tree exec'ing ``BUSY_RATE`` programs a second. The RSS
figure is the daemon's resident set (and its peak) once it has logged at least 1,000,000 records.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Dict

from rawbpf.monitor.status import STATUS_NAME
from tools.bench.common import (
    MONITOR_OBJ,
    Context,
    bpf_stats,
    bpffs_dir,
    last_json,
    pinned_prog_ids,
    prog_stats,
    rawbpf_load,
    run,
    scratch,
)
from tools.bench.exec_storm import cpu_s

BUSY_RATE = 1000
#: the exec rate that fills the log: about what the daemon keeps up with here (faster only loses records)
FILL_RATE = 7000
MILLION = 1_000_000


def _bpf_ns(ids: Dict[str, int]) -> int:
    return sum(s["run_time_ns"] for s in prog_stats(ids).values())


def _window(pid: int, ids: Dict[str, int], secs: float, during: Any = None) -> Dict[str, float]:
    cpu0, ns0, t0 = cpu_s(pid), _bpf_ns(ids), time.monotonic()
    if during is not None:
        during()
    left = secs - (time.monotonic() - t0)
    if left > 0:
        time.sleep(left)
    cpu1, ns1, wall = cpu_s(pid), _bpf_ns(ids), time.monotonic() - t0
    user, sys_ = cpu1["user"] - cpu0["user"], cpu1["sys"] - cpu0["sys"]
    bpf = (ns1 - ns0) / 1e9
    pct = 100.0 * (user + sys_ + bpf) / wall
    return {"cpu_pct": round(pct, 3), "cpu_s_per_hour": round(pct * 36.0, 1), "user_s": round(user, 3),
            "sys_s": round(sys_, 3), "bpf_s": round(bpf, 4), "window_s": round(wall, 1)}


def _status(pid: int) -> Dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024.0
    return out


def _logged(log_dir: Path, after: int = -1, timeout: float = 15.0) -> int:
    """Records the daemon has written, from its status file; waits (up to ``timeout``) for a count past
    ``after``."""
    deadline = time.monotonic() + timeout
    count = 0
    while True:
        try:
            count = int(json.loads((log_dir / STATUS_NAME).read_text())["log"]["records"])
        except (OSError, ValueError, KeyError):
            pass
        if count > after or time.monotonic() > deadline:
            return count
        time.sleep(0.5)


def run_section(ctx: Context) -> Dict[str, Any]:
    idle_s = 10.0 if ctx.quick else 30.0
    target = 100_000 if ctx.quick else MILLION
    storm = str(ctx.tracked("exec_storm"))
    tiny = str(ctx.helper("tiny_true"))
    out: Dict[str, Any] = {}
    with bpffs_dir("watch") as pins, scratch("watch-log") as logs, bpf_stats(), \
            rawbpf_load(MONITOR_OBJ, pins, logs, extra=["--max-bytes", str(1 << 40)]) as d:
        pid = d.proc.pid
        ids = pinned_prog_ids(pins)
        if not ids:
            raise RuntimeError("no pinned programs of the monitor found")
        time.sleep(2.0)  # start-up work (seeding from /proc) is not watching
        idle = _window(pid, ids, idle_s)
        out["idle_cpu_pct"], out["idle_cpu_s_per_hour"], out["idle"] = \
            idle["cpu_pct"], idle["cpu_s_per_hour"], idle
        secs = "3" if ctx.quick else "10"
        busy = _window(pid, ids, 0, lambda: last_json(run([storm, str(BUSY_RATE), secs, "2", tiny],
                                                          timeout=120)))
        out["busy_cpu_pct"], out["busy_cpu_s_per_hour"], out["busy"] = \
            busy["cpu_pct"], busy["cpu_s_per_hour"], busy
        out["busy_execs_per_s"] = BUSY_RATE
        # a million records: storms at FILL_RATE until the daemon has written them (its own count, from the
        # status file it rewrites every few seconds)
        logged = _logged(logs)
        t0 = time.monotonic()
        while logged < target:
            if time.monotonic() - t0 > 900:
                raise RuntimeError(f"only {logged} records logged after 15 minutes")
            res = last_json(run([storm, str(FILL_RATE), "10", "2", tiny], timeout=300))
            if not res.get("execs"):
                raise RuntimeError("the exec storm spawned nothing")
            logged = _logged(logs, after=logged)
        mem = _status(pid)
        out["records"] = logged
        out["rss_mb_after_1m" if target == MILLION else "rss_mb_after_100k"] = round(mem["VmRSS"], 1)
        out["peak_rss_mb"] = round(mem["VmHWM"], 1)
        out["fill_s"] = round(time.monotonic() - t0, 1)
    out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return out
