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
may end in a torn record: the reader skips it (and counts it in :attr:`LogReader.torn`); the restarted writer
resumes ``seq`` above every seq seen, in a new file, and writes a ``crash`` record (the dead writer's pid, the
window from its last record to now). Damage anywhere (garbage, power-loss NUL padding, a length field past
the reader's limits) is skipped up to the next record and reported with file, offset and size; found in the
newest file at start, it is also a ``gap`` record. A failed write (full disk, I/O error) is truncated back to
the last complete record, the records are counted as lost, and a ``lost`` record (``reason: "log"``,
``error``) is written once writing works again; a removed directory is recreated. Never a crash, never silent.

Ownership. One writer per directory: it holds the directory's flock and owner record
(:class:`rawbpf.dirlock.DirLock`) while open; a dead writer's record is how a crash is recognised.

Safety. Files are created 0600 with ``O_EXCL | O_NOFOLLOW`` relative to a directory fd opened with
``O_NOFOLLOW``: a symlink in place of the directory or of a file is refused. A new directory is 0700 whatever
the umask; a group- or world-writable one is refused.

Rotation. A new file is started when the current one would pass ``max_bytes`` (default 10 MB) or is older than
``max_age`` seconds, or on :meth:`LogWriter.reopen` (SIGHUP, for logrotate); ``backups`` older files of the
same object (default 5) are kept; another object's files are never deleted.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Tuple

import msgpack

from rawbpf._closing import Closing
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
            os.makedirs(path, mode=0o700, exist_ok=True)
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


def check_dir_mode(path: str, dir_fd: Optional[int] = None) -> None:
    """Refuse a log directory others may write to: they could plant files the reader trusts or remove the
    audit trail. (New directories are made 0700 whatever the umask.)"""
    try:
        st = os.fstat(dir_fd) if dir_fd is not None else os.stat(path)
    except OSError:
        return
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        mode = stat.S_IMODE(st.st_mode)
        raise ConfigError(f"log dir {path}: group- or world-writable (mode {mode:04o}), so others could add "
                          f"or remove log files; fix it with: chmod go-w {path}")


def writer_of(directory: str, pid: int, prefix: str = DEFAULT_PREFIX) -> str:
    """``'object' (pid N)`` for the process writing ``directory``, from its newest file's header."""
    try:
        fd = _open_dir(directory, create=False)
    except ConfigError:
        return ""
    try:
        for name in reversed(_list(fd, prefix)):
            hdr = read_header(fd, name)
            if hdr is not None and hdr.get("pid") == pid:
                return repr(str(hdr.get("object") or "?"))
        return ""
    finally:
        os.close(fd)


def probe(directory: str, prefix: str = DEFAULT_PREFIX) -> None:
    """Fail now, as :class:`LogWriter` would later, when ``directory`` cannot take a writer: another live
    writer holds it, it is group/world-writable, a symlink, or cannot be created."""
    from rawbpf.dirlock import lock_holder

    if os.path.isdir(directory):
        check_dir_mode(directory)
        holder = lock_holder(directory)
        if holder is not None and holder != os.getpid():
            what = writer_of(directory, holder, prefix) or "another writer"
            raise ConfigError(f"log dir {os.path.abspath(directory)} is in use: {what} is running as pid "
                              f"{holder} (stop it first, or give another --log-dir)")


class LogWriter(Closing):
    """Appends records to the rotating msgpack log in ``directory`` (created 0700 if missing).

    Single-threaded. ``write`` / ``write_many`` assign ``seq`` (and ``ts`` when a record has none); the fast
    path is ``reserve(n)`` then ``write_packed(data, n)`` with records that already carry the reserved ``seq``
    values. ``write`` is the injectable ``write(2)`` (tests simulate a full disk with it).

    One writer per directory: the writer holds the directory's lock and owner record (:class:`rawbpf.dirlock.
    DirLock`) until :meth:`close`; a second one is refused naming the running pid and object. A dead
    writer's owner record is how a crash is recognised: the first records after the new header are then a
    ``crash`` record (plus ``crash_fields(info)``, e.g. the kernel's drops meanwhile) and, for damage found
    in the newest file, a ``gap`` record.
    """

    def __init__(self, directory: str, *, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS,
                 max_age: float = DEFAULT_MAX_AGE, flush_interval: float = DEFAULT_FLUSH_INTERVAL,
                 header: Optional[Dict[str, Any]] = None, prefix: str = DEFAULT_PREFIX,
                 write: WriteFn = os.write,
                 crash_fields: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None) -> None:
        from rawbpf.dirlock import DirLock

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
        self._dir_fd = -1
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
        self._lost_error = ""
        self._failing = False  # writes fail (full disk, I/O error) or the directory is gone
        self._ok_since = 0.0
        self._lost_at_outage = 0
        self._next_dir_check = 0.0
        self._closed = False
        if os.path.isdir(directory) and not os.path.islink(directory):
            check_dir_mode(directory)
        self._lock = DirLock(directory, str(self._header_fields.get("object") or "a log writer"),
                             keep_dir=True, describe=lambda pid: writer_of(directory, pid, prefix))
        self._lock.kind = "log dir"
        owner = self._lock.acquire()
        try:
            self._dir_fd = _open_dir(directory, create=False)
            check_dir_mode(directory, self._dir_fd)
            resumed = self._resume()
            #: where the log stood when this writer started (see :meth:`_resume`)
            self.resumed = resumed
            #: the pid of a writer that died holding this directory (its crash record is written), or None
            self.crashed_writer = owner.stale_pid
            self.seq = resumed["next_seq"]
            self._open_new()
            if owner.stale_pid is not None:
                info = {"writer_pid": owner.stale_pid, "since": resumed["last_ts"], "until": time.time_ns(),
                        "last_seq": resumed["last_seq"], "torn_bytes": resumed["torn_bytes"],
                        "header": resumed["header"], "records": resumed["records"]}
                rec: Dict[str, Any] = {"type": "crash", "writer_pid": owner.stale_pid, "since": info["since"],
                                       "until": info["until"], "torn_bytes": info["torn_bytes"]}
                if crash_fields is not None:
                    rec.update(crash_fields(info))
                self.write(rec)
            damage = list(resumed["damage"])
            if owner.stale_pid is None and resumed["torn_bytes"]:  # no crash: an incomplete record is damage
                damage.append((resumed["file"], resumed["torn_at"], resumed["torn_bytes"]))
            for name, off, n in damage:
                self.write({"type": "gap", "file": name, "offset": off, "bytes": n,
                            "last_seq": resumed["last_seq"]})
            self._flush_pending()
        except BaseException:
            self.close()
            raise

    # -- setup

    def _resume(self) -> Dict[str, Any]:
        """Where the log stands: one past every seq seen (the newest file with a record, and every file's
        name), the last record's time, damaged regions and torn bytes of that file, its header and records."""
        names = _list(self._dir_fd, self.prefix)
        out: Dict[str, Any] = {"next_seq": 0, "last_seq": None, "last_ts": None, "damage": [],
                               "torn_bytes": 0, "header": None, "records": []}
        for name in names:
            m = _NAME.match(name)
            if m:
                out["next_seq"] = max(out["next_seq"], int(m.group("seq")) + 1)
        for name in reversed(names):
            stream = _Stream(name, track=True)
            recs: List[Dict[str, Any]] = []
            try:
                for rec in _read_stream(self._dir_fd, name, stream=stream):
                    recs.append(rec)
            except LogFormatError:
                continue
            out["damage"] = [(name, off, n) for off, n in stream.regions]
            out["file"] = name
            if stream.max_seq is None:
                continue
            out["next_seq"] = max(out["next_seq"], stream.max_seq + 1)
            out["last_seq"] = stream.max_seq
            last = stream.last or {}
            out["last_ts"] = last.get("ts") if isinstance(last.get("ts"), int) else None
            out["torn_bytes"] = stream.fed - stream.complete if stream.torn else 0
            out["torn_at"] = stream.complete
            out["header"] = recs[0] if recs and recs[0].get("type") == "header" else None
            out["records"] = [r for r in recs if r.get("type") in ("lost", "crash", "gap")]
            break
        return out

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
            "host": os.uname().nodename, "boot_id": boot_id(), "object": "", "start_time": time.time_ns(),
            "pid": os.getpid(),
        }
        hdr.update(self._header_fields)
        hdr["seq"] = self.seq
        self.seq += 1
        self._add(self._packer.pack(hdr), 1)
        self._flush_pending()
        self._header_bytes = self._size
        self._prune()

    def set_header(self, **fields: Any) -> None:
        """Fields the header of every file started from now on carries (e.g. counters as of that moment)."""
        self._header_fields.update(fields)

    def _prune(self) -> None:
        """Delete the oldest files beyond ``backups``: only files whose header names this writer's object
        (another object's files, and files whose header cannot be read, are never deleted)."""
        mine = str(self._header_fields.get("object") or "")
        names = [n for n in _list(self._dir_fd, self.prefix) if n != self._name]
        own = []
        for name in names:
            hdr = read_header(self._dir_fd, name)
            if hdr is not None and str(hdr.get("object") or "") == mine:
                own.append(name)
        for name in own[: max(0, len(own) - self.backups)]:
            try:
                os.unlink(name, dir_fd=self._dir_fd)
            except OSError:
                pass

    # -- writing

    @property
    def current_file(self) -> str:
        return os.path.join(self.directory, self._name)

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigError(f"log {self.directory}: the writer is closed")

    def _needs_rotation(self, incoming: int) -> bool:
        size = self._size + self._pending_bytes
        if self._retry_rotate and time.monotonic() < self._retry_rotate:
            return False
        # A file holding only its header is never rotated away: the batch goes into it, however large.
        return self._fd >= 0 and size > self._header_bytes and (
            size + incoming > self.max_bytes
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

    def write_numbered(self, records: List[Dict[str, Any]]) -> None:
        """Append records that already have ``seq`` as their first key and their ``ts``: numbers them in
        place (what :meth:`write_many` does without copying each record)."""
        self._check_open()
        if not records:
            return
        seq = self.seq
        for r in records:
            r["seq"] = seq
            seq += 1
        data = pack_records(records)
        if self._needs_rotation(len(data)):
            self.rotate()  # as in write_many: once, and the new header took a seq
            seq = self.seq
            for r in records:
                r["seq"] = seq
                seq += 1
            data = pack_records(records)
        self.seq = seq
        self._add(data, len(records))

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
        """Write everything pending to the current file (one write; a failure is counted, never raised).

        First it checks (a stat and an fstat) that the directory and the current file are still there: a
        removed directory is recreated (0700, locked again; what was pending for it is counted as lost) and a
        removed file replaced by a new one, so records never go to a file nobody can read."""
        self._last_flush = time.monotonic()
        due = self._dir_fd >= 0 or self._last_flush >= self._next_dir_check  # recreating: once a second
        if not self._closed and due and (self._dir_fd < 0 or self._pending or self._unreported_lost):
            self._next_dir_check = self._last_flush + 1.0
            self._check_dir()
        self._flush_pending()

    def _check_dir(self) -> None:
        if self._dir_fd >= 0:
            try:
                same = os.path.samestat(os.stat(self.directory), os.fstat(self._dir_fd))
            except OSError:
                same = False
            if same:
                try:
                    if self._fd >= 0 and os.fstat(self._fd).st_nlink == 0:
                        log.warning("log %s: the current file was removed; starting a new one",
                                    self.directory)
                        self._retry_rotate = 0.0
                        self.rotate()
                except OSError:
                    pass
                return
            self._lose_dir()
        self._recreate_dir()

    def _lose_dir(self) -> None:
        """The directory was removed or replaced: stop writing into it (records are counted as lost)."""
        self._drop_pending(self._pending_records)  # a new file starts with its header: these cannot follow it
        self._pending.clear()
        self._pending_bytes = 0
        self._pending_records = 0
        self._close_file()
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1
        self._lock.record = None  # the record went with the directory
        self._lock.release()
        self._fail("log dir removed")

    def _recreate_dir(self) -> None:
        from rawbpf.dirlock import DirLock

        lock = DirLock(self.directory, self._lock.what, keep_dir=True, describe=self._lock.describe)
        lock.kind = "log dir"
        try:
            lock.acquire()
            dir_fd = _open_dir(self.directory, create=False)
        except (ConfigError, OSError):
            lock.release()
            return  # still gone (or taken): counted as lost, tried again in a second
        self._lock, self._dir_fd = lock, dir_fd
        try:
            fd, name = self._create()
        except OSError as err:
            self._fail(f"log dir recreated but {_strerror(err)}")
            return
        log.warning("log dir %s: recreated it; writing again (records meanwhile are counted as lost)",
                    self.directory)
        self._adopt(fd, name)

    def _fail(self, why: str) -> None:
        """Say once, when writing stops working, that records are now counted as lost."""
        self._lost_error = why
        self._ok_since = 0.0
        if not self._failing:
            self._failing = True
            self._lost_at_outage = self.lost_records
            log.warning("log %s: cannot write (%s): counting records as lost (reason log) until it can",
                        self.directory, why)

    def _recovered(self) -> None:
        """An outage ends (and is said to) only after writes have worked for 10 s: a nearly full disk that
        takes a small write now and then is one outage, not a warning per write."""
        if not self._failing:
            return
        now = time.monotonic()
        if not self._ok_since:
            self._ok_since = now
        elif now - self._ok_since >= 10.0:
            self._failing = False
            log.warning("log %s: writing again; %d records lost meanwhile", self.directory,
                        self.lost_records - self._lost_at_outage)

    def _drop_pending(self, count: int) -> None:
        self.lost_records += count
        self._unreported_lost += count

    def _flush_pending(self) -> None:
        if not self._pending and not self._unreported_lost:
            return
        if self._fd < 0:
            count = self._pending_records
            self._pending.clear()
            self._pending_bytes = 0
            self._pending_records = 0
            self._drop_pending(count)
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
                "reason": "log", "error": self._lost_error}))
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
            self._drop_pending(count)
            self._fail(_strerror(err))
            return
        self._size += len(data)
        self.records += count
        self._unreported_lost -= reported
        self._recovered()

    def rotate(self) -> None:
        """Finish the current file and start a new one (with a new header).

        If the new file cannot be created (a full disk, a full directory), writing goes on in the current
        file and creating one is retried a second later: rotation never loses records.
        """
        self._flush_pending()
        if self._dir_fd < 0 or (self._fd >= 0 and time.monotonic() < self._retry_rotate):
            return
        try:
            fd, name = self._create()
        except OSError as err:
            self.rotate_errors += 1
            self._retry_rotate = time.monotonic() + 1.0
            log.warning("log %s: cannot start a new file: %s", self.directory, _strerror(err))
            if self._fd < 0:
                self._fail(_strerror(err))
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
        """Flush and close; removes the owner record and unlocks (a clean stop is not a crash). Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._fd >= 0:
                self._flush_pending()
        finally:
            self._close_file()
            if self._dir_fd >= 0:
                os.close(self._dir_fd)
                self._dir_fd = -1
            self._lock.release()

    def _close_at_collection(self) -> None:
        """Like :meth:`close` without the flush: a collected writer's pending records are not forced out."""
        if not self._closed:
            self._closed = True
            self._close_file()
            if self._dir_fd >= 0:
                os.close(self._dir_fd)
                self._dir_fd = -1
            self._lock.release()


