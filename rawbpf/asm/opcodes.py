"""eBPF opcode fields (instruction classes, ALU/JMP operations, memory sizes and modes); pure, no syscalls.

The numbers are the kernel's, from include/uapi/linux/bpf.h and bpf_common.h. The 8-bit ``code`` of an
instruction is ``class | op | source`` for ALU/JMP classes and ``class | size | mode`` for load/store classes.
"""

from __future__ import annotations

__tier__ = "pure"

# instruction classes (code & 0x07)
LD = 0x00
LDX = 0x01
ST = 0x02
STX = 0x03
ALU = 0x04
JMP = 0x05
JMP32 = 0x06
ALU64 = 0x07

# source operand (code & 0x08)
K = 0x00  # immediate
X = 0x08  # register
TO_LE = 0x00  # END: convert to little endian
TO_BE = 0x08  # END: convert to big endian

# ALU operations (code & 0xf0)
ADD = 0x00
SUB = 0x10
MUL = 0x20
DIV = 0x30
OR = 0x40
AND = 0x50
LSH = 0x60
RSH = 0x70
NEG = 0x80
MOD = 0x90
XOR = 0xA0
MOV = 0xB0
ARSH = 0xC0
END = 0xD0

# jump operations (code & 0xf0)
JA = 0x00
JEQ = 0x10
JGT = 0x20
JGE = 0x30
JSET = 0x40
JNE = 0x50
JSGT = 0x60
JSGE = 0x70
CALL = 0x80
EXIT = 0x90
JLT = 0xA0
JLE = 0xB0
JSLT = 0xC0
JSLE = 0xD0
JCOND = 0xE0

# memory sizes (code & 0x18)
W = 0x00
H = 0x08
B = 0x10
DW = 0x18

# memory modes (code & 0xe0)
IMM = 0x00
ABS = 0x20
IND = 0x40
MEM = 0x60
MEMSX = 0x80
ATOMIC = 0xC0
NOSPEC = 0xC0  # with class ST: kernel-internal speculation barrier
ADDR_PERCPU = -1  # off of an ALU64 MOV X: kernel-internal per-CPU address move

# atomic operations (imm of BPF_STX | BPF_ATOMIC)
FETCH = 0x01
XCHG = 0xE0 | FETCH
CMPXCHG = 0xF0 | FETCH
LOAD_ACQ = 0x100
STORE_REL = 0x110

# src_reg of ld_imm64 (BPF_LD | BPF_IMM | BPF_DW)
PSEUDO_MAP_FD = 1
PSEUDO_MAP_VALUE = 2
PSEUDO_BTF_ID = 3
PSEUDO_FUNC = 4
PSEUDO_MAP_IDX = 5
PSEUDO_MAP_IDX_VALUE = 6

# src_reg of BPF_JMP | BPF_CALL
PSEUDO_CALL = 1
PSEUDO_KFUNC_CALL = 2

LD_IMM64 = LD | IMM | DW  # 0x18: the one 16-byte instruction

SIZE_BYTES = {B: 1, H: 2, W: 4, DW: 8}
SIZE_BITS = {B: 8, H: 16, W: 32, DW: 64}


def insn_class(code: int) -> int:
    """The instruction class (low three bits of the opcode)."""
    return code & 0x07


def op(code: int) -> int:
    """The ALU/JMP operation (high four bits)."""
    return code & 0xF0


def source(code: int) -> int:
    """K (immediate) or X (register) operand (bit 3)."""
    return code & 0x08


def size(code: int) -> int:
    """The load/store size field."""
    return code & 0x18


def mode(code: int) -> int:
    """The load/store mode field."""
    return code & 0xE0
