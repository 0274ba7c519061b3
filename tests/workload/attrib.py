#!/usr/bin/env python3
"""A scripted workload for the monitor's identity and attribution fields; run it as the tracked process.

Started through a symlink named ``claude`` (so the monitor tracks it and everything it starts), it runs:

- children with Claude's environment variables as a tool call, a hook and an MCP server get them (plus a
  secret-bearing variable, look-alike names, a long variable hiding an allowlisted name at a chunk boundary),
  and a tool call's grandchild that execs with an empty environment (it inherits the attribution);
- a child that changes directory before it execs, one that execs through a relative path, one in a directory
  under another mount, one in a directory deeper than the monitor records;
- a child with another effective uid, one with a login uid, one with a controlling terminal, one in its own
  cgroup (when cgroup v2 is writable);
- TCP connects that are established, refused, time out, are unreachable and are reset (the last three inside
  network namespace ``--netns`` prepared by the test), and a connect by the root after the tool call ran;
- a thread that renames itself, and a process whose last thread to exit has another name.

Everything it started is written as JSON to ``--report``. Standard library only.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from typing import Any, Dict, List, Optional

SESSION = "7f1c2b3a-4d5e-4f60-8a9b-0c1d2e3f4a5b"
HOOK_SESSION = "11111111-2222-4333-8444-555555555555"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
SECRET = "sk-ant-api03-" + "Sekret" * 8
PR_SET_NAME = 15
_libc = ctypes.CDLL(None, use_errno=True)


def _base_env() -> Dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "ANTHROPIC_API_KEY": SECRET, "MY_TOKEN": SECRET}


def _run(argv: List[str], **kw: Any) -> Dict[str, Any]:
    p = subprocess.Popen(argv, **kw)
    p.wait()
    return {"pid": p.pid, "argv": argv, "returncode": p.returncode}


def env_children(out: Dict[str, Any], workdir: str) -> None:
    tool = _base_env()
    # a long variable first whose text at the scan's chunk boundaries looks like an allowlisted one
    tool["LONG_NOISE"] = ("x" * 150 + "CLAUDE_CODE_SESSION_ID=00000000-fake-fake-fake-000000000000") * 8
    tool.update({"CLAUDE_CODE_SESSION_IDX": "look-alike", "XCLAUDE_CODE_SESSION_ID": "look-alike",
                 "CLAUDECODE": "1", "CLAUDE_CODE_CHILD_SESSION": "1", "CLAUDE_CODE_SESSION_ID": SESSION,
                 "TRACEPARENT": TRACEPARENT, "CLAUDE_PID": str(os.getpid()),
                 "CLAUDE_CODE_EXECPATH": "/usr/bin/claude"})
    # the tool call's shell, which runs a grandchild with an empty environment
    out["tool"] = _run(["/bin/sh", "-c", "env -i /bin/true; exit 0"], env=tool, cwd=workdir)
    hook = dict(_base_env(), CLAUDECODE="1", CLAUDE_CODE_CHILD_SESSION="1",
                CLAUDE_CODE_SESSION_ID=HOOK_SESSION, CLAUDE_PROJECT_DIR=workdir)
    out["hook"] = _run(["/bin/true", "hook"], env=hook)
    mcp = dict(_base_env(), CLAUDECODE="1", CLAUDE_CODE_SESSION_ID=SESSION, CLAUDE_PROJECT_DIR=workdir)
    out["mcp"] = _run(["/bin/true", "mcp"], env=mcp)
    # Claude's own helper: none of the variables
    out["helper"] = _run(["/bin/true", "helper"], env=_base_env())


def cwd_children(out: Dict[str, Any], workdir: str) -> None:
    sub = os.path.join(workdir, "sub dir", "inner")
    os.makedirs(sub, exist_ok=True)
    # a child that changes directory itself, then execs
    code = f"import os; os.chdir({sub!r}); os.execv('/bin/true', ['true', 'chdir'])"
    out["chdir"] = _run([sys.executable, "-c", code])
    out["chdir"]["cwd"] = sub
    script = os.path.join(sub, "run.sh")
    with open(script, "w") as f:
        f.write("#!/bin/sh\nexit 0\n")
    os.chmod(script, 0o755)
    out["relative"] = _run(["./run.sh"], cwd=sub)
    out["relative"]["filename"] = script
    out["relative"]["cwd"] = sub
    other_mount = "/proc/sys" if os.path.isdir("/proc/sys") else "/dev"
    out["mount"] = _run(["/bin/true", "mount"], cwd=other_mount)
    out["mount"]["cwd"] = other_mount
    deep = workdir
    for i in range(40):
        deep = os.path.join(deep, f"level{i:02d}")
    os.makedirs(deep, exist_ok=True)
    out["deep"] = _run(["/bin/true", "deep"], cwd=deep)
    out["deep"]["cwd"] = deep


def _as_nobody() -> None:
    os.seteuid(65534)


def _login_uid() -> None:
    with open("/proc/self/loginuid", "w") as f:
        f.write("4321")


def who_children(out: Dict[str, Any], workdir: str, cgroup: Optional[str]) -> None:
    out["euid"] = _run(["/bin/true", "euid"], preexec_fn=_as_nobody)
    try:
        with open("/proc/self/loginuid") as f:
            mine = int(f.read())
        out["auid_before"] = mine
        out["auid"] = _run(["/bin/true", "auid"], preexec_fn=_login_uid)
    except (OSError, subprocess.SubprocessError):
        out["auid"] = None
    master, slave = os.openpty()
    name = os.ttyname(slave)
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            os.execv("/bin/true", ["true", "tty"])
        finally:
            os._exit(127)
    os.waitpid(pid, 0)
    os.close(master)
    os.close(slave)
    out["tty"] = {"pid": pid, "name": name[len("/dev/"):]}
    if cgroup:
        def enter() -> None:
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                f.write("0")
        out["cgroup"] = _run(["/bin/true", "cgroup"], preexec_fn=enter)


def _connect(addr: Any, *, nonblocking: bool = False, syncnt: int = 0,
             timeout: float = 10.0) -> Dict[str, Any]:
    """connect(2) from this thread; returns the syscall's result and, for non-blocking, the final SO_ERROR."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if syncnt:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, syncnt)
        if nonblocking:
            s.setblocking(False)
        ret = s.connect_ex(addr)
        final = ret
        if nonblocking and ret == errno.EINPROGRESS:
            import select
            select.select([], [s], [], timeout)
            final = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        return {"ret": -ret, "final": final, "port": addr[1], "addr": addr[0],
                "tid": threading.get_native_id()}
    finally:
        s.close()


