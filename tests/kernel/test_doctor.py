"""``rawbpf doctor`` against the real machine: a passing table and JSON as root, and exit status 1 with the
missing privilege named when capabilities are dropped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import List

from rawbpf import features
from rawbpf.doctor import effective_caps, run_checks

ROOT = Path(__file__).resolve().parents[2]
NO_CAPS = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]


def doctor(*args: str, prefix: List[str] = []) -> subprocess.CompletedProcess:  # noqa: B006
    return subprocess.run([*prefix, sys.executable, "-m", "rawbpf", "doctor", *args], capture_output=True,
                          text=True, cwd=ROOT)


def test_doctor_table_passes_as_root() -> None:
    res = doctor()
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["STATUS", "CHECK", "DETAIL"]
    for name in ("privileges", "kernel", "bpffs", "tracefs", "vmlinux btf", "unprivileged bpf", "lockdown",
                 "perf_event_paranoid", "bpf stats sysctl"):
        assert any(name in ln for ln in lines), name
    assert lines[-1] == "rawbpf can run here"
    assert "MISSING" not in res.stdout


def test_doctor_json_lists_every_probe() -> None:
    res = doctor("--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["ok"] is True
    names = {c["name"] for c in report["checks"]}
    assert {f"feature {n}" for n in features.names()} <= names
    assert all(c["status"] in ("ok", "info", "warn") for c in report["checks"])


def test_doctor_mount_bpffs_when_already_mounted() -> None:
    res = doctor("--mount-bpffs", "--json")
    assert res.returncode == 0
    bpffs = next(c for c in json.loads(res.stdout)["checks"] if c["name"] == "bpffs")
    assert bpffs["status"] == "ok" and bpffs["detail"] == "mounted at /sys/fs/bpf"


def test_doctor_without_capabilities_fails_and_says_why() -> None:
    res = doctor("--json", prefix=NO_CAPS)
    assert res.returncode == 1
    report = json.loads(res.stdout)
    assert report["ok"] is False
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["privileges"]["status"] == "missing"
    assert "need CAP_BPF and CAP_PERFMON, or root" in checks["privileges"]["detail"]
    assert checks["feature ringbuf"]["status"] == "missing"
    assert "operation not permitted" in checks["feature ringbuf"]["detail"]
    table = doctor(prefix=NO_CAPS)
    assert table.returncode == 1
    assert table.stdout.splitlines()[-1].startswith("rawbpf cannot run here: missing privileges")


def test_effective_caps_parsing() -> None:
    assert effective_caps("Name:\tx\nCapEff:\t000001ffffffffff\n") == (1 << 41) - 1
    assert effective_caps("nothing") == 0
    assert effective_caps() >> 39 & 1  # root has CAP_BPF


def test_run_checks_in_process() -> None:
    checks = run_checks()
    assert not [c.name for c in checks if c.required and c.status == "missing"]
