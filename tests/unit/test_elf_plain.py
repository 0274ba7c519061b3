"""The direct ELF reading of plain objects (no pyelftools import on the load path) reads exactly what the
pyelftools reading does, and leaves everything unusual to it."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from rawbpf import elf
from rawbpf.elf import SHDR_SIZE, _Reader, load_spec, plain_elf

ROOT = Path(__file__).resolve().parents[2]
OBJECTS: List[Path] = [ROOT / "programs" / "claude_monitor.o", *sorted((ROOT / "tests" / "data").glob("*.o"))]


def _through_pyelftools(data: bytes, name: str) -> object:
    return _Reader(data, name, name, plain=False).read()


@pytest.mark.parametrize("path", OBJECTS, ids=[p.name for p in OBJECTS])
def test_plain_reading_equals_pyelftools(path: Path) -> None:
    """Equal specs, or (for the tree's deliberately broken objects) the same refusal."""
    data = path.read_bytes()
    try:
        want = _through_pyelftools(data, path.stem)
    except Exception as e:
        with pytest.raises(type(e)) as got:
            load_spec(data, path.stem)
        assert str(got.value) == str(e)
        return
    assert load_spec(data, path.stem) == want


def test_clang_objects_are_read_without_pyelftools() -> None:
    assert plain_elf((ROOT / "programs" / "claude_monitor.o").read_bytes()) is not None
    code = ("import sys; from rawbpf.elf import load_spec; load_spec(sys.argv[1]); "
            "print(sorted(m for m in sys.modules if m.startswith('elftools')))")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "programs" / "claude_monitor.o")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_symbol_names_are_pyelftools_own() -> None:
    from elftools.elf.enums import ENUM_ST_INFO_BIND, ENUM_ST_INFO_TYPE, ENUM_ST_VISIBILITY

    for ours, theirs in ((elf.SYM_TYPES, ENUM_ST_INFO_TYPE), (elf.SYM_BINDS, ENUM_ST_INFO_BIND),
                         (elf.SYM_VISIBILITIES, ENUM_ST_VISIBILITY)):
        assert ours == {v: k for k, v in theirs.items() if not k.startswith("_")}


def _section_headers(data: bytes) -> List[int]:
    shoff, = struct.unpack_from("<Q", data, 0x28)
    count, = struct.unpack_from("<H", data, 0x3C)
    return [shoff + i * SHDR_SIZE for i in range(count)]


def test_an_unusual_section_type_is_read_through_pyelftools() -> None:
    data = bytearray((ROOT / "tests" / "data" / "tracepoints5.o").read_bytes())
    want = load_spec(bytes(data), "tp5")
    addrsig = [at for at in _section_headers(bytes(data)) if struct.unpack_from("<I", data, at + 4)[0]
               == 0x6FFF4C03]
    assert addrsig, "the object has an .llvm_addrsig section"
    struct.pack_into("<I", data, addrsig[0] + 4, 0x60000001)  # an OS-specific type clang does not emit
    assert plain_elf(bytes(data)) is None
    got = load_spec(bytes(data), "tp5")
    assert got.programs == want.programs and got.maps == want.maps


def test_a_broken_relocation_table_gets_pyelftools_message() -> None:
    data = bytearray((ROOT / "tests" / "data" / "tracepoints5.o").read_bytes())
    rel = [at for at in _section_headers(bytes(data)) if struct.unpack_from("<I", data, at + 4)[0] == 9]
    struct.pack_into("<Q", data, rel[0] + 56, 24)  # sh_entsize of a RELA entry on a REL table
    assert plain_elf(bytes(data)) is None
    want = "malformed ELF: expected sh_entsize of sht_rel section to be 16"
    with pytest.raises(elf.ObjectError, match=want):
        load_spec(bytes(data), "tp5")
