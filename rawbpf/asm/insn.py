"""The eBPF instruction model on top of :mod:`rawbpf.asm.codec`: :class:`Instruction` and encode/decode of
instruction streams (ld_imm64 is one 16-byte instruction); pure, no syscalls.

An instruction slot is ``code:u8, dst:4 | src:4, off:s16, imm:s32`` in host (little-endian) order.
``ld_imm64`` (code 0x18) spans two slots: the second slot carries the high 32 bits of the immediate and
must otherwise be zero, so :class:`Instruction` holds it as one instruction with a 64-bit ``imm``.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, List

from rawbpf.asm import codec
from rawbpf.asm import opcodes as op
from rawbpf.asm.codec import INSN_SIZE
from rawbpf.asm.codec import signed as _signed
from rawbpf.asm.format import format_insn
from rawbpf.errors import AsmError

__tier__ = "pure"


@dataclasses.dataclass(frozen=True)
class Instruction:
    """One eBPF instruction.

    ``off`` is normalised to a signed 16-bit value and ``imm`` to a signed 32-bit value (signed 64-bit for
    ``ld_imm64``), so two instructions that encode to the same bytes compare equal. Out-of-range fields raise
    :class:`AsmError`.
    """

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.code <= 0xFF:
            raise AsmError(f"instruction: opcode {self.code:#x} does not fit in 8 bits")
        for name in ("dst", "src"):
            reg = getattr(self, name)
            if not 0 <= reg <= 15:
                raise AsmError(f"instruction {self.code:#04x}: {name} register {reg} does not fit in 4 bits")
        if not -(1 << 15) <= self.off < (1 << 16):
            raise AsmError(f"instruction {self.code:#04x}: offset {self.off} does not fit in 16 bits")
        bits = 64 if self.code == op.LD_IMM64 else 32
        if not -(1 << (bits - 1)) <= self.imm < (1 << bits):
            raise AsmError(f"instruction {self.code:#04x}: immediate {self.imm} does not fit in {bits} bits")
        object.__setattr__(self, "off", _signed(self.off, 16))
        object.__setattr__(self, "imm", _signed(self.imm, bits))

    @property
    def is_ld_imm64(self) -> bool:
        """True for the two-slot 64-bit immediate load."""
        return self.code == op.LD_IMM64

    @property
    def slots(self) -> int:
        """Number of 8-byte slots the instruction occupies (2 for ld_imm64)."""
        return 2 if self.code == op.LD_IMM64 else 1

    @property
    def size(self) -> int:
        """Encoded size in bytes."""
        return INSN_SIZE * self.slots

    @property
    def cls(self) -> int:
        """The instruction class (opcodes.LD … opcodes.ALU64)."""
        return self.code & 0x07

    def encode(self) -> bytes:
        """The instruction's bytes (16 for ld_imm64)."""
        first = codec.pack(self.code, self.dst, self.src, self.off, self.imm)
        if self.code == op.LD_IMM64:
            return first + codec.pack(0, imm=self.imm >> 32)
        return first

    def __repr__(self) -> str:
        fields = f"dst={self.dst}, src={self.src}, off={self.off}, imm={self.imm}"
        return f"Instruction({self.code:#04x}, {fields})"

    def __str__(self) -> str:
        """The instruction in llvm-objdump syntax."""
        return format_insn(self)

    def replace(self, **changes: int) -> Instruction:
        """A copy with some fields changed (validated like the constructor)."""
        return dataclasses.replace(self, **changes)


def encode(insns: Iterable[Instruction]) -> bytes:
    """Concatenate the encodings of ``insns``."""
    return b"".join(i.encode() for i in insns)


def decode_one(data: bytes, offset: int = 0) -> Instruction:
    """Decode the instruction starting at byte ``offset`` (two slots for ld_imm64)."""
    if offset < 0 or offset + INSN_SIZE > len(data):
        raise AsmError(f"decode at byte {offset}: truncated instruction ({len(data) - offset} bytes left)")
    view = memoryview(data)[offset:]
    s = codec.read(view, 0)
    if s.code != op.LD_IMM64:
        return Instruction(*s)
    index = offset // INSN_SIZE
    if offset + 2 * INSN_SIZE > len(data):
        raise AsmError(f"decode insn {index}: ld_imm64 is missing its second slot")
    s2 = codec.read(view, 1)
    if s2.code or s2.dst or s2.src or s2.off:
        raise AsmError(f"decode insn {index}: ld_imm64 second slot has non-zero reserved fields")
    return Instruction(s.code, s.dst, s.src, s.off, codec.imm64(view, 0))


def decode(data: bytes) -> List[Instruction]:
    """Decode a whole instruction stream; its length must be a multiple of 8 bytes."""
    if len(data) % INSN_SIZE:
        raise AsmError(f"decode: {len(data)} bytes is not a whole number of 8-byte instructions")
    out: List[Instruction] = []
    offset = 0
    while offset < len(data):
        insn = decode_one(data, offset)
        out.append(insn)
        offset += insn.size
    return out
