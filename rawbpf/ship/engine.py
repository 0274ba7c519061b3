"""Follow the log and deliver every record to each destination at least once; touches files and the network.

One :class:`Worker` thread per destination, each with its own :class:`~rawbpf.logfile.LogReader` and cursor,
so a slow or dead destination never holds back another. A worker reads records in order, encodes them in
batches (``batch`` records), and keeps at most ``window`` records sent and not yet acknowledged: when the
window is full it stops reading, so memory stays bounded however long a destination is down (the log on
disk is the buffer). An acknowledgement moves the cursor, which is written atomically at once.

Failures: a refused or broken connection, a protocol error, or no acknowledgement within ``ack_timeout``
closes the connection; the worker reconnects after a backoff (0.5 s doubling to 30 s, with ±25 % jitter so a
fleet does not reconnect in step) and resends every unacknowledged batch, the only records that can arrive
twice. Records rotated out of the log before the worker read them (a destination stalled longer than the
log's ``backups`` cover) show up as a jump in ``seq`` at the start of a file, which the reader marks: the
worker counts them (``unshipped``) and sends, in their place, ``{"type": "lost", "reason": "unshipped",
"count": N, "first_seq": A, "last_seq": B}``; records lost in a damaged part of a file are announced the
same way with ``reason: "damaged"``.

The worker relies on :meth:`LogReader.records` calling ``stop()`` each time it reaches the end of what is
written: that is where a partial batch is sent and acknowledgements are read while the log is quiet.
"""

from __future__ import annotations

import logging
import os
import random
import re
import socket
import ssl
import threading
import time
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

from rawbpf.errors import ConfigError, RawBPFError
from rawbpf.logfile import LogReader
from rawbpf.ship import conn
from rawbpf.ship.cursor import Cursor, CursorFile
from rawbpf.ship.protocols import Batch, Protocol, make_protocol, read_some
from rawbpf.ship.url import Destination

__tier__ = "files"

log = logging.getLogger("rawbpf")

__all__ = ["Worker", "Shipper", "BACKOFF_MIN", "BACKOFF_MAX", "backoff_delay"]

Record = Dict[str, Any]
BACKOFF_MIN = 0.5
BACKOFF_MAX = 30.0
_NAME_SEQ = re.compile(r"-(\d{16})-\d{19}\.mlog$")
_POLL = 0.02  # the reader's sleep at the end of the log; the worker waits for acks in between


class _Stopped(Exception):
    """Raised inside a worker's reading loop when it is told to stop."""


def backoff_delay(base: float, rng: random.Random) -> float:
    """``base`` with ±25 % jitter."""
    return base * rng.uniform(0.75, 1.25)


def _file_seq(name: str) -> Optional[int]:
    m = _NAME_SEQ.search(name)
    return int(m.group(1)) if m else None


