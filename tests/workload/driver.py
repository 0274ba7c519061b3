#!/usr/bin/env python3
"""Runs the scripted Claude-like workload and returns (or prints) a manifest of everything it started.

The workload: ``claude_like.py`` reached through a symlink named ``claude`` (the process to audit), the same
script through a symlink named ``claude-not`` and a busy loop (both unrelated: nothing of theirs may be
recorded), and ``renamer.py``, which renames itself to ``claude`` and is tracked from then on. Listeners for
IPv4, IPv6, a unix path and an abstract unix socket run in this process. Standard library only.

    python3 tests/workload/driver.py [--dir DIR] [--exit-code N]   # prints the manifest as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
API_KEY = "sk-ant-api03-" + "Zx9" * 12


class _Listeners:
    """Accept-and-close servers on 127.0.0.1, ::1, a unix path and an abstract unix name."""

    def __init__(self, workdir: Path) -> None:
        self.abstract = f"rawbpf-workload-{uuid.uuid4().hex[:12]}"
        self.unix = str(workdir / "claude.sock")
        self.socks: List[socket.socket] = []
        v4 = self._listen(socket.AF_INET, ("127.0.0.1", 0))
        v6 = self._listen(socket.AF_INET6, ("::1", 0))
        self._listen(socket.AF_UNIX, self.unix)
        self._listen(socket.AF_UNIX, "\0" + self.abstract)
        self.port = v4.getsockname()[1]
        self.port6 = v6.getsockname()[1]
        self._stop = False
        for s in self.socks:
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _listen(self, family: int, addr: Any) -> socket.socket:
        s = socket.socket(family, socket.SOCK_STREAM)
        if family != socket.AF_UNIX:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(addr)
        s.listen(64)
        self.socks.append(s)
        return s

    def _serve(self, s: socket.socket) -> None:
        while not self._stop:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            conn.close()

    def close(self) -> None:
        self._stop = True
        for s in self.socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def run(workdir: Optional[Path] = None, *, exit_code: int = 3, busy_rounds: int = 50) -> Dict[str, Any]:
    """Run the workload to completion; returns the manifest (pids, reports, exit statuses)."""
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="rawbpf-workload-"))
    workdir.mkdir(parents=True, exist_ok=True)
    bindir = workdir / "bin"
    bindir.mkdir(exist_ok=True)
    for name in ("claude", "claude-not"):
        link = bindir / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(HERE / "claude_like.py")
    # `#!/usr/bin/env python3` must find one real interpreter, not a wrapper script (pyenv shims, say):
    # the workload's exec records are exact, and every interpreter started here has comm "python3".
    python3 = bindir / "python3"
    if python3.is_symlink() or python3.exists():
        python3.unlink()
    python3.symlink_to(os.path.realpath(sys.executable))
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', os.defpath)}")
    listeners = _Listeners(workdir)
    try:
        def args(report: Path, code: int) -> List[str]:
            return ["--tcp-port", str(listeners.port), "--tcp6-port", str(listeners.port6),
                    "--unix", listeners.unix, "--abstract", listeners.abstract, "--report", str(report),
                    "--api-key", API_KEY, "--exit-code", str(code)]

        busy = subprocess.Popen([str(python3), str(HERE / "busy.py"), str(listeners.port),
                                 str(busy_rounds)], env=env)
        not_claude = subprocess.Popen([str(bindir / "claude-not"), *args(workdir / "claude-not.json", 0)],
                                      env=env)
        claude_argv = [str(bindir / "claude"), *args(workdir / "claude.json", exit_code)]
        claude = subprocess.Popen(claude_argv, env=env)
        renamer = subprocess.Popen([str(python3), str(HERE / "renamer.py"), str(listeners.port),
                                    str(workdir / "renamer.json")], env=env)
        # a hang guard, scaled where make test-kernels runs it under emulation (tests/kernel/patience.py)
        patience = 60 * max(1.0, float(os.environ.get("RAWBPF_TEST_TIME_SCALE") or 1))
        codes = {name: p.wait(timeout=patience) for name, p in
                 (("claude", claude), ("claude-not", not_claude), ("busy", busy), ("renamer", renamer))}
    finally:
        listeners.close()
    return {
        "workdir": str(workdir),
        "claude": {"pid": claude.pid, "argv": claude_argv, "exit_code": codes["claude"],
                   "filename": str(bindir / "claude"),
                   **json.loads((workdir / "claude.json").read_text())},
        "claude_not": {"pid": not_claude.pid, "exit_code": codes["claude-not"]},
        "busy": {"pid": busy.pid, "exit_code": codes["busy"]},
        "renamer": {"exit_code": codes["renamer"], **json.loads((workdir / "renamer.json").read_text())},
        "listeners": {"port": listeners.port, "port6": listeners.port6, "unix": listeners.unix,
                      "abstract": listeners.abstract},
        "api_key": API_KEY,
        "driver_pid": os.getpid(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--exit-code", type=int, default=3)
    ns = ap.parse_args()
    print(json.dumps(run(ns.dir, exit_code=ns.exit_code), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
