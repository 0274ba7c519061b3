"""``rawbpf load`` after ``kill -9``: a restart takes over the dead owner's pins; a live owner is refused.

A killed daemon cannot unpin: its pinned links keep the programs attached. The pin directory's flock (released
by the kernel when the owner dies) and its owner record tell a restart that the pins are stale, so it removes
them (detaching the old programs), says so in one warning line, and starts; the log's seq runs on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Set

from load_support import wait_attached
from patience import patience

from rawbpf.attach import Link
from rawbpf.consts import MapType
from rawbpf.errors import RawBPFError
from rawbpf.logfile import LogReader
from rawbpf.maps import Map
from rawbpf.programs import Program

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
MONITOR = ROOT / "programs" / "claude_monitor.o"


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rawbpf", "load", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=patience(30))
    assert proc.returncode == 0, err
    return err


def _linked_prog_ids(obj_dir: Path) -> Set[int]:
    ids: Set[int] = set()
    for path in sorted((obj_dir / "links").iterdir()):
        with Link.from_pin(str(path)) as lnk:
            ids.add(lnk.info().prog_id)
    return ids


def _loaded(prog_id: int) -> bool:
    try:
        Program.from_id(prog_id).close()
    except RawBPFError:
        return False
    return True


def _wait_gone(ids: Set[int]) -> Set[int]:
    """Programs still loaded after 5 s (links are released from a workqueue, so give them a moment)."""
    deadline = time.monotonic() + patience(5.0)
    alive = set(ids)
    while alive and time.monotonic() < deadline:
        alive = {i for i in alive if _loaded(i)}
        time.sleep(0.02)
    return alive


def _seqs(log_dir: Path) -> List[int]:
    with LogReader(str(log_dir)) as reader:
        return [int(r["seq"]) for r in reader.records()]


def _wait_records(log_dir: Path, more_than: int, timeout: float = patience(10.0)) -> List[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seqs = _seqs(log_dir) if log_dir.exists() else []
        if len(seqs) > more_than:
            return seqs
        time.sleep(0.02)
    raise AssertionError(f"the log never had more than {more_than} records")


def _claude_execs(tmp_path: Path) -> None:
    """A process named claude that runs a few children: tracked, so the monitor logs their execs."""
    claude = tmp_path / "bin" / "claude"
    if not claude.exists():
        claude.parent.mkdir(exist_ok=True)
        claude.symlink_to("/bin/sh")
    subprocess.run([str(claude), "-c", "for i in 1 2 3; do /bin/true; done"], check=True,
                   timeout=patience(30))


def test_restart_after_kill_9_takes_over_stale_pins(pin_dir: Path, tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    obj_dir = pin_dir / "claude_monitor"
    first = _start(str(MONITOR), "--pin-dir", str(pin_dir), "--log-dir", str(log_dir))
    wait_attached(first)
    _wait_records(log_dir, 0)  # the header: the log is open
    _claude_execs(tmp_path)
    _wait_records(log_dir, 3)
    old_ids = _linked_prog_ids(obj_dir)
    assert old_ids
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=patience(30))
    assert all(_loaded(i) for i in old_ids), "pinned links keep a killed daemon's programs loaded"
    before = _seqs(log_dir)

    status = subprocess.run([sys.executable, "-m", "rawbpf", "status", "--log-dir", str(log_dir),
                             "--pin-dir", str(pin_dir)], cwd=ROOT, capture_output=True, text=True,
                            timeout=patience(60))
    assert status.returncode == 1
    assert status.stderr.strip().splitlines() == [
        f"rawbpf: status: claude_monitor is not running (stale pins from pid {first.pid} in {obj_dir}; "
        "the next rawbpf load removes them)"]

    second = _start(str(MONITOR), "--pin-dir", str(pin_dir), "--log-dir", str(log_dir))
    try:
        wait_attached(second)
        assert not _wait_gone(old_ids), "the stale pins' programs are still loaded"
        _wait_records(log_dir, len(before))
        _claude_execs(tmp_path)
        _wait_records(log_dir, len(before) + 3)
        new_ids = _linked_prog_ids(obj_dir)
        assert new_ids and not new_ids & old_ids
        assert not [n for n in os.listdir(obj_dir) if n.startswith(f"__owner_{first.pid}_")]
    finally:
        err = _stop(second)
    warnings = [line for line in err.splitlines() if "stale" in line]
    assert len(warnings) == 1, err
    assert warnings[0].startswith(f"rawbpf: WARNING: pin directory {obj_dir}: removed ")
    assert f"left by pid {first.pid} (no longer running)" in warnings[0]
    after = _seqs(log_dir)
    assert before and after[: len(before)] == before
    assert after == list(range(after[0], after[0] + len(after))), "seq must run on across the restart"
    assert len(after) > len(before)
    assert not obj_dir.exists()


def test_second_load_names_the_running_pid(pin_dir: Path) -> None:
    first = _start(str(DATA / "tracepoints5.o"), "--pin-dir", str(pin_dir))
    try:
        wait_attached(first)
        r = subprocess.run([sys.executable, "-m", "rawbpf", "load", str(DATA / "tracepoints5.o"), "--pin-dir",
                            str(pin_dir)], cwd=ROOT, capture_output=True, text=True, timeout=patience(60))
        assert r.returncode == 1
        assert r.stderr.strip().splitlines() == [
            f"rawbpf: pin directory {pin_dir / 'tracepoints5'} is in use: 'tracepoints5' is already loaded "
            f"and running as pid {first.pid} (stop it first)"]
        assert r.stdout == ""
    finally:
        _stop(first)
    assert not (pin_dir / "tracepoints5").exists()


def test_pins_of_unknown_origin_are_never_removed(pin_dir: Path) -> None:
    obj_dir = pin_dir / "tracepoints5"
    obj_dir.mkdir(parents=True)
    with Map.create(MapType.ARRAY, 4, 4, 1, name="foreign") as m:
        m.pin(str(obj_dir / "foreign"))
    try:
        r = subprocess.run([sys.executable, "-m", "rawbpf", "load", str(DATA / "tracepoints5.o"), "--pin-dir",
                            str(pin_dir)], cwd=ROOT, capture_output=True, text=True, timeout=patience(60))
        assert r.returncode == 1
        assert "is not empty: 'tracepoints5' is already loaded (or left over" in r.stderr
        assert sorted(os.listdir(obj_dir)) == ["foreign"]
    finally:
        os.unlink(obj_dir / "foreign")
        obj_dir.rmdir()
