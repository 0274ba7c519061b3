"""Find the server name (SNI) and ALPN protocols in a TLS ClientHello captured by the monitor; pure.

The kernel sends the first bytes a tracked process writes on a connection to port 443. When they are a TLS
handshake record holding a ClientHello (RFC 8446 §4.1.2), :func:`parse_client_hello` returns the host name of
its ``server_name`` extension (RFC 6066 §3) and the ALPN list (RFC 7301); anything else raises
:class:`TlsError`. A ClientHello cut short by the capture still yields the extensions that fit.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import List, Optional

__tier__ = "pure"


class TlsError(ValueError):
    """Bytes that are not (the start of) a TLS ClientHello."""


@dataclass
class ClientHello:
    sni: Optional[str]
    alpn: List[str] = field(default_factory=list)


def _u16(buf: bytes, off: int) -> int:
    if off + 2 > len(buf):
        raise TlsError("cut short")
    return int(struct.unpack_from("!H", buf, off)[0])


def parse_client_hello(data: bytes) -> ClientHello:
    """Parse the start of a TLS connection written by a client."""
    buf = bytes(data)
    if len(buf) < 5 or buf[0] != 0x16 or buf[1] != 0x03:
        raise TlsError("not a TLS handshake record")
    rec_len = _u16(buf, 3)
    body = buf[5 : 5 + rec_len]
    if len(body) < 4 or body[0] != 0x01:
        raise TlsError("not a ClientHello")
    off = 4 + 2 + 32  # handshake header, legacy_version, random
    if off >= len(body):
        raise TlsError("cut short before the session id")
    off += 1 + body[off]  # legacy_session_id
    off += 2 + _u16(body, off)  # cipher_suites
    if off >= len(body):
        raise TlsError("cut short before the compression methods")
    off += 1 + body[off]  # legacy_compression_methods
    hello = ClientHello(None)
    if off + 2 > len(body):
        return hello  # no extensions
    ext_end = min(len(body), off + 2 + _u16(body, off))
    off += 2
    while off + 4 <= ext_end:
        etype, elen = struct.unpack_from("!HH", body, off)
        ext = body[off + 4 : off + 4 + elen]
        off += 4 + elen
        if len(ext) != elen:
            break  # cut short by the capture
        if etype == 0 and len(ext) >= 2:
            hello.sni = _server_name(ext)
        elif etype == 16 and len(ext) >= 2:
            hello.alpn = _alpn(ext)
    return hello


def _server_name(ext: bytes) -> Optional[str]:
    end = min(len(ext), 2 + _u16(ext, 0))
    off = 2
    while off + 3 <= end:
        kind = ext[off]
        n = _u16(ext, off + 1)
        name = ext[off + 3 : off + 3 + n]
        off += 3 + n
        if kind == 0 and name:
            return name.decode("ascii", "backslashreplace")
    return None


def _alpn(ext: bytes) -> List[str]:
    end = min(len(ext), 2 + _u16(ext, 0))
    off = 2
    out: List[str] = []
    while off < end:
        n = ext[off]
        out.append(ext[off + 1 : off + 1 + n].decode("ascii", "backslashreplace"))
        off += 1 + n
    return out
