"""Waiting for a ``rawbpf load`` child to get ready, shared by the CLI load tests."""

from __future__ import annotations

import subprocess
import time
from typing import List

from patience import patience

READY = "Ctrl-C or SIGTERM to stop"


def wait_attached(proc: subprocess.Popen, timeout: float = patience(30)) -> List[str]:
    """The child's stdout lines up to the one saying it runs; kills it and fails naming what it printed if it
    ends or the deadline passes first (checked between lines: the load prints as it goes)."""
    assert proc.stdout is not None
    lines: List[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if READY in line:
            return lines
    proc.kill()
    err = proc.stderr.read() if proc.stderr else ""
    raise AssertionError(f"rawbpf load never got ready: {lines} {err}")
