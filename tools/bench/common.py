"""Shared plumbing for the benchmark sections: paths, helper builds, the monitor daemon, BPF stats; kernel.

Everything a section creates (temp dirs, pins, processes) is owned by a context manager here and removed on
exit, including on errors, so a failed section leaves nothing behind for the next one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[2]
HELPERS = Path(__file__).resolve().parent / "helpers"
#: the shared peer kits, beside the checkout (`make bench PEERS_DIR=…` / RAWBPF_PEERS points elsewhere)
PEERS = Path(os.environ.get("RAWBPF_PEERS") or ROOT.parent / "shared" / "peers")
MONITOR_OBJ = ROOT / "programs" / "claude_monitor.o"
BPFFS = Path("/sys/fs/bpf")
_ATTACHED = re.compile(r"^attached \d+ programs? in (?P<s>[0-9.]+) s")


class Unavailable(Exception):
    """A piece the section needs is not there (yet); recorded as the section's error, not a crash."""


@dataclass
class Context:
    """What every section gets: a scratch dir, built helpers, and knobs for quick runs."""

    work: Path
    quick: bool = False
    helpers: Dict[str, Path] = field(default_factory=dict)

    def tracked(self, name: str) -> Path:
        """A symlink named ``claude`` to helper NAME: exec'd through it, the process is the root of a tree
        the monitor tracks (its comm is "claude")."""
        link = self.work / f"track-{name}" / "claude"
        if not link.exists():
            link.parent.mkdir(exist_ok=True)
            link.symlink_to(self.helper(name))
        return link

    def helper(self, name: str) -> Path:
        """Build tools/bench/helpers/NAME.c once per run (gcc) and return the binary's path."""
        if name not in self.helpers:
            src = HELPERS / f"{name}.c"
            out = self.work / "bin" / name
            out.parent.mkdir(exist_ok=True)
            flags = ["-O2", "-static", "-nostdlib"] if name == "tiny_true" else ["-O2", "-Wall"]
            run(["gcc", *flags, "-o", str(out), str(src)])
            self.helpers[name] = out
        return self.helpers[name]


