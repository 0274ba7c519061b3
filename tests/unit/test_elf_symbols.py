"""The one-pass symbol table reader agrees with pyelftools field for field; odd tables go back to it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from rawbpf import elf

ROOT = Path(__file__).resolve().parents[2]
OBJECTS = sorted({*ROOT.glob("tests/data/**/*.o"), *ROOT.glob("programs/*.o")})


def _symtab(path: Path):  # type: ignore[no-untyped-def]
    ef = ELFFile(io.BytesIO(path.read_bytes()))
    try:
        tabs = [s for s in ef.iter_sections() if s["sh_type"] == "SHT_SYMTAB"]
        if tabs:
            tabs[0].data()
    except Exception:
        return None  # a deliberately broken object: the pyelftools path reports it
    return tabs[0] if tabs else None


def _fields(syms):  # type: ignore[no-untyped-def]
    return [(s.index, s.name, s.value, s.size, s.type, s.bind, s.shndx, s.visibility) for s in syms]


@pytest.mark.parametrize("path", OBJECTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_plain_reader_matches_pyelftools(path: Path) -> None:
    tab = _symtab(path)
    if tab is None:
        pytest.skip("no readable symbol table")
    fast = elf._plain_symbols(tab, tab.data())
    assert fast is not None
    slow = [(i, s.name, int(s["st_value"]), int(s["st_size"]), s["st_info"]["type"], s["st_info"]["bind"],
             elf._shndx(s["st_shndx"]), s["st_other"]["visibility"])
            for i, s in enumerate(tab.iter_symbols())]
    assert _fields(fast) == slow


def test_odd_tables_go_to_pyelftools() -> None:
    tab = _symtab(ROOT / "programs" / "claude_monitor.o")
    assert tab is not None
    raw = bytearray(tab.data())
    odd = bytearray(raw)
    odd[24 + 4] = 0xE0  # second symbol: binding 14, which pyelftools has no name for
    assert elf._plain_symbols(tab, bytes(odd)) is None
    unterminated = bytearray(raw)
    unterminated[24:28] = (len(tab.stringtable.data()) + 10).to_bytes(4, "little")  # name beyond the table
    assert elf._plain_symbols(tab, bytes(unterminated)) is None
    assert elf._plain_symbols(tab, bytes(raw)) is not None
