"""The single-file deployment: rawbpf.pyz runs with only the Python standard library on the path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import build_zipapp  # noqa: E402


def _run(pyz: Path, *args: str) -> subprocess.CompletedProcess:
    # -I: isolated mode, so nothing from site-packages can stand in for what the archive must carry.
    return subprocess.run([sys.executable, "-I", str(pyz), *args], capture_output=True, text=True, timeout=60)


def test_zipapp_runs_without_site_packages(tmp_path: Path) -> None:
    pyz = build_zipapp.build(tmp_path / "rawbpf.pyz")
    res = _run(pyz, "--version")
    assert res.returncode == 0, res.stderr
    assert "rawbpf" in res.stdout
    res = _run(pyz, "--help")
    assert res.returncode == 0
    for cmd in ("load", "tail", "status", "inspect", "disasm", "doctor"):
        assert cmd in res.stdout
