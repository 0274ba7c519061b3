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
            _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{ship_pid}") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(f"/proc/{ship_pid}"), "rawbpf ship outlived rawbpf load"
