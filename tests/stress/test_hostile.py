"""Hostile environments: no bpffs, no tracefs, no CAP_BPF/CAP_SYS_ADMIN, corrupt objects, a full disk.

Each must end in one clear error line (exit 1) or a survived fault (exit 0 after a clean stop) — never a
traceback, never a pin or attachment left behind. Mount changes happen only inside private mount namespaces
(``unshare -m``), so the machine's own bpffs and tracefs are never touched.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator, List, Sequence

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
MONITOR = ROOT / "programs" / "claude_monitor.o"
TP5 = DATA / "tracepoints5.o"
PY = [sys.executable, "-m", "rawbpf"]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")

pytestmark = pytest.mark.usefixtures("root_only")


@pytest.fixture()
def pins() -> Iterator[Path]:
    path = Path("/sys/fs/bpf") / f"rawbpf-hostile-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield path
    files = path.rglob("*") if path.exists() else iter(())
    left = sorted(str(p.relative_to(path)) for p in files if not p.is_dir())
    shutil.rmtree(path, ignore_errors=True)
    assert not left, f"pins left behind: {left}"


def run(cmd: Sequence[str], seconds: float = 4.0) -> subprocess.CompletedProcess:
    """Run with SIGINT after ``seconds`` (a load that succeeds runs until stopped); keep its exit status."""
    full = ["timeout", "--preserve-status", "--signal=INT", "--kill-after=20", str(seconds), *cmd]
    return subprocess.run(full, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=seconds + 60)


def assert_clean(cp: subprocess.CompletedProcess, *, allow_ok: bool = True, mention: str = "") -> str:
    """Exit 0 (survived) or 1 with exactly one error line; never a traceback. Returns the error line."""
    both = cp.stdout + cp.stderr
    assert "Traceback" not in both, both[-2000:]
    assert cp.returncode in ((0, 1) if allow_ok else (1,)), f"exit {cp.returncode}: {both[-600:]}"
    if cp.returncode == 0:
        return ""
    # one error line; a verifier rejection may add its log tail ("  | …") and the --verbose hint
    lines = [ln for ln in cp.stderr.splitlines() if ln.strip() and not ln.startswith("  ")]
    assert len(lines) == 1, f"want one error line, got: {lines}"
    if mention:
        assert mention.lower() in lines[0].lower(), lines[0]
    return lines[0]


def in_namespace(script: str, cmd: Sequence[str]) -> List[str]:
    """``cmd`` run after ``script`` in a private mount namespace (util-linux unshare: propagation private)."""
    return ["unshare", "-m", "sh", "-c", f"{script} && exec {shlex.join(cmd)}"]


BAD = ["not_elf.bin", "wrong_machine.o", "truncated.o", "no_license.o", "bad_btf.o", "verifier_reject.o"]


@pytest.mark.parametrize("name", BAD)
def test_bad_object_load_is_one_line_and_leaves_nothing(name: str, pins: Path, tmp_path: Path) -> None:
    cp = run([*PY, "load", str(DATA / name), "--pin-dir", str(pins), "--log-dir", str(tmp_path)])
    assert_clean(cp, allow_ok=False, mention=Path(name).stem)


def test_missing_and_directory_objects(pins: Path, tmp_path: Path) -> None:
    for target in (tmp_path / "nope.o", tmp_path):
        cp = run([*PY, "load", str(target), "--pin-dir", str(pins), "--log-dir", str(tmp_path / "log")])
        assert cp.returncode in (1, 2), cp.stderr  # 2: click's own usage error for a missing path
        assert "Traceback" not in cp.stderr


def test_unknown_and_unattachable_sections(pins: Path, tmp_path: Path) -> None:
    cp = run([*PY, "load", str(DATA / "sections_misc.o"), "--pin-dir", str(pins), "--log-dir", str(tmp_path)])
    assert_clean(cp, allow_ok=False)


def test_fuzzed_objects_through_the_cli(pins: Path, tmp_path: Path) -> None:
    rng = random.Random(0xB0F)
    base = (DATA / "globals.o").read_bytes()
    failures = 0
    for i in range(60):
        data = bytearray(base)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        obj = tmp_path / f"fuzz{i}.o"
        obj.write_bytes(bytes(data))
        cp = run([*PY, "load", str(obj), "--no-attach", "--pin-dir", str(pins), "--log-dir", str(tmp_path)],
                 3)
        assert_clean(cp)
        failures += cp.returncode
        cp = run([*PY, "inspect", str(obj)])
        assert_clean(cp)
    assert failures > 0  # the mutations did hit something


def test_no_bpffs_mounted(tmp_path: Path) -> None:
    pin = f"/sys/fs/bpf/rawbpf-hostile-{uuid.uuid4().hex[:8]}"
    cmd = [*PY, "load", str(TP5), "--pin-dir", pin, "--log-dir", str(tmp_path)]
    hide = "{ umount -l /sys/fs/bpf 2>/dev/null; true; } && mount -t tmpfs none /sys/fs/bpf"  # mounted or not
    cp = run(in_namespace(hide, cmd))
    assert_clean(cp)
    assert not Path(pin).exists()


def test_no_tracefs(pins: Path, tmp_path: Path) -> None:
    # other filesystems where tracefs and debugfs would go: rawbpf never mounts over them
    hide = ("for m in /sys/kernel/tracing /sys/kernel/debug/tracing /sys/kernel/debug; do "
            "umount -l $m 2>/dev/null; done; mount -t tmpfs none /sys/kernel/tracing && "
            "mount -t tmpfs none /sys/kernel/debug && ! test -e /sys/kernel/tracing/events")
    cmd = [*PY, "load", str(TP5), "--pin-dir", str(pins), "--log-dir", str(tmp_path)]
    cp = run(in_namespace(hide, cmd))
    assert_clean(cp, allow_ok=False, mention="tracefs is not mounted and could not be mounted")


@pytest.mark.parametrize("drop", ["bpf,sys_admin,perfmon", "bpf,sys_admin", "sys_admin,perfmon"])
def test_without_capabilities(drop: str, pins: Path, tmp_path: Path) -> None:
    caps = ",".join(f"-{c}" for c in drop.split(","))
    wrap = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"]
    cp = run([*wrap, *PY, "load", str(TP5), "--pin-dir", str(pins), "--log-dir", str(tmp_path)])
    line = assert_clean(cp)
    if "bpf" in drop and "sys_admin" in drop:
        assert cp.returncode == 1 and "permi" in line.lower(), line
    cp = run([*wrap, *PY, "inspect", str(TP5)])
    assert cp.returncode == 0, cp.stderr  # inspecting needs no privilege at all


def _log_losses(view: Path, timeout: float = 15.0) -> int:
    """Records the daemon reports it could not write (its status file, refreshed every few seconds)."""
    deadline = time.monotonic() + timeout
    lost = 0
    while time.monotonic() < deadline:
        for status in view.glob("*.status.json"):
            try:
                lost = int(json.loads(status.read_text()).get("log", {}).get("lost_log", 0))
            except (OSError, ValueError):
                continue
        if lost:
            return lost
        time.sleep(0.5)
    return lost


def test_full_disk_log(pins: Path, tmp_path: Path) -> None:
    """The log directory is a 64 KiB tmpfs while a tracked tree floods events: the daemon keeps running,
    counts the records the disk refused (status ``lost_log``), and stops cleanly."""
    log = tmp_path / "log"
    log.mkdir()
    cmd = [*PY, "load", str(MONITOR), "--pin-dir", str(pins), "--log-dir", str(log)]
    small = f"mount -t tmpfs -o size=64k,mode=0700 none {shlex.quote(str(log))}"  # 0700: a log dir must be
    proc = subprocess.Popen(in_namespace(small, cmd),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("attached ") and " programs in " in line:
                break
        else:
            err = proc.stderr.read() if proc.stderr else ""
            pytest.fail(f"monitor did not attach: {err.strip()[-400:]}")
        claude = tmp_path / "bin" / "claude"
        claude.parent.mkdir()
        claude.symlink_to("/bin/sh")
        flood = subprocess.run([str(claude), "-c", "for i in $(seq 3000); do /bin/true x$i; done"],
                               timeout=120, capture_output=True)
        assert flood.returncode == 0
        time.sleep(1.5)
        assert proc.poll() is None, f"daemon died on a full disk: {proc.stderr.read() if proc.stderr else ''}"
        view = Path(f"/proc/{proc.pid}/root{log}")  # the daemon's view: its private 64 KiB tmpfs
        seen = os.statvfs(view)
        assert seen.f_blocks * seen.f_frsize <= 64 * 1024, "the log is not on the small tmpfs"
        assert _log_losses(view) > 0, "the flood never hit the full disk (or its losses went uncounted)"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    assert "Traceback" not in err
    assert proc.returncode == 0, err[-600:]
