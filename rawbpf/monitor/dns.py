"""Parse DNS messages (RFC 1035) captured by the monitor; pure, no syscalls.

The kernel sends the bytes a tracked process sent to or received from port 53, unparsed. This module turns
them into a :class:`DnsMessage`: id, query or response, the first question (name and type), the response
code, and the answer records. A message over TCP carries a two-byte length prefix (RFC 1035 §4.2.2), which
:func:`parse_dns` removes when told the socket is a stream. Truncated captures yield the records that fit;
malformed input raises :class:`DnsError` and never loops (compression pointers may only point backwards).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

__tier__ = "pure"

QTYPES: Dict[int, str] = {
    1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV",
    41: "OPT", 64: "SVCB", 65: "HTTPS", 255: "ANY",
}
RCODES: Dict[int, str] = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
}
_NAME_TYPES = (2, 5, 12)  # NS, CNAME, PTR: rdata is a name
_MAX_ANSWERS = 64


class DnsError(ValueError):
    """Bytes that are not a DNS message."""


@dataclass
class DnsAnswer:
    """One resource record of the answer section."""

    name: str
    type: str
    ttl: int
    data: str  # an address, a name, or hex for other types

    def as_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "type": self.type, "ttl": self.ttl, "data": self.data}


@dataclass
class DnsMessage:
    """What the monitor records of one DNS message."""

    id: int
    response: bool
    qname: str
    qtype: str
    rcode: Optional[str]  # None for a query
    answers: List[DnsAnswer] = field(default_factory=list)

    def addresses(self) -> List[str]:
        """The A and AAAA data of the answer section."""
        return [a.data for a in self.answers if a.type in ("A", "AAAA")]


def type_name(value: int) -> str:
    return QTYPES.get(value, f"TYPE{value}")


def _name(buf: bytes, off: int) -> Tuple[str, int]:
    """The domain name at ``off`` and the offset just past it (where a pointer ends it, past the pointer)."""
    labels: List[str] = []
    end = -1
    pos = off
    for _ in range(128):
        if pos >= len(buf):
            raise DnsError("name runs past the message")
        n = buf[pos]
        if n == 0:
            if end < 0:
                end = pos + 1
            name = ".".join(labels)
            if len(name) > 253:
                raise DnsError("name longer than 253 bytes")
            return name, end
        if n & 0xC0 == 0xC0:
            if pos + 1 >= len(buf):
                raise DnsError("compression pointer runs past the message")
            target = ((n & 0x3F) << 8) | buf[pos + 1]
            if end < 0:
                end = pos + 2
            if target >= pos:
                raise DnsError("compression pointer does not point backwards")
            pos = target
            continue
        if n & 0xC0:
            raise DnsError(f"unknown label type 0x{n & 0xC0:02x}")
        label = buf[pos + 1 : pos + 1 + n]
        if len(label) != n:
            raise DnsError("label runs past the message")
        labels.append(label.decode("ascii", "backslashreplace"))
        pos += 1 + n
    raise DnsError("name has too many labels")


def strip_tcp_length(data: bytes) -> bytes:
    """The message of a DNS-over-TCP capture: without its two-byte length prefix (a cut capture keeps what
    arrived)."""
    if len(data) < 2:
        raise DnsError("shorter than the TCP length prefix")
    (n,) = struct.unpack_from("!H", data)
    return data[2 : 2 + n]


def parse_dns(data: bytes, *, stream: bool = False) -> DnsMessage:
    """Parse one DNS message (``stream``: it came over TCP, with a length prefix)."""
    buf = strip_tcp_length(data) if stream else bytes(data)
    if len(buf) < 12:
        raise DnsError("shorter than a DNS header")
    ident, flags, qd, an, _ns, _ar = struct.unpack_from("!6H", buf)
    if flags & 0x7800:  # opcode other than QUERY
        raise DnsError(f"opcode {(flags >> 11) & 0xF} is not a query")
    if qd < 1:
        raise DnsError("no question")
    response = bool(flags & 0x8000)
    qname, off = _name(buf, 12)
    if off + 4 > len(buf):
        raise DnsError("question runs past the message")
    qtype, _qclass = struct.unpack_from("!HH", buf, off)
    off += 4
    for _ in range(qd - 1):  # further questions (unusual): skip
        _, off = _name(buf, off)
        off += 4
    msg = DnsMessage(ident, response, qname, type_name(qtype), RCODES.get(flags & 0xF, str(flags & 0xF))
                     if response else None)
    if not response:
        return msg
    for _ in range(min(an, _MAX_ANSWERS)):
        try:
            name, off = _name(buf, off)
        except DnsError:
            break  # a cut capture: keep the answers that fit
        if off + 10 > len(buf):
            break
        rtype, _rclass, ttl, rdlen = struct.unpack_from("!HHIH", buf, off)
        off += 10
        rdata = buf[off : off + rdlen]
        if len(rdata) != rdlen:
            break
        if rtype == 1 and rdlen == 4:
            text = str(ipaddress.IPv4Address(rdata))
        elif rtype == 28 and rdlen == 16:
            text = str(ipaddress.IPv6Address(rdata))
        elif rtype in _NAME_TYPES:
            text, _ = _name(buf, off)
        else:
            text = rdata.hex()
        msg.answers.append(DnsAnswer(name, type_name(rtype), ttl, text))
        off += rdlen
    return msg


def build_query(qname: str, qtype: int = 1, ident: int = 0x1234) -> bytes:
    """A minimal recursive query (for tests and tools)."""
    out = struct.pack("!6H", ident, 0x0100, 1, 0, 0, 0)
    for label in qname.rstrip(".").split("."):
        raw = label.encode()
        out += bytes([len(raw)]) + raw
    return out + b"\0" + struct.pack("!HH", qtype, 1)
