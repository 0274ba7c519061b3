"""programs/exec_count.py, the hand-assembled tracing example, attached to sched_process_exec for real."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

from patience import patience

ROOT = Path(__file__).resolve().parent.parent.parent


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("exec_count_example", ROOT / "programs" / "exec_count.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exec_count_counts_our_execs() -> None:
    example = _load_example()
    uid = os.getuid()
    with example.ExecCounter(name="asm_exec_test") as counter:
        before = counter.counts().get(uid, 0)
        for _ in range(5):
            subprocess.run(["/bin/true"], check=True)
        deadline = time.monotonic() + patience(2)
        while counter.counts().get(uid, 0) < before + 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        after = counter.counts().get(uid, 0)
        assert after >= before + 5, (before, after)
        info = counter.prog.info()
        assert info.type == 5  # tracepoint
        assert counter.map.id in info.map_ids
    # closed: the link is gone, so the program no longer runs and the map is freed
    assert counter.map.closed and counter.prog.closed and counter.link.closed


def test_exec_count_runs_as_a_script() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "programs" / "exec_count.py"), "-i", "0.3", "-d", "1"],
                         capture_output=True, text=True, timeout=patience(30))
    assert out.returncode == 0, out.stderr
    assert "execs per user" in out.stdout
    listing = subprocess.run([sys.executable, str(ROOT / "programs" / "exec_count.py"), "--listing"],
                             capture_output=True, text=True, timeout=patience(30), check=True).stdout
    assert "call 15  ; bpf_get_current_uid_gid" in listing and "map 'exec_counts'" in listing
