"""Property tests for the instruction model and the disassembler (hypothesis)."""

from __future__ import annotations

from typing import List

from hypothesis import given, settings
from hypothesis import strategies as st

from rawbpf.asm import Instruction, decode, disassemble, encode, format_insn
from rawbpf.asm import opcodes as op
from rawbpf.errors import AsmError

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
                                 "ldx", "ldsx", "st", "stx", "atomic", "acqrel", "may_goto", "asc"]))
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


@settings(max_examples=3000)
@given(valid_insn())
def test_encode_decode_round_trip(insn: Instruction) -> None:
    data = insn.encode()
    assert len(data) == insn.size
    assert decode(data) == [insn]


@settings(max_examples=3000)
@given(valid_insn(), st.booleans())
def test_every_valid_instruction_disassembles(insn: Instruction, alu32: bool) -> None:
    text = format_insn(insn, index=3, symbols={0: "f"}, alu32=alu32)
    assert text and text != "<unknown>", insn
    assert "\n" not in text


@settings(max_examples=500)
@given(st.lists(valid_insn(), max_size=30))
def test_streams_round_trip_and_give_one_line_per_instruction(insns: List[Instruction]) -> None:
    data = encode(insns)
    assert decode(data) == insns
    assert len(disassemble(data, helpers=True, annotate=lambda i: f"slot {i}")) == len(insns)


@settings(max_examples=3000)
@given(st.binary(max_size=80))
def test_decoding_arbitrary_bytes_raises_only_asm_error(data: bytes) -> None:
    try:
        insns = decode(data)
    except AsmError:
        pass
    else:
        assert encode(insns) == data
    lines = disassemble(data)  # never raises: undecodable slots print <unknown>
    assert len(lines) <= (len(data) + 7) // 8


@given(st.integers(0, 255), st.integers(0, 15), st.integers(0, 15), off16, imm32)
def test_any_slot_formats_without_raising(code: int, dst: int, src: int, off: int, imm: int) -> None:
    insn = Instruction(code, dst, src, off, imm)
    assert isinstance(format_insn(insn), str)
    assert isinstance(format_insn(insn, alu32=True), str)