class Worker:
    """Ships the log in ``log_dir`` to one destination until ``stop`` is set (or, with ``drain``, until
    everything on disk is acknowledged)."""

    def __init__(self, dest: Destination, log_dir: str, *, stop: threading.Event, hostname: str = "",
                 drain: bool = False, grace: float = 5.0) -> None:
        self.dest = dest
        self.log_dir = log_dir
        self.stop = stop
        self.drain = drain
        self.grace = grace
        self.hostname = dest.text("hostname") or hostname or socket.gethostname()
        self.proto: Protocol = make_protocol(dest, self.hostname)
        self.ctx: Optional[ssl.SSLContext] = conn.tls_context(dest) if dest.tls else None
        self.cursor_file = CursorFile(log_dir, dest.key, dest.url)
        self.rng = random.Random(os.urandom(8))
        self.batch_size = dest.batch
        self.window = dest.window
        # connection
        self.sock: Optional[conn.Socket] = None
        self.connected_since = 0
        self.next_attempt = 0.0
        self.backoff = BACKOFF_MIN
        # reading and sending
        self.pending: List[Record] = []
        self.inflight: Deque[Batch] = deque()
        self.inflight_records = 0
        self.tokens: Dict[Any, Batch] = {}
        self.file = ""
        self.cursor = Cursor(seq=None)
        self.done = threading.Event()  # drain finished
        # what status shows
        self.last_error = ""
        self.last_error_at = 0
        self.read_seq: Optional[int] = None
        self.counters = {"read": 0, "sent": 0, "acked": 0, "resent": 0, "unshipped": 0, "damaged": 0,
                         "lost_sent": 0, "connects": 0, "failures": 0}
        self.thread: Optional[threading.Thread] = None
        self.fatal = ""

    # -- lifecycle

    def start(self) -> None:
        """Take the destination's lock (refusing a second shipper) and start the thread."""
        self.cursor_file.lock()
        self.thread = threading.Thread(target=self._main, name=f"ship {self.dest.key}", daemon=True)
        self.thread.start()

    def join(self, timeout: Optional[float] = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def close(self) -> None:
        self._disconnect()
        self.cursor_file.close()

    def _main(self) -> None:
        try:
            while not self.stop.is_set() and not self.done.is_set():
                try:
                    self._run()
                except _Stopped:
                    break
                except (RawBPFError, OSError) as err:
                    # the log itself failed to read (e.g. damaged): say so, and start over from the cursor
                    self._note_error(f"log: {err}")
                    log.error("ship %s: %s; retrying from the cursor", self.dest.url, err)
                    self._disconnect()
                    self.stop.wait(backoff_delay(5.0, self.rng))
            self._finish()
        except ConfigError as err:
            self.fatal = str(err)
            log.error("%s", err)
        except Exception as err:  # a bug: say it and stop this destination, never the others
            self.fatal = f"ship {self.dest.url}: internal error: {type(err).__name__}: {err}"
            log.exception("ship %s: internal error", self.dest.url)
        finally:
            self._disconnect()
            self.cursor_file.sync()

    # -- reading

    def _load_cursor(self, reader: LogReader) -> Optional[int]:
        try:
            cur = self.cursor_file.load()
        except ConfigError as err:
            log.warning("%s; shipping the whole log again", err)
            cur = None
        if cur is None or cur.seq is None:
            return None
        last = reader.tail(1)
        last_seq = last[0].get("seq") if last else None
        if isinstance(last_seq, int) and last_seq < cur.seq:
            log.warning("ship %s: the log restarted (last seq %d, cursor %d); shipping it from its start",
                        self.dest.url, last_seq, cur.seq)
            return None
        self.cursor = cur
        return cur.seq

    def _start_file(self, reader: LogReader, start: Optional[int]) -> Tuple[Optional[int], str]:
        """``since_ns`` that makes the reader begin at the file holding ``start + 1`` (None: the oldest
        file), and that file's name."""
        names = reader.files()
        if start is None or not names:
            return None, names[0] if names else ""
        chosen = -1
        for i, name in enumerate(names):
            first = _file_seq(name)
            if first is not None and first <= start + 1:
                chosen = i
        if chosen <= 0:
            return None, names[0]
        since = reader.file_start(names[chosen])
        if since is None:
            return None, names[0]
        for name in names[chosen + 1:]:  # a clock stepped back would make the reader skip too far
            t = reader.file_start(name)
            if t is not None and t <= since:
                return None, names[0]
        return since, names[chosen]

    def _run(self) -> None:
        # (re)start from the cursor: whatever was read or sent and not acknowledged is read again
        self.pending.clear()
        self.inflight.clear()
        self.inflight_records = 0
        self.tokens.clear()
        with LogReader(self.log_dir, mark_missing=True) as reader:
            start = self._load_cursor(reader)
            since, self.file = self._start_file(reader, start)
            self._reader = reader
            gen = reader.records(follow=True, poll_interval=_POLL, since_ns=since, start_after_seq=start,
                                 stop=self._idle)
            batch_size, stopped = self.batch_size, self.stop.is_set
            pending = self.pending
            try:
                for rec in gen:
                    t = rec.get("type")
                    if t == "missing" or t == "header":
                        self._take(rec)
                    else:
                        pending.append(rec)
                    if len(pending) >= batch_size:
                        self._flush()
                        if stopped():
                            break
            finally:
                gen.close()  # type: ignore[attr-defined]
        if self.drain and not self.stop.is_set():
            self._flush()
            while self.inflight and not self.stop.is_set():
                self._service(wait=True)
            self.done.set()

    def _take(self, rec: Record) -> None:
        t = rec.get("type")
        if t == "missing":  # the reader's mark of a seq gap: not a log record
            self._missing(rec)
            return
        if t == "header":
            seq = rec.get("seq")
            if isinstance(seq, int):
                self.file = self._file_for(seq) or self.file
        self.pending.append(rec)

    def _file_for(self, seq: int) -> str:
        for name in self._reader.files():
            if _file_seq(name) == seq:
                return name
        return ""

    def _missing(self, mark: Record) -> None:
        """Records the reader could not give: rotated away before they were shipped (announced as
        ``unshipped``), or in a damaged region (``damaged``). Gaps the writer left itself are announced by
        its own records in the log."""
        reason = {"rotated away": "unshipped", "damaged": "damaged"}.get(str(mark.get("reason")))
        count, after = mark.get("count"), mark.get("after_seq")
        if reason is None or not isinstance(count, int) or not isinstance(after, int) or count <= 0:
            return
        first, last = after + 1, after + count
        self.counters[reason] += count
        self.counters["lost_sent"] += 1
        log.warning("ship %s: %d records (seq %d-%d) %s", self.dest.url, count, first, last,
                    "were rotated out of the log before they were shipped" if reason == "unshipped"
                    else "are in a damaged part of the log")
        self.pending.append({"type": "lost", "reason": reason, "count": count, "first_seq": first,
                             "last_seq": last, "ts": time.time_ns(), "destination": self.dest.url})

    def _idle(self) -> bool:
        """Called by the reader at the end of the log: send what is pending, read acknowledgements."""
        if self.pending:
            self._flush()
        self._service(wait=bool(self.inflight) or self.sock is None, timeout=0.05)
        if self.stop.is_set():
            raise _Stopped()
        return self.drain

    # -- sending

    def _flush(self) -> None:
        if not self.pending:
            return
        records = self.pending[:]  # the list object stays: the reading loop holds it
        self.pending.clear()
        last_seq = None
        for r in reversed(records):  # the last log record (an announcement made here has no seq)
            seq = r.get("seq")
            if isinstance(seq, int):
                last_seq = seq
                break
        self.counters["read"] += len(records)
        if last_seq is not None:
            self.read_seq = last_seq
        batch = self.proto.encode(records)
        batch.last_seq = last_seq
        batch.file = self.file
        while self.inflight and self.inflight_records + batch.count > self.window:
            self._service(wait=True)
            if self.stop.is_set():
                raise _Stopped()
        self.inflight.append(batch)
        self.inflight_records += batch.count
        if self.sock is not None:
            self._send(batch)
        self._service(wait=False)

    def _send(self, batch: Batch) -> None:
        sock = self.sock
        if sock is None:
            return
        data = self.proto.wire(batch)
        for token in batch.waiting:
            self.tokens[token] = batch
        batch.sent_at = time.monotonic()
        batch.end_offset = 0
        batch.delivered = False
        if batch.sends:
            self.counters["resent"] += batch.count
        batch.sends += 1
        self.counters["sent"] += batch.count
        view = memoryview(data)
        try:
            while view:
                try:
                    n = sock.send(view)
                except (socket.timeout, ssl.SSLWantWriteError):
                    self._read_acks(0.0)
                    if self.sock is None:
                        return
                    if self._ack_overdue() or self.stop.is_set():
                        self._fail(f"sending stalled: no acknowledgement for {self.dest.ack_timeout:g} s"
                                   if not self.stop.is_set() else "stopping")
                        return
                    continue
                view = view[n:]
            if self.proto.tcp_acked:
                batch.end_offset = conn.bytes_written(sock)
        except (OSError, RawBPFError) as err:
            self._fail(f"send: {_reason(err)}")
            return

    def _service(self, wait: bool, timeout: float = 0.1) -> None:
        """Connect when due, read acknowledgements, enforce the ack deadline; with ``wait``, spend up to
        ``timeout`` waiting for something to happen."""
        now = time.monotonic()
        if self.sock is None:
            if now >= self.next_attempt:
                self._connect()
            if self.sock is None:
                if wait:
                    self.stop.wait(max(0.0, min(timeout, self.next_attempt - time.monotonic())))
                return
        self._read_acks(timeout if wait else 0.0)
        if self.sock is not None and self._ack_overdue():
            self._fail(f"no acknowledgement within {self.dest.ack_timeout:g} s")

    def _ack_overdue(self) -> bool:
        head = self.inflight[0] if self.inflight else None
        return head is not None and head.sent_at > 0 and \
            time.monotonic() - head.sent_at > self.dest.ack_timeout

    def _read_acks(self, timeout: float) -> None:
        sock = self.sock
        if sock is None:
            return
        try:
            data = read_some(sock, timeout)
            if data == b"":
                self._fail("the server closed the connection")
                return
            if data:
                for token in self.proto.feed(data):
                    batch = self.tokens.pop(token, None)
                    if batch is not None:
                        batch.waiting.discard(token)
            if self.proto.tcp_acked and self.inflight:
                self._tcp_acks(sock)
        except (OSError, RawBPFError) as err:
            self._fail(_reason(err))
            return
        self._advance()

    def _tcp_acks(self, sock: conn.Socket) -> None:
        """Syslog (and Forward without acks): a batch is delivered once the peer's TCP stack has acknowledged
        every byte written up to its end (wire bytes, so this holds through TLS too)."""
        acked = conn.bytes_acked(sock)
        for b in self.inflight:
            if not b.sent_at or not b.end_offset or b.end_offset > acked:
                break
            b.delivered = True

    def _advance(self) -> None:
        moved = False
        while self.inflight:
            b = self.inflight[0]
            if not b.sent_at or b.waiting or (self.proto.tcp_acked and not b.delivered):
                break
            self.inflight.popleft()
            self.inflight_records -= b.count
            self.counters["acked"] += b.count
            if b.last_seq is not None:
                self.cursor.seq = b.last_seq
                self.cursor.file = b.file
            moved = True
        if moved:
            self.backoff = BACKOFF_MIN
            self.cursor_file.save(self.cursor)

    # -- connection

    def _connect(self) -> None:
        self.proto.reset()
        self.tokens.clear()
        try:
            deadline = time.monotonic() + self.dest.connect_timeout
            sock = conn.connect(self.dest, self.ctx, self.dest.connect_timeout)
            try:
                self.sock = sock
                self.proto.handshake(sock, deadline)
            except BaseException:
                self.sock = None
                sock.close()
                raise
        except ConfigError:
            raise
        except (OSError, RawBPFError) as err:
            self._fail(f"connect: {_reason(err)}")
            return
        self.counters["connects"] += 1
        self.connected_since = time.time_ns()
        if self.counters["connects"] > 1 or self.counters["failures"]:
            log.warning("ship %s: connected", self.dest.url)
        for b in list(self.inflight):  # everything unacknowledged goes again, in order
            if self.sock is None:
                break
            self._send(b)

    def _fail(self, reason: str) -> None:
        self.counters["failures"] += 1
        self._note_error(reason)
        if self.sock is not None:
            log.warning("ship %s: %s; reconnecting", self.dest.url, reason)
        self._disconnect()
        delay = backoff_delay(self.backoff, self.rng)
        self.next_attempt = time.monotonic() + delay
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)
        for b in self.inflight:
            b.sent_at = 0.0
            b.end_offset = 0

    def _note_error(self, reason: str) -> None:
        self.last_error = reason
        self.last_error_at = time.time_ns()

    def _disconnect(self) -> None:
        sock, self.sock = self.sock, None
        self.connected_since = 0
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _finish(self) -> None:
        """On the way out: send what was read, and wait up to ``grace`` seconds for its acknowledgement."""
        try:
            if self.pending and self.sock is not None:
                self._flush()
        except _Stopped:
            pass
        deadline = time.monotonic() + self.grace
        while self.inflight and self.sock is not None and time.monotonic() < deadline:
            self._read_acks(0.05)
        if self.sock is not None:
            bye = self.proto.goodbye()
            if bye:
                try:
                    self.sock.sendall(bye)
                except OSError:
                    pass

    # -- status

    def status(self) -> Dict[str, Any]:
        return {
            "url": self.dest.url, "key": self.dest.key, "pid": os.getpid(),
            "connected": self.sock is not None, "connected_since": self.connected_since,
            "cursor": {"seq": self.cursor.seq, "file": self.cursor.file},
            "read_seq": self.read_seq, "inflight": self.inflight_records, "pending": len(self.pending),
            "last_error": self.last_error, "last_error_at": self.last_error_at,
            "fatal": self.fatal, "counters": dict(self.counters), "updated": time.time_ns(),
        }