# -- reading

_CHUNK = 1 << 16
# What one record may declare before the reader refuses to allocate it: the writer never comes near these
# (argv is at most 64 strings; a ring record at most a ring's size), a damaged length field cannot make the
# reader reserve gigabytes. A record over a limit reads as damage and is skipped.
_LIMITS: Dict[str, int] = {"max_buffer_size": 64 << 20, "max_str_len": 16 << 20, "max_bin_len": 64 << 20,
                           "max_array_len": 1 << 16, "max_map_len": 1 << 12, "max_ext_len": 1 << 20}
_UNPACK_ERRORS = (msgpack.exceptions.ExtraData, msgpack.exceptions.FormatError, msgpack.exceptions.StackError,
                  msgpack.exceptions.BufferFull, ValueError, TypeError)
# every record the writer makes starts with its map header and the key "seq": reading resumes there after
# damage
_RECORD_START = re.compile(rb"(?:[\x80-\x8f]|\xde[\x00-\xff]{2}|\xdf[\x00-\xff]{4})\xa3seq")

DamageFn = Callable[[str, int, int], None]


def _unpacker(errors: str = "strict") -> msgpack.Unpacker:
    # strict UTF-8 is the fast path; a string that is not UTF-8 is read again with surrogateescape (its bytes
    # survive, and text output shows them as \xNN)
    return msgpack.Unpacker(raw=False, strict_map_key=False, unicode_errors=errors, **_LIMITS)