def connects(out: Dict[str, Any]) -> None:
    for case in ("established", "established_nb"):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        out[case] = _connect(srv.getsockname(), nonblocking=case.endswith("_nb"))
        srv.close()
    for case in ("refused", "refused_nb"):
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        addr = closed.getsockname()
        closed.close()
        out[case] = _connect(addr, nonblocking=case.endswith("_nb"))


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _tcp_packet(src: str, dst: str, sport: int, dport: int, seq: int, flags: int) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0, socket.inet_aton(src),
                     socket.inet_aton(dst))
    return ip + tcp


def netns_connects(out: Dict[str, Any], local: str, blackhole: str, unreachable: str) -> None:
    """Run inside the test's network namespace: a SYN into the void (timeout), to an address nobody answers
    ARP for (unreachable), and a simultaneous open that the peer resets."""
    out["timeout"] = _connect((blackhole, 9), nonblocking=True, syncnt=1)
    out["unreachable"] = _connect((unreachable, 9), nonblocking=True, syncnt=2)
    # reset: our SYN to the blackhole is lost; a SYN "from" it makes a simultaneous open, then its RST
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((local, 0))
    sport = s.getsockname()[1]
    s.setblocking(False)
    ret = s.connect_ex((blackhole, 7777))
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    seq = 0x1000
    raw.sendto(_tcp_packet(blackhole, local, 7777, sport, seq, 0x02), (local, 0))  # SYN
    time.sleep(0.2)
    raw.sendto(_tcp_packet(blackhole, local, 7777, sport, seq + 1, 0x04), (local, 0))  # RST
    raw.close()
    time.sleep(0.2)
    final = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    s.close()
    out["reset"] = {"ret": -ret, "final": final, "port": 7777, "addr": blackhole,
                    "tid": threading.get_native_id()}


def set_comm(name: str) -> None:
    _libc.prctl(PR_SET_NAME, name.encode(), 0, 0, 0)


def threads(out: Dict[str, Any]) -> None:
    tids: Dict[str, int] = {}

    def worker() -> None:
        set_comm("HTTP Client")
        tids["renamed"] = threading.get_native_id()

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    out["thread_rename"] = {"tid": tids["renamed"], "name": "HTTP Client"}
    # a process whose main thread ends first: the last thread, named fs.watch, ends the process
    code = ("import ctypes, threading, os, time\n"
            "libc = ctypes.CDLL(None)\n"
            "def last():\n"
            "    libc.prctl(15, b'fs.watch', 0, 0, 0)\n"
            "    time.sleep(0.3)\n"
            "    os._exit(4)\n"
            "threading.Thread(target=last).start()\n"
            "time.sleep(0.05)\n"
            "libc.syscall(60, 0)\n")  # SYS_exit: only the main thread
    p = subprocess.Popen([sys.executable, "-c", code])
    p.wait()
    out["last_thread"] = {"pid": p.pid, "returncode": p.returncode}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--report", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--netns", default="")
    ap.add_argument("--cgroup", default="")
    ap.add_argument("--net", default="", help="local,blackhole,unreachable addresses inside --netns")
    ap.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    out: Dict[str, Any] = {"pid": os.getpid()}
    if args.in_netns:
        local, blackhole, unreachable = args.net.split(",")
        netns_connects(out, local, blackhole, unreachable)
        with open(args.report, "w") as f:
            json.dump(out, f)
        return 0
    env_children(out, args.dir)
    # after the tool call ran: the root's own connect carries the session id it revealed
    cwd_children(out, args.dir)
    who_children(out, args.dir, args.cgroup or None)
    connects(out)
    if args.netns:
        report = args.report + ".netns"
        res = _run(["ip", "netns", "exec", args.netns, sys.executable, __file__, "--in-netns", "--report",
                    report, "--dir", args.dir, "--net", args.net])
        with open(report) as f:
            out["netns"] = dict(json.load(f), **res)
    threads(out)
    with open(args.report, "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
