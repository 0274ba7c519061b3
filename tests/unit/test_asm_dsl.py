"""The assembler DSL: encodings of each method, label resolution, map references and error messages."""

from __future__ import annotations

import re

import pytest

from rawbpf.asm import (
    FP,
    R0,
    R1,
    R2,
    R3,
    R6,
    R10,
    W0,
    W1,
    W2,
    Assembler,
    Instruction,
    decode,
    disassemble,
)
from rawbpf.asm import opcodes as op
from rawbpf.asm.dsl import Reg
from rawbpf.errors import AsmError

R11 = Reg(11)


def text(p: Assembler, **maps: int) -> list:
    return disassemble(p.assemble(maps=maps))


def test_readme_example_assembles_to_the_expected_program() -> None:
    p = Assembler()
    p.mov(R1, 0).stx_w(R10, -4, R1)
    p.ld_map_fd(R1, "counts")
    p.mov(R2, R10).add(R2, -4)
    p.call("bpf_map_lookup_elem")
    p.jeq(R0, 0, "out")
    p.mov(R1, 1).atomic_add(R0, 0, R1)
    p.label("out")
    p.mov(R0, 0).exit()
    assert text(p, counts=9) == [
        "r1 = 0", "*(u32 *)(r10 - 4) = r1", "ld_pseudo\tr1, 1, 9", "r2 = r10", "r2 += -4", "call 1",
        "if r0 == 0 goto +2", "r1 = 1", "lock *(u64 *)(r0 + 0) += r1", "r0 = 0", "exit",
    ]
    assert len(p) == 12 and p.labels == {"out": 10}


def test_alu_width_follows_the_register_view() -> None:
    p = Assembler()
    p.add(W1, W2).add(R1, R2).mov(W0, 0xFFFFFFFF).neg(W1).neg(R1).sdiv(R1, R2).smod(W1, 3)
    p.movsx(R1, R2, 32).movsx(W1, W2, 8).bswap(R1, 64).be(R1, 16).le(R2, 32).arsh(R1, 3).rsh(W1, W2)
    p.lsh(R1, 1).mul(R1, 3).div(W1, W2).mod(R1, R2).or_(R1, 1).and_(W1, 0xFF).xor(R1, R1).sub(R1, 1)
    assert text(p) == [
        "w1 += w2", "r1 += r2", "w0 = -1", "w1 = -w1", "r1 = -r1", "r1 s/= r2", "w1 s%= 3",
        "r1 = (s32)r2", "w1 = (s8)w2", "r1 = bswap64 r1", "r1 = be16 r1", "r2 = le32 r2", "r1 s>>= 3",
        "w1 >>= w2", "r1 <<= 1", "r1 *= 3", "w1 /= w2", "r1 %= r2", "r1 |= 1", "w1 &= 255", "r1 ^= r1",
        "r1 -= 1",
    ]


def test_memory_atomics_and_legacy_loads() -> None:
    p = Assembler()
    p.ldx_b(R1, R2, 1).ldx_h(R1, R2, -2).ldx_w(W1, R2).ldx_dw(R1, FP, -8)
    p.ldsx_b(R1, R2).ldsx_h(R1, R2, 2).ldsx_w(R1, R2, 4)
    p.stx_b(FP, -1, R1).stx_h(FP, -2, R1).stx_w(FP, -4, W1).stx_dw(FP, -16, R1)
    p.st_b(FP, -1, 7).st_h(FP, -2, -1).st_w(FP, -4, 0).st_dw(FP, -8, 1)
    p.atomic_add(R1, 0, W2).atomic_or(R1, 0, R2, fetch=True).atomic_and(R1, 8, W2, fetch=True)
    p.atomic_xor(R1, 0, R2).xchg(R1, 0, R2).cmpxchg(R1, 0, W2)
    p.ld_abs("h", 12).ld_ind("b", R6, 0)
    assert text(p) == [
        "r1 = *(u8 *)(r2 + 1)", "r1 = *(u16 *)(r2 - 2)", "r1 = *(u32 *)(r2 + 0)", "r1 = *(u64 *)(r10 - 8)",
        "r1 = *(s8 *)(r2 + 0)", "r1 = *(s16 *)(r2 + 2)", "r1 = *(s32 *)(r2 + 4)",
        "*(u8 *)(r10 - 1) = r1", "*(u16 *)(r10 - 2) = r1", "*(u32 *)(r10 - 4) = r1",
        "*(u64 *)(r10 - 16) = r1",
        "*(u8 *)(r10 - 1) = 7", "*(u16 *)(r10 - 2) = -1", "*(u32 *)(r10 - 4) = 0", "*(u64 *)(r10 - 8) = 1",
        "lock *(u32 *)(r1 + 0) += r2", "r2 = atomic_fetch_or((u64 *)(r1 + 0), r2)",
        "w2 = atomic_fetch_and((u32 *)(r1 + 8), w2)", "lock *(u64 *)(r1 + 0) ^= r2",
        "r2 = xchg_64(r1 + 0, r2)", "w0 = cmpxchg32_32(r1 + 0, w0, w2)",
        "r0 = *(u16 *)skb[12]", "r0 = *(u8 *)skb[r6]",
    ]


