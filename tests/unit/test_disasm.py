"""Disassembler formatting: cpu v4 and other encodings LLVM 14 cannot print, annotations, symbols."""

from __future__ import annotations

import pytest

from rawbpf.asm import Instruction, disassemble, disassemble_indexed, encode, format_insn
from rawbpf.asm import opcodes as op
from rawbpf.errors import AsmError

I = Instruction  # noqa: E741

V4_AND_LATER = [
    (I(0xBF, 1, 2, 8), "r1 = (s8)r2"),
    (I(0xBF, 1, 2, 16), "r1 = (s16)r2"),
    (I(0xBF, 1, 2, 32), "r1 = (s32)r2"),
    (I(0xBC, 1, 2, 8), "w1 = (s8)w2"),
    (I(0xBC, 1, 2, 16), "w1 = (s16)w2"),
    (I(0x3F, 0, 1, 1), "r0 s/= r1"),
    (I(0x37, 0, 0, 1, -3), "r0 s/= -3"),
    (I(0x9F, 0, 1, 1), "r0 s%= r1"),
    (I(0x3C, 0, 1, 1), "w0 s/= w1"),
    (I(0x94, 0, 0, 1, 7), "w0 s%= 7"),
    (I(0x9C, 1, 2), "w1 %= w2"),
    (I(0x9F, 1, 2), "r1 %= r2"),
    (I(0x91, 1, 2, 0), "r1 = *(s8 *)(r2 + 0)"),
    (I(0x89, 1, 2, -2), "r1 = *(s16 *)(r2 - 2)"),
    (I(0x81, 1, 2, 4), "r1 = *(s32 *)(r2 + 4)"),
    (I(0x06, imm=2), "gotol +2"),
    (I(0x06, imm=-70000), "gotol -70000"),
    (I(0xD7, 1, imm=16), "r1 = bswap16 r1"),
    (I(0xD7, 1, imm=32), "r1 = bswap32 r1"),
    (I(0xD7, 1, imm=64), "r1 = bswap64 r1"),
    (I(0x45, 1, 0, 2, 7), "if r1 & 7 goto +2"),
    (I(0x4E, 1, 2, -1), "if w1 & w2 goto -1"),
    (I(0x62, 10, 0, -4, 7), "*(u32 *)(r10 - 4) = 7"),
    (I(0x7A, 10, 0, -8, -1), "*(u64 *)(r10 - 8) = -1"),
    (I(0x72, 10, 0, -1, 255), "*(u8 *)(r10 - 1) = 255"),
    (I(0xE5, off=3), "may_goto +3"),
    (I(0x0D, 2), "gotox r2"),
    (I(0xBF, 1, 2, 1, 1), "r1 = addr_space_cast(r2, 0, 1)"),
    (I(0xBF, 1, 2, 1, 1 << 16), "r1 = addr_space_cast(r2, 1, 0)"),
    (I(0xDB, 0, 1, 8, op.LOAD_ACQ), "r0 = load_acquire((u64 *)(r1 + 8))"),
    (I(0xD3, 0, 1, 0, op.LOAD_ACQ), "w0 = load_acquire((u8 *)(r1 + 0))"),
    (I(0xCB, 1, 2, -2, op.STORE_REL), "store_release((u16 *)(r1 - 2), w2)"),
    (I(0x85, src=op.PSEUDO_KFUNC_CALL, imm=12345), "call 12345"),
    # kernel-internal forms found in xlated dumps, in the kernel's own spelling
    (I(0xBF, 0, 0, -1), "r0 = &(void __percpu *)(r0)"),
    (I(0xC2), "nospec"),
]

LLVM14 = [
    # the spellings llvm-objdump 14 itself uses (also covered by the golden files)
    (I(0x61, 1, 2, 8), False, "r1 = *(u32 *)(r2 + 8)"),
    (I(0x61, 1, 2, 8), True, "w1 = *(u32 *)(r2 + 8)"),
    (I(0x63, 10, 1, -4), False, "*(u32 *)(r10 - 4) = r1"),
    (I(0x63, 10, 1, -4), True, "*(u32 *)(r10 - 4) = w1"),
    (I(0xC3, 1, 2, 0, 0), False, "lock *(u32 *)(r1 + 0) += r2"),
    (I(0xC3, 1, 2, 0, 0), True, "lock *(u32 *)(r1 + 0) += w2"),
    (I(0xC3, 1, 2, 0, 1), False, "w2 = atomic_fetch_add((u32 *)(r1 + 0), w2)"),
    (I(0x25, 1, 0, 0, 16), False, "if r1 > 16 goto +0"),
    (I(0x85, imm=14), False, "call 14"),
    (I(0x18, 1), False, "r1 = 0 ll"),
    (I(0x18, 1, imm=-1), False, "r1 = -1 ll"),
    (I(0x18, 1, imm=(1 << 64) - 1), False, "r1 = -1 ll"),
    (I(0x18, 1, op.PSEUDO_MAP_FD, imm=3), False, "ld_pseudo\tr1, 1, 3"),
    (I(0x18, 1, op.PSEUDO_MAP_VALUE, imm=(16 << 32) | 3), False, "ld_pseudo\tr1, 2, 3"),
    (I(0xBC, 0, 1), False, "w0 = w1"),
    (I(0xDB, 1, 2, 0, 0), False, "lock *(u64 *)(r1 + 0) += r2"),
    (I(0xDB, 1, 0, 0, op.CMPXCHG), False, "r0 = cmpxchg_64(r1 + 0, r0, r0)"),
    (I(0x20, imm=4), False, "r0 = *(u32 *)skb[4]"),
    (I(0x50, src=1), False, "r0 = *(u8 *)skb[r1]"),
    (I(0xDC, 1, imm=16), False, "r1 = be16 r1"),
    (I(0xD4, 1, imm=64), False, "r1 = le64 r1"),
    (I(0x8D, imm=3), False, "callx r3"),
    (I(0x05, off=-3), False, "goto -3"),
]


