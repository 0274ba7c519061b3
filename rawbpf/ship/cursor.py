"""Per-destination cursor files next to the log, and the lock that keeps one shipper per destination;
touches files only.

``<log-dir>/ship-<key>.cursor`` (JSON: ``seq`` of the last record the destination acknowledged, the log
``file`` it was read from, ``url``, ``updated``) is replaced atomically (write a temporary file, rename it
over the old one) after every acknowledgement, so a shipper killed at any instant restarts right after the
last acknowledged record; the rename reaches the disk with an ``fsync`` at most once per ``sync_interval``
(a power cut may repeat up to that much). ``<log-dir>/ship-<key>.lock`` is held with ``flock`` while a
shipper runs: a second shipper for the same destination is refused with the first one's pid.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from rawbpf._closing import Closing
from rawbpf.errors import ConfigError

__tier__ = "files"

__all__ = ["Cursor", "CursorFile", "cursor_files", "read_cursor"]

PREFIX = "ship-"
SUFFIX = ".cursor"


@dataclass
class Cursor:
    """Where a destination stands: every record up to ``seq`` is acknowledged (None: nothing yet)."""

    seq: Optional[int]
    file: str = ""
    url: str = ""
    updated: int = 0

    def to_json(self) -> Dict[str, Any]:
        return {"seq": self.seq, "file": self.file, "url": self.url, "updated": self.updated}


def read_cursor(path: str) -> Optional[Cursor]:
    """The cursor in ``path``; None if there is none; ConfigError if it is unreadable or damaged."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f"cursor {path}: unreadable ({err})") from err
    seq = data.get("seq") if isinstance(data, dict) else "?"
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 0):
        raise ConfigError(f"cursor {path}: damaged (seq {seq!r})")
    return Cursor(seq=seq, file=str(data.get("file", "")), url=str(data.get("url", "")),
                  updated=int(data.get("updated", 0) or 0))


def cursor_files(log_dir: str) -> List[str]:
    """Paths of every destination cursor in ``log_dir``, sorted."""
    try:
        names = os.listdir(log_dir)
    except OSError:
        return []
    return sorted(os.path.join(log_dir, n) for n in names if n.startswith(PREFIX) and n.endswith(SUFFIX))


def _lock_holder(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            text = f.read().strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


class CursorFile(Closing):
    """The cursor and lock of one destination. Closing releases the lock; idempotent."""

    def __init__(self, log_dir: str, key: str, url: str, *, sync_interval: float = 1.0) -> None:
        self.path = os.path.join(log_dir, f"{PREFIX}{key}{SUFFIX}")
        self.lock_path = os.path.join(log_dir, f"{PREFIX}{key}.lock")
        self._tmp = os.path.join(log_dir, f".{PREFIX}{key}{SUFFIX}.tmp")
        self.url = url
        self.sync_interval = sync_interval
        self._dir = log_dir
        self._lock_fd = -1
        self._last_sync = 0.0
        self._dirty = False
        #: cursor writes that failed (the cursor in memory stays right; the next write retries)
        self.write_errors = 0

    def lock(self) -> None:
        """Take the destination's lock, or refuse naming the shipper that holds it."""
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.lock_path, flags, 0o600)
        except OSError as err:
            raise ConfigError(f"ship {self.url}: cannot create {self.lock_path}: "
                              f"{os.strerror(err.errno or 0).lower()}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                pid = _lock_holder(self.lock_path)
                who = f"pid {pid}" if pid else "another process"
                raise ConfigError(f"ship {self.url}: already shipped by {who} "
                                  f"(lock {self.lock_path})") from None
            raise ConfigError(f"ship {self.url}: cannot lock {self.lock_path}: {err.strerror}") from err
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def load(self) -> Optional[Cursor]:
        return read_cursor(self.path)

    def save(self, cursor: Cursor) -> bool:
        """Replace the cursor file atomically; False (counted) if the disk refused."""
        cursor.url = self.url
        cursor.updated = time.time_ns()
        data = json.dumps(cursor.to_json(), sort_keys=True).encode() + b"\n"
        try:
            fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
                         | getattr(os, "O_NOFOLLOW", 0), 0o600)
            try:
                os.write(fd, data)
                now = time.monotonic()
                sync = now - self._last_sync >= self.sync_interval
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self._tmp, self.path)
            if sync:
                self._sync_dir()
                self._last_sync = now
                self._dirty = False
            else:
                self._dirty = True
        except OSError:
            self.write_errors += 1
            return False
        return True

    def _sync_dir(self) -> None:
        fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def sync(self) -> None:
        """Make the last rename durable now (on shutdown)."""
        if self._dirty:
            try:
                self._sync_dir()
                self._dirty = False
            except OSError:
                pass

    def close(self) -> None:
        self.sync()
        fd, self._lock_fd = self._lock_fd, -1
        if fd >= 0:
            os.close(fd)

    def _close_at_collection(self) -> None:
        """Drop the lock without the directory sync :meth:`close` does."""
        fd, self._lock_fd = self._lock_fd, -1
        if fd >= 0:
            os.close(fd)
