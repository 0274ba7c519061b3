#!/usr/bin/env python3
"""DNS over TCP as real clients speak it, for the monitor to record; run through a symlink named ``claude``
inside a network namespace whose resolver (its own /etc/resolv.conf) is a dnsmasq on 127.0.0.1.

    claude [DIG]             # prints a manifest (JSON) of what it did

Each step is a child process of this tracked root, so its lookups are records of the same Claude tree:
- ``vc``: glibc's resolver with ``use-vc`` (RES_OPTIONS, the environment form of resolv.conf's options):
  one writev of two length-prefixed queries (A and AAAA), each answer read as its two-byte length and then
  its body; then a TCP connect by name to a listener on the answer's address.
- ``tc``: glibc over UDP for a name whose answer does not fit 512 bytes: dnsmasq sets the TC bit and glibc
  asks again over TCP.
- ``raw``: a client of its own: a query written with writev (length, message), its answer read one byte of
  the length at a time and the body with readv into two buffers; a second query written in two writes
  (the length, then the message) and its answer read whole; then three UDP queries from three sockets
  opened one after the other (one fd number, three sockets).
- ``dig``: ``dig +tcp`` (bind9's client), when DIG names it.
Standard library only.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
from typing import Any, Dict, List

# hang guards, longer in an emulated kernel's guest (make test-kernels sets it; tests/kernel/patience.py)
PATIENCE = max(1.0, float(os.environ.get("RAWBPF_TEST_TIME_SCALE") or 1))

def query(name: str, qtype: int, ident: int) -> bytes:
    out = struct.pack("!6H", ident, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0" + struct.pack("!HH", qtype, 1)


def read_exactly(fd: int, n: int) -> bytes:
    got = b""
    while len(got) < n:
        part = os.read(fd, n - len(got))
        if not part:
            raise EOFError("the server closed the connection")
        got += part
    return got


def child(step: str, arg: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {"pid": os.getpid()}
    if step == "vc":  # RES_OPTIONS=use-vc is in this process's environment
        port = int(arg)
        with socket.create_connection(("vc.test", port), timeout=5 * PATIENCE) as c:
            out["connected"] = c.getpeername()[0]
    elif step == "tc":
        out["addrs"] = len({a[4][0] for a in socket.getaddrinfo("big.test", 80, socket.AF_INET,
                                                                 proto=socket.IPPROTO_TCP)})
    elif step == "raw":
        with socket.create_connection(("127.0.0.1", 53), timeout=5 * PATIENCE) as s:
            s.settimeout(None)  # blocking: os.read waits for the answer
            fd = s.fileno()
            q = query("raw.test", 1, 0x3333)
            os.writev(fd, [struct.pack("!H", len(q)), q])
            n = struct.unpack("!H", read_exactly(fd, 1) + read_exactly(fd, 1))[0]
            a, b = bytearray(5), bytearray(n - 5)
            got = os.readv(fd, [a, b])
            rest = read_exactly(fd, n - got) if got < n else b""
            out["raw_reply"] = len(bytes(a) + bytes(b)[:max(0, got - 5)] + rest)
            q2 = query("split.test", 1, 0x4444)
            os.write(fd, struct.pack("!H", len(q2)))
            os.write(fd, q2)
            n2 = struct.unpack("!H", read_exactly(fd, 2))[0]
            out["split_reply"] = len(read_exactly(fd, n2))
        fds = []
        for i in range(3):  # fresh UDP sockets, one after the other: the same fd, each a new socket
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.settimeout(5 * PATIENCE)
                u.sendto(query(f"reuse{i}.test", 1, 0x5550 + i), ("127.0.0.1", 53))
                u.recvfrom(2048)
                fds.append(u.fileno())
        out["reuse_fds"] = fds
    return out


def run_child(args: List[str], env: Dict[str, str]) -> Dict[str, Any]:
    cp = subprocess.run([sys.executable, os.path.abspath(__file__), *args], env=env, stdout=subprocess.PIPE,
                        text=True, timeout=30 * PATIENCE, check=True)
    result: Dict[str, Any] = json.loads(cp.stdout)
    return result


def main(dig: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {"pid": os.getpid()}
    listener = socket.socket()
    listener.bind(("127.0.0.7", 0))  # vc.test
    listener.listen(8)
    port = listener.getsockname()[1]
    env = dict(os.environ)
    out["vc"] = run_child(["--child", "vc", str(port)], dict(env, RES_OPTIONS="use-vc"))
    out["vc"]["port"] = port
    listener.close()
    out["tc"] = run_child(["--child", "tc", ""], env)
    out["raw"] = run_child(["--child", "raw", ""], env)
    if dig:
        p = subprocess.Popen([dig, "+tcp", "+short", "+tries=1", "@127.0.0.1", "dig.test"],
                             stdout=subprocess.PIPE, text=True)
        text, _ = p.communicate(timeout=30 * PATIENCE)
        out["dig"] = {"pid": p.pid, "answer": text.split(), "rc": p.returncode}
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        json.dump(child(sys.argv[2], sys.argv[3]), sys.stdout)
    else:
        json.dump(main(sys.argv[1] if len(sys.argv) > 1 else ""), sys.stdout)
