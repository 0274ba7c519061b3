"""Shared helpers for the assembler tests (no tests here): a hypothesis strategy producing every valid
instruction form, and readers for llvm-objdump golden files and the code sections of BPF objects."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Tuple

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection
from hypothesis import strategies as st

from rawbpf.asm import Instruction
from rawbpf.asm import opcodes as op

DATA = Path(__file__).resolve().parent.parent / "data"
GOLDEN = DATA / "golden"
SHF_EXECINSTR = 0x4

Golden = Dict[str, Dict[int, str]]


def parse_golden(path: Path) -> Golden:
    """section name → {instruction index: text} from llvm-objdump's output."""
    out: Golden = {}
    section = None
    for line in path.read_text().splitlines():
        m = re.match(r"Disassembly of section (.*):$", line)
        if m:
            section = m.group(1)
            out[section] = {}
            continue
        m = re.match(r"^\s+(\d+):\t(.*)$", line)
        if m:
            assert section is not None, f"{path.name}: instruction before any section"
            out[section][int(m.group(1))] = m.group(2)
    return out


def code_sections(path: Path) -> List[Tuple[str, bytes, Dict[int, str]]]:
    """(name, bytes, {slot index: symbol}) for each executable section with code."""
    with path.open("rb") as f:
        elf = ELFFile(f)
        symtab = elf.get_section_by_name(".symtab")
        assert symtab is None or isinstance(symtab, SymbolTableSection)
        out = []
        for index, sec in enumerate(elf.iter_sections()):
            if not sec["sh_flags"] & SHF_EXECINSTR or sec["sh_size"] == 0:
                continue
            symbols: Dict[int, str] = {}
            for sym in symtab.iter_symbols() if symtab is not None else ():
                if sym["st_shndx"] == index and sym.name and sym["st_info"]["type"] != "STT_SECTION":
                    symbols.setdefault(sym["st_value"] // 8, sym.name)
            out.append((sec.name, sec.data(), symbols))
        return out


regs = st.integers(0, 10)
off16 = st.integers(-(1 << 15), (1 << 15) - 1)
imm32 = st.integers(-(1 << 31), (1 << 31) - 1)
imm64 = st.integers(-(1 << 63), (1 << 64) - 1)

_ALU_OPS = [op.ADD, op.SUB, op.MUL, op.DIV, op.OR, op.AND, op.LSH, op.RSH, op.MOD, op.XOR, op.MOV, op.ARSH]
_JMP_OPS = [op.JEQ, op.JGT, op.JGE, op.JSET, op.JNE, op.JSGT, op.JSGE, op.JLT, op.JLE, op.JSLT, op.JSLE]
_ATOMIC_IMMS = [op.ADD, op.OR, op.AND, op.XOR, op.ADD | op.FETCH, op.OR | op.FETCH, op.AND | op.FETCH,
                op.XOR | op.FETCH, op.XCHG, op.CMPXCHG]


@st.composite
def valid_insn(draw: st.DrawFn) -> Instruction:
    """Any instruction the kernel's ISA defines, with random registers, offsets and immediates."""
    kind = draw(st.sampled_from(["alu", "movsx", "neg", "end", "jmp", "ja", "call", "exit", "ld64", "ldabs",
                                 "ldx", "ldsx", "st", "stx", "atomic", "acqrel", "may_goto", "asc",
                                 "gotox"]))
    d, s, o, i = draw(regs), draw(regs), draw(off16), draw(imm32)
    if kind == "alu":
        cls = draw(st.sampled_from([op.ALU, op.ALU64]))
        operation = draw(st.sampled_from(_ALU_OPS))
        signed = operation in (op.DIV, op.MOD) and draw(st.booleans())
        if draw(st.booleans()):
            return Instruction(cls | operation | op.X, d, s, int(signed))
        return Instruction(cls | operation | op.K, d, 0, int(signed), i)
    if kind == "movsx":
        cls = draw(st.sampled_from([op.ALU, op.ALU64]))
        bits = draw(st.sampled_from([8, 16, 32] if cls == op.ALU64 else [8, 16]))
        return Instruction(cls | op.MOV | op.X, d, s, bits)
    if kind == "asc":
        return Instruction(op.ALU64 | op.MOV | op.X, d, s, 1, draw(st.integers(0, 0xFFFFFFFF)))
    if kind == "neg":
        return Instruction(draw(st.sampled_from([op.ALU, op.ALU64])) | op.NEG, d)
    if kind == "end":
        code = draw(st.sampled_from([op.ALU | op.END | op.TO_LE, op.ALU | op.END | op.TO_BE,
                                     op.ALU64 | op.END]))
        return Instruction(code, d, 0, 0, draw(st.sampled_from([16, 32, 64])))
    if kind == "jmp":
        cls = draw(st.sampled_from([op.JMP, op.JMP32]))
        operation = draw(st.sampled_from(_JMP_OPS))
        if draw(st.booleans()):
            return Instruction(cls | operation | op.X, d, s, o)
        return Instruction(cls | operation | op.K, d, 0, o, i)
    if kind == "ja":
        return Instruction(op.JMP | op.JA, 0, 0, o) if draw(st.booleans()) else Instruction(op.JMP32 | op.JA,
                                                                                          imm=i)
    if kind == "gotox":
        return Instruction(op.JMP | op.JA | op.X, d)
    if kind == "may_goto":
        return Instruction(op.JMP | op.JCOND, 0, 0, o)
    if kind == "call":
        return Instruction(op.JMP | op.CALL, 0, draw(st.sampled_from([0, 1, 2])), 0, i)
    if kind == "exit":
        return Instruction(op.JMP | op.EXIT)
    if kind == "ld64":
        return Instruction(op.LD_IMM64, d, draw(st.integers(0, 6)), 0, draw(imm64))
    if kind == "ldabs":
        mode = draw(st.sampled_from([op.ABS, op.IND]))
        return Instruction(op.LD | mode | draw(st.sampled_from([op.B, op.H, op.W])), 0,
                           s if mode == op.IND else 0, 0, i)
    size = draw(st.sampled_from([op.B, op.H, op.W, op.DW]))
    if kind == "ldx":
        return Instruction(op.LDX | op.MEM | size, d, s, o)
    if kind == "ldsx":
        return Instruction(op.LDX | op.MEMSX | draw(st.sampled_from([op.B, op.H, op.W])), d, s, o)
    if kind == "st":
        return Instruction(op.ST | op.MEM | size, d, 0, o, i)
    if kind == "stx":
        return Instruction(op.STX | op.MEM | size, d, s, o)
    if kind == "acqrel":
        return Instruction(op.STX | op.ATOMIC | size, d, s, o, draw(st.sampled_from([op.LOAD_ACQ,
                                                                                    op.STORE_REL])))
    return Instruction(op.STX | op.ATOMIC | draw(st.sampled_from([op.W, op.DW])), d, s, o,
                       draw(st.sampled_from(_ATOMIC_IMMS)))
