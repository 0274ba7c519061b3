"""Who owns a pin directory: an exclusive flock on the directory, held while running, plus an owner record
(pid, process start time, boot id) kept in the directory; touches files (bpffs and /proc), no bpf syscalls.

``rawbpf load`` pins under ``<pin-dir>/<object>`` and holds ``flock(LOCK_EX)`` on that directory for as long
as it runs. The kernel drops the lock when the process dies, however it dies, so a free lock over a non-empty
directory means the previous owner is gone and its pins are stale (after ``kill -9`` its pinned links keep
the programs attached until the pins are removed). A held lock names the running owner: ``/proc/locks``
gives the holder's pid.

bpffs holds only directories, pins and symlinks (no regular files), so the owner record is an empty
directory named ``__owner_<pid>_<start>_<boot id>`` (bpffs refuses dots in names); ``start`` is field 22 of
``/proc/<pid>/stat`` (clock ticks after boot), so a reused pid cannot pass for the owner. Stale pins are
removed only when such a record says rawbpf made them: pins of unknown origin are never deleted.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Optional

from rawbpf.dirlock import (
    _RECORD,
    RECORD_PREFIX,
    DirLock,
    Owner,
    OwnerRecord,
    lock_holder,
    process_start,
    read_owner,
    running,
)
from rawbpf.errors import ConfigError

__tier__ = "kernel"

__all__ = ["DirLock", "Owner", "OwnerRecord", "PinDirLock", "RECORD_PREFIX", "lock_holder", "process_start",
           "read_owner", "running"]

_log = logging.getLogger("rawbpf")


class PinDirLock(DirLock):
    """Exclusive ownership of a pin directory while running; see the module docstring.

    On top of :class:`DirLock`: :meth:`acquire` removes the stale pins a dead owner left (never pins no
    owner record vouches for), and :meth:`release` also removes a directory taken over from a dead owner.
    ``inspect_stale(directory, pid)`` runs before stale pins are removed (to read what they still count).
    Not a BPF fd owner.
    """

    kind = "pin directory"

    def __init__(self, directory: str, what: str,
                 inspect_stale: Optional[Callable[[str, int], None]] = None) -> None:
        super().__init__(directory, what)
        self.inspect_stale = inspect_stale

    def _in_use(self, pid: Optional[int]) -> ConfigError:
        if pid is None:
            return ConfigError(f"pin directory {self.directory} is in use: '{self.what}' is already loaded "
                               "by another process (stop it first)")
        return ConfigError(f"pin directory {self.directory} is in use: '{self.what}' is already loaded and "
                           f"running as pid {pid} (stop it first)")

    def _take_over(self) -> Owner:
        """Remove what a dead owner left; refuse pins that no owner record vouches for."""
        d = self.directory
        entries = os.listdir(d)
        if not entries:
            return Owner()
        rec = read_owner(d)
        if rec is None:
            raise ConfigError(f"pin directory {d} is not empty: '{self.what}' is already loaded (or left "
                              f"over; remove it with: rm -r {d})")
        if rec.alive():
            raise ConfigError(f"pin directory {d} is in use: '{self.what}' is already loaded by pid "
                              f"{rec.pid} (stop it first)")
        from rawbpf import bpffs

        if self.inspect_stale is not None:
            try:
                self.inspect_stale(d, rec.pid)
            except Exception as err:  # reading what the dead owner counted must not block the restart
                _log.warning("pin directory %s: cannot read the stale pins: %s", d, err)
        removed = 0
        for name in entries:
            path = os.path.join(d, name)
            if _RECORD.match(name):
                os.rmdir(path)  # an owner record: an empty directory
            elif os.path.isdir(path) and not os.path.islink(path):
                removed += bpffs.remove_tree(path)
            else:
                os.unlink(path)
                removed += 1
        return Owner(stale_pins=removed, stale_pid=rec.pid)
