"""Disassembler printing llvm-objdump's BPF syntax for whole instruction streams; pure, no syscalls.

The syntax of one instruction (and how it matches ``llvm-objdump -d --no-show-raw-insn``) is
:mod:`rawbpf.asm.format`'s.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from rawbpf.asm.codec import INSN_SIZE
from rawbpf.asm.format import UNKNOWN, Symbols, _format, describe, format_insn
from rawbpf.asm.insn import decode_one
from rawbpf.errors import AsmError

__tier__ = "pure"

__all__ = ["UNKNOWN", "Symbols", "describe", "disassemble", "disassemble_indexed", "format_insn",
           "symbol_table"]


def disassemble(
    insns: bytes,
    *,
    start: int = 0,
    annotate: Optional[Callable[[int], Optional[str]]] = None,
    symbols: Optional[Mapping[int, str]] = None,
    alu32: bool = False,
    helpers: bool = False,
    maps: Optional[Mapping[int, str]] = None,
) -> List[str]:
    """Disassemble an instruction stream into one line per instruction (ld_imm64 is one line).

    ``start`` is the slot index of the first instruction within its section (used for jump targets and
    passed to ``annotate``). ``annotate(index)`` may return a comment for the instruction at that slot
    index (for example its source line). ``helpers=True`` names the helper after each call (and kfunc and
    BTF ids); ``maps`` (map fd or id → name) names the map each ld_imm64 loads. Comments follow the
    instruction after ``  ; `` so stripping them gives llvm-objdump's text. The kernel's xlated dumps carry
    helper addresses, not ids, in ``call``: name those through ``annotate``, not ``helpers``. A truncated
    trailing ld_imm64 or a partial slot prints ``<unknown>``; the only error is a non-bytes argument.
    """
    return [line for _, line in disassemble_indexed(insns, start=start, annotate=annotate, symbols=symbols,
                                                    alu32=alu32, helpers=helpers, maps=maps)]


def disassemble_indexed(
    insns: bytes,
    *,
    start: int = 0,
    annotate: Optional[Callable[[int], Optional[str]]] = None,
    symbols: Optional[Mapping[int, str]] = None,
    alu32: bool = False,
    helpers: bool = False,
    maps: Optional[Mapping[int, str]] = None,
) -> List[Tuple[int, str]]:
    """Like :func:`disassemble`, with each line's slot index (ld_imm64 advances the index by two)."""
    if not isinstance(insns, (bytes, bytearray, memoryview)):
        raise AsmError(f"disassemble: expected bytes, got {type(insns).__name__}")
    data = bytes(insns)
    table = Symbols(symbols) if symbols else None
    out: List[Tuple[int, str]] = []
    offset = 0
    while offset < len(data):
        index = start + offset // INSN_SIZE
        try:
            insn = decode_one(data, offset)
        except AsmError:
            out.append((index, UNKNOWN))
            offset += INSN_SIZE
            continue
        line = _format(insn, index, table, alu32)
        comments: List[str] = []
        if (helpers or maps) and line != UNKNOWN:
            note = describe(insn, maps=maps, helpers=helpers)
            if note:
                comments.append(note)
        if annotate is not None:
            note = annotate(index)
            if note:
                comments.append(note)
        if comments:
            line += "  ; " + "; ".join(comments)
        out.append((index, line))
        offset += insn.size
    return out


def symbol_table(pairs: Sequence[Tuple[int, str]]) -> Dict[int, str]:
    """Build a ``symbols`` mapping from (slot index, name) pairs, keeping the first name per index."""
    table: Dict[int, str] = {}
    for index, name in pairs:
        table.setdefault(index, name)
    return table
