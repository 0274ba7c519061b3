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


def test_zipapp_bytecode_is_stored_for_this_interpreter(tmp_path: Path) -> None:
    """Every module has its bytecode beside it for the building interpreter, stored uncompressed, so a start
    neither compiles nor inflates what it imports."""
    import importlib.util
    import zipfile

    pyz = build_zipapp.build(tmp_path / "rawbpf.pyz")
    with zipfile.ZipFile(pyz) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        sources = [n for n in infos if n.endswith(".py")]
        assert "rawbpf/collection.py" in sources and "elftools/elf/elffile.py" in sources
        for name in sources:
            pyc = infos.get(name + "c")
            assert pyc is not None, f"{name} has no bytecode beside it"
            assert pyc.compress_type == zipfile.ZIP_STORED, name
            assert zf.read(pyc)[:4] == importlib.util.MAGIC_NUMBER, name
        assert infos["rawbpf/collection.py"].compress_type == zipfile.ZIP_DEFLATED
    assert pyz.read_bytes().startswith(b"#!/usr/bin/env python3\n")