def run(cmd: Sequence[str], *, timeout: float = 300, cwd: Optional[Path] = None,
        env: Optional[Dict[str, str]] = None) -> str:
    """Run a command, return its stdout; a failure raises with the command's last stderr line."""
    try:
        cp = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    except FileNotFoundError as err:
        raise Unavailable(f"{cmd[0]}: not installed") from err
    if cp.returncode != 0:
        tail = (cp.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        raise RuntimeError(f"{Path(cmd[0]).name} exited {cp.returncode}: {tail}")
    return cp.stdout


def last_json(text: str) -> Dict[str, Any]:
    """The last line of a helper's stdout, parsed as JSON."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        raise RuntimeError("helper printed nothing")
    out = json.loads(lines[-1])
    assert isinstance(out, dict)
    return out


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def rawbpf_cmd() -> List[str]:
    """How to run the rawbpf CLI from this checkout with the interpreter running the benchmark."""
    return [sys.executable, "-m", "rawbpf"]


PYCACHE = os.path.join(tempfile.gettempdir(), "rawbpf-bench-pycache")


def child_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"  # progress lines must arrive as printed, not at exit
    # An installed package runs from compiled bytecode; a shell with PYTHONDONTWRITEBYTECODE=1 would make
    # every start compile rawbpf from source. Keep the cache out of the checkout.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = PYCACHE
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"rawbpf-bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def bpffs_dir(prefix: str) -> Iterator[Path]:
    """A private directory under /sys/fs/bpf, removed with everything pinned in it."""
    path = BPFFS / f"rawbpf-bench-{prefix}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a live process has used so far (every thread), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a live process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmHWM for pid {pid}")


@dataclass
class Daemon:
    """A running ``rawbpf load`` process. ``attached_s``: wall time from spawn to "attached" (interpreter
    start-up included); ``reported_s``: the time rawbpf itself reports (from its start, imports excluded)."""

    proc: subprocess.Popen
    attached_s: float
    reported_s: float
    rss_mb: float
    pin_dir: Path
    log_dir: Path
    output: List[str]
    #: user + system CPU seconds of the process (all its threads) when "attached" was read
    cpu_s: float = float("nan")


@contextlib.contextmanager
def rawbpf_load(obj: Path, pin_root: Path, log_dir: Path, *, extra: Sequence[str] = (),
                timeout: float = 30.0, cmd: Optional[Sequence[str]] = None,
                env: Optional[Dict[str, str]] = None) -> Iterator[Daemon]:
    """Start ``rawbpf load OBJ`` in the foreground, wait for "attached N programs", SIGINT it on exit.

    A daemon that exits, or does not report "attached" within ``timeout``, raises with its last output line.
    """
    if not obj.exists():
        raise Unavailable(f"{obj.relative_to(ROOT)} is not built yet")
    argv = [*(cmd or rawbpf_cmd()), "load", str(obj), "--pin-dir", str(pin_root), "--log-dir", str(log_dir),
            *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env or child_env(),
                            cwd=ROOT if cmd is None else log_dir)
    output: List[str] = []
    try:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = t0 + timeout
        attached = None
        reported = cpu = float("nan")
        pending = b""
        while attached is None:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise RuntimeError(f"rawbpf load: no 'attached' line within {timeout:.0f}s")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)  # raw reads: a buffered reader would hide lines from select()
            if not chunk:
                last = output[-1] if output else "(no output)"
                raise RuntimeError(f"rawbpf load exited {proc.wait()}: {last}")
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace").rstrip()
                output.append(line)
                match = _ATTACHED.match(line)
                if attached is None and (match or "ctrl-c" in line.lower()):
                    attached = time.perf_counter() - t0
                    reported = float(match.group("s")) if match else reported
                    cpu = process_cpu_s(proc.pid)
        rss = peak_rss_mb(proc.pid)
        threading.Thread(target=_drain, args=(fd, output), daemon=True).start()  # a full pipe would stall it
        yield Daemon(proc, attached, reported, rss, pin_root, log_dir, output, cpu)
    finally:
        stop(proc)


def _drain(fd: int, output: List[str]) -> None:
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            output.extend(chunk.decode(errors="replace").splitlines())
    except OSError:
        return


def stop(proc: subprocess.Popen, grace: float = 10.0) -> int:
    """SIGINT, then SIGKILL after ``grace`` seconds; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


def pinned_prog_ids(pin_root: Path) -> Dict[str, int]:
    """Programs reachable from a pin tree (pinned programs and the programs of pinned links), by name."""
    out: Dict[str, int] = {}
    for path in sorted(pin_root.rglob("*")):
        if path.is_dir():
            continue
        for kind in ("prog", "link"):
            try:
                info = json.loads(run(["bpftool", "-j", kind, "show", "pinned", str(path)], timeout=10))
            except (RuntimeError, json.JSONDecodeError):
                continue
            prog_id = int(info["id"] if kind == "prog" else info["prog_id"])
            name = info["name"] if kind == "prog" else prog_info(prog_id)["name"]
            out[str(name)] = prog_id
            break
    return out


def prog_info(prog_id: int) -> Dict[str, Any]:
    info = json.loads(run(["bpftool", "-j", "prog", "show", "id", str(prog_id)], timeout=10))
    assert isinstance(info, dict)
    return info


def prog_stats(ids: Dict[str, int]) -> Dict[str, Dict[str, int]]:
    """run_cnt and run_time_ns per program (BPF stats must be enabled)."""
    out = {}
    for name, prog_id in ids.items():
        info = prog_info(prog_id)
        out[name] = {"run_cnt": int(info.get("run_cnt", 0)), "run_time_ns": int(info.get("run_time_ns", 0))}
    return out


@contextlib.contextmanager
def bpf_stats() -> Iterator[None]:
    """Keep BPF run-time statistics on (BPF_ENABLE_STATS through rawbpf) for the duration."""
    try:
        from rawbpf.programs import enable_stats
    except ImportError as err:
        raise Unavailable("rawbpf.programs.enable_stats is not available yet") from err
    with enable_stats():
        yield
