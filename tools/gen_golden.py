#!/usr/bin/env python3
"""Write the disassembler's golden files: llvm-objdump's text for every committed BPF object.

For each object (default: tests/data/*.o and tests/data/asm/*.o that are BPF ELF files) it runs
``llvm-objdump -d --no-show-raw-insn`` twice, plain and with ``--mattr=+alu32``, and writes
tests/data/golden/<name>.txt and <name>.alu32.txt. The alu32 run is needed because LLVM 14 decodes the 32-bit
atomic fetch/xchg/cmpxchg instructions only with that attribute (plain mode prints ``<unknown>``). The files
keep llvm-objdump's output as is, except that the object path in the first line becomes the file name, so
they diff cleanly against a fresh run. tests/data/golden/objects.sha256 records which object bytes the files
were made from, so a test can tell a stale golden file from a disassembler bug. ``--check`` compares
instead of writing (exit 1 on a difference).

Usage: tools/gen_golden.py [--check] [--objdump PATH] [OBJECT ...]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
GOLDEN = DATA / "golden"
EM_BPF = 247


def is_bpf_object(path: Path) -> bool:
    """True for a little-endian 64-bit ELF whose machine is EM_BPF."""
    head = path.read_bytes()[:20]
    return len(head) == 20 and head[:4] == b"\x7fELF" and head[4] == 2 and head[5] == 1 and \
        int.from_bytes(head[18:20], "little") == EM_BPF


def objects() -> List[Path]:
    """The committed BPF objects, in a stable order."""
    found = sorted(DATA.glob("*.o")) + sorted((DATA / "asm").glob("*.o"))
    out = []
    for path in found:
        try:
            if is_bpf_object(path):
                out.append(path)
        except OSError:
            continue
    return out


def objdump(objdump_bin: str, path: Path, alu32: bool) -> Optional[str]:
    """llvm-objdump's disassembly of ``path`` (None if it cannot read the object, e.g. a truncated one)."""
    args = [objdump_bin, "-d", "--no-show-raw-insn"]
    if alu32:
        args.append("--mattr=+alu32")
    # run from the object's directory with a bare file name so the header does not carry a path
    out = subprocess.run([*args, path.name], cwd=path.parent, capture_output=True, text=True)
    return out.stdout if out.returncode == 0 else None


def sums_text(paths: List[Path]) -> str:
    """``sha256  relative/path`` lines for the objects the golden files were made from."""
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(DATA)}" for p in paths]
    return "".join(line + "\n" for line in sorted(lines, key=lambda ln: ln.split("  ", 1)[1]))


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="compare with the committed files instead of writing")
    ap.add_argument("--objdump", default="llvm-objdump", help="llvm-objdump binary (Debian LLVM 14)")
    ap.add_argument("objects", nargs="*", type=Path)
    args = ap.parse_args(argv)
    GOLDEN.mkdir(parents=True, exist_ok=True)
    stale = 0
    done: List[Path] = []
    for path in args.objects or objects():
        path = path.resolve()
        for alu32 in (False, True):
            target = GOLDEN / f"{path.stem}{'.alu32' if alu32 else ''}.txt"
            text = objdump(args.objdump, path, alu32)
            if text is None:
                print(f"skip: {path.name} (llvm-objdump cannot read it)", file=sys.stderr)
                break
            if not alu32:
                done.append(path)
            if args.check:
                if not target.exists() or target.read_text() != text:
                    print(f"stale: {target.relative_to(ROOT)}", file=sys.stderr)
                    stale += 1
            elif not target.exists() or target.read_text() != text:
                target.write_text(text)
                print(f"wrote {target.relative_to(ROOT)}")
    sums = GOLDEN / "objects.sha256"
    if not args.objects:
        text = sums_text(done)
        if args.check and (not sums.exists() or sums.read_text() != text):
            print(f"stale: {sums.relative_to(ROOT)}", file=sys.stderr)
            stale += 1
        elif not args.check and (not sums.exists() or sums.read_text() != text):
            sums.write_text(text)
            print(f"wrote {sums.relative_to(ROOT)}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
