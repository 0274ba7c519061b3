"""tracefs on demand: in a private mount namespace where tracefs, debugfs and bpffs start unmounted, whatever
resolves a tracepoint id mounts tracefs itself (or debugfs, when /sys/kernel/tracing cannot be used), never
covers another filesystem, and tells a non-root caller that it needs root."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Dict, List

from patience import patience

ROOT = Path(__file__).resolve().parents[2]
TP5 = ROOT / "tests" / "data" / "tracepoints5.o"

#: shell run first inside the namespace: unmount everything rawbpf would mount (stacked mounts too)
UNMOUNT = ("for m in /sys/kernel/debug/tracing /sys/kernel/tracing /sys/kernel/debug /sys/fs/bpf; do "
           "while mountpoint -q $m; do umount -l $m || exit 1; done; done")


def fresh_ns(argv: List[str], setup: str = "") -> List[str]:
    """``argv`` in a private mount namespace with tracefs, debugfs and bpffs unmounted, after ``setup``."""
    script = UNMOUNT + (f" && {setup}" if setup else "") + f" && exec {shlex.join(argv)}"
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script]


def py(code: str, setup: str = "") -> subprocess.CompletedProcess:
    """Run ``code`` with this interpreter in a fresh namespace; it prints one JSON object."""
    argv = fresh_ns([sys.executable, "-c", textwrap.dedent(code)], setup)
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=patience(60))


PROBE = """
    import json, os
    from rawbpf.attach import tracepoint_id
    from rawbpf.errors import RawBPFError
    def mounts():
        return {p[1]: p[2] for p in (ln.split() for ln in open("/proc/self/mounts"))}
    before = mounts()
    out = {"before": {k: v for k, v in before.items() if k.startswith(("/sys/kernel", "/sys/fs/bpf"))}}
    {drop}
    try:
        out["id"] = tracepoint_id("syscalls", "sys_enter_getppid")
    except RawBPFError as err:
        out["error"] = str(err)
    os.seteuid(0)
    out["after"] = {k: v for k, v in mounts().items() if k.startswith(("/sys/kernel", "/sys/fs/bpf"))}
    print(json.dumps(out))
"""


def probe(setup: str = "", drop_root: bool = False) -> Dict:
    code = textwrap.dedent(PROBE).replace("{drop}", "os.seteuid(65534)" if drop_root else "pass")
    res = py(code, setup)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def host_id() -> int:
    from rawbpf.attach import tracepoint_id

    return tracepoint_id("syscalls", "sys_enter_getppid")


def test_tracepoint_id_mounts_tracefs() -> None:
    out = probe()
    assert "/sys/kernel/tracing" not in out["before"] and "/sys/fs/bpf" not in out["before"]
    assert out["id"] == host_id()
    assert out["after"]["/sys/kernel/tracing"] == "tracefs"
    assert "/sys/kernel/debug" not in out["after"]  # the first choice worked: no debugfs


def test_falls_back_to_debugfs_when_tracing_dir_is_taken() -> None:
    """/sys/kernel/tracing holds another filesystem: rawbpf leaves it alone and mounts debugfs instead."""
    out = probe(setup="mount -t tmpfs none /sys/kernel/tracing")
    assert out["id"] == host_id()
    assert out["after"]["/sys/kernel/tracing"] == "tmpfs"  # not covered
    assert out["after"]["/sys/kernel/debug"] == "debugfs"
    assert out["after"]["/sys/kernel/debug/tracing"] == "tracefs"  # the kernel's automount


def test_nothing_usable_names_what_was_tried() -> None:
    out = probe(setup="mount -t tmpfs none /sys/kernel/tracing && mount -t tmpfs none /sys/kernel/debug")
    assert "id" not in out
    err = out["error"]
    assert err.startswith("tracepoint syscalls/sys_enter_getppid: tracefs is not mounted and could not be "
                          "mounted: ")
    assert "/sys/kernel/tracing holds a tmpfs mount" in err and "/sys/kernel/debug holds a tmpfs mount" in err


def test_non_root_is_told_it_needs_root() -> None:
    """Whether tracefs is unmounted or mounted (and root-only), a non-root caller hears "needs root"."""
    for setup in ("", "mount -t tracefs none /sys/kernel/tracing"):
        out = probe(setup=setup, drop_root=True)
        assert "id" not in out
        assert "needs root" in out["error"] and "not mounted" not in out["error"], out["error"]
        assert ("/sys/kernel/tracing" in out["after"]) == bool(setup)  # nothing mounted on its behalf


def test_doctor_reports_and_mounts() -> None:
    base = [sys.executable, "-m", "rawbpf", "doctor", "--json"]
    for args, want in (([], "info"), (["--mount"], "ok")):
        res = subprocess.run(fresh_ns([*base, *args]), cwd=ROOT, capture_output=True, text=True,
                             timeout=patience(120))
        # root can run rawbpf before anything is mounted: it mounts what it needs
        assert res.returncode == 0, res.stdout + res.stderr
        checks = {c["name"]: c for c in json.loads(res.stdout)["checks"]}
        for name in ("bpffs", "tracefs"):
            assert checks[name]["status"] == want, checks[name]
        if want == "ok":
            assert checks["tracefs"]["detail"] == "mounted at /sys/kernel/tracing (just now)"
            assert checks["bpffs"]["detail"] == "mounted at /sys/fs/bpf (just now)"


def test_load_on_a_fresh_machine_mounts_both_and_stops_cleanly(tmp_path: Path) -> None:
    """`rawbpf load` with nothing mounted: bpffs and tracefs are mounted, the tracepoints attach, Ctrl-C
    detaches and unpins everything."""
    pins = f"/sys/fs/bpf/rawbpf-fresh-{uuid.uuid4().hex[:8]}"
    argv = [sys.executable, "-m", "rawbpf", "load", str(TP5), "--pin-dir", pins, "--log-dir", str(tmp_path)]
    proc = subprocess.Popen(fresh_ns(argv), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("attached ") and " programs in " in line:
                break
        assert any(" programs in " in ln for ln in seen), "".join(seen)
        with open(f"/proc/{proc.pid}/mounts") as f:  # the namespace of the loader (exec'd by sh)
            mounts = {p[1]: p[2] for p in (ln.split() for ln in f)}
        assert mounts.get("/sys/kernel/tracing") == "tracefs" and mounts.get("/sys/fs/bpf") == "bpf"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=patience(60))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopped: detached 5 programs" in out
    assert not os.path.exists(pins)
