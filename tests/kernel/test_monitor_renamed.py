"""A renamed, versioned copy of claude_monitor.o is the monitor on the real kernel: it runs under the
monitor's name (pins, log header, status), seeds, follows the rules and redacts argv."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from patience import patience

from rawbpf.logfile import LogReader

ROOT = Path(__file__).resolve().parents[2]
MONITOR = ROOT / "programs" / "claude_monitor.o"
KEY = "sk-ant-api03-" + "Q" * 40


def test_renamed_monitor_is_the_monitor(pin_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "claude-monitor-v2.1.o"
    shutil.copy(MONITOR, copy)
    log = tmp_path / "log"
    claude = tmp_path / "bin" / "claude"
    claude.parent.mkdir()
    claude.symlink_to("/bin/sh")
    tree = subprocess.Popen([str(claude), "-c", f"while :; do /bin/echo --api-key {KEY} >/dev/null; "
                                                "sleep 0.05; done"])
    proc = subprocess.Popen([sys.executable, "-m", "rawbpf", "load", str(copy), "--pin-dir", str(pin_dir),
                             "--log-dir", str(log)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("logging to "):
                break
        else:
            raise AssertionError(proc.stderr.read() if proc.stderr else "")
        assert (pin_dir / "claude_monitor" / "events").exists()  # the monitor's name, not the file's
        time.sleep(1.0)
        st = subprocess.run([sys.executable, "-m", "rawbpf", "status", "--log-dir", str(log), "--pin-dir",
                             str(pin_dir)], cwd=ROOT, capture_output=True, text=True, timeout=patience(60))
        assert st.returncode == 0 and st.stdout.startswith("claude_monitor: running"), st.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=patience(60))
        tree.kill()
        tree.wait()
    assert proc.returncode == 0, err
    with LogReader(str(log)) as r:
        recs = list(r.records())
    assert recs[0]["type"] == "header" and recs[0]["object"] == "claude_monitor"
    assert recs[0]["object_path"] == str(copy)
    seeded = [x for x in recs if x["type"] == "exec" and x.get("seen_at_start") and x["pid"] == tree.pid]
    assert seeded, "the running claude tree was not seeded"
    echoes = [x for x in recs if x["type"] == "exec" and x.get("argv", [None])[0] == "/bin/echo"]
    assert echoes and all(x["argv"] == ["/bin/echo", "--api-key", "[REDACTED]"] for x in echoes), echoes[:2]
    assert KEY not in repr(recs)
