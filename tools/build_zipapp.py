#!/usr/bin/env python3
"""Build rawbpf.pyz: one file that runs `rawbpf` on a host with only Python 3.9+.

The archive holds the rawbpf package and the pure-Python parts of its dependencies
(pyelftools, click, msgpack;
msgpack's C extension cannot load from a zip, so its pure-Python fallback is used). Beside every module lies
its bytecode for the building interpreter (unchecked-hash .pyc, which zipimport reads instead of compiling the
source at every start); another Python version finds the magic number wrong and compiles the source. The
bytecode is stored uncompressed (inflating it at every start cost more than reading the larger file), the
sources compressed (only another Python version reads them). Usage:

    python3 tools/build_zipapp.py [-o rawbpf.pyz]
"""

from __future__ import annotations

import argparse
import importlib
import py_compile
import shutil
import stat
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEPS = ("elftools", "click", "msgpack")
SKIP_SUFFIXES = (".so", ".pyd", ".pyc", ".c", ".cpp", ".pyx", ".h")


def _copy_package(src: Path, dst: Path) -> None:
    def ignore(_dir: str, names: list) -> list:
        return [n for n in names if n == "__pycache__" or n.endswith(SKIP_SUFFIXES)]

    shutil.copytree(src, dst, ignore=ignore)


def _compile(stage: Path) -> None:
    """MODULE.pyc beside every MODULE.py (where zipimport looks), named by its path inside the archive."""
    for src in sorted(stage.rglob("*.py")):
        rel = src.relative_to(stage).as_posix()
        py_compile.compile(str(src), cfile=str(src) + "c", dfile=rel, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)


def build(out: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / "app"
        stage.mkdir()
        _copy_package(ROOT / "rawbpf", stage / "rawbpf")
        for name in DEPS:
            mod = importlib.import_module(name)
            assert mod.__file__ is not None
            _copy_package(Path(mod.__file__).parent, stage / name)
        (stage / "__main__.py").write_text(
            "import sys\n"
            "if sys.version_info < (3, 9):\n"
            "    sys.exit('rawbpf: needs Python 3.9 or later')\n"
            "from rawbpf.cli import main\n"
            "main()\n"
        )
        _compile(stage)
        out.parent.mkdir(parents=True, exist_ok=True)
        _archive(stage, out)
    return out


def _archive(stage: Path, out: Path) -> None:
    """What ``zipapp.create_archive`` writes (a shebang line, then the zip), with bytecode stored as is."""
    with open(out, "wb") as fh:
        fh.write(b"#!/usr/bin/env python3\n")
        with zipfile.ZipFile(fh, "w") as zf:
            for path in sorted(stage.rglob("*")):
                if path.is_file():
                    how = zipfile.ZIP_STORED if path.suffix == ".pyc" else zipfile.ZIP_DEFLATED
                    zf.write(path, path.relative_to(stage).as_posix(), compress_type=how)
    out.chmod(out.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default=str(ROOT / "rawbpf.pyz"))
    args = ap.parse_args()
    path = build(Path(args.output))
    print(f"{path} ({path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
