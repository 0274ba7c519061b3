"""The one instruction codec: slots read and patched in place, the same bytes as :class:`Instruction`; and
no other module spells the encoding."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from rawbpf.asm import Instruction, codec
from rawbpf.asm import opcodes as op

PKG = Path(__file__).resolve().parents[2] / "rawbpf"


@given(st.integers(0, 0xFF).filter(lambda c: c != op.LD_IMM64), st.integers(0, 15), st.integers(0, 15),
       st.integers(-(1 << 15), (1 << 15) - 1), st.integers(-(1 << 31), (1 << 31) - 1))
def test_slot_round_trip_matches_instruction(code: int, dst: int, src: int, off: int, imm: int) -> None:
    raw = codec.pack(code, dst, src, off, imm)
    assert raw == Instruction(code, dst, src, off, imm).encode()
    assert codec.read(raw, 0) == (code, dst, src, off, imm)


@given(st.integers(0, (1 << 64) - 1))
def test_ld_imm64_patched_in_place(value: int) -> None:
    buf = bytearray(Instruction(op.LD_IMM64, 1, 2, 0, 7).encode() + codec.pack(0x95))
    codec.set_imm64(buf, 0, value)
    assert codec.imm64(buf, 0) == value
    assert Instruction(op.LD_IMM64, 1, 2, 0, codec.signed(value, 64)).encode() == bytes(buf[:16])
    assert codec.read(buf, 2).code == 0x95 and codec.slots(buf) == 3


def test_field_setters_touch_only_their_field() -> None:
    buf = bytearray(codec.pack(0x61, 3, 4, 8, 0) * 2)
    codec.set_off(buf, 1, -4)
    codec.set_imm(buf, 1, 0xFFFFFFFF)
    codec.set_src(buf, 1, 9)
    assert codec.read(buf, 0) == (0x61, 3, 4, 8, 0)
    assert codec.read(buf, 1) == (0x61, 3, 9, -4, -1)
    codec.write(buf, 0, 0x85, imm=0xBAD2310)
    assert codec.read(buf, 0) == (0x85, 0, 0, 0, 0xBAD2310)


def test_signed() -> None:
    assert codec.signed(0xFFFF, 16) == -1 and codec.signed(0x7FFF, 16) == 0x7FFF
    assert codec.signed(1 << 32, 32) == 0 and codec.signed(-1, 64) == -1


def test_the_encoding_is_spelled_once() -> None:
    spelled = []
    for path in PKG.rglob("*.py"):
        if path.name == "codec.py":
            continue
        text = path.read_text()
        if re.search(r"['\"][<=]?BBhi['\"]|^(INSN|SLOT)_SIZE\s*=", text, re.M):
            spelled.append(str(path.relative_to(PKG)))
    assert spelled == []
