"""Property tests for the instruction model and the disassembler (hypothesis)."""

from __future__ import annotations

from typing import List

from hypothesis import given, settings
from hypothesis import strategies as st
from test_asm_support import imm32, off16, valid_insn

from rawbpf.asm import Instruction, decode, disassemble, encode, format_insn
from rawbpf.errors import AsmError


@settings(max_examples=600)
@given(valid_insn())
def test_encode_decode_round_trip(insn: Instruction) -> None:
    data = insn.encode()
    assert len(data) == insn.size
    assert decode(data) == [insn]


@settings(max_examples=600)
@given(valid_insn(), st.booleans())
def test_every_valid_instruction_disassembles(insn: Instruction, alu32: bool) -> None:
    text = format_insn(insn, index=3, symbols={0: "f"}, alu32=alu32)
    assert text and text != "<unknown>", insn
    assert "\n" not in text


@settings(max_examples=150)
@given(st.lists(valid_insn(), max_size=30))
def test_streams_round_trip_and_give_one_line_per_instruction(insns: List[Instruction]) -> None:
    data = encode(insns)
    assert decode(data) == insns
    assert len(disassemble(data, helpers=True, annotate=lambda i: f"slot {i}")) == len(insns)


@settings(max_examples=600)
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
