"""The text assembler: llvm-objdump syntax back into bytes, for hand-written text and real objdump output."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_asm_support import DATA, GOLDEN, code_sections, valid_insn

from rawbpf.asm import Instruction, assemble_text, decode, disassemble, encode, format_insn, parse
from rawbpf.asm import opcodes as op
from rawbpf.errors import AsmError


def _lossless(insn: Instruction) -> Instruction:
    """The instruction as its text can carry it (see rawbpf.asm.text: call N, skb[rN], ld_pseudo)."""
    if insn.code == op.JMP | op.CALL:
        return insn.replace(src=0, off=0)
    if insn.cls == op.LD and insn.code & 0xE0 == op.IND:
        return insn.replace(imm=0)
    if insn.code == op.LD_IMM64 and insn.src:
        return insn.replace(imm=insn.imm & 0xFFFFFFFF)
    return insn


@settings(max_examples=600)
@given(valid_insn())
def test_text_of_every_valid_instruction_assembles_back(insn: Instruction) -> None:
    insn = _lossless(insn)
    for alu32 in (False, True):
        line = format_insn(insn, alu32=alu32)
        assert decode(assemble_text(line)) == [insn], line


def _sections(golden: Path) -> Dict[str, str]:
    out: Dict[str, List[str]] = {}
    current: List[str] = []
    for line in golden.read_text().splitlines():
        m = re.match(r"Disassembly of section (.*):$", line)
        if m:
            current = out.setdefault(m.group(1), [])
        else:
            current.append(line)
    return {name: "\n".join(lines) for name, lines in out.items()}


# linked_statics.o's .text holds two functions named `scale`: text labels must be unique, so it cannot
# round-trip through assembler text (its loading is tested in test_loader_conformance)
@pytest.mark.parametrize("golden", sorted(g for g in GOLDEN.glob("*.alu32.txt")
                                          if not g.name.startswith("linked_statics.")),
                         ids=lambda p: p.name.split(".")[0])
def test_llvm_objdump_output_assembles_back_to_the_object_bytes(golden: Path) -> None:
    stem = golden.name.split(".")[0]
    obj = next(p for p in (DATA / f"{stem}.o", DATA / "asm" / f"{stem}.o") if p.exists())
    texts = _sections(golden)
    for name, data, _ in code_sections(obj):
        want = [_lossless(i) for i in decode(data)]
        got = decode(assemble_text(texts[name]))
        assert got == want, f"{obj.name} {name}"


def test_hand_written_program_with_labels_helpers_and_maps() -> None:
    src = """
        ; count runs under key 0
        r1 = 0
        *(u32 *)(r10 - 4) = r1
        r1 = map(counts) ll            # resolved at assemble time
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r1 = 0x1
        lock *(u64 *)(r0 + 0) += r1
        r2 = map_value(data, 8) ll
        r3 = func(callback) ll
        call callback                  // bpf-to-bpf
    out:
        r0 = 0
        exit
    callback:
        r0 = 0
        exit
    """
    insns = decode(assemble_text(src, maps={"counts": 5, "data": 6}))
    assert insns[2] == Instruction(0x18, 1, op.PSEUDO_MAP_FD, imm=5)
    assert insns[6] == Instruction(0x15, 0, 0, 7)                   # slot 7 -> out at 15
    assert insns[9] == Instruction(0x18, 2, op.PSEUDO_MAP_VALUE, imm=(8 << 32) | 6)
    assert insns[10] == Instruction(0x18, 3, op.PSEUDO_FUNC, imm=17 - 13)
    assert insns[11] == Instruction(0x85, 0, op.PSEUDO_CALL, imm=17 - 15)
    assert parse(src).labels == {"out": 15, "callback": 17}


def test_a_label_defined_in_the_text_wins_over_a_helper_of_the_same_name() -> None:
    src = "call loop\ncall bpf_loop\ncall map_lookup_elem\nexit\nloop:\nexit"
    insns = decode(assemble_text(src))
    assert insns[0] == Instruction(0x85, src=op.PSEUDO_CALL, imm=3)
    assert insns[1] == Instruction(0x85, imm=181) and insns[2] == Instruction(0x85, imm=1)


def test_pasted_llvm_objdump_output_with_addresses_and_symbols() -> None:
    src = """
    prog.o:\tfile format elf64-bpf

    Disassembly of section tp/x:

    0000000000000000 <f>:
           0:\tr1 = 1
           1:\tif r1 > 16 goto +1 <LBB0_2>
           2:\tr1 = 2

    0000000000000018 <LBB0_2>:
           3:\tr0 = r1
           4:\texit
    """
    assert disassemble(assemble_text(src)) == ["r1 = 1", "if r1 > 16 goto +1", "r1 = 2", "r0 = r1", "exit"]
    assert parse(src).labels == {"f": 0, "LBB0_2": 3}


@pytest.mark.parametrize(("src", "message"), [
    ("r0 = 0\nr1 =+ 2", "line 2: cannot parse 'r1 =+ 2'"),
    ("r11 = 1", "line 1: bad register r11"),
    ("call 99999999999", "line 1: call at insn 0: immediate 99999999999 does not fit in 32 bits"),
    ("call nowhere", "assemble: call at insn 0: label 'nowhere' is not defined"),
    ("call bpf_map_lookup", "line 1: call at insn 0: unknown bpf helper (did you mean bpf_map_lookup_elem"),
    ("r1 = -r2", "line 1: negation works in place"),
    ("r1 = be16 r2", "line 1: byte swaps work in place"),
    ("w1 = 1 ll", "line 1: cannot parse"),
    ("goto nowhere\nexit", "assemble: ja at insn 0: label 'nowhere' is not defined"),
    ("x:\nx:", "line 2: label 'x': defined twice"),
    ("r1 = map(m) ll", "assemble: ld_map_fd at insn 0: map 'm' has no fd"),
    ("r1 = func(f, 3) ll", "line 1: func() takes one argument"),
    ("r2 = xchg_64(r1 + 0, r3)", "line 1: xchg returns the old value in its source register"),
])
def test_errors_name_the_line(src: str, message: str) -> None:
    with pytest.raises(AsmError) as info:
        assemble_text(src)
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_kernel_internal_forms_from_xlated_dumps() -> None:
    src = "r0 = &(void __percpu *)(r1)\nnospec"
    assert decode(assemble_text(src)) == [Instruction(0xBF, 0, 1, -1), Instruction(0xC2)]
    assert disassemble(assemble_text(src)) == src.splitlines()


def test_numbers_in_hex_and_both_signs() -> None:
    assert decode(assemble_text("r1 = 0xff\nr2 = -0x10\nr3 = 0xffffffffffffffff ll\nr4 &= 0x7fffffff")) == [
        Instruction(0xB7, 1, imm=255), Instruction(0xB7, 2, imm=-16), Instruction(0x18, 3, imm=-1),
        Instruction(0x57, 4, imm=0x7FFFFFFF)]
    store = assemble_text("*(u64 *)(r10 - 0x8) = 7")
    assert encode(decode(store)) == Instruction(0x7A, 10, 0, -8, 7).encode()


_ALPHABET = "rw0123456789abcdefx =+-*/%&|^<>()[]s.,;:_ \tlgotilcnmpuqkv\n#"


@settings(max_examples=600)
@given(st.text(alphabet=_ALPHABET, max_size=60))
def test_arbitrary_text_assembles_or_raises_asm_error(source: str) -> None:
    try:
        assemble_text(source, allow_unresolved_maps=True)
    except AsmError as err:
        assert "\n" not in str(err)


@settings(max_examples=600)
@given(valid_insn(), st.integers(0, 60), st.sampled_from(list(_ALPHABET)))
def test_mutated_instruction_text_assembles_or_raises_asm_error(insn: Instruction, pos: int, ch: str) -> None:
    line = format_insn(insn)
    mutated = line[:pos] + ch + line[pos + 1:]
    try:
        assemble_text(mutated, allow_unresolved_maps=True)
    except AsmError as err:
        assert "\n" not in str(err)
