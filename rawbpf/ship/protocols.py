"""The per-connection side of each protocol: what a batch of records becomes on the wire, the handshake
after connecting, and which acknowledgements the server's bytes carry; touches the network (handshakes).

A :class:`Batch` is encoded once and may be sent several times (after a reconnect); ``tokens`` are what
must come back before it counts as delivered: Forward chunk ids, RELP transaction numbers, or nothing
for protocols whose delivery is judged by the peer's TCP acknowledgements (syslog, Forward with ``ack=0``).
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

from rawbpf.errors import ConfigError, RawBPFError
from rawbpf.ship import forward, relp, syslog
from rawbpf.ship.conn import Socket
from rawbpf.ship.url import Destination

__tier__ = "files"

__all__ = ["Batch", "Protocol", "ForwardProtocol", "SyslogProtocol", "RelpProtocol", "make_protocol"]

Record = Dict[str, Any]


@dataclass
class Batch:
    """Records read from the log, encoded for one destination."""

    units: List[bytes]          # Forward messages, syslog frames, or RELP message bodies
    count: int                  # records (the announced ``lost`` records included)
    last_seq: Optional[int]     # the highest log seq inside (the cursor after its acknowledgement)
    file: str                   # the log file ``last_seq`` came from
    chunks: List[str] = field(default_factory=list)  # Forward chunk ids (stable across resends)
    waiting: set = field(default_factory=set)         # tokens still to be acknowledged on this connection
    sent_at: float = 0.0        # monotonic time of the last (re)send; 0 = not sent on this connection
    end_offset: int = 0         # TCP-acked: bytes written on the connection up to this batch's end
    delivered: bool = False     # TCP-acked: the peer has every byte of it
    sends: int = 0


def read_some(sock: Socket, timeout: float) -> Optional[bytes]:
    """Bytes from ``sock`` within ``timeout`` (None if none came; b"" when the peer closed)."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return sock.recv(65536)
    r, _, _ = select.select([sock], [], [], max(0.0, timeout))
    if not r:
        return None
    try:
        return sock.recv(65536)
    except (socket.timeout, ssl.SSLWantReadError):
        return None


class Protocol:
    """Encode batches, run the handshake, find acknowledgements. One instance per destination; ``reset``
    starts a new connection's state."""

    #: True when delivery is judged by the peer's TCP acknowledgements (no application-level acks)
    tcp_acked = False

    def __init__(self, dest: Destination, hostname: str) -> None:
        self.dest = dest
        self.hostname = hostname

    def encode(self, records: Sequence[Record]) -> Batch:
        raise NotImplementedError

    def reset(self) -> None:
        """A new connection: forget the old one's state."""

    def handshake(self, sock: Socket, deadline: float) -> None:
        """Anything the protocol does before the first batch (raises on refusal)."""

    def wire(self, batch: Batch) -> bytes:
        """The bytes that send ``batch`` on the current connection (and the tokens it now waits for)."""
        batch.waiting = set(batch.chunks)
        return b"".join(batch.units)

    def feed(self, data: bytes) -> List[Any]:
        """The acknowledgement tokens in the server's bytes."""
        return []

    def goodbye(self) -> bytes:
        return b""


def _recv_until(sock: Socket, deadline: float, feed: Callable[[bytes], List[Any]], what: str) -> List[Any]:
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RawBPFError(f"no {what} from the server within the connect timeout")
        data = read_some(sock, min(left, 0.2))
        if data is None:
            continue
        if not data:
            raise RawBPFError(f"the server closed the connection during the {what}")
        out = feed(data)
        if out:
            return out


def _read_secret(path: str, what: str, url: str) -> bytes:
    try:
        with open(path, "rb") as f:
            value = f.read().strip()
    except OSError as err:
        raise ConfigError(f"--to {url}: {what} {path}: {os.strerror(err.errno or 0).lower()}") from err
    if not value:
        raise ConfigError(f"--to {url}: {what} {path} is empty")
    return value