def _reason(err: BaseException) -> str:
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"tls: certificate verify failed: {err.verify_message}"
    if isinstance(err, ssl.SSLError):
        return f"tls: {(err.reason or str(err)).lower().replace('_', ' ')}"
    if isinstance(err, socket.timeout):
        return "timed out"
    if isinstance(err, OSError) and err.errno:
        return os.strerror(err.errno).lower()
    return str(err) or type(err).__name__


class Shipper:
    """Every destination's worker, and their status files; :meth:`run` until ``stop`` (or drained)."""

    def __init__(self, destinations: Sequence[Destination], log_dir: str, *, drain: bool = False,
                 grace: float = 5.0, stop: Optional[threading.Event] = None,
                 status_interval: float = 1.0) -> None:
        if not destinations:
            raise ConfigError("ship: no destination (give --to URL)")
        keys = [d.key for d in destinations]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ConfigError(f"ship: destination {dup[0]} given twice")
        if not os.path.isdir(log_dir):
            raise ConfigError(f"ship: log dir {log_dir} does not exist")
        self.log_dir = log_dir
        self.stop = stop or threading.Event()
        self.drain = drain
        self.status_interval = status_interval
        self.workers = [Worker(d, log_dir, stop=self.stop, drain=drain, grace=grace) for d in destinations]

    def run(self) -> Dict[str, Dict[str, Any]]:
        """Ship until stopped (or, with ``drain``, until every destination has everything on disk); returns
        each destination's final status."""
        from rawbpf.ship.status import remove_status, write_status

        started: List[Worker] = []
        try:
            for w in self.workers:
                w.start()
                started.append(w)
            while True:
                for w in started:
                    write_status(self.log_dir, w.status())
                alive = [w for w in started if w.thread is not None and w.thread.is_alive()]
                if not alive:
                    break
                if self.drain and all(w.done.is_set() or w.fatal for w in started):
                    break
                self.stop.wait(self.status_interval)
        finally:
            self.stop.set()
            for w in started:
                w.join(10.0)
            final = {w.dest.url: w.status() for w in self.workers}
            for w in started:
                remove_status(self.log_dir, w.dest.key)
                w.close()
        return final
