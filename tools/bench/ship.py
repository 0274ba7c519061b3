"""Shipping throughput: records per second from a full log to each kind of destination over loopback, and
the shipper's memory; no kernel.

A log of monitor-like records (exec/connect/exit/fork, ~140 bytes of msgpack each) is written first; then
``rawbpf ship --drain`` pinned to one CPU (taskset) ships all of it to a real server on loopback and exits
when the last record is acknowledged: FluentServer (@fluent-org/logger under node, counting entries) for
Forward, rsyslogd (imtcp, octet counting, writing a file) for syslog, rsyslogd's imrelp for RELP.

Figures per destination: ``*_per_core`` = records / CPU seconds (user + system) of the ship process, start-up
beyond a run on an empty log (interpreter start-up and connecting), i.e. what one core of shipping sustains;
``*_end_to_end`` = records / wall seconds (same subtraction), which the receiving server and everything else
running on the machine also bound; ``*_rss_mb`` = the ship process's peak RSS. Medians of three runs; the
machine's load average is recorded beside them (the figures are CPU-time based, but a busy machine still
slows every process down).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

from tools.bench.common import ROOT, Context, Unavailable, child_env, median, scratch


def _write_log(log_dir: Path, n: int) -> int:
    from rawbpf.logfile import LogReader, LogWriter

    sys.path.insert(0, str(ROOT))
    from tests.ship.servers import record

    types = ("exec", "connect", "exit", "fork")
    with LogWriter(str(log_dir), backups=1000) as w:
        batch: List[Dict[str, Any]] = []
        for i in range(n):
            batch.append(record(i, types[i % 4]))
            if len(batch) == 1000:
                w.write_many(batch)
                batch = []
        w.write_many(batch)
    with LogReader(str(log_dir)) as r:
        return sum(1 for _ in r.records())


def _ship(log_dir: Path, url: str) -> Dict[str, float]:
    for p in log_dir.glob("ship-*"):
        p.unlink()
    cmd = ["taskset", "-c", "0", sys.executable, "-m", "rawbpf", "ship", "--to", url, "--log-dir",
           str(log_dir), "--drain"]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env(),
                            cwd=ROOT)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    out = proc.stdout.read() if proc.stdout else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"rawbpf ship exited {proc.returncode}: {out.strip().splitlines()[-1:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024.0}


def run_section(ctx: Context) -> Dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    try:
        from tests.ship.servers import Fluent, Rsyslog, node_ready, wait_for
    except ImportError as err:
        raise Unavailable(f"tests/ship/servers.py: {err}") from err
    why = node_ready()
    if why:
        raise Unavailable(why)
    n = 30_000 if ctx.quick else 300_000
    out: Dict[str, Any] = {"records": n}
    with scratch("ship") as work:
        log_dir = work / "log"
        total = _write_log(log_dir, n)
        out["log_mb"] = round(sum(p.stat().st_size for p in log_dir.glob("*.mlog")) / 1e6, 1)

        empty = work / "empty"
        _write_log(empty, 0)  # a log holding only its header: the cost of starting and stopping

        def record(name: str, url: str) -> int:
            base = _ship(empty, url)
            runs = [_ship(log_dir, url) for _ in range(1 if ctx.quick else 3)]
            out[f"{name}_per_core"] = round(median([total / max(1e-3, r["cpu"] - base["cpu"]) for r in runs]))
            out[f"{name}_end_to_end"] = round(median([total / max(1e-3, r["wall"] - base["wall"])
                                                      for r in runs]))
            out[f"{name}_rss_mb"] = round(max(r["rss_mb"] for r in runs), 1)
            return len(runs)

        with Fluent(work, count_only=True) as fluent:
            record("forward", f"forward://127.0.0.1:{fluent.port}")
        with Fluent(work, count_only=True) as fluent:
            record("forward_gzip", f"forward://127.0.0.1:{fluent.port}?gzip=1")
        with Rsyslog(work) as rs:
            k = record("syslog", f"syslog+tcp://127.0.0.1:{rs.tcp_port}")
            wait_for(lambda: rs.out.exists() and _lines(rs.out) >= k * total + 1, 120, "rsyslog's file")
        with Rsyslog(work) as rs:
            k = record("relp", f"relp://127.0.0.1:{rs.relp_port}")
            wait_for(lambda: rs.out.exists() and _lines(rs.out) >= k * total + 1, 120, "rsyslog's file")
    out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return out


def _lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