def _is_record(rec: Any) -> bool:
    return isinstance(rec, dict) and isinstance(rec.get("seq"), int) and isinstance(rec.get("type"), str)


def _find_record(data: bytes, start: int) -> Optional[int]:
    """The first offset at or after ``start`` where a whole, well-formed record begins (None if none)."""
    for m in _RECORD_START.finditer(data, start):
        u = _unpacker("surrogateescape")
        try:
            u.feed(data[m.start():m.start() + _CHUNK])
            try:
                rec = u.unpack()
            except msgpack.exceptions.OutOfData:
                if len(data) - m.start() <= _CHUNK:
                    continue
                u = _unpacker("surrogateescape")
                u.feed(data[m.start():])
                rec = u.unpack()
        except (msgpack.exceptions.OutOfData, *_UNPACK_ERRORS):
            continue
        if _is_record(rec):
            return m.start()
    return None


def _open_file(dir_fd: int, name: str) -> int:
    try:
        return os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise LogFormatError(f"log file {name}: is a symlink; refusing to follow it") from err
        raise LogFormatError(f"log file {name}: {_strerror(err)}") from err


class _Stream:
    """The records of one file as its bytes arrive, resynchronising after damage.

    Damage is anything that is not a record where one must begin (garbage, NUL padding from a power loss, a
    length field beyond the limits): the bytes up to the next well-formed record are skipped and reported to
    ``on_damage(file, offset, bytes)``. An incomplete record at the end is *torn* (a writer killed mid-write)
    unless a record follows it. ``complete`` is the offset just past the last record read.
    """

    last_lenient: Dict[str, Any]

    def __init__(self, name: str, on_damage: Optional[DamageFn] = None, *, track: bool = False) -> None:
        self.name = name
        self.track = track  # keep last_seq, max_seq and the last record (the writer's resume needs them)
        self.on_damage = on_damage
        self.unpacker = _unpacker()
        self.origin = 0  # the file offset where the unpacker's input starts
        self.fed = 0
        self.complete = 0
        self.chunks: Deque[Tuple[int, bytes]] = deque()  # (offset, bytes) not yet wholly before `complete`
        self.damaged = False
        self.regions: List[Tuple[int, int]] = []  # (offset, bytes) skipped
        self.last_seq: Optional[int] = None
        self.max_seq: Optional[int] = None
        self.last: Optional[Dict[str, Any]] = None

    def feed(self, chunk: bytes) -> Iterator[Dict[str, Any]]:
        self.chunks.append((self.fed, chunk))
        self.fed += len(chunk)
        if not self.damaged:
            try:
                self.unpacker.feed(chunk)
            except msgpack.exceptions.BufferFull:
                self.damaged = True
        return self._records()

    def finish(self) -> Iterator[Dict[str, Any]]:
        """At the end of the file for good: what an incomplete tail hides is damage if a record follows it;
        damage that runs to the end is skipped (and reported)."""
        if self.fed > self.complete and not self.damaged and _find_record(self._pending(), 1) is not None:
            self.damaged = True
            yield from self._records()
        if self.damaged and self.fed > self.complete:
            self._skip(self.fed - self.complete)

    @property
    def torn(self) -> bool:
        return self.fed > self.complete and not self.damaged

    def _records(self) -> Iterator[Dict[str, Any]]:
        while True:
            if self.damaged and not self._resync():
                return
            bad = False
            origin, tell, track = self.origin, self.unpacker.tell, self.track
            try:
                for rec in self.unpacker:
                    if type(rec) is not dict:
                        bad = True
                        break
                    self.complete = origin + tell()
                    if track:
                        self._track(rec)
                    yield rec
            except UnicodeDecodeError:
                bad = not self._lenient()
                if not bad:
                    rec = self.last_lenient
                    if track:
                        self._track(rec)
                    yield rec
                    continue
            except _UNPACK_ERRORS:
                bad = True
            if not bad:
                self._trim()
                return
            self.damaged = True

    def _lenient(self) -> bool:
        """The record at ``complete`` has a string that is not UTF-8: read it with surrogateescape and go on
        after it with a fresh strict unpacker (False if it is no record after all)."""
        data = self._pending()
        u = _unpacker("surrogateescape")
        u.feed(data)
        try:
            rec = u.unpack()
        except (msgpack.exceptions.OutOfData, *_UNPACK_ERRORS):
            return False
        if type(rec) is not dict:
            return False
        used = u.tell()
        self.complete += used
        self.origin = self.complete
        self.unpacker = _unpacker()
        self.unpacker.feed(data[used:])
        self.last_lenient = rec
        return True

    def _track(self, rec: Dict[str, Any]) -> None:
        seq = rec.get("seq")
        if isinstance(seq, int):
            self.last_seq = seq
            if self.max_seq is None or seq > self.max_seq:
                self.max_seq = seq
        self.last = rec

    def _pending(self) -> bytes:
        parts = []
        for off, data in self.chunks:
            if off + len(data) > self.complete:
                parts.append(data[max(0, self.complete - off):])
        return b"".join(parts)

    def _trim(self) -> None:
        while self.chunks and self.chunks[0][0] + len(self.chunks[0][1]) <= self.complete:
            self.chunks.popleft()

    def _skip(self, n: int) -> None:
        self.regions.append((self.complete, n))
        if self.on_damage is not None:
            self.on_damage(self.name, self.complete, n)
        self.complete += n
        self._trim()

    def _resync(self) -> bool:
        data = self._pending()
        at = _find_record(data, 1)
        if at is None:
            return False
        self._skip(at)
        self.origin = self.complete
        self.unpacker = _unpacker()
        self.unpacker.feed(data[at:])
        self.damaged = False
        return True


