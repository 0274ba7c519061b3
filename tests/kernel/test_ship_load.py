"""``rawbpf load programs/claude_monitor.o --ship URL``: the monitor's records reach a real Fluent Forward
server while it runs, and the shipper stops with the loader."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from patience import patience

from tests.ship.servers import Fluent, wait_for
from tests.workload import driver

ROOT = Path(__file__).resolve().parents[2]
MONITOR = ROOT / "programs" / "claude_monitor.o"


def test_load_ships_monitor_records(tmp_path: Path, pin_dir: Path) -> None:
    log_dir = tmp_path / "log"
    with Fluent(tmp_path) as fluent:
        url = f"forward://127.0.0.1:{fluent.port}?batch=50"
        proc = subprocess.Popen([sys.executable, "-m", "rawbpf", "load", str(MONITOR), "--pin-dir",
                                 str(pin_dir), "--log-dir", str(log_dir), "--no-seed", "--ship", url],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = []
        try:
            assert proc.stdout is not None
            while True:
                line = proc.stdout.readline()
                assert line, f"rawbpf load ended early: {lines} {proc.stderr.read() if proc.stderr else ''}"
                lines.append(line)
                if line.startswith("logging to "):
                    break
            m = re.search(r"shipping to .* \(rawbpf ship, pid (\d+)\)", "".join(lines))
            assert m, lines
            ship_pid = int(m.group(1))
            manifest = driver.run(tmp_path / "workload")
            root = manifest["claude"]["pid"]

            def shipped() -> bool:
                return any(e["record"].get("type") == "exec" and e["record"].get("pid") == root
                           and e["record"].get("match") == "comm" for e in fluent.entries())

            wait_for(shipped, 20, "the workload's exec record at the Fluent server")
            tags = {e["tag"] for e in fluent.entries()}
            assert {"rawbpf.header", "rawbpf.exec"} <= tags
        finally:
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=patience(60))
        assert proc.returncode == 0, err
        deadline = time.monotonic() + patience(10)
        while os.path.exists(f"/proc/{ship_pid}") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(f"/proc/{ship_pid}"), "rawbpf ship outlived rawbpf load"


def _start_load(pin_dir: Path, log_dir: Path, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "rawbpf", "load", str(MONITOR), "--pin-dir", str(pin_dir),
                             "--log-dir", str(log_dir), "--no-seed", *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = []
    while True:
        line = proc.stdout.readline()
        assert line, f"rawbpf load ended early: {lines} {proc.stderr.read() if proc.stderr else ''}"
        lines.append(line)
        if line.startswith("logging to "):
            proc.lines = lines  # type: ignore[attr-defined]
            return proc


def test_shipper_dies_with_a_killed_loader(tmp_path: Path, pin_dir: Path) -> None:
    """kill -9 of rawbpf load takes its rawbpf ship child along (no orphan holding the destination's lock);
    the next load ships again under the same lock."""
    log_dir = tmp_path / "log"
    with Fluent(tmp_path) as fluent:
        url = f"forward://127.0.0.1:{fluent.port}"
        proc = _start_load(pin_dir, log_dir, "--ship", url)
        m = re.search(r"rawbpf ship, pid (\d+)", "".join(proc.lines))  # type: ignore[attr-defined]
        assert m
        ship_pid = int(m.group(1))
        wait_for(lambda: any(e["tag"] == "rawbpf.header" for e in fluent.entries()), 20, "the header shipped")
        proc.kill()
        proc.communicate(timeout=patience(30))
        wait_for(lambda: not os.path.exists(f"/proc/{ship_pid}"), 10, "the shipper to die with its parent")
        again = _start_load(pin_dir, log_dir, "--ship", url)  # removes the dead loader's pins, ships on
        try:
            wait_for(lambda: sum(e["tag"] == "rawbpf.header" for e in fluent.entries()) >= 2, 20,
                     "the second header shipped")
        finally:
            again.send_signal(signal.SIGINT)
            _out, err = again.communicate(timeout=patience(60))
        assert again.returncode == 0, err
