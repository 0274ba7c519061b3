"""One instruction in llvm-objdump's BPF syntax; pure, no syscalls.

Plain output matches Debian's ``llvm-objdump -d --no-show-raw-insn`` (LLVM 14) text after the address
column, so it can be diffed against it: ``r1 = *(u32 *)(r2 + 8)``, ``if r1 > 16 goto +3 <f+0x28>``,
``call 14``, ``r1 = 0 ll``. ``alu32=True`` matches ``--mattr=+alu32`` (``w1 = *(u32 *)(r2 + 8)``).
Where LLVM 14 prints ``<unknown>`` for a valid instruction, the syntax later LLVM releases use is printed
instead: the cpu v4 instructions (``r1 = (s8)r2``, ``r0 s/= r1``, ``r1 = *(s8 *)(r2 + 0)``, ``gotol +2``,
``r1 = bswap64 r1``), ``if r1 & 7 goto +1``, ``*(u32 *)(r10 - 4) = 7``, ``w1 %= w2``, 32-bit atomics in the
alu32 spelling, ``may_goto``, ``gotox``, ``addr_space_cast``, ``load_acquire``/``store_release``.
Kernel-internal forms that appear in xlated dumps use the kernel's spelling (``r0 = &(void __percpu *)(r0)``,
``nospec``).
Encodings that mean nothing print ``<unknown>``, as llvm-objdump does; formatting never raises on a
decoded instruction. One deliberate difference: LLVM 14 without alu32 prints a 32-bit fetch-and-add as
``lock *(u32 *)(r1 + 0) += r2`` (it ignores BPF_FETCH); this prints ``w2 = atomic_fetch_add(…)``.
"""

from __future__ import annotations

import bisect
from typing import Mapping, Optional, Protocol

from rawbpf.asm import opcodes as op
from rawbpf.asm.codec import INSN_SIZE
from rawbpf.asm.helpers import helper_name

__tier__ = "pure"


class Instruction(Protocol):
    """What formatting reads of an instruction (:class:`rawbpf.asm.Instruction` has it all)."""

    @property
    def code(self) -> int: ...
    @property
    def dst(self) -> int: ...
    @property
    def src(self) -> int: ...
    @property
    def off(self) -> int: ...
    @property
    def imm(self) -> int: ...
    @property
    def cls(self) -> int: ...

UNKNOWN = "<unknown>"

_ALU_OPS = {
    op.ADD: "+=", op.SUB: "-=", op.MUL: "*=", op.DIV: "/=", op.OR: "|=", op.AND: "&=", op.LSH: "<<=",
    op.RSH: ">>=", op.MOD: "%=", op.XOR: "^=", op.ARSH: "s>>=",
}
_JMP_OPS = {
    op.JEQ: "==", op.JGT: ">", op.JGE: ">=", op.JSET: "&", op.JNE: "!=", op.JSGT: "s>", op.JSGE: "s>=",
    op.JLT: "<", op.JLE: "<=", op.JSLT: "s<", op.JSLE: "s<=",
}
_ATOMIC_OPS = {op.ADD: "+=", op.OR: "|=", op.AND: "&=", op.XOR: "^="}
_ATOMIC_NAMES = {op.ADD: "add", op.OR: "or", op.AND: "and", op.XOR: "xor"}
_LD_ABS_TYPES = {op.W: "u32", op.H: "u16", op.B: "u8"}
_MEM_TYPES = {op.W: "u32", op.H: "u16", op.B: "u8", op.DW: "u64"}
_SX_TYPES = {op.W: "s32", op.H: "s16", op.B: "s8"}


class Symbols:
    """Section symbols (instruction index → name) used to print jump targets as ``<name+0xOFF>``.

    llvm-objdump names a target after the nearest symbol at or before its address, and computes the address
    modulo 2**64, so a jump before the section start still names the first symbol with a huge offset.
    """

    def __init__(self, symbols: Mapping[int, str]) -> None:
        index = sorted(symbols)
        self._addresses = [(i * INSN_SIZE) % (1 << 64) for i in index]
        self._names = [symbols[i] for i in index]
        order = sorted(range(len(index)), key=lambda k: self._addresses[k])
        self._addresses = [self._addresses[k] for k in order]
        self._names = [self._names[k] for k in order]

    def describe(self, target_slot: int) -> str:
        address = (target_slot * INSN_SIZE) % (1 << 64)
        pos = bisect.bisect_right(self._addresses, address) - 1
        if pos < 0:
            return ""
        delta = address - self._addresses[pos]
        name = self._names[pos]
        return f" <{name}>" if delta == 0 else f" <{name}+{delta:#x}>"


