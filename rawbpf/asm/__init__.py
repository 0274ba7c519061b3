"""eBPF assembler and disassembler; pure, no syscalls.

Public API:

- :class:`Instruction` (``code, dst, src, off, imm``; ld_imm64 is one instruction with a 64-bit ``imm``),
  :func:`encode`, :func:`decode`, :func:`decode_one` — the 8-byte slot encoding.
- :func:`disassemble` ``(insns: bytes, *, start=0, annotate=None, symbols=None, alu32=False,
  helpers=False, maps=None) -> list[str]`` — one line per instruction in llvm-objdump's BPF syntax (text
  after the address column); :func:`format_insn` formats one :class:`Instruction`.
- :func:`helper_id` / :func:`helper_name` — BPF helper name ↔ id (``HELPERS`` is the whole table).
- :class:`Assembler` — the DSL: registers ``R0``…``R10`` (64-bit) and ``W0``…``W10`` (32-bit),
  labels, helpers and maps by name, ``assemble(maps={name: fd}) -> bytes``.
- :func:`parse` / :func:`assemble_text` — the same from text in llvm-objdump's syntax (with labels,
  helper names and ``map(name)`` references), so disassembler output assembles back.

Errors are :class:`rawbpf.errors.AsmError`, one line naming the instruction, label, helper or map.
"""

from __future__ import annotations

from rawbpf.asm import opcodes
from rawbpf.asm.disasm import describe, disassemble, disassemble_indexed, format_insn
from rawbpf.asm.dsl import (
    FP,
    R0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
    W0,
    W1,
    W2,
    W3,
    W4,
    W5,
    W6,
    W7,
    W8,
    W9,
    W10,
    Assembler,
    Reg,
    Relocation,
)
from rawbpf.asm.helpers import HELPERS, helper_id, helper_name
from rawbpf.asm.insn import Instruction, decode, decode_one, encode
from rawbpf.asm.text import assemble_text, parse

__tier__ = "pure"

__all__ = [
    "FP", "R0", "R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10",
    "W0", "W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9", "W10",
    "HELPERS",
    "Assembler",
    "Reg",
    "Relocation",
    "assemble_text",
    "Instruction",
    "decode",
    "decode_one",
    "describe",
    "disassemble",
    "disassemble_indexed",
    "encode",
    "format_insn",
    "helper_id",
    "helper_name",
    "opcodes",
    "parse",
]