def _read_stream(dir_fd: int, name: str, on_damage: Optional[DamageFn] = None,
                 stream: Optional[_Stream] = None) -> Iterator[Dict[str, Any]]:
    """Records of one file as it is now (damage skipped); pass ``stream`` to see what was skipped or torn."""
    fd = _open_file(dir_fd, name)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LogFormatError(f"log file {name}: not a regular file")
        stream = stream or _Stream(name, on_damage)
        while True:
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                break
            yield from stream.feed(chunk)
        yield from stream.finish()
    finally:
        os.close(fd)


def _read_file(dir_fd: int, name: str, counter: Optional[List[int]],
               on_damage: Optional[DamageFn] = None) -> Iterator[Dict[str, Any]]:
    """Records of one file as it is now; a torn last record is skipped (and counted in ``counter[0]``)."""
    stream = _Stream(name, on_damage)
    yield from _read_stream(dir_fd, name, stream=stream)
    if stream.torn and counter is not None:
        counter[0] += 1


def read_header(dir_fd: int, name: str) -> Optional[Dict[str, Any]]:
    """The first record of a file if it is a ``header`` (None if the file has none readable)."""
    try:
        fd = _open_file(dir_fd, name)
    except LogFormatError:
        return None
    try:
        u = _unpacker()
        u.feed(os.read(fd, _CHUNK))
        rec = u.unpack()
    except (OSError, msgpack.exceptions.OutOfData, *_UNPACK_ERRORS):
        return None
    finally:
        os.close(fd)
    return rec if isinstance(rec, dict) and rec.get("type") == "header" else None


