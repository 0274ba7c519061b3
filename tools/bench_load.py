"""Measure ``rawbpf load OBJ`` wall time from process start until it reports its programs attached.

usage: sudo python3 tools/bench_load.py [OBJ] [--runs N]   (default: tests/data/tracepoints5.o, 10 runs)

Each run starts a fresh ``python -m rawbpf load`` (interpreter start-up and imports included; module bytecode
cached as in an installed package unless --no-bytecode-cache), waits for the
"… Ctrl-C or SIGTERM to stop" line, stops it with SIGINT and checks it exited 0. Prints wall min/median/max
and the median CPU time used by then (user + system, not inflated by other load on the machine).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Dict, Tuple

ROOT = Path(__file__).resolve().parent.parent


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (immune to other load on the machine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(obj: str, pin_root: str, env: Dict[str, str]) -> Tuple[float, float]:
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "rawbpf", "load", obj, "--pin-dir", pin_root], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    elapsed = cpu = -1.0
    for line in proc.stdout:
        if "Ctrl-C or SIGTERM to stop" in line:
            elapsed = time.monotonic() - t0
            cpu = _cpu_seconds(proc.pid)
            break
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    if elapsed < 0 or proc.returncode != 0:
        raise SystemExit(f"bench_load: rawbpf load failed (exit {proc.returncode}): {err.strip()}")
    return elapsed, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("obj", nargs="?", default=str(ROOT / "tests" / "data" / "tracepoints5.o"))
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--no-bytecode-cache", action="store_true",
                    help="compile every module from source each run (as with PYTHONDONTWRITEBYTECODE=1)")
    args = ap.parse_args()
    pin_root = f"/sys/fs/bpf/rawbpf-bench-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    env = dict(os.environ)
    cache = tempfile.mkdtemp(prefix="rawbpf-bench-pyc-")
    if args.no_bytecode_cache:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:  # an installed package has its bytecode compiled; keep it out of the checkout
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = cache
        one_run(args.obj, pin_root, env)  # warm-up run fills the cache
    try:
        runs = [one_run(args.obj, pin_root, env) for _ in range(args.runs)]
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    times = [wall for wall, _ in runs]
    cpus = [cpu for _, cpu in runs]
    try:
        os.rmdir(pin_root)
    except OSError:
        pass
    mode = "compiling from source" if args.no_bytecode_cache else "bytecode cached"
    print(f"rawbpf load {Path(args.obj).name} until attached, {args.runs} runs, {mode}: "
          f"wall min {min(times):.3f} s, median {statistics.median(times):.3f} s, max {max(times):.3f} s; "
          f"CPU median {statistics.median(cpus):.2f} s; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
