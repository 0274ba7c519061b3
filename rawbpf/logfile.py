"""The msgpack event log: a rotating writer and a reader that follows rotation; touches files only.

Format. A log is a directory of files named ``<prefix>-<first seq, 16 digits>-<open time ns, 19
digits>.mlog``; names sort in write order, and rotation only ever creates a new file and deletes the oldest,
never renames, so a reader following the log cannot miss or repeat a file. Each file is a plain concatenation
of msgpack maps (strings as str, byte strings as bin). The first record of every file is a ``header``::

    {"seq", "ts", "type": "header", "format": 1, "host", "boot_id", "object", "start_time", "pid", ...extra}

Every record, headers included, has ``seq`` (+1 for each record of the stream, across files and restarts) and
``ts`` (wall-clock ns since the epoch; decoders convert kernel CLOCK_MONOTONIC stamps with
:func:`boot_offset_ns`).

Durability. Records are packed at once and written with one ``write(2)`` per flush (``flush_interval``,
default 100 ms, or sooner when 1 MiB is pending; nothing pending, no write). After a crash the newest file
may end in a torn record: the reader skips it (and counts it in :attr:`LogReader.torn`), and a restarted
writer resumes ``seq`` after the last complete record, in a new file. A failed write (full disk, I/O error)
is truncated back to the last complete record, the records are counted as lost, and a ``lost`` record
(``reason``: the error) is written once writing works again: never a crash, never silent.

Safety. Files are created 0600 with ``O_EXCL | O_NOFOLLOW`` relative to a directory fd opened with
``O_NOFOLLOW``: a symlink in place of the directory or of a file is refused.

Rotation. A new file is started when the current one would pass ``max_bytes`` (default 10 MB) or is older than
``max_age`` seconds, or on :meth:`LogWriter.reopen` (SIGHUP, for logrotate); ``backups`` older files (default
5) are kept.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import socket
import stat
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Tuple

import msgpack

from rawbpf.errors import ConfigError, LogFormatError
from rawbpf.logformat import pack_records

__tier__ = "files"

log = logging.getLogger("rawbpf")

__all__ = ["FORMAT_VERSION", "LogWriter", "LogReader", "boot_offset_ns", "boot_id", "pack_records"]

FORMAT_VERSION = 1
SUFFIX = ".mlog"
DEFAULT_PREFIX = "rawbpf"
DEFAULT_MAX_BYTES = 10 * 1000 * 1000
DEFAULT_BACKUPS = 5
DEFAULT_MAX_AGE = 24 * 3600.0
DEFAULT_FLUSH_INTERVAL = 0.1  # seconds; a record waits at most this long in memory
_FLUSH_BYTES = 1 << 20
_NAME = re.compile(r"^(?P<prefix>.+)-(?P<seq>\d{16})-(?P<t>\d{19})" + re.escape(SUFFIX) + "$")
_O_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(
    os, "O_CLOEXEC", 0)

WriteFn = Callable[[int, bytes], int]


def boot_offset_ns() -> int:
    """Nanoseconds to add to a CLOCK_MONOTONIC stamp (``bpf_ktime_get_ns``) to get wall-clock time."""
    return time.time_ns() - time.monotonic_ns()


def boot_id() -> str:
    """The kernel's boot id (changes every boot), or "" if unreadable."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _strerror(err: OSError) -> str:
    return os.strerror(err.errno or 0).lower()


def _file_name(prefix: str, seq: int) -> str:
    return f"{prefix}-{seq:016d}-{time.time_ns():019d}{SUFFIX}"


def _open_dir(path: str, create: bool) -> int:
    if create:
        try:
            os.makedirs(path, mode=0o750, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"log dir {path}: cannot create: {_strerror(err)}") from err
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC)
    except OSError as err:
        if err.errno == errno.ELOOP or (err.errno == errno.ENOTDIR and os.path.islink(path)):
            raise ConfigError(f"log dir {path}: is a symlink; give the real path") from err
        raise ConfigError(f"log dir {path}: {_strerror(err)}") from err


def _list(dir_fd: int, prefix: str) -> List[str]:
    names = []
    for name in os.listdir(dir_fd):
        m = _NAME.match(name)
        if m and m.group("prefix") == prefix:
            names.append(name)
    names.sort()
    return names


