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

:mod:`rawbpf.asm.codec` is the one spelling of the 8-byte instruction slot; the ELF reader, the linker and
CO-RE patch raw instructions through it. Names here are imported on first use, so code that needs only the
codec does not load the assembler.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any, Dict, List

from rawbpf.asm import opcodes

if TYPE_CHECKING:  # pragma: no cover
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

_LAZY: Dict[str, str] = {
    **{n: "rawbpf.asm.dsl" for n in ("FP", "R0", "R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10",
                                      "W0", "W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9", "W10",
                                      "Assembler", "Reg", "Relocation")},
    **{n: "rawbpf.asm.disasm" for n in ("describe", "disassemble", "disassemble_indexed", "format_insn")},
    **{n: "rawbpf.asm.helpers" for n in ("HELPERS", "helper_id", "helper_name")},
    **{n: "rawbpf.asm.insn" for n in ("Instruction", "decode", "decode_one", "encode")},
    **{n: "rawbpf.asm.text" for n in ("assemble_text", "parse")},
}

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rawbpf.asm' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    setattr(sys.modules[__name__], name, value)
    return value


def __dir__() -> List[str]:
    return sorted(set(vars(sys.modules[__name__])) | set(_LAZY))