def _mem(base: int, off: int) -> str:
    return f"r{base} + {off}" if off >= 0 else f"r{base} - {-off}"


def _rel(off: int) -> str:
    return f"+{off}" if off >= 0 else str(off)


def _alu(insn: Instruction) -> str:
    wide = insn.cls == op.ALU64
    p = "r" if wide else "w"
    code, dst, src, off, imm = insn.code, insn.dst, insn.src, insn.off, insn.imm
    operation = code & 0xF0
    operand = f"{p}{src}" if code & op.X else str(imm)
    if operation == op.NEG:
        return UNKNOWN if code & op.X else f"{p}{dst} = -{p}{dst}"
    if operation == op.END:
        if imm not in (16, 32, 64):
            return UNKNOWN
        if wide:
            return UNKNOWN if code & op.X else f"r{dst} = bswap{imm} r{dst}"
        return f"r{dst} = {'be' if code & op.X else 'le'}{imm} r{dst}"
    if operation == op.MOV:
        if off == 0 or not code & op.X:
            return f"{p}{dst} = {operand}"
        if off in (8, 16) or (off == 32 and wide):
            return f"{p}{dst} = (s{off}){p}{src}"
        if off == 1 and wide:
            return f"r{dst} = addr_space_cast(r{src}, {(imm >> 16) & 0xFFFF}, {imm & 0xFFFF})"
        if off == -1 and wide:  # kernel-internal (xlated only): per-CPU address of a per-CPU pointer
            return f"r{dst} = &(void __percpu *)(r{src})"
        return UNKNOWN
    sym = _ALU_OPS.get(operation)
    if sym is None:
        return UNKNOWN
    if operation in (op.DIV, op.MOD):
        if off == 1:
            sym = "s" + sym
        elif off != 0:
            return UNKNOWN
    return f"{p}{dst} {sym} {operand}"


def _jmp(insn: Instruction, index: int, symbols: Optional[Symbols]) -> str:
    code, dst, src, off, imm = insn.code, insn.dst, insn.src, insn.off, insn.imm
    wide = insn.cls == op.JMP
    operation = code & 0xF0

    def target(rel: int) -> str:
        return _rel(rel) + (symbols.describe(index + 1 + rel) if symbols is not None else "")

    if operation == op.JA:
        if code & op.X:  # indirect jump through a jump table (BPF_MAP_TYPE_INSN_ARRAY kernels)
            return f"gotox r{dst}" if wide else UNKNOWN
        return f"goto {target(off)}" if wide else f"gotol {target(imm)}"
    if operation == op.CALL:
        if not wide:
            return UNKNOWN
        return f"callx r{imm}" if code & op.X else f"call {imm}"
    if operation == op.EXIT:
        return "exit" if wide and not code & op.X else UNKNOWN
    if operation == op.JCOND:
        return f"may_goto {target(off)}" if wide and not code & op.X and src == 0 else UNKNOWN
    sym = _JMP_OPS.get(operation)
    if sym is None:
        return UNKNOWN
    p = "r" if wide else "w"
    operand = f"{p}{src}" if code & op.X else str(imm)
    return f"if {p}{dst} {sym} {operand} goto {target(off)}"


def _ld(insn: Instruction) -> str:
    code = insn.code
    if code == op.LD_IMM64:
        if insn.src == 0:
            return f"r{insn.dst} = {insn.imm} ll"
        lo = insn.imm & 0xFFFFFFFF
        lo = lo - (1 << 32) if lo >> 31 else lo
        return f"ld_pseudo\tr{insn.dst}, {insn.src}, {lo}"
    kind = _LD_ABS_TYPES.get(code & 0x18)
    if kind is None:
        return UNKNOWN
    if code & 0xE0 == op.ABS:
        return f"r0 = *({kind} *)skb[{insn.imm}]"
    if code & 0xE0 == op.IND:
        return f"r0 = *({kind} *)skb[r{insn.src}]"
    return UNKNOWN


def _ldx(insn: Instruction, alu32: bool) -> str:
    size, mode = insn.code & 0x18, insn.code & 0xE0
    addr = _mem(insn.src, insn.off)
    if mode == op.MEM:
        p = "w" if alu32 and size != op.DW else "r"
        return f"{p}{insn.dst} = *({_MEM_TYPES[size]} *)({addr})"
    if mode == op.MEMSX and size != op.DW:
        return f"r{insn.dst} = *({_SX_TYPES[size]} *)({addr})"
    return UNKNOWN


