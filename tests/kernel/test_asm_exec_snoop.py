"""programs/exec_snoop.py, an example written in BPF assembly text, streaming execs through a ring buffer."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import time
from pathlib import Path
from types import ModuleType
from typing import List

from patience import patience

ROOT = Path(__file__).resolve().parent.parent.parent


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("exec_snoop_example", ROOT / "programs" / "exec_snoop.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exec_snoop_reports_our_exec_with_pid_uid_and_comm() -> None:
    example = _load_example()
    seen: List = []
    with example.ExecSnoop(seen.append, name="asm_snoop_test") as snoop:
        child = subprocess.Popen(["/bin/true"])
        child.wait()
        deadline = time.monotonic() + patience(3)
        while not any(e.pid == child.pid for e in seen) and time.monotonic() < deadline:
            snoop.poll(100)
        mine = [e for e in seen if e.pid == child.pid]
        assert mine, f"no exec event for pid {child.pid} among {len(seen)} events"
        assert mine[0].uid == os.getuid() and mine[0].comm == "true"
    assert snoop.ring_map.closed and snoop.prog.closed and snoop.link.closed
