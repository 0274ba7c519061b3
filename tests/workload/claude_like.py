#!/usr/bin/env python3
"""A stand-in for the Claude Code CLI: behaves like it at the system-call level, then writes what it did.

Started through a symlink named ``claude`` (so the kernel sees comm ``claude``), it does what the real CLI
does and the monitor must record: threads that rename themselves and connect (IPv4 to a listener, IPv6, an
IPv4-mapped IPv6 address, a unix socket, an abstract unix socket, a non-blocking connect), a forked child
renamed before it execs ``sh -c`` (whose shell forks again), a child that execs another program and exits with
a code, a child killed by a signal, secrets on a child's command line, and finally its own exit code.

Everything it did (pids, tids, addresses) is written as JSON to ``--report`` so a test can compare it with
the records. Standard library only; runs on Python 3.9+.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import json
import os
import signal
import socket
import sys
import threading
import time
from typing import Any, Dict, List

PR_SET_NAME = 15
_libc = ctypes.CDLL(None, use_errno=True)


def set_comm(name: str) -> None:
    """Rename the calling thread (prctl PR_SET_NAME), as Claude does for its threads and children."""
    _libc.prctl(PR_SET_NAME, name.encode(), 0, 0, 0)


def _connect(family: int, addr: Any, *, nonblocking: bool = False) -> int:
    """connect(2) and return 0 or -errno, like the syscall."""
    kind = socket.SOCK_STREAM
    with socket.socket(family, kind) as s:
        if nonblocking:
            s.setblocking(False)
        err = s.connect_ex(addr)
        return -err if err else 0


def _thread(name: str, out: List[Dict[str, Any]], lock: threading.Lock, jobs: List[Dict[str, Any]]) -> None:
    set_comm(name)
    tid = threading.get_native_id()
    for job in jobs:
        ret = _connect(job["family"], job["sockaddr"], nonblocking=job.get("nonblocking", False))
        entry = {k: v for k, v in job.items() if k not in ("sockaddr",)}
        entry.update(tid=tid, ret=ret, comm=name)
        with lock:
            out.append(entry)


def _wait_comm(pid: int, comm: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == comm:
                    return
        except OSError:
            return
        time.sleep(0.005)


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tcp-port", type=int, required=True)
    ap.add_argument("--tcp6-port", type=int, required=True)
    ap.add_argument("--unix", required=True)
    ap.add_argument("--abstract", required=True)
    ap.add_argument("--report", required=True)
    ap.add_argument("--api-key", default="")
    ap.add_argument("--exit-code", type=int, default=0)
    args = ap.parse_args(argv)

    report: Dict[str, Any] = {"pid": os.getpid(), "ppid": os.getppid(), "comm": _read_comm(os.getpid()),
                              "connects": [], "children": {}}
    lock = threading.Lock()
    port, port6 = args.tcp_port, args.tcp6_port
    plan = {
        "HTTP Client": [
            {"family": socket.AF_INET, "sockaddr": ("127.0.0.1", port), "addr": "127.0.0.1", "port": port},
            {"family": socket.AF_INET6, "sockaddr": ("::ffff:127.0.0.1", port), "addr": "127.0.0.1",
             "port": port},
        ],
        "Bun Pool 0": [
            {"family": socket.AF_INET6, "sockaddr": ("::1", port6), "addr": "::1", "port": port6},
            {"family": socket.AF_INET, "sockaddr": ("127.0.0.1", port), "addr": "127.0.0.1", "port": port,
             "nonblocking": True},
        ],
        "Bun Pool 1": [
            {"family": socket.AF_UNIX, "sockaddr": args.unix, "addr": args.unix, "port": 0},
            {"family": socket.AF_UNIX, "sockaddr": "\0" + args.abstract, "addr": "@" + args.abstract,
             "port": 0},
        ],
    }
    threads = [threading.Thread(target=_thread, args=(name, report["connects"], lock, jobs))
               for name, jobs in plan.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in report["connects"]:
        c["family"] = {socket.AF_INET: "inet", socket.AF_INET6: "inet6", socket.AF_UNIX: "unix"}[c["family"]]

    children = report["children"]
    # a child renamed before it execs a shell, whose shell forks again
    script = "/bin/true; /bin/echo workload | /bin/cat >/dev/null"
    pid = os.fork()
    if pid == 0:
        set_comm("claude-shell")
        os.execv("/bin/sh", ["/bin/sh", "-c", script])
    _, status = os.waitpid(pid, 0)
    children["shell"] = {"pid": pid, "argv": ["/bin/sh", "-c", script], "status": status,
                         "renamed_to": "claude-shell"}

    # a child that runs a program with secrets on its command line and exits with a code
    key = args.api_key or "sk-ant-api03-EXAMPLEexampleEXAMPLE"
    secret_argv = ["/bin/sh", "-c", "exit 7", "sh", "--api-key", key, "token=abc123",
                   "Authorization: Bearer xyz789"]
    pid = os.fork()
    if pid == 0:
        os.execv("/bin/sh", secret_argv)
    _, status = os.waitpid(pid, 0)
    children["secret"] = {"pid": pid, "argv": secret_argv, "exit_code": os.waitstatus_to_exitcode(status)}

    # a child killed by a signal while it runs another program
    pid = os.fork()
    if pid == 0:
        os.execv("/bin/sleep", ["/bin/sleep", "30"])
    _wait_comm(pid, "sleep")
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    children["killed"] = {"pid": pid, "argv": ["/bin/sleep", "30"], "signal": os.WTERMSIG(status)}

    with open(args.report, "w") as f:
        json.dump(report, f)
    sys.stdout.flush()
    return args.exit_code


def _read_comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except OSError as err:
        print(f"claude_like: {err}", file=sys.stderr)
        sys.exit(100 + (err.errno or errno.EIO) % 100)