class LogWriter:
    """Appends records to the rotating msgpack log in ``directory`` (created 0750 if missing).

    Single-threaded. ``write`` / ``write_many`` assign ``seq`` (and ``ts`` when a record has none); the fast
    path is ``reserve(n)`` then ``write_packed(data, n)`` with records that already carry the reserved ``seq``
    values. ``write`` is the injectable ``write(2)`` (tests simulate a full disk with it).
    """

    def __init__(self, directory: str, *, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS,
                 max_age: float = DEFAULT_MAX_AGE, flush_interval: float = DEFAULT_FLUSH_INTERVAL,
                 header: Optional[Dict[str, Any]] = None, prefix: str = DEFAULT_PREFIX,
                 write: WriteFn = os.write) -> None:
        if max_bytes < 1024:
            raise ConfigError(f"log: max bytes {max_bytes} is too small (at least 1024)")
        if backups < 0:
            raise ConfigError(f"log: backups {backups} must not be negative")
        if flush_interval < 0:
            raise ConfigError(f"log: flush interval {flush_interval} must not be negative")
        self.directory = directory
        self.max_bytes = max_bytes
        self.backups = backups
        self.max_age = max_age
        self.flush_interval = flush_interval
        self.prefix = prefix
        self._header_fields = dict(header or {})
        self._write = write
        self._dir_fd = _open_dir(directory, create=True)
        self._fd = -1
        self._name = ""
        self._size = 0  # bytes of complete records in the current file
        self._header_bytes = 0  # size of the current file's header record
        self._opened = 0.0
        self._pending: List[bytes] = []
        self._pending_bytes = 0
        self._pending_records = 0
        self._last_flush = time.monotonic()
        self._packer = msgpack.Packer(use_bin_type=True)
        #: counters: records written (accepted), lost to write errors, files rotated
        self.records = 0
        self.lost_records = 0
        self.rotations = 0
        self.rotate_errors = 0
        self._retry_rotate = 0.0
        self._unreported_lost = 0
        self._lost_reason = ""
        self.seq = self._resume_seq()
        self._open_new()

    # -- setup

    def _resume_seq(self) -> int:
        """One past the last complete record's seq in the newest file that has one (0 for a new log)."""
        for name in reversed(_list(self._dir_fd, self.prefix)):
            last = None
            try:
                for rec in _read_file(self._dir_fd, name, None):
                    last = rec
            except LogFormatError:
                continue
            if last is not None and isinstance(last.get("seq"), int):
                return int(last["seq"]) + 1
        return 0

    def _create(self) -> Tuple[int, str]:
        name = _file_name(self.prefix, self.seq)
        fd = os.open(name, _O_FLAGS, 0o600, dir_fd=self._dir_fd)
        os.fchmod(fd, 0o600)
        return fd, name

    def _open_new(self) -> None:
        try:
            fd, name = self._create()
        except OSError as err:
            path = os.path.join(self.directory, _file_name(self.prefix, self.seq))
            if err.errno == errno.ELOOP:
                raise ConfigError(f"log file {path}: is a symlink; refusing to follow it") from err
            raise ConfigError(f"log file {path}: {_strerror(err)}") from err
        self._adopt(fd, name)

    def _adopt(self, fd: int, name: str) -> None:
        self._fd, self._name, self._size, self._opened = fd, name, 0, time.monotonic()
        hdr: Dict[str, Any] = {
            "seq": self.seq, "ts": time.time_ns(), "type": "header", "format": FORMAT_VERSION,
            "host": socket.gethostname(), "boot_id": boot_id(), "object": "", "start_time": time.time_ns(),
            "pid": os.getpid(),
        }
        hdr.update(self._header_fields)
        hdr["seq"] = self.seq
        self.seq += 1
        self._add(self._packer.pack(hdr), 1)
        self._flush_pending()
        self._header_bytes = self._size
        self._prune()

    def _prune(self) -> None:
        names = _list(self._dir_fd, self.prefix)
        old = [n for n in names if n != self._name]
        for name in old[: max(0, len(old) - self.backups)]:
            try:
                os.unlink(name, dir_fd=self._dir_fd)
            except OSError:
                pass

    # -- writing

    @property
    def current_file(self) -> str:
        return os.path.join(self.directory, self._name)

    def _check_open(self) -> None:
        if self._dir_fd < 0:
            raise ConfigError(f"log {self.directory}: the writer is closed")

    def _needs_rotation(self, incoming: int) -> bool:
        size = self._size + self._pending_bytes
        if self._retry_rotate and time.monotonic() < self._retry_rotate:
            return False
        # A file holding only its header is never rotated away: the batch goes into it, however large.
        return size > self._header_bytes and (size + incoming > self.max_bytes
                             or (self.max_age > 0 and time.monotonic() - self._opened >= self.max_age))

    def _stamp(self, record: Dict[str, Any]) -> Dict[str, Any]:
        out: Dict[str, Any] = {"seq": self.seq, "ts": record.get("ts") or time.time_ns()}
        out.update(record)
        return out

    def write(self, record: Dict[str, Any]) -> int:
        """Append one record; returns its seq. ``ts`` defaults to now."""
        self._check_open()
        out = self._stamp(record)
        out["seq"] = self.seq
        data = self._packer.pack(out)
        if self._needs_rotation(len(data)):
            self.rotate()  # the new header takes this seq
            out["seq"] = self.seq
            data = self._packer.pack(out)
        self.seq += 1
        self._add(data, 1)
        return self.seq - 1

    def write_many(self, records: Iterable[Dict[str, Any]]) -> None:
        """Append records in order, assigning seq (and ts where missing)."""
        self._check_open()
        stamped = [self._stamp(r) for r in records]
        if not stamped:
            return
        for i, r in enumerate(stamped):
            r["seq"] = self.seq + i
        data = pack_records(stamped)
        if self._needs_rotation(len(data)):
            # Rotate once: a batch larger than max_bytes goes whole into the new file rather than leaving
            # a file that holds only its header. The new header takes a seq, so stamp again.
            self.rotate()
            for i, r in enumerate(stamped):
                r["seq"] = self.seq + i
            data = pack_records(stamped)
        self.seq += len(stamped)
        self._add(data, len(stamped))

    def reserve(self, n: int, size_hint: int = 0) -> int:
        """Reserve ``n`` consecutive seq values for records the caller packs itself; returns the first.

        Rotation is decided here (with ``size_hint`` bytes about to come); call :meth:`write_packed` right
        after, with nothing written in between.
        """
        self._check_open()
        if self._needs_rotation(size_hint):
            self.rotate()
        first = self.seq
        self.seq += n
        return first

    def write_packed(self, data: bytes, count: int) -> None:
        """Append ``count`` records already packed (with seqs from :meth:`reserve`)."""
        self._add(data, count)

    def _add(self, data: bytes, count: int) -> None:
        self._pending.append(data)
        self._pending_bytes += len(data)
        self._pending_records += count
        if self._pending_bytes >= _FLUSH_BYTES:
            self._flush_pending()

    def lost(self, count: int, reason: str, **extra: Any) -> None:
        """Record that ``count`` records never reached the log (e.g. the kernel could not queue them)."""
        if count > 0:
            rec: Dict[str, Any] = {"type": "lost", "count": int(count), "reason": reason}
            rec.update(extra)
            self.write(rec)

    def flush_due(self, now: Optional[float] = None) -> Optional[float]:
        """Seconds until :meth:`maybe_flush` will write what is pending (0 when overdue); None when nothing
        is pending. Lets a caller sleep exactly until then."""
        if not self._pending and not self._unreported_lost:
            return None
        now = time.monotonic() if now is None else now
        return max(0.0, self._last_flush + self.flush_interval - now)

    def maybe_flush(self, now: Optional[float] = None) -> bool:
        """Flush if ``flush_interval`` has passed since the last flush (cheap to call often; no write when
        nothing is pending)."""
        now = time.monotonic() if now is None else now
        if now - self._last_flush < self.flush_interval:
            return False
        self.flush()
        if self.max_age > 0 and self._fd >= 0 and now - self._opened >= self.max_age and self._size > 0:
            self.rotate()
        return True

    def flush(self) -> None:
        """Write everything pending to the current file (one write; a failure is counted, never raised)."""
        self._last_flush = time.monotonic()
        self._flush_pending()

    def _flush_pending(self) -> None:
        if (not self._pending and not self._unreported_lost) or self._fd < 0:
            return
        chunks = list(self._pending)
        count = self._pending_records
        self._pending.clear()
        self._pending_bytes = 0
        self._pending_records = 0
        reported = self._unreported_lost
        if reported:
            # after the records it follows, so seq order holds; it takes back its seq if the write fails
            chunks.append(self._packer.pack({
                "seq": self.seq, "ts": time.time_ns(), "type": "lost", "count": reported,
                "reason": self._lost_reason, "source": "log"}))
            self.seq += 1
        data = b"".join(chunks) if len(chunks) > 1 else chunks[0]
        done = 0
        try:
            while done < len(data):
                done += self._write(self._fd, data[done:] if done else data)
        except OSError as err:
            try:  # drop a partial record so the file stays readable
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass
            if reported:
                self.seq -= 1
            self.lost_records += count
            self._unreported_lost += count
            self._lost_reason = f"log write failed: {_strerror(err)}"
            return
        self._size += len(data)
        self.records += count
        self._unreported_lost -= reported

    def rotate(self) -> None:
        """Finish the current file and start a new one (with a new header).

        If the new file cannot be created (a full disk, a full directory), writing goes on in the current
        file and creating one is retried a second later: rotation never loses records.
        """
        self._flush_pending()
        if self._fd >= 0 and time.monotonic() < self._retry_rotate:
            return
        try:
            fd, name = self._create()
        except OSError as err:
            self.rotate_errors += 1
            self._retry_rotate = time.monotonic() + 1.0
            log.warning("log %s: cannot start a new file: %s", self.directory, _strerror(err))
            if self._fd < 0:
                why = _strerror(err)
                raise ConfigError(f"log dir {self.directory}: cannot create a file: {why}") from err
            return
        self._close_file()
        self.rotations += 1
        self._adopt(fd, name)

    def reopen(self) -> None:
        """Start a new file now, e.g. after logrotate moved the current one away (SIGHUP)."""
        self.rotate()

    def _close_file(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def close(self) -> None:
        """Flush and close; idempotent."""
        if self._dir_fd < 0:
            return
        self._flush_pending()
        self._close_file()
        os.close(self._dir_fd)
        self._dir_fd = -1

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if self._dir_fd >= 0:
                self._close_file()
                os.close(self._dir_fd)
                self._dir_fd = -1
        except Exception:
            pass


# -- reading

_CHUNK = 1 << 16


def _open_file(dir_fd: int, name: str) -> int:
    try:
        return os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise LogFormatError(f"log file {name}: is a symlink; refusing to follow it") from err
        raise LogFormatError(f"log file {name}: {_strerror(err)}") from err


class _Stream:
    """One file's unpacker, with the offset just past the last complete record (``tell()`` alone also counts
    the consumed part of an incomplete container)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=64 << 20)
        self.fed = 0
        self.complete = 0

    def feed(self, chunk: bytes) -> Iterator[Dict[str, Any]]:
        self.unpacker.feed(chunk)
        self.fed += len(chunk)
        return _feed(self)

    @property
    def torn(self) -> bool:
        return self.fed > self.complete


def _feed(stream: _Stream) -> Iterator[Dict[str, Any]]:
    unpacker, name = stream.unpacker, stream.name
    try:
        for rec in unpacker:
            if not isinstance(rec, dict):
                raise LogFormatError(f"log file {name}: a record is a {type(rec).__name__}, not a map")
            stream.complete = unpacker.tell()
            yield rec
    except (msgpack.exceptions.ExtraData, msgpack.exceptions.FormatError, msgpack.exceptions.StackError,
            ValueError) as err:
        raise LogFormatError(f"log file {name}: corrupt record ({err})") from err


def _read_file(dir_fd: int, name: str, counter: Optional[List[int]]) -> Iterator[Dict[str, Any]]:
    """Records of one file as it is now; a torn last record is skipped (and counted in ``counter[0]``)."""
    fd = _open_file(dir_fd, name)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LogFormatError(f"log file {name}: not a regular file")
        stream = _Stream(name)
        while True:
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                break
            yield from stream.feed(chunk)
        if stream.torn and counter is not None:
            counter[0] += 1
    finally:
        os.close(fd)


class LogReader:
    """Reads the log in ``directory``: every file in order, optionally following new records and files.

    Following works like ``tail -F`` without its races: at the end of a file the reader waits for more bytes
    until a newer file appears, then reads what remains and moves on; files are never renamed, so nothing is
    read twice or skipped. A gap in ``seq`` between files (files pruned before they were read) is counted in
    :attr:`gaps`; torn last records in :attr:`torn`.
    """

    def __init__(self, directory: str, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.directory = directory
        self.prefix = prefix
        self._dir_fd = _open_dir(directory, create=False)
        self.torn = 0
        self.gaps = 0
        self.missing = 0

    def files(self) -> List[str]:
        """Log file names, oldest first."""
        return _list(self._dir_fd, self.prefix)

    def close(self) -> None:
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def tail(self, n: int) -> List[Dict[str, Any]]:
        """The last ``n`` records (reading only as many of the newest files as needed)."""
        if n <= 0:
            return []
        out: Deque[Dict[str, Any]] = deque()
        for name in reversed(self.files()):
            counter = [0]
            recs: Deque[Dict[str, Any]] = deque(maxlen=n)
            try:
                recs.extend(_read_file(self._dir_fd, name, counter))
            except LogFormatError as err:
                if "no such file" in str(err):
                    continue
                raise
            self.torn += counter[0]
            while recs and len(out) < n:
                out.appendleft(recs.pop())
            if len(out) >= n:
                break
        return list(out)

    def file_start(self, name: str) -> Optional[int]:
        """The header ``ts`` of a file (None if it has no readable header)."""
        try:
            for rec in _read_file(self._dir_fd, name, None):
                ts = rec.get("ts")
                return int(ts) if isinstance(ts, int) else None
        except LogFormatError:
            return None
        return None

    def records(self, follow: bool = False, *, poll_interval: float = 0.2, since_ns: Optional[int] = None,
                stop: Optional[Callable[[], bool]] = None, start_after_seq: Optional[int] = None,
                ) -> Iterator[Dict[str, Any]]:
        """Every record in order; with ``follow``, keep waiting for new records until ``stop()`` is true.

        ``since_ns`` skips whole files that end before it (by the next file's header time); records are not
        filtered here. ``start_after_seq`` skips records up to and including that seq (resuming a reader).
        """
        last_seq: Optional[int] = start_after_seq
        names: Optional[List[str]] = self.files()
        if since_ns is not None and names:
            keep = 0
            for i in range(1, len(names)):
                t = self.file_start(names[i])
                if t is not None and t <= since_ns:
                    keep = i
            names = names[keep:]
        live = [follow]

        def following() -> bool:
            # once stop() says so, finish what is on disk now and return (nothing written before is missed)
            if live[0] and stop is not None and stop():
                live[0] = False
            return live[0]

        finished = ""
        while True:
            listing = names if names is not None else self.files()
            names = None
            todo = [n for n in listing if n > finished]
            if not todo:
                if not following():
                    return
                time.sleep(poll_interval)
                continue
            current = todo[0]
            for rec in self._follow_file(current, following, poll_interval):
                seq = rec.get("seq")
                if isinstance(seq, int):
                    if last_seq is not None:
                        if seq <= last_seq:
                            continue
                        if seq > last_seq + 1:
                            self.gaps += 1
                            self.missing += seq - last_seq - 1
                    last_seq = seq
                yield rec
            finished = current

    def _newer_exists(self, name: str) -> bool:
        return any(n > name for n in self.files())

    def _follow_file(self, name: str, following: Callable[[], bool],
                     poll_interval: float) -> Iterator[Dict[str, Any]]:
        try:
            fd = _open_file(self._dir_fd, name)
        except LogFormatError as err:
            if "no such file" in str(err):  # pruned before we got to it; the seq gap reports the loss
                return
            raise
        try:
            stream = _Stream(name)
            while True:
                chunk = os.read(fd, _CHUNK)
                if chunk:
                    yield from stream.feed(chunk)
                    continue
                # at the end of this file for now
                if not following():
                    break
                if self._newer_exists(name):
                    # the writer has finished this file; read what it wrote last, then move on
                    while True:
                        chunk = os.read(fd, _CHUNK)
                        if not chunk:
                            break
                        yield from stream.feed(chunk)
                    break
                time.sleep(poll_interval)
            if stream.torn:
                self.torn += 1
        finally:
            os.close(fd)


def iter_files(directory: str, prefix: str = DEFAULT_PREFIX) -> List[Tuple[str, int]]:
    """``(path, size)`` of each log file, oldest first (for status displays)."""
    fd = _open_dir(directory, create=False)
    try:
        out = []
        for name in _list(fd, prefix):
            try:
                out.append((os.path.join(directory, name), os.stat(name, dir_fd=fd).st_size))
            except OSError:
                continue
        return out
    finally:
        os.close(fd)
