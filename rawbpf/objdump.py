"""A BPF object's code as compiled, in ``llvm-objdump -d --no-show-raw-insn``'s text; pure (reads the file).

``rawbpf disasm --as-compiled`` prints this: each executable section of the ELF file as clang wrote it (no
linking, no relocation applied, map loads still ``r1 = 0 ll``), labelled with the symbols llvm-objdump shows,
so the output diffs cleanly against ``llvm-objdump -d --no-show-raw-insn`` (and, with ``relocs``, against
``-dr``, one relocation line after the instruction it patches). ``alu32`` matches ``--mattr=+alu32``.
The file is read with pyelftools directly, not through the loader, like llvm-objdump reads it.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from typing import Dict, List, Tuple, Union

from rawbpf.asm import disassemble_indexed
from rawbpf.errors import ObjectError

__tier__ = "pure"
__all__ = ["CodeSection", "code_sections", "objdump_lines"]

_SHF_EXECINSTR = 0x4
#: ELF relocation types of the BPF target, as llvm-objdump names them
_RELOC_NAMES = {0: "R_BPF_NONE", 1: "R_BPF_64_64", 2: "R_BPF_64_ABS64", 3: "R_BPF_64_ABS32",
                4: "R_BPF_64_NODYLD32", 10: "R_BPF_64_32"}


@dataclass
class CodeSection:
    """One executable section: its bytes, its symbols (slot index → name) and relocations
    (byte offset, type name, symbol name)."""

    name: str
    data: bytes
    symbols: Dict[int, str] = field(default_factory=dict)
    relocations: List[Tuple[int, str, str]] = field(default_factory=list)


def code_sections(source: Union[str, bytes]) -> List[CodeSection]:
    """The executable sections of a BPF ELF object (a path or its bytes), in file order."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection
    from elftools.elf.sections import SymbolTableSection

    label = "object" if isinstance(source, bytes) else f"object '{source}'"
    if isinstance(source, bytes):
        data = source
    else:
        try:
            with open(source, "rb") as f:
                data = f.read()
        except OSError as err:
            raise ObjectError(f"{label}: {os.strerror(err.errno or 0).lower()}") from None
    try:
        elf = ELFFile(io.BytesIO(data))
        if elf["e_machine"] != "EM_BPF":
            raise ObjectError(f"{label}: not a BPF object (machine {elf['e_machine']})")
        sections = list(elf.iter_sections())
        symtab = elf.get_section_by_name(".symtab")
        symbols = list(symtab.iter_symbols()) if isinstance(symtab, SymbolTableSection) else []
        out: List[CodeSection] = []
        by_index: Dict[int, CodeSection] = {}
        for index, sec in enumerate(sections):
            if not sec["sh_flags"] & _SHF_EXECINSTR or sec["sh_size"] == 0 or sec["sh_type"] == "SHT_NOBITS":
                continue
            code = CodeSection(sec.name, sec.data())
            # several symbols at one address: llvm-objdump sorts them by (address, name) and names the
            # address after the last
            named = sorted((s["st_value"], s.name) for s in symbols
                           if s["st_shndx"] == index and s.name and s["st_info"]["type"] != "STT_SECTION")
            for value, name in named:
                code.symbols[value // 8] = name
            out.append(code)
            by_index[index] = code
        for sec in sections:
            if not isinstance(sec, RelocationSection) or sec["sh_info"] not in by_index:
                continue
            target = by_index[sec["sh_info"]]
            for rel in sec.iter_relocations():
                sym = symbols[rel["r_info_sym"]] if rel["r_info_sym"] < len(symbols) else None
                name = ""
                if sym is not None:
                    name = sym.name
                    if sym["st_info"]["type"] == "STT_SECTION" and isinstance(sym["st_shndx"], int):
                        name = sections[sym["st_shndx"]].name
                kind = _RELOC_NAMES.get(rel["r_info_type"], f"unknown ({rel['r_info_type']})")
                target.relocations.append((rel["r_offset"], kind, name))
            target.relocations.sort(key=lambda r: r[0])
    except ObjectError:
        raise
    except (ELFError, ValueError, KeyError, IndexError, OSError) as err:
        raise ObjectError(f"{label}: malformed ELF: {err}") from err
    return out


def objdump_lines(path: str, *, relocs: bool = False, alu32: bool = False) -> List[str]:
    """The lines ``llvm-objdump -d --no-show-raw-insn`` prints for ``path`` (``-dr`` with ``relocs``)."""
    out = ["", f"{path}:\tfile format elf64-bpf"]
    for sec in code_sections(path):
        out += ["", f"Disassembly of section {sec.name}:"]
        lines = disassemble_indexed(sec.data, symbols=sec.symbols, alu32=alu32)
        relocations = list(sec.relocations)
        sizes = [(lines[k + 1][0] if k + 1 < len(lines) else len(sec.data) // 8) - idx
                 for k, (idx, _) in enumerate(lines)]
        for (idx, text), slots in zip(lines, sizes):
            name = sec.symbols.get(idx)
            if name is not None:
                out += ["", f"{idx * 8:016x} <{name}>:"]
            out.append(f"{idx:8d}:\t{text}")
            end = (idx + slots) * 8
            while relocs and relocations and relocations[0][0] < end:
                offset, kind, sym = relocations.pop(0)
                out.append(f"\t\t{offset:016x}:  {kind}\t{sym}")
    return out
