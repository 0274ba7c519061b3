"""One owner per directory: an exclusive flock on the directory, held while running, plus an owner record
(pid, process start time, boot id) kept in it; touches files and /proc only, no bpf syscalls.

The kernel drops a flock when its process dies, however it dies, so a free lock over an owner record means the
previous owner is gone without cleaning up (a crash, ``kill -9``); a held lock names the running owner
(``/proc/locks`` gives the holder's pid). The owner record is an empty directory named
``__owner_<pid>_<start>_<boot id>`` (it must fit bpffs, which holds no regular files and refuses dots in
names); ``start`` is field 22 of ``/proc/<pid>/stat`` (clock ticks after boot), so a reused pid cannot pass
for the owner. :mod:`rawbpf.owner` builds the pin directory's lock on it; the log directory uses it as is.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Callable, List, Optional

from rawbpf.errors import ConfigError

__tier__ = "files"

__all__ = ["DirLock", "Owner", "OwnerRecord", "RECORD_PREFIX", "lock_holder", "process_start", "read_owner",
           "running"]

_log = logging.getLogger("rawbpf")

RECORD_PREFIX = "__owner_"  # bpffs refuses names with dots
_RECORD = re.compile(r"^__owner_(?P<pid>\d+)_(?P<start>\d+)_(?P<boot>[0-9a-fA-F-]*)$")


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def process_start(pid: int, proc_root: str = "/proc") -> Optional[int]:
    """The start time of ``pid`` in clock ticks after boot (``/proc/<pid>/stat`` field 22); None if gone."""
    try:
        with open(f"{proc_root}/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2:].split()  # after "pid (comm) ": field 3 is fields[0]
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class OwnerRecord:
    """Who made the pins: a process is the same one only if pid, start time and boot all match."""

    pid: int
    start: int
    boot: str

    @property
    def name(self) -> str:
        return f"{RECORD_PREFIX}{self.pid}_{self.start}_{self.boot}"

    @classmethod
    def current(cls) -> OwnerRecord:
        pid = os.getpid()
        return cls(pid, process_start(pid) or 0, _boot_id())

    def alive(self, proc_root: str = "/proc") -> bool:
        """Whether this very process still runs (not merely some process with the same pid)."""
        if self.boot and self.boot != _boot_id():
            return False
        start = process_start(self.pid, proc_root)
        return start is not None and start == self.start


def read_owner(directory: str) -> Optional[OwnerRecord]:
    """The owner record in ``directory`` (the newest pid if several), or None."""
    try:
        names = os.listdir(directory)
    except OSError:
        return None
    found: List[OwnerRecord] = []
    for n in names:
        m = _RECORD.match(n)
        if m:
            found.append(OwnerRecord(int(m.group("pid")), int(m.group("start")), m.group("boot")))
    return max(found, key=lambda r: r.start) if found else None


def lock_holder(directory: str) -> Optional[int]:
    """The pid holding a flock on ``directory`` (from /proc/locks), or None when nobody does."""
    try:
        st = os.stat(directory)
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    want = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    for line in lines:
        parts = line.split()
        if len(parts) < 6 or parts[1] != "FLOCK":  # ("1: -> FLOCK …" lines are waiters)
            continue
        try:
            major, minor, ino = parts[5].split(":")
            key = (int(major, 16), int(minor, 16), int(ino))
            pid = int(parts[4])
        except ValueError:
            continue
        if key == want:
            return pid
    return None


def running(directory: str) -> Optional[int]:
    """The pid of a live owner of ``directory`` (lock holder first, then a live owner record), or None."""
    holder = lock_holder(directory)
    if holder is not None:
        return holder
    rec = read_owner(directory)
    return rec.pid if rec is not None and rec.alive() else None


@dataclass
class Owner:
    """What :meth:`PinDirLock.acquire` found: stale pins it removed and whose they were."""

    stale_pins: int = 0
    stale_pid: Optional[int] = None


class DirLock:
    """Exclusive ownership of a directory while running: the flock plus the owner record of the module
    docstring, on any file system (a log directory uses it as it is; :class:`PinDirLock` adds the pins).

    :meth:`acquire` creates the directory (and missing parents, 0700 whatever the umask) if needed, takes the
    lock (failing with the running owner's pid, and ``describe(pid)`` when given), hands what a dead owner
    left to :meth:`_take_over`, and writes this process's owner record. :meth:`release` removes the record,
    then the directory and the parents if this lock made them and they are empty (``keep_dir`` keeps the
    directory itself), then drops the lock.
    """

    kind = "directory"

    def __init__(self, directory: str, what: str, *, keep_dir: bool = False,
                 describe: Optional[Callable[[int], str]] = None) -> None:
        self.directory = os.path.abspath(directory)
        self.what = what
        self.keep_dir = keep_dir
        self.describe = describe
        self.fd = -1
        self.record: Optional[OwnerRecord] = None
        self.created: List[str] = []  # directories this lock made, parents first
        self.remove_dir = False

    def _make_dirs(self) -> None:
        missing = []
        probe = self.directory
        while not os.path.isdir(probe):
            missing.append(probe)
            probe = os.path.dirname(probe)
        for path in reversed(missing):
            try:
                os.mkdir(path, 0o700)
                self.created.append(path)
            except FileExistsError:
                pass
            except FileNotFoundError:
                return  # a parent went away meanwhile: the caller tries again
            except OSError as err:
                raise ConfigError(f"{self.kind} {self.directory}: cannot create {path}: "
                                  f"{(err.strerror or str(err)).lower()}") from err

    def acquire(self, *, retries: int = 20) -> Owner:
        d = self.directory
        busy = False
        for _ in range(retries):
            self._make_dirs()
            try:
                fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # removed by an owner on its way out: try again
            except OSError as err:
                raise ConfigError(f"{self.kind} {d}: {(err.strerror or str(err)).lower()}") from err
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise ConfigError(f"{self.kind} {d}: cannot lock it: "
                                      f"{(err.strerror or str(err)).lower()}") from err
                holder = lock_holder(d)
                if holder is None:
                    busy = True
                    time.sleep(0.01)  # the owner is just leaving: try again
                    continue
                self._remove_created()
                raise self._in_use(holder) from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(d))
            except OSError:
                same = False
            if not same:  # locked a directory its owner removed meanwhile: start over
                os.close(fd)
                continue
            self.fd = fd
            self.remove_dir = d in self.created and not self.keep_dir
            try:
                owner = self._take_over()
                if owner.stale_pid is not None and not self.keep_dir:
                    self.remove_dir = True
                record = OwnerRecord.current()
                try:
                    os.mkdir(os.path.join(d, record.name), 0o700)
                except OSError as err:
                    raise ConfigError(f"{self.kind} {d}: cannot record the owner: "
                                      f"{(err.strerror or str(err)).lower()}") from err
                self.record = record
            except BaseException:
                self.release()
                raise
            return owner
        self._remove_created()
        if busy:
            raise self._in_use(None)
        raise ConfigError(f"{self.kind} {d}: could not lock it (it keeps being removed and created)")

    def _in_use(self, pid: Optional[int]) -> ConfigError:
        who = f"pid {pid}" if pid is not None else "another process"
        what = self.describe(pid) if self.describe is not None and pid is not None else ""
        return ConfigError(f"{self.kind} {self.directory} is in use: {what or repr(self.what)} is running as "
                           f"{who} (stop it first)")

    def _take_over(self) -> Owner:
        """What a dead owner left: its owner records (removed here); a live one is refused."""
        d = self.directory
        stale: Optional[OwnerRecord] = None
        for name in os.listdir(d):
            m = _RECORD.match(name)
            if not m:
                continue
            rec = OwnerRecord(int(m.group("pid")), int(m.group("start")), m.group("boot"))
            if rec.alive():
                raise self._in_use(rec.pid)
            try:
                os.rmdir(os.path.join(d, name))
            except OSError:
                pass
            if stale is None or rec.start > stale.start:
                stale = rec
        return Owner(stale_pid=stale.pid if stale is not None else None)

    def _remove_created(self) -> None:
        """rmdir the parents this lock made (the directory itself only when not locked: release does that)."""
        for path in reversed(self.created):
            if path == self.directory and self.fd >= 0:
                continue
            try:
                os.rmdir(path)  # only if empty: someone else may use a parent by now
            except OSError:
                pass
        self.created = []

    def release(self) -> None:
        """Remove the owner record and the (empty) directories this lock made, then unlock. Idempotent."""
        if self.fd < 0:
            return
        if self.record is not None:
            try:
                os.rmdir(os.path.join(self.directory, self.record.name))
            except OSError:
                pass
            self.record = None
        if self.remove_dir:
            try:
                os.rmdir(self.directory)  # while still locked: a newcomer then sees a fresh directory
            except OSError:
                pass
        self._remove_created()
        fd, self.fd = self.fd, -1
        os.close(fd)

    def __enter__(self) -> DirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
