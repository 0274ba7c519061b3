"""The 8-byte eBPF instruction slot, read and written in place; pure, no syscalls.

The one place the encoding is spelled out: a slot is ``code:u8, dst:4 | src:4, off:s16, imm:s32`` in
little-endian order, ``ld_imm64`` (code 0x18) takes two slots whose second carries the high 32 bits of the
immediate. :class:`rawbpf.asm.Instruction` builds on it, and so do the code paths that patch raw
instruction bytes (the ELF reader, the linker, CO-RE): they index slots, never byte offsets.
"""

from __future__ import annotations

import struct
from typing import NamedTuple, Union

from rawbpf.asm import opcodes as op

__tier__ = "pure"

__all__ = ["INSN_SIZE", "LD_IMM64", "Slot", "imm64", "pack", "read", "set_imm", "set_imm64", "set_off",
           "set_src", "signed", "slots", "write"]

#: bytes per instruction slot
INSN_SIZE = 8
LD_IMM64 = op.LD_IMM64

_SLOT = struct.Struct("<BBhi")
Buffer = Union[bytes, bytearray, memoryview]


class Slot(NamedTuple):
    """One decoded slot (``imm`` is the low 32 bits, signed, also for ld_imm64)."""

    code: int
    dst: int
    src: int
    off: int
    imm: int


def signed(value: int, bits: int) -> int:
    """``value`` truncated to ``bits`` and read as two's complement."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def slots(data: Buffer) -> int:
    """Number of whole slots in ``data``."""
    return len(data) // INSN_SIZE


def read(data: Buffer, index: int) -> Slot:
    """The slot at ``index``."""
    code, regs, off, imm = _SLOT.unpack_from(data, index * INSN_SIZE)
    return Slot(code, regs & 0x0F, regs >> 4, off, imm)


def pack(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """The 8 bytes of one slot; ``off`` and ``imm`` are truncated to 16 and 32 bits."""
    return _SLOT.pack(code, (src << 4) | dst, signed(off, 16), signed(imm, 32))


def write(data: bytearray, index: int, code: int, dst: int = 0, src: int = 0, off: int = 0,
          imm: int = 0) -> None:
    """Overwrite the slot at ``index``."""
    _SLOT.pack_into(data, index * INSN_SIZE, code, (src << 4) | dst, signed(off, 16), signed(imm, 32))


def set_src(data: bytearray, index: int, src: int) -> None:
    """Replace the source register field of slot ``index`` (the pseudo kind of an ld_imm64 or call)."""
    pos = index * INSN_SIZE + 1
    data[pos] = (data[pos] & 0x0F) | ((src & 0x0F) << 4)


def set_off(data: bytearray, index: int, off: int) -> None:
    """Replace the 16-bit offset of slot ``index``."""
    struct.pack_into("<h", data, index * INSN_SIZE + 2, signed(off, 16))


def set_imm(data: bytearray, index: int, imm: int) -> None:
    """Replace the 32-bit immediate of slot ``index`` (truncated to 32 bits)."""
    struct.pack_into("<i", data, index * INSN_SIZE + 4, signed(imm, 32))


def imm64(data: Buffer, index: int) -> int:
    """The 64-bit immediate of the ld_imm64 at ``index`` (unsigned)."""
    lo = struct.unpack_from("<I", data, index * INSN_SIZE + 4)[0]
    hi = struct.unpack_from("<I", data, (index + 1) * INSN_SIZE + 4)[0]
    return (hi << 32) | lo


def set_imm64(data: bytearray, index: int, value: int) -> None:
    """Replace the 64-bit immediate of the ld_imm64 at ``index`` (both halves)."""
    set_imm(data, index, value & 0xFFFFFFFF)
    set_imm(data, index + 1, (value >> 32) & 0xFFFFFFFF)
