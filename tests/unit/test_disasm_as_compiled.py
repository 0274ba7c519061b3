"""``rawbpf disasm --as-compiled`` is ``llvm-objdump -d --no-show-raw-insn`` (and ``-dr`` with ``--reloc``):
compared with llvm-objdump itself on every committed BPF object, and with the golden files (llvm-objdump's
output committed with the objects' checksums) where no llvm-objdump is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import List

import pytest
from click.testing import CliRunner

from rawbpf.cli import cli
from rawbpf.errors import ConfigError, ObjectError

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "data" / "golden"
EM_BPF = 247
OBJDUMP = shutil.which("llvm-objdump") or shutil.which("llvm-objdump-14")


def committed_objects() -> List[Path]:
    """Every BPF object in the repository that llvm-objdump can read (not the deliberately broken ones)."""
    out = []
    for path in sorted((ROOT / "programs").glob("*.o")) + sorted((ROOT / "tests" / "data").rglob("*.o")):
        head = path.read_bytes()[:64]
        if head[:4] != b"\x7fELF" or int.from_bytes(head[18:20], "little") != EM_BPF:
            continue
        shoff, shnum = int.from_bytes(head[40:48], "little"), int.from_bytes(head[60:62], "little")
        if shoff + shnum * 64 > path.stat().st_size:  # truncated.o: llvm-objdump refuses it too
            continue
        out.append(path)
    return out


def rawbpf_disasm(path: Path, *flags: str) -> str:
    res = CliRunner().invoke(cli, ["disasm", "--as-compiled", *flags, str(path)])
    assert res.exit_code == 0, res.output
    return res.output


def _llvm14_differs(want: str, got: str) -> bool:
    """The two places LLVM 14 without alu32 is wrong and rawbpf prints the later LLVM syntax: instructions it
    cannot decode (``<unknown>``) and 32-bit fetch-add printed as a plain ``lock … +=``."""
    w, g = want.partition("\t")[2], got.partition("\t")[2]
    return want.partition("\t")[0] == got.partition("\t")[0] and (
        w == "<unknown>" or (w.startswith("lock *(u32 *)") and "atomic_fetch_add((u32 *)" in g))


def assert_same(want: str, got: str, *, exact: bool) -> None:
    wl, gl = want.splitlines(), got.splitlines()
    assert len(wl) == len(gl), f"{len(wl)} lines from llvm-objdump, {len(gl)} from rawbpf"
    bad = [(a, b) for a, b in zip(wl, gl) if a != b and (exact or not _llvm14_differs(a, b))]
    assert not bad, bad[:5]


def test_every_object_is_found() -> None:
    names = {p.name for p in committed_objects()}
    assert {"claude_monitor.o", "isa.o", "core_local.o", "flood.o", "subprogs.o"} <= names
    assert "truncated.o" not in names and "wrong_machine.o" not in names


@pytest.mark.parametrize("obj", committed_objects(), ids=lambda p: str(p.relative_to(ROOT)))
def test_matches_llvm_objdump(obj: Path) -> None:
    if OBJDUMP is None:
        if os.environ.get("RAWBPF_REQUIRE_KERNEL") == "1":
            pytest.fail("llvm-objdump is not installed (make deps-build installs llvm)")
        pytest.skip("llvm-objdump is not installed")
    rel = str(obj.relative_to(ROOT))
    for flags, exact in ((["--alu32"], True), ([], False), (["-r", "--alu32"], True), (["-r"], False)):
        objdump = [OBJDUMP, "-dr" if "-r" in flags else "-d", "--no-show-raw-insn"]
        if "--alu32" in flags:
            objdump.append("--mattr=+alu32")
        want = subprocess.run([*objdump, rel], capture_output=True, text=True, check=True, cwd=ROOT).stdout
        old = os.getcwd()
        os.chdir(ROOT)
        try:
            got = rawbpf_disasm(Path(rel), *flags)
        finally:
            os.chdir(old)
        assert_same(want, got, exact=exact)


GOLDEN_FILES = sorted(p for p in GOLDEN.glob("*.txt") if not p.name.endswith(".alu32.txt"))


@pytest.mark.parametrize("golden", GOLDEN_FILES, ids=lambda p: p.stem)
def test_matches_the_golden_files(golden: Path, tmp_path: Path) -> None:
    obj = next(p for p in committed_objects() if p.stem == golden.stem)
    local = tmp_path / obj.name  # the golden files name the object by its file name only
    local.write_bytes(obj.read_bytes())
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        plain, alu32 = rawbpf_disasm(Path(obj.name)), rawbpf_disasm(Path(obj.name), "--alu32")
    finally:
        os.chdir(old)
    assert_same(golden.with_name(golden.stem + ".alu32.txt").read_text(), alu32, exact=True)
    assert_same(golden.read_text(), plain, exact=False)


def test_as_compiled_leaves_relocations_unapplied() -> None:
    obj = str(ROOT / "tests" / "data" / "globals.o")
    text = rawbpf_disasm(Path(obj), "-r")
    assert "r1 = 0 ll" in text and "R_BPF_64_64\ttarget_tgid" in text
    res = CliRunner().invoke(cli, ["disasm", "--as-compiled", obj, "p"])
    assert isinstance(res.exception, ConfigError) and "prints whole sections" in str(res.exception)
    res = CliRunner().invoke(cli, ["disasm", "--as-compiled", str(ROOT / "tests" / "data" / "no_such.o")])
    assert isinstance(res.exception, ObjectError) and "no such file" in str(res.exception)
