"""The monitor's log never loses or hides a record, with the real monitor on the real kernel: the crash
window after ``kill -9`` and the drops the orphaned programs counted in it, one writer per log dir, a full
disk (a 64 KiB tmpfs in a private mount namespace) and a removed log dir."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from patience import patience

from rawbpf.logfile import LogReader

ROOT = Path(__file__).resolve().parents[2]
MONITOR = ROOT / "programs" / "claude_monitor.o"


def _start(pins: Path, log: Path, *extra: str, wrap: List[str] = ()) -> subprocess.Popen:  # type: ignore
    cmd = [*wrap, sys.executable, "-m", "rawbpf", "load", str(MONITOR), "--pin-dir", str(pins), "--log-dir",
           str(log), *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))


def _ready(proc: subprocess.Popen) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("logging to "):
            return
    err = proc.stderr.read() if proc.stderr else ""
    proc.wait()
    pytest.fail(f"monitor did not start: {err.strip()[-600:]}")


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=patience(60))
    assert proc.returncode == 0, err
    return err


def _records(log: Path) -> List[Dict[str, Any]]:
    with LogReader(str(log)) as r:
        recs = list(r.records())
        assert r.damaged == 0 and r.gaps == 0
    return recs


@pytest.fixture()
def busy_claude(tmp_path: Path) -> Iterator[None]:
    """A tracked tree (a shell started as ``claude``) that keeps exec'ing."""
    claude = tmp_path / "bin" / "claude"
    claude.parent.mkdir()
    claude.symlink_to("/bin/sh")
    load = subprocess.Popen([str(claude), "-c", "while :; do /bin/true; /bin/true; done"])
    yield
    load.kill()
    load.wait()


@pytest.mark.usefixtures("busy_claude")
def test_crash_window_names_its_time_and_the_kernels_drops(pin_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    first = _start(pin_dir, log, "--ring-bytes", "4096")
    _ready(first)
    time.sleep(0.5)
    first.kill()  # its programs stay attached through their pins, filling a ring nobody reads
    first.communicate(timeout=patience(30))
    killed_at = time.time_ns()
    time.sleep(1.5)
    second = _start(pin_dir, log, "--ring-bytes", "4096")
    _ready(second)
    err = _stop(second)
    assert "stale pins" in err
    recs = _records(log)
    crash = [r for r in recs if r["type"] == "crash"]
    assert len(crash) == 1, crash
    c = crash[0]
    assert c["writer_pid"] == first.pid
    assert c["since"] <= killed_at and c["until"] - killed_at >= 1_500_000_000
    assert c["kernel_drops"] > 0  # the 4 KiB ring overflowed while nobody consumed
    seqs = [r["seq"] for r in recs]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_second_monitor_in_the_same_log_dir_is_refused(pin_dir: Path, tmp_path: Path) -> None:
    """It used to delete the running monitor's current log file and its status file."""
    log = tmp_path / "log"
    first = _start(pin_dir, log)
    other_pins = pin_dir.parent / f"{pin_dir.name}-2"
    try:
        _ready(first)
        before = sorted(p.name for p in log.iterdir())
        status = (log / "claude_monitor.status.json").read_text()
        second = _start(other_pins, log, "--backups", "0")
        _out, err = second.communicate(timeout=patience(60))
        assert second.returncode == 1
        assert err.strip().splitlines() == [
            f"rawbpf: log dir {log} is in use: 'claude_monitor' is running as pid {first.pid} (stop it "
            "first, or give another --log-dir)"]
        assert sorted(p.name for p in log.iterdir()) == before
        now = json.loads((log / "claude_monitor.status.json").read_text())
        assert now["pid"] == json.loads(status)["pid"] == first.pid
        assert not other_pins.exists()  # nothing left attached or pinned by the refused one
    finally:
        _stop(first)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
@pytest.mark.usefixtures("busy_claude")
def test_full_disk_keeps_the_monitor_running_and_counts_the_loss(pin_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "tiny"
    log.mkdir()
    wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c",
            f'mount -t tmpfs -o size=64k,mode=0700 tmpfs {log} && exec "$@"', "sh"]
    proc = _start(pin_dir, log, "--max-bytes", "1048576", wrap=wrap)
    lines: List[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True)
    try:
        _ready(proc)
        reader.start()
        deadline = time.monotonic() + patience(30)
        while not any("counting records as lost" in x for x in lines) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert any("counting records as lost (reason log)" in x for x in lines), lines
        time.sleep(1.0)
        assert proc.poll() is None  # still running, still consuming
    finally:
        proc.send_signal(signal.SIGINT)
        _out, _ = proc.communicate(timeout=patience(60))
        reader.join(10)
    err = "".join(lines)
    assert proc.returncode == 0, err
    assert err.count("counting records as lost") == 1, err  # said once
    assert "Traceback" not in err


@pytest.mark.usefixtures("busy_claude")
def test_removed_log_dir_is_recreated(pin_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    proc = _start(pin_dir, log)
    _ready(proc)
    time.sleep(0.5)
    shutil.rmtree(log)
    deadline = time.monotonic() + patience(20)
    while not any(p.name.endswith(".mlog") for p in (log.iterdir() if log.exists() else ())):
        assert time.monotonic() < deadline, "the log dir was not recreated"
        time.sleep(0.1)
    time.sleep(0.5)
    err = _stop(proc)
    assert err.count("recreated it") == 1, err
    assert "Traceback" not in err
    assert (log.stat().st_mode & 0o777) == 0o700
    recs = _records(log)
    assert recs[0]["type"] == "header" and any(r["type"] == "exec" for r in recs), (
        sorted(p.name for p in log.iterdir()), recs[:3])
