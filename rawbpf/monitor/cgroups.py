"""cgroup v2 paths from the kernel's cgroup ids: the id is the cgroup directory's inode number in cgroupfs.

:class:`CgroupPaths` indexes the cgroup2 hierarchy (found in ``/proc/self/mountinfo``) by inode number and
re-reads it when an id is unknown (a cgroup made after the last scan), at most once per ``rescan_interval``
seconds, so a burst of records from a new cgroup costs one walk. Paths are relative to the hierarchy's root,
as ``/proc/PID/cgroup`` writes them (``/user.slice/...``); an unknown id gives None.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Dict, Optional

__tier__ = "files"


def cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> Optional[str]:
    """Where the cgroup2 hierarchy is mounted, or None."""
    try:
        with open(mountinfo) as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    return left.split()[4].replace("\\040", " ")
    except OSError:
        return None
    return None


class CgroupPaths:
    """Callable: cgroup id -> path (or None)."""

    def __init__(self, root: Optional[str] = None, *, rescan_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.root = root if root is not None else cgroup2_mount()
        self.rescan_interval = rescan_interval
        self.clock = clock
        self._paths: Dict[int, str] = {}
        self._scanned = float("-inf")

    def _scan(self) -> None:
        self._scanned = self.clock()
        if not self.root:
            return
        paths: Dict[int, str] = {}
        for dirpath, _dirs, _files in os.walk(self.root):
            try:
                ino = os.stat(dirpath).st_ino
            except OSError:
                continue
            rel = os.path.relpath(dirpath, self.root)
            paths[ino] = "/" if rel == "." else "/" + rel
        self._paths = paths

    def __call__(self, cgroup_id: int) -> Optional[str]:
        path = self._paths.get(cgroup_id)
        if path is None and self.clock() - self._scanned >= self.rescan_interval:
            self._scan()
            path = self._paths.get(cgroup_id)
        return path
