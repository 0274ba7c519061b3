"""The Fluent Forward protocol (v1), client side; pure: encodes and decodes bytes, makes no syscalls.

What rawbpf sends is *PackedForward* mode, one message per tag::

    [tag, bin(<[time, record]>…), {"size": N, "chunk": ID[, "compressed": "gzip"]}]

``time`` is the EventTime extension (type 0: seconds and nanoseconds, big-endian u32 each) taken from the
record's ``ts``; ``record`` is the log record as it is, plus ``host``. The server answers ``{"ack": ID}``
once it has the chunk: that acknowledgement, and nothing earlier, moves the destination's cursor.

Shared-key handshake (servers configured with a ``<security>`` section): the server opens with
``["HELO", {"nonce", "auth", "keepalive"}]``; the client answers ``["PING", hostname, salt,
sha512_hex(salt + hostname + nonce + key), username, sha512_hex(auth_salt + username + password)]``; the
server replies ``["PONG", ok, reason, server_hostname, sha512_hex(salt + server_hostname + nonce + key)]``,
which proves it knows the key too.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import struct
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import msgpack

from rawbpf.errors import RawBPFError

__tier__ = "pure"

__all__ = ["ForwardError", "ChunkIds", "event_time", "tag_for", "pack_entries", "message", "encode_batch",
           "ServerStream", "Helo", "make_ping", "check_pong"]

Record = Dict[str, Any]
_EVENT_TIME = 0
_TIME = struct.Struct(">II")


class ForwardError(RawBPFError):
    """The server broke the protocol or refused the handshake."""


class ChunkIds:
    """Chunk ids: base64 of a 16-byte value, a random per-process prefix plus a counter (unique per run
    without a syscall per chunk). The engine supplies the random bytes."""

    def __init__(self, prefix: bytes) -> None:
        if len(prefix) != 8:
            raise ValueError("chunk id prefix must be 8 bytes")
        self._prefix = prefix
        self._n = 0

    def next(self) -> str:
        self._n += 1
        return base64.b64encode(self._prefix + self._n.to_bytes(8, "big")).decode()


def event_time(ts_ns: Any) -> msgpack.ExtType:
    """The EventTime of a record's ``ts`` (ns since the epoch); 0 when the record has none."""
    ns = ts_ns if isinstance(ts_ns, int) and ts_ns > 0 else 0
    sec, nsec = divmod(ns, 1_000_000_000)
    return msgpack.ExtType(_EVENT_TIME, _TIME.pack(sec & 0xFFFFFFFF, nsec))


_TAGS: Dict[Any, str] = {}


def tag_for(record: Record, prefix: str = "rawbpf") -> str:
    """``rawbpf.<type>`` (``rawbpf.unknown`` for a record without a usable type)."""
    t = record.get("type")
    tag = _TAGS.get(t) if prefix == "rawbpf" and isinstance(t, str) else None
    if tag is not None:
        return tag
    name = t if isinstance(t, str) and t and all(c.isalnum() or c in "_-" for c in t) else "unknown"
    tag = f"{prefix}.{name}"
    if prefix == "rawbpf" and isinstance(t, str) and len(_TAGS) < 1024:
        _TAGS[t] = tag
    return tag


# an entry is a 2-element array (0x92) whose first element is fixext 8 (0xd7) of type 0: the EventTime
_ENTRY_HEAD = struct.Struct(">BBBII")


def pack_entries(records: Sequence[Record]) -> bytes:
    """``[EventTime, record]`` for each record, packed back to back. The entry head is written as bytes
    (building an ExtType per record costs more than packing the record itself)."""
    pack = msgpack.Packer(use_bin_type=True).pack
    head = _ENTRY_HEAD.pack
    out = []
    for r in records:
        ts = r.get("ts")
        sec, nsec = divmod(ts, 1_000_000_000) if type(ts) is int and ts > 0 else (0, 0)
        out.append(head(0x92, 0xD7, _EVENT_TIME, sec & 0xFFFFFFFF, nsec) + pack(r))
    return b"".join(out)


def message(tag: str, entries: bytes, count: int, chunk: Optional[str], *, compress: bool = False) -> bytes:
    """One PackedForward message (CompressedPackedForward with ``compress``)."""
    option: Dict[str, Any] = {"size": count}
    if chunk is not None:
        option["chunk"] = chunk
    if compress:
        entries = gzip.compress(entries, compresslevel=3, mtime=0)
        option["compressed"] = "gzip"
    out: bytes = msgpack.packb([tag, entries, option], use_bin_type=True)
    return out


