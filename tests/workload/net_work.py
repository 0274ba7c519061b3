#!/usr/bin/env python3
"""Name lookups and a TLS connection for the monitor to record; run through a symlink named ``claude``
inside a network namespace whose resolver (its own /etc/resolv.conf) is a dnsmasq on 127.0.0.1.

    claude CERT KEY          # prints a manifest (JSON) of what it did

What it does: getaddrinfo() of a name with A and AAAA records, of a CNAME, and of a name that does not
exist (glibc: a connected UDP socket, sendmmsg, recvfrom); a plain UDP query with sendto/recvfrom on an
unconnected socket; a query over TCP; a TCP connect by name to a listener of its own; and a TLS handshake
with a server of its own on 127.0.0.4:443 (no DNS name) sending the server name ``direct.test``, then
a plain connect to the same address. Standard library only.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import struct
import sys
import threading
from typing import Any, Dict


def query(name: str, qtype: int, ident: int) -> bytes:
    out = struct.pack("!6H", ident, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0" + struct.pack("!HH", qtype, 1)


def main(cert: str, key: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {"pid": os.getpid()}
    # a TCP listener and a TLS server of our own, both on 127.0.0.1
    plain = socket.socket()
    plain.bind(("127.0.0.2", 0))  # api.test
    plain.listen(8)
    out["plain_port"] = plain.getsockname()[1]
    tls_srv = socket.socket()
    tls_srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tls_srv.bind(("127.0.0.4", 443))  # no DNS name: only the TLS server name names it
    tls_srv.listen(8)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)

    def serve_tls() -> None:
        conn, _ = tls_srv.accept()
        try:
            with sctx.wrap_socket(conn, server_side=True) as s:
                s.recv(16)
        except (OSError, ssl.SSLError):
            pass
        conn, _ = tls_srv.accept()  # the plain connect after the handshake
        conn.close()

    t = threading.Thread(target=serve_tls, daemon=True)
    t.start()

    out["api"] = sorted({a[4][0] for a in socket.getaddrinfo("api.test", 80, proto=socket.IPPROTO_TCP)})
    out["alias"] = sorted({a[4][0] for a in socket.getaddrinfo("alias.test", 80, socket.AF_INET,
                                                                 proto=socket.IPPROTO_TCP)})
    try:
        socket.getaddrinfo("nope.test", 80, socket.AF_INET)
        out["nope"] = "resolved"
    except socket.gaierror as err:
        out["nope"] = err.errno

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:  # unconnected: sendto and recvfrom
        u.settimeout(5)
        u.sendto(query("udp.test", 1, 0x1111), ("127.0.0.1", 53))
        out["udp_reply"] = len(u.recvfrom(2048)[0])
    with socket.create_connection(("127.0.0.1", 53), timeout=5) as tc:  # DNS over TCP
        q = query("tcp.test", 1, 0x2222)
        tc.sendall(struct.pack("!H", len(q)) + q)
        n = struct.unpack("!H", tc.recv(2))[0]
        got = b""
        while len(got) < n:
            got += tc.recv(n - len(got))
        out["tcp_reply"] = n

    with socket.create_connection(("api.test", out["plain_port"]), timeout=5) as c:  # connect by name
        out["connected"] = c.getpeername()[0]
    plain.close()

    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.4", 443), timeout=5) as raw, \
            cctx.wrap_socket(raw, server_hostname="direct.test") as s:
        s.sendall(b"hi")
    with socket.create_connection(("127.0.0.4", 443), timeout=5):  # named by the server name sent before
        pass
    t.join(5)
    tls_srv.close()
    return out


if __name__ == "__main__":
    json.dump(main(sys.argv[1], sys.argv[2]), sys.stdout)
