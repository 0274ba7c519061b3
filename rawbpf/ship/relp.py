"""RELP (the Reliable Event Logging Protocol of rsyslog), client side; pure: frames in, frames out.

A frame is ``TXNR SP COMMAND SP DATALEN [SP DATA] LF``. The client opens a session with ``open`` (offering
``relp_version=0`` and ``commands=syslog``), sends each message as ``syslog`` with the next transaction
number (1…999,999,999, then 1 again), and the server answers every frame with ``rsp`` carrying the same
number and ``200 OK`` once it has taken the message. ``close`` ends the session; the server may announce its
own end with ``serverclose`` (transaction number 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from rawbpf.errors import RawBPFError

__tier__ = "pure"

__all__ = ["RelpError", "Frame", "encode", "open_offer", "FrameParser", "MAX_TXNR", "next_txnr"]

MAX_TXNR = 999_999_999
_MAX_DATALEN = 128 << 20


class RelpError(RawBPFError):
    """The server broke the protocol or refused a message."""


@dataclass
class Frame:
    txnr: int
    command: str
    data: bytes

    @property
    def ok(self) -> bool:
        """For ``rsp``: the status code is 200."""
        return self.data[:3] == b"200"

    @property
    def status(self) -> str:
        return self.data.split(b"\n", 1)[0].decode("utf-8", "replace")


def encode(txnr: int, command: str, data: bytes = b"") -> bytes:
    if data:
        return b"%d %s %d %s\n" % (txnr, command.encode(), len(data), data)
    return b"%d %s 0\n" % (txnr, command.encode())


def open_offer(software: str = "rawbpf") -> bytes:
    """The ``open`` command's data."""
    return f"relp_version=0\nrelp_software={software}\ncommands=syslog".encode()


def next_txnr(txnr: int) -> int:
    return 1 if txnr >= MAX_TXNR else txnr + 1


class FrameParser:
    """Incremental parser of the server's frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> List[Frame]:
        self._buf += data
        out: List[Frame] = []
        while True:
            frame = self._one()
            if frame is None:
                return out
            out.append(frame)

    def _one(self) -> Optional[Frame]:
        buf = self._buf
        # header: three space-separated tokens, the last ending in SP (data follows) or LF (no data)
        sp1 = buf.find(b" ", 0, 12)
        if sp1 < 0:
            if len(buf) >= 12:
                raise RelpError(f"relp: bad transaction number in {bytes(buf[:20])!r}")
            return None
        sp2 = buf.find(b" ", sp1 + 1, sp1 + 34)
        if sp2 < 0:
            if len(buf) >= sp1 + 34:
                raise RelpError(f"relp: bad command in {bytes(buf[:40])!r}")
            return None
        end = sp2 + 1
        while end < len(buf) and 0x30 <= buf[end] <= 0x39:
            end += 1
        if end == len(buf):
            return None
        txnr_b, cmd_b, len_b = bytes(buf[:sp1]), bytes(buf[sp1 + 1:sp2]), bytes(buf[sp2 + 1:end])
        if not txnr_b.isdigit() or not cmd_b.isalpha() or not len_b or end - sp2 - 1 > 9:
            raise RelpError(f"relp: malformed frame header {bytes(buf[:40])!r}")
        datalen = int(len_b)
        if datalen > _MAX_DATALEN:
            raise RelpError(f"relp: frame of {datalen} bytes is too large")
        sep = buf[end]
        if datalen == 0:
            if sep != 0x0A:
                raise RelpError(f"relp: expected the end of an empty frame in {bytes(buf[:40])!r}")
            del buf[: end + 1]
            return Frame(int(txnr_b), cmd_b.decode(), b"")
        if sep != 0x20:
            raise RelpError(f"relp: expected data after the length in {bytes(buf[:40])!r}")
        start = end + 1
        if len(buf) < start + datalen + 1:
            return None
        data = bytes(buf[start:start + datalen])
        if buf[start + datalen] != 0x0A:
            raise RelpError("relp: frame does not end in a newline")
        del buf[: start + datalen + 1]
        return Frame(int(txnr_b), cmd_b.decode(), data)