def test_labels_resolve_forward_backward_jmp32_gotol_calls_and_callbacks() -> None:
    p = Assembler()
    p.label("top").ld_imm64(R1, 1 << 40)          # slots 0-1
    p.jne(W1, W2, "end")                          # slot 2: off = 8 - 3
    p.jslt(R1, -5, "top")                         # slot 3: off = 0 - 4
    p.gotol("end")                                # slot 4: imm = 8 - 5
    p.call_label("sub")                           # slot 5: imm = 9 - 6
    p.ld_func(R2, "sub")                          # slots 6-7: imm = 9 - 7
    p.label("end").exit()                         # slot 8
    p.label("sub").mov(R0, 0).exit()              # slots 9-10
    insns = decode(p.assemble())
    assert insns[1] == Instruction(0x5E, 1, 2, 5)
    assert insns[2] == Instruction(0xC5, 1, 0, -4, -5)
    assert insns[3] == Instruction(0x06, imm=3)
    assert insns[4] == Instruction(0x85, src=1, imm=3)
    assert insns[5] == Instruction(0x18, 2, 4, imm=2)
    assert p.labels == {"top": 0, "end": 8, "sub": 9}
    assert disassemble(p.assemble())[1] == "if w1 != w2 goto +5"


def test_listing_shows_labels_helpers_and_map_names() -> None:
    p = Assembler()
    p.ld_map_fd(R1, "events").call("ringbuf_output").jeq(R0, 0, "done").label("done").mov(R0, 0).exit()
    assert p.disassemble({"events": 42}) == [
        "    ld_pseudo\tr1, 1, 42  ; map 'events'",
        "    call 130  ; bpf_ringbuf_output",
        "    if r0 == 0 goto +0 <done>",
        "done:",
        "    r0 = 0",
        "    exit",
    ]


def test_maps_by_name_value_offset_fd_objects_and_relocations() -> None:
    class FakeMap:
        fd = 17

    p = Assembler().ld_map_value(R1, "data", 24).ld_map_fd(R2, 5).ld_map_fd(R3, "m")
    insns = decode(p.assemble(maps={"data": 3, "m": FakeMap()}))
    assert insns[0] == Instruction(0x18, 1, op.PSEUDO_MAP_VALUE, imm=(24 << 32) | 3)
    assert insns[1] == Instruction(0x18, 2, op.PSEUDO_MAP_FD, imm=5)
    assert insns[2].imm == 17
    assert [(r.slot, r.kind, r.target) for r in p.relocations] == [(0, "map", "data"), (4, "map", "m")]
    unresolved = decode(p.assemble(allow_unresolved_maps=True))
    assert unresolved[0].imm == 24 << 32 and unresolved[2].imm == 0


