"""Measure ``rawbpf load OBJ`` wall time from process start until it reports its programs attached.

usage: sudo python3 tools/bench_load.py [OBJ] [--runs N]   (default: tests/data/tracepoints5.o, 10 runs)

Each run starts a fresh ``python -m rawbpf load`` (interpreter start-up and imports included), waits for the
"… Ctrl-C or SIGTERM to stop" line, stops it with SIGINT and checks it exited 0. Prints min/median/max.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one_run(obj: str, pin_root: str) -> float:
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "rawbpf", "load", obj, "--pin-dir", pin_root], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    elapsed = -1.0
    for line in proc.stdout:
        if "Ctrl-C or SIGTERM to stop" in line:
            elapsed = time.monotonic() - t0
            break
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    if elapsed < 0 or proc.returncode != 0:
        raise SystemExit(f"bench_load: rawbpf load failed (exit {proc.returncode}): {err.strip()}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("obj", nargs="?", default=str(ROOT / "tests" / "data" / "tracepoints5.o"))
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    pin_root = f"/sys/fs/bpf/rawbpf-bench-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    times = [one_run(args.obj, pin_root) for _ in range(args.runs)]
    try:
        os.rmdir(pin_root)
    except OSError:
        pass
    print(f"rawbpf load {Path(args.obj).name} until attached, {args.runs} runs: "
          f"min {min(times):.3f} s, median {statistics.median(times):.3f} s, max {max(times):.3f} s")


if __name__ == "__main__":
    main()