@pytest.mark.parametrize(("insn", "text"), V4_AND_LATER, ids=[t for _, t in V4_AND_LATER])
def test_later_llvm_syntax(insn: Instruction, text: str) -> None:
    assert format_insn(insn) == text


@pytest.mark.parametrize(("insn", "alu32", "text"), LLVM14, ids=[f"{t}-{a}" for _, a, t in LLVM14])
def test_llvm14_syntax(insn: Instruction, alu32: bool, text: str) -> None:
    assert format_insn(insn, alu32=alu32) == text


@pytest.mark.parametrize("insn", [
    I(0x00), I(0x8F), I(0x8C), I(0xFF), I(0xE7, 1), I(0xDC, 1, imm=8), I(0xBF, 1, 2, 5), I(0x3F, 1, 2, 2),
    I(0x0E), I(0x86), I(0x96), I(0x38), I(0x99, 1, 2), I(0xC3, 1, 2, 0, 0x10), I(0xD3, 1, 2, 0, 0),
    I(0xDF, 1, 2), I(0x9D),
], ids=lambda i: f"{i.code:#04x}")
def test_meaningless_encodings_print_unknown(insn: Instruction) -> None:
    assert format_insn(insn) == "<unknown>"


def test_jump_targets_name_the_nearest_symbol_like_llvm_objdump() -> None:
    data = encode([I(0x05, off=1), I(0xB7), I(0x15, 1, off=-3), I(0x95)])
    syms = {0: "f", 2: "LBB0_2"}
    lines = disassemble(data, symbols=syms)
    assert lines[0] == "goto +1 <LBB0_2>"
    assert lines[2] == "if r1 == 0 goto -3 <f>"
    # a target before the section start wraps modulo 2**64, as llvm-objdump prints it
    before = encode([I(0x05, off=-2)])
    assert disassemble(before, symbols={0: "f"}) == ["goto -2 <f+0xfffffffffffffff8>"]
    assert disassemble(data, symbols={1: "g"})[0] == "goto +1 <g+0x8>"
    assert disassemble(data, symbols={3: "z", 0: "a"})[0] == "goto +1 <a+0x10>"


def test_start_offsets_indexes_and_targets() -> None:
    data = encode([I(0x05, off=0), I(0x95)])
    assert disassemble_indexed(data, start=10, symbols={10: "f"}) == [(10, "goto +0 <f+0x8>"), (11, "exit")]


def test_ld_imm64_is_one_line_and_advances_two_slots() -> None:
    data = encode([I(0x18, 1, imm=1 << 32), I(0x95)])
    assert disassemble_indexed(data) == [(0, "r1 = 4294967296 ll"), (2, "exit")]


def test_annotations_helpers_maps_and_callback() -> None:
    data = encode([I(0x18, 1, op.PSEUDO_MAP_FD, imm=7), I(0x18, 2, op.PSEUDO_MAP_VALUE, imm=(8 << 32) | 7),
                   I(0x85, imm=1), I(0x85, imm=9999), I(0x95)])
    lines = disassemble(data, helpers=True, maps={7: "counts"},
                        annotate=lambda i: "prog.c:3: return 0;" if i == 6 else None)
    assert lines == [
        "ld_pseudo\tr1, 1, 7  ; map 'counts'",
        "ld_pseudo\tr2, 2, 7  ; map 'counts' value + 8",
        "call 1  ; bpf_map_lookup_elem",
        "call 9999",
        "exit  ; prog.c:3: return 0;",
    ]
    # maps alone name maps but leave calls alone (xlated calls hold addresses, not helper ids)
    assert disassemble(data, maps={7: "counts"})[2:4] == ["call 1", "call 9999"]
    assert disassemble(data, maps={7: "counts"})[0] == "ld_pseudo\tr1, 1, 7  ; map 'counts'"
    # without annotations the text is exactly llvm-objdump's
    assert [ln.split("  ; ")[0] for ln in lines] == disassemble(data)


def test_undecodable_input_prints_unknown_instead_of_raising() -> None:
    truncated = I(0x18, 1, imm=5).encode()[:8]
    assert disassemble(truncated) == ["<unknown>"]
    reserved = I(0x18, 1, imm=5).encode()[:8] + bytes([0x95, 0, 0, 0, 0, 0, 0, 0])
    assert disassemble(reserved) == ["<unknown>", "exit"]
    assert disassemble(b"\x95\x00\x00") == ["<unknown>"]
    assert disassemble(b"") == []


def test_non_bytes_argument_is_an_asm_error() -> None:
    with pytest.raises(AsmError, match="disassemble: expected bytes"):
        disassemble("r0 = 0")  # type: ignore[arg-type]
