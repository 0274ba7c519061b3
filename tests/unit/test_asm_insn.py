"""Instruction encode/decode and the helper table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rawbpf.asm import HELPERS, Instruction, decode, decode_one, encode, helper_id, helper_name
from rawbpf.asm import opcodes as op
from rawbpf.asm.helpers import MAX_HELPER_ID
from rawbpf.errors import AsmError


def test_slot_layout_is_the_kernels() -> None:
    # r1 = *(u32 *)(r2 + 8): code 0x61, dst 1 in the low nibble, src 2 in the high nibble, off, imm
    assert Instruction(0x61, 1, 2, 8).encode() == bytes([0x61, 0x21, 8, 0, 0, 0, 0, 0])
    assert Instruction(0xB7, 0, 0, 0, -1).encode() == bytes([0xB7, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF])
    assert Instruction(0x05, off=-1).encode() == bytes([0x05, 0, 0xFF, 0xFF, 0, 0, 0, 0])


def test_ld_imm64_is_two_slots_with_the_high_half_in_the_second() -> None:
    insn = Instruction(op.LD_IMM64, 3, op.PSEUDO_MAP_VALUE, 0, (16 << 32) | 7)
    data = insn.encode()
    assert data == bytes([0x18, 0x23, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0])
    assert insn.slots == 2 and insn.size == 16 and insn.is_ld_imm64
    assert decode(data) == [insn]


def test_fields_are_normalised_so_equal_bytes_compare_equal() -> None:
    assert Instruction(0xB7, imm=0xFFFFFFFF) == Instruction(0xB7, imm=-1)
    assert Instruction(0x05, off=0xFFFF) == Instruction(0x05, off=-1)
    assert Instruction(0x18, imm=(1 << 64) - 1).imm == -1
    assert Instruction(0xB7, imm=5).replace(imm=6).imm == 6


@pytest.mark.parametrize(("fields", "message"), [
    ({"code": 256}, "opcode 0x100 does not fit in 8 bits"),
    ({"code": 0xB7, "dst": 16}, "dst register 16 does not fit in 4 bits"),
    ({"code": 0xB7, "src": -1}, "src register -1 does not fit in 4 bits"),
    ({"code": 0x05, "off": 1 << 16}, "offset 65536 does not fit in 16 bits"),
    ({"code": 0xB7, "imm": 1 << 32}, "immediate 4294967296 does not fit in 32 bits"),
    ({"code": 0x18, "imm": 1 << 64}, "does not fit in 64 bits"),
])
def test_out_of_range_fields_raise_one_line_asm_errors(fields: dict, message: str) -> None:
    with pytest.raises(AsmError, match=re.escape(message)) as info:
        Instruction(**fields)
    assert "\n" not in str(info.value)


def test_repr_shows_the_opcode_in_hex_and_str_the_syntax() -> None:
    insn = Instruction(0x61, 1, 2, 8)
    assert repr(insn) == "Instruction(0x61, dst=1, src=2, off=8, imm=0)"
    assert eval(repr(insn)) == insn
    assert str(insn) == "r1 = *(u32 *)(r2 + 8)"


def test_decode_errors() -> None:
    with pytest.raises(AsmError, match="decode: 12 bytes is not a whole number"):
        decode(bytes(12))
    with pytest.raises(AsmError, match="decode insn 1: ld_imm64 is missing its second slot"):
        decode(Instruction(0x95).encode() + bytes([0x18]) + bytes(7))
    bad = bytearray(Instruction(0x18, 1, imm=1).encode())
    bad[9] = 0x11
    with pytest.raises(AsmError, match="decode insn 0: ld_imm64 second slot has non-zero reserved fields"):
        decode(bytes(bad))
    with pytest.raises(AsmError, match="decode at byte 8: truncated"):
        decode_one(bytes(8), 8)


def test_stream_round_trip() -> None:
    insns = [Instruction(0xB7, 0), Instruction(0x18, 1, 1, imm=4), Instruction(0x85, imm=1),
             Instruction(0x95)]
    assert decode(encode(insns)) == insns
    assert len(encode(insns)) == 40


# ---- helper table ------------------------------------------------------------------------------------


def test_helper_ids_are_the_kernels() -> None:
    assert helper_id("bpf_map_lookup_elem") == 1
    assert helper_id("map_lookup_elem") == 1
    assert helper_id("bpf_trace_printk") == 6
    assert helper_id("bpf_get_current_uid_gid") == 15
    assert helper_id("bpf_ringbuf_output") == 130
    assert helper_id("bpf_loop") == 181
    assert helper_id("bpf_cgrp_storage_delete") == 211 == MAX_HELPER_ID
    assert helper_name(14) == "bpf_get_current_pid_tgid"
    assert helper_name(0) is None and helper_name(MAX_HELPER_ID + 1) is None
    assert len(HELPERS) == MAX_HELPER_ID and all(name.startswith("bpf_") for name in HELPERS)


def test_unknown_helper_names_the_helper_and_suggests() -> None:
    with pytest.raises(AsmError, match=r"call 'bpf_map_lookup': unknown bpf helper \(did you mean "
                                       r"bpf_map_lookup_elem"):
        helper_id("bpf_map_lookup")
    with pytest.raises(AsmError, match=r"^call 'zzz': unknown bpf helper$"):
        helper_id("zzz")


UAPI = Path("/usr/include/linux/bpf.h")


@pytest.mark.skipif(not UAPI.exists(), reason="no linux uapi headers installed (linux-libc-dev)")
def test_table_agrees_with_the_installed_uapi_header() -> None:
    """Every helper the installed header's FUNC_MAPPER lists has the same id here."""
    text = UAPI.read_text()
    mapper = text[text.index("define __BPF_FUNC_MAPPER") if "define __BPF_FUNC_MAPPER" in text
                  else text.index("define ___BPF_FUNC_MAPPER"):]
    mapper = mapper[:mapper.index("/* */")] if "/* */" in mapper else mapper[:20000]
    names = re.findall(r"FN\((\w+)", mapper)
    assert names[0] == "unspec" and len(names) > 150
    for number, name in enumerate(names):
        if number:
            assert helper_id(name) == number, name
