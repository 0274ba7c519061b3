"""``rawbpf load … --ship URL``: run ``rawbpf ship`` beside the loader as a child process; touches processes.

A separate process keeps shipping off the ring consumer's interpreter (its own GIL, its own core) and lets
either crash without taking the other along. The child dies with its parent (``PR_SET_PDEATHSIG``), so a
killed loader never leaves a shipper behind holding the destinations' locks; on a normal stop it gets
SIGTERM and its grace period to collect the last acknowledgements.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from typing import Callable, Iterator, List, Optional, Sequence

from rawbpf.errors import ConfigError
from rawbpf.ship.url import parse_destination

log = logging.getLogger("rawbpf")

__tier__ = "kernel"

__all__ = ["ship_beside", "ship_command"]

def ship_command(urls: Sequence[str], log_dir: str) -> List[str]:
    """How to start ``rawbpf ship`` with this interpreter (also from a zipapp)."""
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0.endswith(".pyz") and os.path.isfile(argv0):
        cmd = [sys.executable, argv0]
    else:
        cmd = [sys.executable, "-m", "rawbpf"]
    cmd += ["ship", "--log-dir", log_dir]
    for u in urls:
        cmd += ["--to", u]
    return cmd


def _die_with_parent() -> None:
    from rawbpf._sys import die_with_parent

    die_with_parent(signal.SIGTERM)


@contextlib.contextmanager
def ship_beside(urls: Sequence[str], log_dir: str, *, echo: Callable[[str], None] = print,
                grace: float = 5.0) -> Iterator[Optional[subprocess.Popen]]:
    """Start ``rawbpf ship --to URL…`` for ``log_dir`` (created if missing) for the duration of the block;
    nothing when ``urls`` is empty. Bad URLs fail here, before anything is loaded."""
    if not urls:
        yield None
        return
    for u in urls:
        parse_destination(u)
    log_dir = os.path.abspath(log_dir)
    try:
        os.makedirs(log_dir, mode=0o700, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"log directory {log_dir}: {os.strerror(err.errno or 0).lower()}") from None
    proc = subprocess.Popen(ship_command(urls, log_dir), preexec_fn=_die_with_parent)
    echo(f"shipping to {', '.join(urls)} (rawbpf ship, pid {proc.pid})")
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace + 10)
        except subprocess.TimeoutExpired:
            log.warning("rawbpf ship (pid %d) did not stop; killing it", proc.pid)
            proc.kill()
            proc.wait(5)
        if proc.returncode not in (0, -signal.SIGTERM, -signal.SIGINT):
            log.warning("rawbpf ship (pid %d) exited with status %s", proc.pid, proc.returncode)