class ForwardProtocol(Protocol):
    """Fluent Forward: PackedForward per tag, chunk ids and acks, optional gzip and shared-key handshake."""

    def __init__(self, dest: Destination, hostname: str, chunk_prefix: bytes) -> None:
        super().__init__(dest, hostname)
        self.ack = dest.flag("ack", True)
        self.tcp_acked = not self.ack
        self.compress = dest.flag("gzip", False)
        self.ids = forward.ChunkIds(chunk_prefix)
        self.shared_key = (_read_secret(dest.text("shared_key_file"), "shared_key_file", dest.url)
                           if dest.text("shared_key_file") else None)
        self.username = dest.text("username")
        self.password = (_read_secret(dest.text("password_file"), "password_file", dest.url)
                         if dest.text("password_file") else b"")
        self._stream = forward.ServerStream()
        #: the server's name, once a shared-key handshake proved it
        self.server_hostname = ""

    def encode(self, records: Sequence[Record]) -> Batch:
        msgs = forward.encode_batch(records, self.ids if self.ack else None, compress=self.compress,
                                    host=self.hostname)
        return Batch(units=[m for m, _, _ in msgs], count=len(records), last_seq=None, file="",
                     chunks=[c for _, c, _ in msgs if c is not None])

    def reset(self) -> None:
        self._stream = forward.ServerStream()

    def handshake(self, sock: Socket, deadline: float) -> None:
        if self.shared_key is None:
            return
        msgs = _recv_until(sock, deadline, self._stream.feed, "HELO")
        helo = msgs[0]
        if not isinstance(helo, forward.Helo):
            raise forward.ForwardError("forward: the server did not open with HELO (is shared_key_file "
                                       "configured on both ends?)")
        salt = os.urandom(16)
        sock.sendall(forward.make_ping(helo, self.hostname, self.shared_key, salt, self.username,
                                       self.password))
        msgs = _recv_until(sock, deadline, self._stream.feed, "PONG")
        pong = msgs[0]
        if not isinstance(pong, list):
            raise forward.ForwardError("forward: expected PONG after PING")
        self.server_hostname = forward.check_pong(pong, helo, self.hostname, self.shared_key, salt)

    def feed(self, data: bytes) -> List[Any]:
        out = []
        for msg in self._stream.feed(data):
            if not isinstance(msg, str):
                raise forward.ForwardError("forward: unexpected handshake message after the handshake")
            out.append(msg)
        return out


class SyslogProtocol(Protocol):
    """RFC 5424 over TCP or TLS with octet counting; delivered = acknowledged by the peer's TCP stack."""

    tcp_acked = True

    def __init__(self, dest: Destination, hostname: str) -> None:
        super().__init__(dest, hostname)
        self.formatter = syslog.Formatter(hostname=hostname, app_name=dest.text("app_name", "rawbpf"),
                                          facility=dest.facility)

    def encode(self, records: Sequence[Record]) -> Batch:
        fmt, frame = self.formatter.format, syslog.frame
        data = b"".join([frame(fmt(r)) for r in records])
        return Batch(units=[data], count=len(records), last_seq=None, file="")

    def feed(self, data: bytes) -> List[Any]:
        return []  # syslog servers send nothing back


class RelpProtocol(Protocol):
    """RELP: every message its own transaction, acknowledged by ``rsp 200``."""

    def __init__(self, dest: Destination, hostname: str) -> None:
        super().__init__(dest, hostname)
        self.formatter = syslog.Formatter(hostname=hostname, app_name=dest.text("app_name", "rawbpf"),
                                          facility=dest.facility)
        self.reset()

    def reset(self) -> None:
        self._parser = relp.FrameParser()
        self._txnr = 0

    def _next(self) -> int:
        self._txnr = relp.next_txnr(self._txnr)
        return self._txnr

    def encode(self, records: Sequence[Record]) -> Batch:
        fmt = self.formatter.format
        units = [fmt(r) for r in records]
        return Batch(units=units, count=len(records), last_seq=None, file="")

    def handshake(self, sock: Socket, deadline: float) -> None:
        txnr = self._next()
        sock.sendall(relp.encode(txnr, "open", relp.open_offer()))
        frames = _recv_until(sock, deadline, self._parser.feed, "RELP open response")
        f = frames[0]
        if f.command != "rsp" or f.txnr != txnr or not f.ok:
            raise relp.RelpError(f"relp: the server refused the session: {f.command} {f.status}")

    def wire(self, batch: Batch) -> bytes:
        parts = []
        batch.waiting = set()
        for unit in batch.units:
            txnr = self._next()
            batch.waiting.add(txnr)
            parts.append(relp.encode(txnr, "syslog", unit))
        return b"".join(parts)

    def feed(self, data: bytes) -> List[Any]:
        out = []
        for f in self._parser.feed(data):
            if f.command == "serverclose":
                raise relp.RelpError("relp: the server closed the session (serverclose)")
            if f.command != "rsp":
                raise relp.RelpError(f"relp: unexpected command '{f.command}' from the server")
            if not f.ok:
                raise relp.RelpError(f"relp: the server refused message {f.txnr}: {f.status}")
            out.append(f.txnr)
        return out

    def goodbye(self) -> bytes:
        return relp.encode(self._next(), "close")


def make_protocol(dest: Destination, hostname: str) -> Protocol:
    if dest.protocol == "forward":
        return ForwardProtocol(dest, hostname, os.urandom(8))
    if dest.protocol == "syslog":
        return SyslogProtocol(dest, hostname)
    return RelpProtocol(dest, hostname)