def encode_batch(records: Iterable[Record], ids: Optional[ChunkIds], *, compress: bool = False,
                 host: str = "") -> List[Tuple[bytes, Optional[str], int]]:
    """A batch as ``(message, chunk id, records)`` per tag, tags in order of first appearance; ``host`` is
    added to records that have none. Records keep their log order within a tag; across tags each record's
    ``seq`` gives the order back."""
    groups: Dict[str, List[Record]] = {}
    for r in records:
        if host and "host" not in r:
            r["host"] = host
        t = r.get("type")
        tag = (_TAGS.get(t) if type(t) is str else None) or tag_for(r)
        g = groups.get(tag)
        if g is None:
            groups[tag] = [r]
        else:
            g.append(r)
    out = []
    for tag, recs in groups.items():
        chunk = ids.next() if ids is not None else None
        out.append((message(tag, pack_entries(recs), len(recs), chunk, compress=compress), chunk, len(recs)))
    return out


# -- what the server sends

class Helo:
    """The server's ``HELO``: it wants a shared-key handshake."""

    def __init__(self, nonce: bytes, auth: bytes, keepalive: bool) -> None:
        self.nonce = nonce
        self.auth = auth
        self.keepalive = keepalive


ServerMessage = Union[str, Helo, List[Any]]


def _as_bytes(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode()
    raise ForwardError(f"forward: expected bytes in the handshake, got {type(v).__name__}")


class ServerStream:
    """Decodes the server's byte stream: each message becomes an ack (the chunk id, a str), a :class:`Helo`,
    or a ``PONG`` list; anything else is a :class:`ForwardError`."""

    def __init__(self) -> None:
        self._unpacker = msgpack.Unpacker(raw=False, max_buffer_size=1 << 20)

    def feed(self, data: bytes) -> List[ServerMessage]:
        self._unpacker.feed(data)
        out: List[ServerMessage] = []
        try:
            for msg in self._unpacker:
                out.append(_classify(msg))
        except (msgpack.exceptions.ExtraData, msgpack.exceptions.FormatError, msgpack.exceptions.StackError,
                ValueError) as err:
            raise ForwardError(f"forward: undecodable reply from the server ({err})") from err
        return out


def _classify(msg: Any) -> ServerMessage:
    if isinstance(msg, dict) and "ack" in msg:
        ack = msg["ack"]
        if isinstance(ack, bytes):
            ack = ack.decode("ascii", "replace")
        if not isinstance(ack, str):
            raise ForwardError(f"forward: ack is a {type(ack).__name__}, not a chunk id")
        return ack
    if isinstance(msg, list) and msg and msg[0] == "HELO" and len(msg) == 2 and isinstance(msg[1], dict):
        opts = msg[1]
        return Helo(_as_bytes(opts.get("nonce", b"")), _as_bytes(opts.get("auth", b"") or b""),
                    bool(opts.get("keepalive", True)))
    if isinstance(msg, list) and msg and msg[0] == "PONG" and len(msg) == 5:
        return msg
    raise ForwardError(f"forward: unexpected message from the server: {str(msg)[:80]}")


def _sha512_hex(*parts: bytes) -> str:
    h = hashlib.sha512()
    for p in parts:
        h.update(p)
    return h.hexdigest()


def make_ping(helo: Helo, hostname: str, shared_key: bytes, salt: bytes, username: str = "",
              password: bytes = b"") -> bytes:
    """The ``PING`` answering ``helo`` (``salt``: fresh random bytes from the caller)."""
    digest = _sha512_hex(salt, hostname.encode(), helo.nonce, shared_key)
    pw = _sha512_hex(helo.auth, username.encode(), password) if username else ""
    out: bytes = msgpack.packb(["PING", hostname, salt, digest, username, pw], use_bin_type=True)
    return out


def check_pong(pong: List[Any], helo: Helo, hostname: str, shared_key: bytes, salt: bytes) -> str:
    """Check the server's ``PONG``; returns the server's host name, raises ForwardError when it refused
    or does not know the key."""
    _, ok, reason, server_host, digest = pong
    if not ok:
        raise ForwardError(f"forward: the server refused the handshake: {reason or 'no reason given'}")
    if not isinstance(server_host, str) or server_host == hostname:
        raise ForwardError("forward: the server claims this host's own name (a loop of forwarders?)")
    if digest != _sha512_hex(salt, server_host.encode(), helo.nonce, shared_key):
        raise ForwardError("forward: the server's handshake digest does not match the shared key")
    return server_host
