"""tracefs: find it; mount it (or debugfs, whose ``tracing`` dir is tracefs) when missing. Touches the kernel.

Tracepoint ids live in tracefs (``events/<category>/<name>/id``). A fresh machine often has it unmounted; like
bpffs, rawbpf then mounts it itself: tracefs at ``/sys/kernel/tracing``, or, when that cannot be used, debugfs
at ``/sys/kernel/debug`` (whose ``tracing`` directory the kernel automounts as tracefs). Nothing already
mounted is ever covered: a directory that holds some other filesystem is left alone and reported.
"""

from __future__ import annotations

import logging
import os
from typing import List, Optional

from rawbpf import _sys
from rawbpf.errors import ConfigError, SyscallError

__tier__ = "kernel"

TRACEFS = "/sys/kernel/tracing"
DEBUGFS = "/sys/kernel/debug"
#: where tracefs is looked for, in order
TRACEFS_DIRS = (TRACEFS, os.path.join(DEBUGFS, "tracing"))

log = logging.getLogger("rawbpf")


def find() -> Optional[str]:
    """The tracefs directory with an ``events`` tree this process can see, or None."""
    for d in TRACEFS_DIRS:
        if os.path.isdir(os.path.join(d, "events")):
            return d
    return None


def _mounted_type(path: str) -> str:
    """The filesystem type mounted at ``path`` (from /proc/self/mounts; the top one wins), or ''."""
    fstype = ""
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[1] == path:
                    fstype = parts[2]
    except OSError:
        pass
    return fstype


def _try_mount(fstype: str, target: str, tried: List[str]) -> bool:
    """Mount ``fstype`` at ``target`` unless something is mounted there; notes why not in ``tried``."""
    if not os.path.isdir(target):
        tried.append(f"{target} does not exist")
        return False
    if os.path.ismount(target):
        tried.append(f"{target} holds a {_mounted_type(target) or 'different'} mount")
        return False
    try:
        _sys.mount(fstype, target, fstype, f"mount {fstype} at {target}")
    except SyscallError as err:
        tried.append(err.summary())
        return False
    log.info("mounted %s at %s", fstype, target)
    return True


def ensure_mounted(what: str = "") -> str:
    """The tracefs directory, mounting tracefs (or debugfs) first if none is mounted.

    Raises ConfigError naming ``what`` when tracefs cannot be had: a non-root caller is told it needs root
    (only root can mount tracefs, and its files are root's), root is told what was tried.
    """
    found = find()
    if found:
        return found
    prefix = f"{what}: " if what else ""
    if os.geteuid() != 0:
        raise ConfigError(f"{prefix}needs root: tracepoint ids come from tracefs, which only root can mount "
                          f"and read ({TRACEFS})")
    tried: List[str] = []
    if _try_mount("tracefs", TRACEFS, tried) and os.path.isdir(os.path.join(TRACEFS, "events")):
        return TRACEFS
    _try_mount("debugfs", DEBUGFS, tried)
    found = find()  # the debugfs tracing dir automounts on first access
    if found:
        return found
    raise ConfigError(f"{prefix}tracefs is not mounted and could not be mounted: {'; '.join(tried)}")