class LogReader(Closing):
    """Reads the log in ``directory``: every file in order, optionally following new records and files.

    Following works like ``tail -F`` without its races: at the end of a file the reader waits for more bytes
    until a newer file appears, then reads what remains and moves on; files are never renamed, so nothing is
    read twice or skipped. Damaged regions are skipped, reported to ``on_damage(file, offset, bytes)`` and
    counted in :attr:`damaged` / :attr:`skipped_bytes`; reading goes on with the rest of the file and the
    later files. A jump in ``seq`` (files pruned before they were read, records in a damaged region) is
    counted in :attr:`gaps` / :attr:`missing` and, with ``mark_missing``, yielded in place as a record
    ``{"type": "missing", "count", "after_seq", "next_seq", "reason"}`` that is not in any file. Torn last
    records are counted in :attr:`torn`.
    """

    def __init__(self, directory: str, *, prefix: str = DEFAULT_PREFIX, on_damage: Optional[DamageFn] = None,
                 mark_missing: bool = False) -> None:
        self.directory = directory
        self.prefix = prefix
        self.on_damage = on_damage
        self.mark_missing = mark_missing
        self._dir_fd = _open_dir(directory, create=False)
        self.torn = 0
        self.gaps = 0
        self.missing = 0
        self.damaged = 0
        self.skipped_bytes = 0

    def _damage(self, name: str, offset: int, n: int) -> None:
        self.damaged += 1
        self.skipped_bytes += n
        if self.on_damage is not None:
            self.on_damage(os.path.join(self.directory, name), offset, n)
        else:
            log.warning("log file %s: skipped %d damaged bytes at offset %d",
                        os.path.join(self.directory, name), n, offset)

    def files(self) -> List[str]:
        """Log file names, oldest first."""
        return _list(self._dir_fd, self.prefix)

    def close(self) -> None:
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1

    def tail(self, n: int) -> List[Dict[str, Any]]:
        """The last ``n`` records (reading only as many of the newest files as needed)."""
        if n <= 0:
            return []
        out: Deque[Dict[str, Any]] = deque()
        for name in reversed(self.files()):
            counter = [0]
            recs: Deque[Dict[str, Any]] = deque(maxlen=n)
            try:
                recs.extend(_read_file(self._dir_fd, name, counter, self._damage))
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
        hdr = read_header(self._dir_fd, name)
        ts = hdr.get("ts") if hdr is not None else None
        return int(ts) if isinstance(ts, int) else None

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
            first_in_file = True
            damaged_before = self.damaged
            for rec in self._follow_file(current, following, poll_interval):
                seq = rec.get("seq")
                if isinstance(seq, int):
                    if last_seq is not None:
                        if seq <= last_seq:
                            continue
                        if seq > last_seq + 1:
                            self.gaps += 1
                            self.missing += seq - last_seq - 1
                            if self.mark_missing:
                                reason = ("damaged" if self.damaged > damaged_before
                                          else "rotated away" if first_in_file else "not written")
                                yield {"type": "missing", "ts": rec.get("ts"), "count": seq - last_seq - 1,
                                       "after_seq": last_seq, "next_seq": seq, "reason": reason}
                    last_seq = seq
                first_in_file = False
                damaged_before = self.damaged
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
            stream = _Stream(name, self._damage)
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
            yield from stream.finish()
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
