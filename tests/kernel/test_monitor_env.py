"""The monitor in a bad environment: no privileges, bpffs not mounted, a tracepoint missing, a log directory
that cannot be written. Each is one line on stderr, exit status 1, and nothing left pinned or attached."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
from monitor_support import OBJ, ROOT, monitor_programs
from patience import patience

LOAD = [sys.executable, "-m", "rawbpf", "load", str(OBJ)]


def _run(argv: List[str], timeout: float = patience(60)) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _one_line_error(res: subprocess.CompletedProcess, *needles: str) -> str:
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    line = lines[0]
    assert line.startswith("rawbpf: ") and not line[8].isupper(), line  # lower-case, context first
    for n in needles:
        assert n in line, line
    return line


def _nothing_left(pin_dir: Path, log_dir: Path) -> None:
    assert not pin_dir.exists() or not list(pin_dir.rglob("*"))
    assert not (log_dir / "claude_monitor.status.json").exists()


def test_without_privileges(tmp_path: Path, pin_dir: Path) -> None:
    """Root's uid with every capability dropped: the kernel refuses, the error says what is needed."""
    res = _run(["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", *LOAD,
                "--log-dir", str(tmp_path / "logs"), "--pin-dir", str(pin_dir)])
    _one_line_error(res, "operation not permitted", "CAP_BPF")
    _nothing_left(pin_dir, tmp_path / "logs")
    assert not (tmp_path / "logs").exists()  # the log directory it created is removed again


def test_log_dir_unwritable(tmp_path: Path, pin_dir: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    res = _run([*LOAD, "--log-dir", str(blocker / "logs"), "--pin-dir", str(pin_dir)])
    _one_line_error(res, f"log directory {blocker / 'logs'}: not a directory")
    _nothing_left(pin_dir, tmp_path)


def test_log_dir_read_only(tmp_path: Path, pin_dir: Path) -> None:
    """A read-only bind mount in a private mount namespace (root ignores file modes, not read-only mounts)."""
    logs = tmp_path / "ro"
    logs.mkdir()
    cmd = (f"mount --bind {shlex.quote(str(logs))} {shlex.quote(str(logs))} && "
           f"mount -o remount,bind,ro {shlex.quote(str(logs))} && exec {shlex.join(LOAD)} "
           f"--log-dir {shlex.quote(str(logs))} --pin-dir {shlex.quote(str(pin_dir))}")
    res = _run(["unshare", "-m", "--propagation", "private", "sh", "-c", cmd])
    _one_line_error(res, f"log directory {logs}: not writable")
    _nothing_left(pin_dir, logs)


def test_pin_dir_not_on_bpffs(tmp_path: Path) -> None:
    res = _run([*LOAD, "--log-dir", str(tmp_path / "logs"), "--pin-dir", str(tmp_path / "pins")])
    _one_line_error(res, "not on a bpffs mount")
    _nothing_left(tmp_path / "pins", tmp_path / "logs")


def test_tracepoint_missing(tmp_path: Path, pin_dir: Path) -> None:
    """tracefs hidden in a private mount namespace (other filesystems occupy both places it could be mounted,
    which rawbpf never covers): the tracepoints cannot be found; loaded programs and the links already made
    are released, the pins removed."""
    cmd = ("mount -t tmpfs none /sys/kernel/tracing && mount -t tmpfs none /sys/kernel/debug && "
           f"exec {shlex.join(LOAD)} --log-dir {shlex.quote(str(tmp_path / 'logs'))} "
           f"--pin-dir {shlex.quote(str(pin_dir))}")
    res = _run(["unshare", "-m", "--propagation", "private", "sh", "-c", cmd])
    _one_line_error(res, "sched_process_exec", "tracefs")
    _nothing_left(pin_dir, tmp_path / "logs")


def test_bpffs_not_mounted_is_mounted_on_demand(tmp_path: Path) -> None:
    """With /sys/fs/bpf unmounted (private mount namespace) the monitor mounts bpffs, runs, and stops
    cleanly."""
    pins = f"/sys/fs/bpf/rawbpf-envtest-{os.getpid()}"
    cmd = (f"umount -l /sys/fs/bpf && ! mountpoint -q /sys/fs/bpf && exec {shlex.join(LOAD)} "
           f"--log-dir {shlex.quote(str(tmp_path / 'logs'))} --pin-dir {pins}")
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", cmd], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("logging to "):
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=patience(60))
    assert proc.returncode == 0, err
    assert f"stopped: detached {monitor_programs()} programs, unpinned " in out
    assert not os.path.exists(pins)  # the namespace's bpffs went away; nothing was pinned in ours


@pytest.mark.parametrize("flag", ["--only-endpoints", "--match-comm=x"])
def test_monitor_options_rejected_for_other_objects(tmp_path: Path, flag: str) -> None:
    other = ROOT / "tests" / "data" / "globals.o"
    res = _run([sys.executable, "-m", "rawbpf", "load", str(other), flag, "--log-dir", str(tmp_path)])
    _one_line_error(res, "only apply to the claude_monitor object")


@pytest.mark.parametrize(("args", "needle"), [
    (["--endpoint", "10.0.0.0/8"], "expected CIDR[:PORT]=NAME"),
    (["--argv-max-bytes", "999999"], "argv max bytes: 999999"),
    (["--match-comm", "a-name-longer-than-15"], "comm 'a-name-longer-than-15'"),
])
def test_bad_monitor_options(tmp_path: Path, pin_dir: Path, args: List[str], needle: str) -> None:
    res = _run([*LOAD, *args, "--log-dir", str(tmp_path / "logs"), "--pin-dir", str(pin_dir)])
    _one_line_error(res, needle)
    _nothing_left(pin_dir, tmp_path / "logs")
