"""TCP and TLS connections to a destination; touches the network.

Sockets run with a short timeout so a worker blocked on a stalled server still notices a stop request and
its acknowledgement deadline. :func:`bytes_written` and :func:`bytes_acked` are how protocols without
acknowledgements of their own (syslog) learn what the peer has received: a batch whose last byte went out at
``bytes_written`` (``TCP_INFO.tcpi_bytes_acked`` plus ``SIOCOUTQ``, the bytes still queued) has arrived once
``bytes_acked`` reaches it. Both count bytes on the wire, so this holds through TLS as well.
"""

from __future__ import annotations

import fcntl
import socket
import ssl
import struct
import termios
from typing import Optional, Union

from rawbpf.errors import ConfigError
from rawbpf.ship.url import Destination

__tier__ = "files"

__all__ = ["Socket", "connect", "tls_context", "unacked_bytes", "bytes_acked", "bytes_written"]

Socket = Union[socket.socket, ssl.SSLSocket]
IO_TIMEOUT = 0.2


def tls_context(dest: Destination) -> ssl.SSLContext:
    """The client TLS context for ``dest``: TLS ≥ 1.2, the server certificate checked against ``ca`` (or the
    system's CAs) unless ``verify=0``, a client certificate when ``cert``/``key`` are given."""
    try:
        ctx = ssl.create_default_context(cafile=dest.text("ca") or None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if dest.text("cert"):
            ctx.load_cert_chain(dest.text("cert"), dest.text("key") or None)
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"--to {dest.url}: tls setup: {err}") from err
    if not dest.flag("verify", True):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def connect(dest: Destination, ctx: Optional[ssl.SSLContext], timeout: float) -> Socket:
    """A connected socket (TLS-wrapped, handshake done) with the short I/O timeout set; OSError on failure."""
    sock = socket.create_connection((dest.host, dest.port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if ctx is not None:
            tls = ctx.wrap_socket(sock, server_hostname=dest.text("server_name") or dest.host)
            tls.settimeout(IO_TIMEOUT)
            return tls
        sock.settimeout(IO_TIMEOUT)
        return sock
    except BaseException:
        sock.close()
        raise


def unacked_bytes(sock: Socket) -> int:
    """Bytes written to ``sock`` that the peer's TCP stack has not acknowledged yet (``SIOCOUTQ``)."""
    out = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    return int(struct.unpack("i", out)[0])


# struct tcp_info: tcpi_bytes_acked (u64, Linux >= 4.1) sits at offset 120
_TCP_INFO_LEN = 128
_BYTES_ACKED = struct.Struct("<Q")


def bytes_acked(sock: Socket) -> int:
    """Bytes of this connection the peer's TCP stack has acknowledged (``TCP_INFO.tcpi_bytes_acked``);
    through TLS these are bytes on the wire, records and handshake included."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    return int(_BYTES_ACKED.unpack_from(info, 120)[0])


def bytes_written(sock: Socket) -> int:
    """Bytes handed to TCP on this connection so far: acknowledged plus still queued."""
    return bytes_acked(sock) + unacked_bytes(sock)
