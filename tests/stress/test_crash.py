"""Crash safety: kill -9 the monitor daemon at random moments while it logs, 100 times.

After every kill the whole log must still read: every complete record decodes, a torn last record is skipped
(and counted), and ``seq`` runs on by exactly 1 from record to record across files and restarts — a gap would
be a record lost without a ``lost`` record saying so. A tracked tree (a shell started as ``claude``) keeps
exec/fork/exit records flowing the whole time.

A killed daemon cannot unpin: its pinned links keep the monitor attached until the pins are removed. The
restart after each kill finds the pin directory unlocked (the kernel drops a dead owner's flock), removes the
stale pins, and the test checks the killed daemon's programs are then gone; a last clean stop leaves nothing.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Set

import pytest

from rawbpf.errors import RawBPFError
from rawbpf.logfile import LogReader
from rawbpf.programs import Program

ROOT = Path(__file__).resolve().parents[2]
MONITOR = ROOT / "programs" / "claude_monitor.o"
KILLS = int(os.environ.get("RAWBPF_CRASH_KILLS", "100"))
ENV = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")

pytestmark = pytest.mark.usefixtures("root_only")


@pytest.fixture()
def pins() -> Iterator[Path]:
    path = Path("/sys/fs/bpf") / f"rawbpf-crash-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _start(pins: Path, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "rawbpf", "load", str(MONITOR), "--pin-dir", str(pins),
                             "--log-dir", str(log)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, cwd=ROOT)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("attached ") and " programs in " in line:
            return proc
    err = proc.stderr.read() if proc.stderr else ""
    proc.wait()
    pytest.fail(f"monitor did not start: {err.strip()[-400:]}")


def _pinned_prog_ids(root: Path) -> Set[int]:
    ids: Set[int] = set()
    for path in root.rglob("*"):
        for kind, key in (("link", "prog_id"), ("prog", "id")):
            cp = subprocess.run(["bpftool", "-j", kind, "show", "pinned", str(path)], capture_output=True,
                                text=True)
            if cp.returncode == 0:
                ids.add(int(json.loads(cp.stdout)[key]))
                break
    return ids


def _wait_gone(ids: Set[int]) -> None:
    """The programs must disappear once their pins are gone (links are released from a workqueue)."""
    deadline = time.monotonic() + 5.0
    alive = set(ids)
    while alive and time.monotonic() < deadline:
        for prog_id in list(alive):
            try:
                Program.from_id(prog_id).close()
            except RawBPFError:
                alive.discard(prog_id)
        time.sleep(0.05)
    assert not alive, f"programs still loaded after their pins were removed: {sorted(alive)}"


CRASHED: List[int] = []  # writer_pid of each crash record, in log order (filled by _check_log)
DROPS: Dict[int, int] = {}  # writer_pid → kernel_drops of its crash record, across iterations


def _check_log(log: Path) -> List[int]:
    """Read everything; returns [records, torn tails, crash records, kernel drops they report]; fails on a
    seq gap, a damaged region or a crash record that does not name its window."""
    seqs: List[int] = []
    crashes = drops = 0
    CRASHED.clear()
    with LogReader(str(log)) as reader:
        for rec in reader.records():
            seqs.append(int(rec["seq"]))
            if rec["type"] == "crash":
                crashes += 1
                CRASHED.append(rec["writer_pid"])
                DROPS[rec["writer_pid"]] = rec["kernel_drops"]
                assert rec["until"] >= rec["since"] > 0 and isinstance(rec["writer_pid"], int), rec
                assert isinstance(rec.get("kernel_drops"), int), rec
                drops += rec["kernel_drops"]
            assert rec["type"] != "gap", rec  # a kill -9 tears at most the last record: never damage
        torn, gaps = reader.torn, reader.gaps
        assert reader.damaged == 0
    assert gaps == 0
    bad = [(a, b) for a, b in zip(seqs, seqs[1:]) if b != a + 1]
    assert not bad, f"seq jumps without a lost record: {bad[:5]}"
    return [len(seqs), torn, crashes, drops]


def test_kill_9_at_random_moments(pins: Path, tmp_path: Path) -> None:
    rng = random.Random(0xC0DE)
    log = tmp_path / "log"
    claude = tmp_path / "bin" / "claude"
    claude.parent.mkdir()
    claude.symlink_to("/bin/sh")
    load = subprocess.Popen([str(claude), "-c", "while :; do /bin/true; /bin/true; sleep 0.005; done"])
    torn_total = 0
    records = 0
    stale: Set[int] = set()
    killed: List[int] = []
    named: Set[int] = set()  # killed daemons named by a crash record (old files are pruned: collected here)
    try:
        for kill in range(KILLS):
            proc = _start(pins, log)
            _wait_gone(stale)  # the restart took the dead daemon's pins over
            time.sleep(rng.uniform(0.05, 1.5))
            assert proc.poll() is None, f"run {kill}: daemon exited by itself"
            os.kill(proc.pid, signal.SIGKILL)
            killed.append(proc.pid)
            proc.communicate(timeout=30)
            left = pins / "claude_monitor"
            assert left.exists() and any(left.iterdir()), "a killed daemon should leave its pins"
            stale = _pinned_prog_ids(left)
            assert stale, "no pinned programs or links found"
            records, torn, _crashes, _drops = _check_log(log)
            # each restart that got as far as its log named the window its killed predecessor left (one
            # killed before that leaves its window to the next restart's record, which starts earlier)
            assert set(CRASHED) <= set(killed[:-1])
            named.update(CRASHED)
            torn_total += torn
        proc = _start(pins, log)
        _wait_gone(stale)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert err.count("stale pins") == 1, err
        assert not (pins / "claude_monitor").exists(), "a clean stop leaves nothing pinned"
    finally:
        load.kill()
        load.wait()
    records, _torn, _crashes, _drops = _check_log(log)
    named.update(CRASHED)
    assert CRASHED[-1] == killed[-1] and len(named) >= KILLS // 2
    assert records > KILLS  # the log really was being written
    print(f"\ncrash: {KILLS} kill -9, {records} records readable at the end, {torn_total} torn tails "
          f"skipped, {len(named)} killed daemons named by a crash record (the others died before opening "
          f"the log; the next record's window covers them), {sum(DROPS.values())} kernel drops reported in "
          f"crash windows")
