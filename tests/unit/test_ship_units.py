"""The systemd units in tools/systemd: systemd accepts them (systemd-analyze verify, with the paths pointed
at this checkout), and every option their ExecStart lines pass exists in the CLI."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = sorted((ROOT / "tools" / "systemd").glob("*.service"))


def _exec_start(unit: Path) -> list:
    line = next(ln for ln in unit.read_text().splitlines() if ln.startswith("ExecStart="))
    return line[len("ExecStart="):].split()


def test_units_exist() -> None:
    assert {u.name for u in UNITS} == {"rawbpf.service", "rawbpf-ship.service"}


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_exec_start_options_exist(unit: Path) -> None:
    argv = _exec_start(unit)
    assert argv[0] == "/usr/local/bin/rawbpf"
    sub = argv[1]
    helptext = subprocess.run([sys.executable, "-m", "rawbpf", sub, "--help"], capture_output=True, text=True,
                              cwd=ROOT).stdout
    for opt in [a for a in argv[2:] if a.startswith("--")]:
        assert re.search(rf"(^|\s){re.escape(opt)}[\s,]", helptext), f"{unit.name}: {sub} has no {opt}"
    env = unit.read_text()
    for var in re.findall(r"\$(RAWBPF_\w+)", " ".join(argv)):
        assert f"{var}=" in env, f"{unit.name}: the example for ${var} is missing"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_systemd_accepts_the_unit(unit: Path, tmp_path: Path) -> None:
    rawbpf = Path(sys.executable).parent / "rawbpf"
    if not rawbpf.exists():
        rawbpf = Path(shutil.which("rawbpf") or sys.executable)
    text = unit.read_text().replace("/usr/local/bin/rawbpf", str(rawbpf)).replace(
        "/usr/local/share/rawbpf/claude_monitor.o", str(ROOT / "programs" / "claude_monitor.o"))
    copy = tmp_path / unit.name
    copy.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