@pytest.mark.parametrize(("build", "message"), [
    (lambda p: p.ja("nowhere").exit(), "assemble: ja at insn 0: label 'nowhere' is not defined"),
    (lambda p: p.mov(R0, 0).jeq(W0, 1, "x").exit(), "assemble: jeq at insn 1: label 'x' is not defined"),
    (lambda p: p.label("a").exit().label("a"), "label 'a': defined twice (insn 0 and insn 1)"),
    (lambda p: p.mov(R0, 0).ld_map_fd(R1, "counts").assemble(maps={"other": 3}),
     "assemble: ld_map_fd at insn 1: map 'counts' has no fd (maps: other)"),
    (lambda p: p.mov(R11, 0), "mov at insn 0: bad destination register R11 (use R0..R10"),
    (lambda p: p.mov(1, 0), "mov at insn 0: bad destination register 1"),
    (lambda p: p.add(R1, W2), "add at insn 0: mixes R1 and W2"),
    (lambda p: p.jgt(R1, W2, "x"), "jgt at insn 0: compares R1 with W2"),
    (lambda p: p.mov(R1, 1 << 31),
     "mov at insn 0: immediate 2147483648 does not fit in 32 bits (use ld_imm64"),
    (lambda p: p.mov(R1, "x"), "mov at insn 0: expected a register or an integer, got 'x'"),
    (lambda p: p.call("bpf_map_lookup"),
     "call at insn 0: unknown bpf helper (did you mean bpf_map_lookup_elem"),
    (lambda p: p.call(9999), "call at insn 0: 9999 is not a helper name or id"),
    (lambda p: p.ldx("q", R1, R2), "ldx at insn 0: bad size 'q'"),
    (lambda p: p.ldx_w(R1, R2, 1 << 15), "ldx at insn 0: offset 32768 does not fit in a signed 16-bit field"),
    (lambda p: p.ldsx("dw", R1, R2), "ldsx at insn 0: sign-extending loads"),
    (lambda p: p.movsx(W1, W2, 32), "movsx at insn 0: cannot sign-extend from 32 bits into W1"),
    (lambda p: p.bswap(R1, 8), "bswap at insn 0: byte swap width must be 16, 32 or 64, got 8"),
    (lambda p: p.ld_imm64(W1, 5), "ld_imm64 at insn 0: ld_imm64 loads a 64-bit register, not W1"),
    (lambda p: p.jeq(R1, 0, None), "jeq at insn 0: target must be a label name or an offset, got None"),
    (lambda p: p.ja(40000), "ja at insn 0: offset 40000 does not fit in a signed 16-bit field"),
    (lambda p: p.atomic_add(R1, -40000, R2), "atomic_add at insn 0: offset -40000 does not fit"),
    (lambda p: p.label(""), "label '': a label is a non-empty string"),
    (lambda p: p.raw(b"\x95"), "raw at insn 0: expected an Instruction, got bytes"),
])
def test_mistakes_are_one_line_asm_errors_naming_the_instruction(build, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AsmError) as info:
        p = Assembler()
        result = build(p)
        if isinstance(result, Assembler):
            result.assemble()
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)



def test_jump_offset_out_of_range_suggests_gotol() -> None:
    p = Assembler().jeq(R1, 0, "far")
    for _ in range(40000):
        p.mov(R0, 0)
    p.label("far").exit()
    with pytest.raises(AsmError, match=re.escape("assemble: jeq at insn 0: label 'far' is 40000 instructions "
                                                 "away, beyond a 16-bit jump offset (use gotol)")):
        p.assemble()
    q = Assembler().gotol("far")
    for _ in range(40000):
        q.mov(R0, 0)
    q.label("far").exit()
    assert decode(q.assemble())[0] == Instruction(0x06, imm=40000)


def test_numeric_targets_are_relative_slot_offsets() -> None:
    p = Assembler().ja(1).jeq(W1, 2, -2).gotol(-3).call_label(5).ld_func(R1, 7).callx(R2)
    p.load_acquire("w", W0, R1, 8).store_release("dw", R1, -8, R2).may_goto(0).gotox(R3)
    assert text(p) == [
        "goto +1", "if w1 == 2 goto -2", "gotol -3", "call 5", "ld_pseudo\tr1, 4, 7", "callx r2",
        "w0 = load_acquire((u32 *)(r1 + 8))", "store_release((u64 *)(r1 - 8), r2)", "may_goto +0",
        "gotox r3",
    ]
    assert decode(p.assemble())[3] == Instruction(0x85, src=1, imm=5)
    assert p.relocations == []


def test_chaining_and_raw() -> None:
    p = Assembler("x").raw(Instruction(0xB7, 0, imm=3)).exit()
    assert text(p) == ["r0 = 3", "exit"]
    assert "x: 2 slots" in repr(p)
