"""Ring overflow: a producer storm against a 4 KiB ring; every attempt is logged or reported lost, exactly.

tests/data/ringbuf/flood.o sends ``per_call`` records per getppid() of ``target_tgid`` and counts each failed
reserve in ``events_drops`` (the daemon's drop-counter convention). The daemon consumes into a log while a
child storms getppid(); afterwards the log must hold ``attempts - lost`` ring records and ``lost`` records
adding up to the rest: nothing is silently missing and nothing is counted twice.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict

import pytest

from rawbpf.collection import Collection
from rawbpf.daemon import Daemon, DaemonOptions
from rawbpf.elf import load_spec
from rawbpf.logfile import LogReader

ROOT = Path(__file__).resolve().parents[2]
FLOOD = ROOT / "tests" / "data" / "ringbuf" / "flood.o"
STORM = "import os, sys\nsys.stdin.readline()\nfor _ in range({calls}):\n    os.getppid()\n"

pytestmark = pytest.mark.usefixtures("root_only")


@pytest.mark.parametrize(("calls", "per_call"), [(200_000, 1), (20_000, 64), (2_000, 1024)])
def test_storm_is_logged_or_reported_lost(calls: int, per_call: int, tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", STORM.format(calls=calls)], stdin=subprocess.PIPE,
                             text=True)
    try:
        spec = load_spec(str(FLOOD))
        with Collection.load(spec, constants={"target_tgid": child.pid, "per_call": per_call}) as coll:
            coll.attach_all()
            done = threading.Event()
            daemon = Daemon(coll, DaemonOptions(log_dir=str(tmp_path), rings=["events"]))
            result: Dict[str, Any] = {}
            thread = threading.Thread(
                target=lambda: result.update(daemon.run(stop=done.is_set, signals=False)), daemon=True)
            thread.start()
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.wait(timeout=300) == 0
            done.set()
            thread.join(timeout=60)
            assert not thread.is_alive()
            daemon.close()
            attempts = int(coll.variables["attempts"])
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    logged = lost = 0
    seqs = []
    with LogReader(str(tmp_path)) as reader:
        for rec in reader.records():
            seqs.append(rec["seq"])
            if rec["type"] == "lost":
                assert rec.get("reason") == "kernel", rec
                lost += int(rec["count"])
            elif rec["type"] != "header":
                logged += 1
    assert attempts == calls * per_call
    assert logged + lost == attempts, f"logged {logged} + lost {lost} != produced {attempts}"
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "seq gaps in the log"
    print(f"\noverflow {calls}x{per_call}: produced {attempts}, logged {logged}, lost {lost} "
          f"({100.0 * lost / attempts:.1f}%)")
