"""Reassemble DNS-over-TCP messages from the monitor's captures; pure, no syscalls.

Over TCP each DNS message follows a two-byte length (RFC 1035 §4.2.2), and clients split that stream as they
like: glibc's resolver writes two prefixed queries with one ``writev`` and reads an answer's length with one
``read`` and its body with the next; ``dig`` reads a prefix and its message at once. The kernel sends one
capture per call: the first ``data`` bytes (at most its capture limit) of the ``size`` bytes the call moved.
:class:`TcpDnsStreams` keeps, per stream (a process's socket, one direction), the part of a message seen so
far, and returns each message when its declared length has arrived (or as much of it as the capture limit
let through, then marked cut). Bytes a capture did not hold are skipped by count; when they hide where the
next message starts, the stream is lost until a call whose captured prefixes chain exactly to the end of
the bytes it moved (whole messages, as dig reads and glibc writes), where it resumes; nothing is guessed
from the bytes in between. Memory is bounded: at most ``limit`` bytes per stream, at most
``max_streams`` streams (the least recently fed one is flushed first).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, List, Optional

__tier__ = "pure"

CAPTURE_LIMIT = 2048  # the kernel's PAYLOAD_MAX: bytes of one call it sends


@dataclass
class TcpMessage:
    """One DNS message of a stream: the bytes kept, the length its prefix declared, whether bytes of it are
    missing (beyond the capture limit, or a stream that ended early), and the tag of the capture that gave
    its last bytes (the caller's record header)."""

    data: bytes
    length: int
    cut: bool
    tag: Any = None


@dataclass
class _Stream:
    head: bytearray = field(default_factory=bytearray)  # prefix bytes seen (0 or 1) while awaiting a length
    need: Optional[int] = None  # the current message's declared length; None between messages
    body: bytearray = field(default_factory=bytearray)  # its bytes kept (at most limit)
    seen: int = 0  # its bytes passed so far, kept or not
    cut: bool = False
    sent: bool = False  # already returned (its kept bytes reached the limit): the rest is skipped
    frozen: bool = False  # bytes of it were not captured: what follows them is not kept (not contiguous)
    lost: bool = False  # the next message's start was not captured: resynchronise at the next capture
    tag: Any = None  # of the last capture fed


class TcpDnsStreams:
    """DNS messages of TCP streams from captures of their calls, keyed by any hashable stream key."""

    def __init__(self, *, limit: int = CAPTURE_LIMIT, max_streams: int = 1024) -> None:
        self.limit = limit
        self.max_streams = max_streams
        #: the streams holding state (a partial prefix or message), least recently fed first
        self.held: OrderedDict[Hashable, _Stream] = OrderedDict()

    def __len__(self) -> int:
        """Streams holding state (a partial prefix or message)."""
        return len(self.held)

    def feed(self, key: Hashable, data: bytes, size: Optional[int] = None, tag: Any = None
             ) -> List[TcpMessage]:
        """The messages completed by one capture: ``data``, the first bytes of the ``size`` the call moved
        (default: all of them); ``tag`` is handed back with them. May also return the partial message of
        the least recently fed stream, flushed to make room."""
        out: List[TcpMessage] = []
        size = len(data) if size is None else max(size, len(data))
        st = self.held.pop(key, None)
        if st is not None and st.lost:
            if not _whole_messages(data, size):
                self._keep(key, st, out)
                return out
            st = None
        if st is None:
            st = _Stream()
        st.tag = tag
        pos, n = 0, len(data)
        while pos < n:
            if st.need is None:
                take = min(2 - len(st.head), n - pos)
                st.head += data[pos:pos + take]
                pos += take
                if len(st.head) == 2:
                    self._start(st, (st.head[0] << 8) | st.head[1])
                continue
            take = min(st.need - st.seen, n - pos)
            keep = 0 if st.sent or st.frozen else min(take, self.limit - len(st.body))
            st.body += data[pos:pos + keep]
            st.seen += take
            pos += take
            self._settle(st, out, cut=keep < take)
        gap = size - n
        if gap:
            if st.need is None:
                st.lost = True  # the next prefix (or its second byte) was not captured
            else:
                left = st.need - st.seen
                st.seen += min(gap, left)
                st.cut = st.frozen = True
                self._settle(st, out, cut=True)
                if gap > left:
                    st.lost = True
        if st.need is not None or st.head or st.lost:
            self._keep(key, st, out)
        return out

    def _keep(self, key: Hashable, st: _Stream, out: List[TcpMessage]) -> None:
        self.held[key] = st
        while len(self.held) > self.max_streams:
            _, old = self.held.popitem(last=False)
            out.extend(self._partial(old))

    def close(self, key: Hashable) -> List[TcpMessage]:
        """Forget a stream (its socket closed or its process exited): the partial message it held, if any."""
        st = self.held.pop(key, None)
        return self._partial(st) if st is not None else []

    def close_where(self, pred: Callable[[Hashable], bool]) -> List[TcpMessage]:
        """Forget every stream whose key satisfies ``pred`` (e.g. all of one process)."""
        out: List[TcpMessage] = []
        for key in [k for k in self.held if pred(k)]:
            out.extend(self.close(key))
        return out

    # -- state steps

    @staticmethod
    def _start(st: _Stream, length: int) -> None:
        st.head.clear()
        st.body = bytearray()
        st.seen, st.cut, st.sent, st.frozen = 0, False, False, False
        st.need = length if length else None  # a zero length announces nothing

    def _settle(self, st: _Stream, out: List[TcpMessage], *, cut: bool) -> None:
        """After bytes of the current message passed: return it once complete, or once the limit is kept."""
        assert st.need is not None
        st.cut = st.cut or cut
        if st.seen >= st.need:
            if not st.sent:
                out.append(TcpMessage(bytes(st.body), st.need, st.cut, st.tag))
            st.need, st.body = None, bytearray()
        elif not st.sent and len(st.body) >= self.limit:
            out.append(TcpMessage(bytes(st.body), st.need, True, st.tag))
            st.sent, st.body = True, bytearray()

    @staticmethod
    def _partial(st: _Stream) -> List[TcpMessage]:
        if st.need is None or st.sent or not st.body:
            return []
        return [TcpMessage(bytes(st.body), st.need, True, st.tag)]


def _whole_messages(data: bytes, size: int) -> bool:
    """Whether a call that moved ``size`` bytes, of which ``data`` are the first, holds whole prefixed
    messages: each prefix captured, the last message ending exactly where the call's bytes end."""
    pos = 0
    while pos + 2 <= len(data):
        length = (data[pos] << 8) | data[pos + 1]
        if not length:
            return False
        pos += 2 + length
        if pos == size:
            return True
    return False