def _st(insn: Instruction) -> str:
    if insn.code == op.ST | op.NOSPEC:  # kernel-internal (xlated only): speculation barrier
        return "nospec"
    if insn.code & 0xE0 != op.MEM:
        return UNKNOWN
    return f"*({_MEM_TYPES[insn.code & 0x18]} *)({_mem(insn.dst, insn.off)}) = {insn.imm}"


def _stx(insn: Instruction, alu32: bool) -> str:
    size, mode = insn.code & 0x18, insn.code & 0xE0
    dst, src, imm = insn.dst, insn.src, insn.imm
    addr = _mem(dst, insn.off)
    kind = _MEM_TYPES[size]
    if mode == op.MEM:
        p = "w" if alu32 and size != op.DW else "r"
        return f"*({kind} *)({addr}) = {p}{src}"
    if mode != op.ATOMIC:
        return UNKNOWN
    p = "r" if size == op.DW else "w"
    if imm == op.LOAD_ACQ:
        return f"{p}{dst} = load_acquire(({kind} *)({_mem(src, insn.off)}))"
    if imm == op.STORE_REL:
        return f"store_release(({kind} *)({addr}), {p}{src})"
    if size not in (op.W, op.DW):
        return UNKNOWN
    if imm == op.XCHG:
        return f"{p}{src} = xchg{'_64' if size == op.DW else '32_32'}({addr}, {p}{src})"
    if imm == op.CMPXCHG:
        return f"{p}0 = cmpxchg{'_64' if size == op.DW else '32_32'}({addr}, {p}0, {p}{src})"
    operation, fetch = imm & ~op.FETCH, imm & op.FETCH
    if operation not in _ATOMIC_OPS or imm & ~0xF1:
        return UNKNOWN
    if fetch:
        return f"{p}{src} = atomic_fetch_{_ATOMIC_NAMES[operation]}(({kind} *)({addr}), {p}{src})"
    # LLVM 14 decodes only the 32-bit lock add without alu32, and then spells its operand rN
    if size == op.W and operation == op.ADD and not alu32:
        p = "r"
    return f"lock *({kind} *)({addr}) {_ATOMIC_OPS[operation]} {p}{src}"


def format_insn(insn: Instruction, *, index: int = 0, symbols: Optional[Mapping[int, str]] = None,
                alu32: bool = False) -> str:
    """One instruction in llvm-objdump syntax.

    ``index`` is the instruction's slot index within its section; with ``symbols`` (slot index → name, as
    in the ELF symbol table) jump targets get llvm-objdump's ``<name+0xOFF>`` suffix.
    """
    return _format(insn, index, Symbols(symbols) if symbols else None, alu32)


def _format(insn: Instruction, index: int, symbols: Optional[Symbols], alu32: bool) -> str:
    cls = insn.cls
    if cls in (op.ALU, op.ALU64):
        return _alu(insn)
    if cls in (op.JMP, op.JMP32):
        return _jmp(insn, index, symbols)
    if cls == op.LD:
        return _ld(insn)
    if cls == op.LDX:
        return _ldx(insn, alu32)
    if cls == op.ST:
        return _st(insn)
    return _stx(insn, alu32)


def describe(insn: Instruction, *, maps: Optional[Mapping[int, str]] = None,
             helpers: bool = True) -> Optional[str]:
    """A human comment for ``insn``: the helper a call names (with ``helpers``), the map an ld_imm64
    loads, or None."""
    if insn.code == op.JMP | op.CALL and insn.src == 0:
        return helper_name(insn.imm) if helpers else None
    if insn.code == op.JMP | op.CALL and insn.src == op.PSEUDO_KFUNC_CALL:
        return f"kfunc btf_id {insn.imm}"
    if insn.code == op.LD_IMM64 and insn.src:
        lo, hi = insn.imm & 0xFFFFFFFF, (insn.imm >> 32) & 0xFFFFFFFF
        name = (maps or {}).get(lo)
        ref = f"map {name!r}" if name else f"map {lo}"
        if insn.src in (op.PSEUDO_MAP_FD, op.PSEUDO_MAP_IDX):
            return ref
        if insn.src in (op.PSEUDO_MAP_VALUE, op.PSEUDO_MAP_IDX_VALUE):
            return f"{ref} value + {hi}"
        if insn.src == op.PSEUDO_BTF_ID:
            return f"btf_id {lo}"
    return None


