"""The assembler DSL: build eBPF programs in Python with registers, labels, helpers and maps by name; pure.

Example (adds one to the value under key 0 of a map named "counts" each time it runs)::

    p = Assembler()
    p.mov(R1, 0).stx_w(R10, -4, R1)          # key = 0 on the stack
    p.ld_map_fd(R1, "counts")                # resolved by assemble(maps={"counts": fd})
    p.mov(R2, R10).add(R2, -4)
    p.call("bpf_map_lookup_elem")
    p.jeq(R0, 0, "out")
    p.mov(R1, 1).atomic_add(R0, 0, R1)
    p.label("out")
    p.mov(R0, 0).exit()
    insns = p.assemble(maps={"counts": counts.fd})

Registers are ``R0``…``R10`` (64-bit) and ``W0``…``W10`` (their 32-bit halves): an ALU operation or a
conditional jump on a ``W`` register is the 32-bit (BPF_ALU / BPF_JMP32) form. Every method returns the
assembler so calls chain. Labels may be used before they are defined; ``assemble`` resolves them into jump
offsets (16-bit ``off``, or the 32-bit ``imm`` of ``gotol``), bpf-to-bpf call and callback offsets, and map
names into the fds given. Mistakes raise :class:`AsmError` naming the instruction and label.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Union

from rawbpf.asm import opcodes as op
from rawbpf.asm.disasm import disassemble_indexed
from rawbpf.asm.helpers import MAX_HELPER_ID, helper_id
from rawbpf.asm.insn import Instruction, encode
from rawbpf.errors import AsmError

__tier__ = "pure"


class Reg:
    """A register operand: ``num`` 0…10 and whether it is the 64-bit (R) or 32-bit (W) view."""

    __slots__ = ("num", "wide")

    def __init__(self, num: int, wide: bool = True) -> None:
        self.num = num
        self.wide = wide

    def __repr__(self) -> str:
        return f"{'R' if self.wide else 'W'}{self.num}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reg) and (self.num, self.wide) == (other.num, other.wide)

    def __hash__(self) -> int:
        return hash((self.num, self.wide))

    @property
    def w(self) -> Reg:
        """The 32-bit view of this register."""
        return Reg(self.num, False)

    @property
    def r(self) -> Reg:
        """The 64-bit view of this register."""
        return Reg(self.num, True)


R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = (Reg(i) for i in range(11))
W0, W1, W2, W3, W4, W5, W6, W7, W8, W9, W10 = (Reg(i, False) for i in range(11))
FP = R10

Operand = Union[Reg, int]
Target = Union[str, int]
MapRef = Union[str, int]

_SIZES = {"b": op.B, "h": op.H, "w": op.W, "dw": op.DW, 1: op.B, 2: op.H, 4: op.W, 8: op.DW}
_INT32 = (-(1 << 31), (1 << 31) - 1)


@dataclasses.dataclass(frozen=True)
class Relocation:
    """A reference ``assemble`` resolves: a label (jump, call, callback) or a map name (ld_imm64)."""

    slot: int          # slot index of the instruction
    kind: str          # "jump", "gotol", "call", "func", "map"
    target: str        # label or map name
    what: str          # mnemonic, for messages


@dataclasses.dataclass
class _Item:
    insn: Instruction
    reloc: Optional[Relocation] = None


class Assembler:
    """Accumulates instructions and labels; :meth:`assemble` produces the program bytes."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._items: List[_Item] = []
        self._labels: Dict[str, int] = {}
        self._slots = 0

    # ---- bookkeeping -----------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of 8-byte slots emitted so far (ld_imm64 counts two)."""
        return self._slots

    def __repr__(self) -> str:
        return f"<Assembler {self.name or 'program'}: {self._slots} slots, {len(self._labels)} labels>"

    @property
    def labels(self) -> Dict[str, int]:
        """Label name → slot index."""
        return dict(self._labels)

    @property
    def relocations(self) -> List[Relocation]:
        """Every label and map reference, for loaders that patch instructions themselves."""
        return [item.reloc for item in self._items if item.reloc is not None]

    def _ctx(self, what: str) -> str:
        return f"{what} at insn {self._slots}"

    def _emit(self, insn: Instruction, reloc: Optional[Relocation] = None) -> Assembler:
        self._items.append(_Item(insn, reloc))
        self._slots += insn.slots
        return self

    def _make(self, what: str, **fields: int) -> Instruction:
        try:
            return Instruction(**fields)
        except AsmError as err:
            raise AsmError(f"{self._ctx(what)}: {str(err).split(': ', 1)[-1]}") from err

    def _reg(self, what: str, value: object, role: str) -> Reg:
        if isinstance(value, Reg) and 0 <= value.num <= 10:
            return value
        raise AsmError(f"{self._ctx(what)}: bad {role} register {value!r} (use R0..R10 or W0..W10)")

    def _imm(self, what: str, value: object, wide: bool = True) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise AsmError(f"{self._ctx(what)}: expected a register or an integer, got {value!r}")
        high = _INT32[1] if wide else (1 << 32) - 1
        if not _INT32[0] <= value <= high:
            hint = " (use ld_imm64 for 64-bit constants)" if wide else ""
            raise AsmError(f"{self._ctx(what)}: immediate {value} does not fit in 32 bits{hint}")
        return value

    def _off(self, what: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not -(1 << 15) <= value < (1 << 15):
            raise AsmError(f"{self._ctx(what)}: offset {value!r} does not fit in a signed 16-bit field")
        return value

    def _label_ref(self, what: str, target: object) -> str:
        if not isinstance(target, str) or not target:
            raise AsmError(f"{self._ctx(what)}: target must be a label name or an offset, got {target!r}")
        return target

    def _to(self, what: str, kind: str, insn: Instruction, target: object) -> Assembler:
        """Emit a branching ``insn`` to a label (resolved later) or to a relative slot offset given as int."""
        if isinstance(target, int) and not isinstance(target, bool):
            if kind == "jump":
                return self._emit(insn.replace(off=self._off(what, target)))
            return self._emit(insn.replace(imm=self._imm(what, target)))
        label = self._label_ref(what, target)
        return self._emit(insn, Relocation(self._slots, kind, label, what))

    def label(self, name: str) -> Assembler:
        """Define ``name`` at the next instruction."""
        if not isinstance(name, str) or not name:
            raise AsmError(f"label {name!r}: a label is a non-empty string")
        if name in self._labels:
            first = self._labels[name]
            raise AsmError(f"label {name!r}: defined twice (insn {first} and insn {self._slots})")
        self._labels[name] = self._slots
        return self

    def raw(self, insn: Instruction) -> Assembler:
        """Emit a ready-made instruction as is."""
        if not isinstance(insn, Instruction):
            raise AsmError(f"{self._ctx('raw')}: expected an Instruction, got {type(insn).__name__}")
        return self._emit(insn)

    # ---- ALU -------------------------------------------------------------------------------------------

    def _alu(self, what: str, operation: int, dst: object, src: object, off: int = 0) -> Assembler:
        d = self._reg(what, dst, "destination")
        cls = op.ALU64 if d.wide else op.ALU
        if isinstance(src, Reg):
            s = self._reg(what, src, "source")
            if s.wide != d.wide:
                raise AsmError(f"{self._ctx(what)}: mixes {d!r} and {s!r}; use registers of one width")
            return self._emit(self._make(what, code=cls | operation | op.X, dst=d.num, src=s.num, off=off))
        imm = self._imm(what, src, d.wide)
        return self._emit(self._make(what, code=cls | operation | op.K, dst=d.num, off=off, imm=imm))

    def mov(self, dst: Reg, src: Operand) -> Assembler:
        """dst = src (register or 32-bit immediate, sign-extended for R registers)."""
        return self._alu("mov", op.MOV, dst, src)

    def add(self, dst: Reg, src: Operand) -> Assembler:
        return self._alu("add", op.ADD, dst, src)

    def sub(self, dst: Reg, src: Operand) -> Assembler:
        return self._alu("sub", op.SUB, dst, src)

    def mul(self, dst: Reg, src: Operand) -> Assembler:
        return self._alu("mul", op.MUL, dst, src)

    def div(self, dst: Reg, src: Operand) -> Assembler:
        """Unsigned division (x / 0 = 0)."""
        return self._alu("div", op.DIV, dst, src)

    def sdiv(self, dst: Reg, src: Operand) -> Assembler:
        """Signed division (cpu v4, Linux 6.6+)."""
        return self._alu("sdiv", op.DIV, dst, src, off=1)

    def mod(self, dst: Reg, src: Operand) -> Assembler:
        """Unsigned modulo (x % 0 = x)."""
        return self._alu("mod", op.MOD, dst, src)

    def smod(self, dst: Reg, src: Operand) -> Assembler:
        """Signed modulo (cpu v4, Linux 6.6+)."""
        return self._alu("smod", op.MOD, dst, src, off=1)

    def or_(self, dst: Reg, src: Operand) -> Assembler:
        return self._alu("or", op.OR, dst, src)

    def and_(self, dst: Reg, src: Operand) -> Assembler:
        return self._alu("and", op.AND, dst, src)

    def xor(self, dst: Reg, src: Operand) -> Assembler:
        return self._alu("xor", op.XOR, dst, src)

    def lsh(self, dst: Reg, src: Operand) -> Assembler:
        return self._alu("lsh", op.LSH, dst, src)

    def rsh(self, dst: Reg, src: Operand) -> Assembler:
        """Logical right shift."""
        return self._alu("rsh", op.RSH, dst, src)

    def arsh(self, dst: Reg, src: Operand) -> Assembler:
        """Arithmetic (sign-preserving) right shift."""
        return self._alu("arsh", op.ARSH, dst, src)

    def neg(self, dst: Reg) -> Assembler:
        d = self._reg("neg", dst, "destination")
        return self._emit(self._make("neg", code=(op.ALU64 if d.wide else op.ALU) | op.NEG, dst=d.num))

    def movsx(self, dst: Reg, src: Reg, bits: int) -> Assembler:
        """dst = (s<bits>)src: sign-extending move (cpu v4); bits 8, 16 or (for R registers) 32."""
        d = self._reg("movsx", dst, "destination")
        if bits not in ((8, 16, 32) if d.wide else (8, 16)):
            raise AsmError(f"{self._ctx('movsx')}: cannot sign-extend from {bits} bits into {d!r}")
        if not isinstance(src, Reg):
            raise AsmError(f"{self._ctx('movsx')}: source must be a register, got {src!r}")
        return self._alu("movsx", op.MOV, dst, src, off=bits)

    def _end(self, what: str, code: int, dst: object, bits: int) -> Assembler:
        d = self._reg(what, dst, "destination")
        if bits not in (16, 32, 64):
            raise AsmError(f"{self._ctx(what)}: byte swap width must be 16, 32 or 64, got {bits}")
        return self._emit(self._make(what, code=code, dst=d.num, imm=bits))

    def be(self, dst: Reg, bits: int) -> Assembler:
        """dst = to-big-endian(dst) of width bits (a byte swap on little-endian hosts)."""
        return self._end("be", op.ALU | op.END | op.TO_BE, dst, bits)

    def le(self, dst: Reg, bits: int) -> Assembler:
        """dst = to-little-endian(dst): truncation to ``bits`` on little-endian hosts."""
        return self._end("le", op.ALU | op.END | op.TO_LE, dst, bits)

    def bswap(self, dst: Reg, bits: int) -> Assembler:
        """Unconditional byte swap (cpu v4, BPF_ALU64 | BPF_END)."""
        return self._end("bswap", op.ALU64 | op.END, dst, bits)

    def addr_space_cast(self, dst: Reg, src: Reg, dst_as: int, src_as: int) -> Assembler:
        """Arena pointer cast between address spaces (Linux 6.9+)."""
        d, s = self._reg("addr_space_cast", dst, "destination"), self._reg("addr_space_cast", src, "source")
        imm = ((dst_as & 0xFFFF) << 16) | (src_as & 0xFFFF)
        return self._emit(self._make("addr_space_cast", code=op.ALU64 | op.MOV | op.X, dst=d.num, src=s.num,
                                     off=1, imm=imm))

    # ---- jumps and calls -------------------------------------------------------------------------------

    def _jump(self, what: str, operation: int, dst: object, src: object, target: object) -> Assembler:
        d = self._reg(what, dst, "compared")
        cls = op.JMP if d.wide else op.JMP32
        if isinstance(src, Reg):
            s = self._reg(what, src, "source")
            if s.wide != d.wide:
                raise AsmError(f"{self._ctx(what)}: compares {d!r} with {s!r}; use registers of one width")
            insn = self._make(what, code=cls | operation | op.X, dst=d.num, src=s.num)
        else:
            insn = self._make(what, code=cls | operation | op.K, dst=d.num, imm=self._imm(what, src, d.wide))
        return self._to(what, "jump", insn, target)

    def ja(self, target: Target) -> Assembler:
        """goto target (a label, or a relative offset in slots; 16 bits)."""
        return self._to("ja", "jump", Instruction(op.JMP | op.JA), target)

    def gotol(self, target: Target) -> Assembler:
        """goto target with a 32-bit offset (BPF_JMP32 | BPF_JA, cpu v4)."""
        return self._to("gotol", "gotol", Instruction(op.JMP32 | op.JA), target)

    def jeq(self, dst: Reg, src: Operand, target: Target) -> Assembler:
        return self._jump("jeq", op.JEQ, dst, src, target)

    def jne(self, dst: Reg, src: Operand, target: Target) -> Assembler:
        return self._jump("jne", op.JNE, dst, src, target)

    def jgt(self, dst: Reg, src: Operand, target: Target) -> Assembler:
        return self._jump("jgt", op.JGT, dst, src, target)

    def jge(self, dst: Reg, src: Operand, target: Target) -> Assembler:
        return self._jump("jge", op.JGE, dst, src, target)

    def jlt(self, dst: Reg, src: Operand, target: Target) -> Assembler:
        return self._jump("jlt", op.JLT, dst, src, target)

    def jle(self, dst: Reg, src: Operand, target: Target) -> Assembler:
        return self._jump("jle", op.JLE, dst, src, target)

    def jsgt(self, dst: Reg, src: Operand, target: Target) -> Assembler:
        return self._jump("jsgt", op.JSGT, dst, src, target)

    def jsge(self, dst: Reg, src: Operand, target: Target) -> Assembler:
        return self._jump("jsge", op.JSGE, dst, src, target)

    def jslt(self, dst: Reg, src: Operand, target: Target) -> Assembler:
        return self._jump("jslt", op.JSLT, dst, src, target)

    def jsle(self, dst: Reg, src: Operand, target: Target) -> Assembler:
        return self._jump("jsle", op.JSLE, dst, src, target)

    def jset(self, dst: Reg, src: Operand, target: Target) -> Assembler:
        """goto target if dst & src."""
        return self._jump("jset", op.JSET, dst, src, target)

    def may_goto(self, target: Target) -> Assembler:
        """Bounded-loop escape hatch (BPF_JMP | BPF_JCOND, Linux 6.9+)."""
        return self._to("may_goto", "jump", Instruction(op.JMP | op.JCOND), target)

    def call(self, helper: Union[str, int]) -> Assembler:
        """Call a BPF helper by name (``"bpf_map_lookup_elem"`` or ``"map_lookup_elem"``) or id."""
        if isinstance(helper, str):
            try:
                number = helper_id(helper)
            except AsmError as err:
                raise AsmError(f"{self._ctx('call')}: {str(err).split(': ', 1)[-1]}: {helper!r}") from err
        elif isinstance(helper, int) and not isinstance(helper, bool) and 0 < helper <= MAX_HELPER_ID:
            number = helper
        else:
            raise AsmError(f"{self._ctx('call')}: {helper!r} is not a helper name or id")
        return self._emit(Instruction(op.JMP | op.CALL, imm=number))

    def call_label(self, target: Target) -> Assembler:
        """bpf-to-bpf call of the subprogram at label ``target`` (or a relative slot offset)."""
        return self._to("call", "call", Instruction(op.JMP | op.CALL, src=op.PSEUDO_CALL), target)

    def gotox(self, reg: Reg) -> Assembler:
        """Indirect jump to the instruction address in ``reg`` (read from a BPF_MAP_TYPE_INSN_ARRAY)."""
        r = self._reg("gotox", reg, "target")
        return self._emit(Instruction(op.JMP | op.JA | op.X, dst=r.num))

    def callx(self, reg: Reg) -> Assembler:
        """Indirect call through a register (encoded in imm, as LLVM does)."""
        r = self._reg("callx", reg, "target")
        return self._emit(Instruction(op.JMP | op.CALL | op.X, imm=r.num))

    def call_kfunc(self, btf_id: int, module: int = 0) -> Assembler:
        """Call a kernel function by BTF id; ``module`` indexes its BTF object in the program's fd_array."""
        insn = self._make("call_kfunc", code=op.JMP | op.CALL, src=op.PSEUDO_KFUNC_CALL, off=module,
                          imm=btf_id)
        return self._emit(insn)

    def exit(self) -> Assembler:
        return self._emit(Instruction(op.JMP | op.EXIT))

    # ---- loads and stores ------------------------------------------------------------------------------

    def _mem(self, what: str, cls: int, size: object, mode: int, dst: object, src: object, off: int,
             imm: int = 0) -> Assembler:
        if size not in _SIZES:
            raise AsmError(f"{self._ctx(what)}: bad size {size!r} (use 'b', 'h', 'w' or 'dw')")
        d = self._reg(what, dst, "destination")
        s = self._reg(what, src, "source") if src is not None else None
        insn = self._make(what, code=cls | _SIZES[size] | mode, dst=d.num, src=s.num if s else 0,
                          off=self._off(what, off), imm=imm)
        return self._emit(insn)

    def ldx(self, size: Union[str, int], dst: Reg, src: Reg, off: int = 0) -> Assembler:
        """dst = *(u<size> *)(src + off); size is 'b', 'h', 'w', 'dw' (or 1, 2, 4, 8)."""
        return self._mem("ldx", op.LDX, size, op.MEM, dst, src, off)

    def ldsx(self, size: Union[str, int], dst: Reg, src: Reg, off: int = 0) -> Assembler:
        """dst = *(s<size> *)(src + off), sign-extended to 64 bits (cpu v4); size 'b', 'h' or 'w'."""
        if _SIZES.get(size) == op.DW:
            raise AsmError(f"{self._ctx('ldsx')}: sign-extending loads are 'b', 'h' or 'w' wide")
        return self._mem("ldsx", op.LDX, size, op.MEMSX, dst, src, off)

    def stx(self, size: Union[str, int], dst: Reg, off: int, src: Reg) -> Assembler:
        """*(u<size> *)(dst + off) = src."""
        return self._mem("stx", op.STX, size, op.MEM, dst, src, off)

    def st(self, size: Union[str, int], dst: Reg, off: int, imm: int) -> Assembler:
        """*(u<size> *)(dst + off) = imm."""
        return self._mem("st", op.ST, size, op.MEM, dst, None, off, self._imm("st", imm))

    def ldx_b(self, dst: Reg, src: Reg, off: int = 0) -> Assembler:
        return self.ldx("b", dst, src, off)

    def ldx_h(self, dst: Reg, src: Reg, off: int = 0) -> Assembler:
        return self.ldx("h", dst, src, off)

    def ldx_w(self, dst: Reg, src: Reg, off: int = 0) -> Assembler:
        return self.ldx("w", dst, src, off)

    def ldx_dw(self, dst: Reg, src: Reg, off: int = 0) -> Assembler:
        return self.ldx("dw", dst, src, off)

    def ldsx_b(self, dst: Reg, src: Reg, off: int = 0) -> Assembler:
        return self.ldsx("b", dst, src, off)

    def ldsx_h(self, dst: Reg, src: Reg, off: int = 0) -> Assembler:
        return self.ldsx("h", dst, src, off)

    def ldsx_w(self, dst: Reg, src: Reg, off: int = 0) -> Assembler:
        return self.ldsx("w", dst, src, off)

    def stx_b(self, dst: Reg, off: int, src: Reg) -> Assembler:
        return self.stx("b", dst, off, src)

    def stx_h(self, dst: Reg, off: int, src: Reg) -> Assembler:
        return self.stx("h", dst, off, src)

    def stx_w(self, dst: Reg, off: int, src: Reg) -> Assembler:
        return self.stx("w", dst, off, src)

    def stx_dw(self, dst: Reg, off: int, src: Reg) -> Assembler:
        return self.stx("dw", dst, off, src)

    def st_b(self, dst: Reg, off: int, imm: int) -> Assembler:
        return self.st("b", dst, off, imm)

    def st_h(self, dst: Reg, off: int, imm: int) -> Assembler:
        return self.st("h", dst, off, imm)

    def st_w(self, dst: Reg, off: int, imm: int) -> Assembler:
        return self.st("w", dst, off, imm)

    def st_dw(self, dst: Reg, off: int, imm: int) -> Assembler:
        return self.st("dw", dst, off, imm)

    def ld_abs(self, size: Union[str, int], imm: int) -> Assembler:
        """Legacy packet load r0 = skb[imm] (socket filters)."""
        return self._mem("ld_abs", op.LD, size, op.ABS, R0, None, 0, self._imm("ld_abs", imm))

    def ld_ind(self, size: Union[str, int], src: Reg, imm: int = 0) -> Assembler:
        """Legacy packet load r0 = skb[src + imm] (socket filters)."""
        return self._mem("ld_ind", op.LD, size, op.IND, R0, src, 0, self._imm("ld_ind", imm))

    # ---- atomics (size from the source register: R = 64-bit, W = 32-bit) -------------------------------

    def _atomic(self, what: str, dst: object, off: int, src: object, imm: int) -> Assembler:
        d = self._reg(what, dst, "address")
        s = self._reg(what, src, "source")
        size = op.DW if s.wide else op.W
        return self._emit(self._make(what, code=op.STX | size | op.ATOMIC, dst=d.num, src=s.num,
                                     off=self._off(what, off), imm=imm))

    def atomic_add(self, dst: Reg, off: int, src: Reg, *, fetch: bool = False) -> Assembler:
        """lock *(dst + off) += src; with fetch=True src receives the old value."""
        return self._atomic("atomic_add", dst, off, src, op.ADD | (op.FETCH if fetch else 0))

    def atomic_or(self, dst: Reg, off: int, src: Reg, *, fetch: bool = False) -> Assembler:
        return self._atomic("atomic_or", dst, off, src, op.OR | (op.FETCH if fetch else 0))

    def atomic_and(self, dst: Reg, off: int, src: Reg, *, fetch: bool = False) -> Assembler:
        return self._atomic("atomic_and", dst, off, src, op.AND | (op.FETCH if fetch else 0))

    def atomic_xor(self, dst: Reg, off: int, src: Reg, *, fetch: bool = False) -> Assembler:
        return self._atomic("atomic_xor", dst, off, src, op.XOR | (op.FETCH if fetch else 0))

    def xchg(self, dst: Reg, off: int, src: Reg) -> Assembler:
        """src = xchg(*(dst + off), src)."""
        return self._atomic("xchg", dst, off, src, op.XCHG)

    def cmpxchg(self, dst: Reg, off: int, src: Reg) -> Assembler:
        """r0 = cmpxchg(*(dst + off), r0, src): store src if the memory equals r0; r0 gets the old value."""
        return self._atomic("cmpxchg", dst, off, src, op.CMPXCHG)

    def load_acquire(self, size: Union[str, int], dst: Reg, src: Reg, off: int = 0) -> Assembler:
        """dst = load_acquire(*(u<size> *)(src + off)) (Linux 6.15+)."""
        return self._mem("load_acquire", op.STX, size, op.ATOMIC, dst, src, off, op.LOAD_ACQ)

    def store_release(self, size: Union[str, int], dst: Reg, off: int, src: Reg) -> Assembler:
        """store_release(*(u<size> *)(dst + off), src) (Linux 6.15+)."""
        return self._mem("store_release", op.STX, size, op.ATOMIC, dst, src, off, op.STORE_REL)

    # ---- 64-bit immediates -----------------------------------------------------------------------------

    def _ld64(self, what: str, dst: object, src: int, imm: int,
              reloc: Optional[Relocation] = None) -> Assembler:
        d = self._reg(what, dst, "destination")
        if not d.wide:
            raise AsmError(f"{self._ctx(what)}: ld_imm64 loads a 64-bit register, not {d!r}")
        return self._emit(self._make(what, code=op.LD_IMM64, dst=d.num, src=src, imm=imm), reloc)

    def ld_imm64(self, dst: Reg, value: int) -> Assembler:
        """dst = a 64-bit constant."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise AsmError(f"{self._ctx('ld_imm64')}: expected an integer, got {value!r}")
        return self._ld64("ld_imm64", dst, 0, value)

    def _map(self, what: str, dst: object, ref: object, src: int, offset: int = 0) -> Assembler:
        if not 0 <= offset < (1 << 32):
            raise AsmError(f"{self._ctx(what)}: map value offset {offset} out of range")
        if isinstance(ref, str) and ref:
            return self._ld64(what, dst, src, offset << 32, Relocation(self._slots, "map", ref, what))
        if isinstance(ref, int) and not isinstance(ref, bool) and ref >= 0:
            return self._ld64(what, dst, src, (offset << 32) | ref)
        raise AsmError(f"{self._ctx(what)}: map must be a name or an fd, got {ref!r}")

    def ld_map_fd(self, dst: Reg, map_: MapRef) -> Assembler:
        """dst = pointer to map ``map_`` (a name resolved by assemble(maps=…), or an fd)."""
        return self._map("ld_map_fd", dst, map_, op.PSEUDO_MAP_FD)

    def ld_map_value(self, dst: Reg, map_: MapRef, offset: int = 0) -> Assembler:
        """dst = address of byte ``offset`` of an array map's single value (global data)."""
        return self._map("ld_map_value", dst, map_, op.PSEUDO_MAP_VALUE, offset)

    def ld_map_idx(self, dst: Reg, index: int) -> Assembler:
        """dst = pointer to the map at ``index`` of the program's fd_array."""
        return self._ld64("ld_map_idx", dst, op.PSEUDO_MAP_IDX, index)

    def ld_map_idx_value(self, dst: Reg, index: int, offset: int = 0) -> Assembler:
        return self._ld64("ld_map_idx_value", dst, op.PSEUDO_MAP_IDX_VALUE, (offset << 32) | index)

    def ld_btf_id(self, dst: Reg, btf_id: int) -> Assembler:
        """dst = address of the kernel variable with this vmlinux BTF id (ksym)."""
        return self._ld64("ld_btf_id", dst, op.PSEUDO_BTF_ID, btf_id)

    def ld_func(self, dst: Reg, target: Target) -> Assembler:
        """dst = address of the subprogram at label ``target`` (callbacks for bpf_loop and friends)."""
        if isinstance(target, int) and not isinstance(target, bool):
            return self._ld64("ld_func", dst, op.PSEUDO_FUNC, self._imm("ld_func", target))
        label = self._label_ref("ld_func", target)
        reloc = Relocation(self._slots, "func", label, "ld_func")
        return self._ld64("ld_func", dst, op.PSEUDO_FUNC, 0, reloc)

    # ---- output ----------------------------------------------------------------------------------------

    def instructions(self, maps: Optional[Mapping[str, Any]] = None, *,
                     allow_unresolved_maps: bool = False) -> List[Instruction]:
        """The program with labels resolved and map names replaced by fds from ``maps``.

        ``maps`` values are fds or objects with an ``fd`` attribute (a :class:`rawbpf.maps.Map`). With
        ``allow_unresolved_maps`` a map name missing from ``maps`` leaves imm 0 for a loader to patch (see
        :attr:`relocations`).
        """
        out: List[Instruction] = []
        for item in self._items:
            insn, reloc = item.insn, item.reloc
            if reloc is not None:
                insn = self._resolve(insn, reloc, maps or {}, allow_unresolved_maps)
            out.append(insn)
        return out

    def assemble(self, maps: Optional[Mapping[str, Any]] = None, *,
                 allow_unresolved_maps: bool = False) -> bytes:
        """The program's bytes, ready for BPF_PROG_LOAD (see :meth:`instructions`)."""
        return encode(self.instructions(maps, allow_unresolved_maps=allow_unresolved_maps))

    def _resolve(self, insn: Instruction, reloc: Relocation, maps: Mapping[str, Any], lenient: bool
                 ) -> Instruction:
        where = f"assemble: {reloc.what} at insn {reloc.slot}"
        if reloc.kind == "map":
            if reloc.target not in maps:
                if lenient:
                    return insn
                known = ", ".join(sorted(maps)) or "none given"
                raise AsmError(f"{where}: map {reloc.target!r} has no fd (maps: {known})")
            value = maps[reloc.target]
            fd = getattr(value, "fd", value)
            if isinstance(fd, bool) or not isinstance(fd, int) or fd < 0:
                raise AsmError(f"{where}: map {reloc.target!r}: bad fd {fd!r}")
            return insn.replace(imm=(insn.imm & ~0xFFFFFFFF) | fd)
        if reloc.target not in self._labels:
            raise AsmError(f"{where}: label {reloc.target!r} is not defined")
        delta = self._labels[reloc.target] - (reloc.slot + 1)
        if reloc.kind == "jump":
            if not -(1 << 15) <= delta < (1 << 15):
                raise AsmError(f"{where}: label {reloc.target!r} is {delta} instructions away, beyond a "
                               f"16-bit jump offset (use gotol)")
            return insn.replace(off=delta)
        return insn.replace(imm=delta)  # gotol, call, func: 32-bit imm

    def disassemble(self, maps: Optional[Mapping[str, Any]] = None) -> List[str]:
        """A listing with labels on their own lines and helper names, for reading and debugging."""
        by_slot: Dict[int, List[str]] = {}
        for name, slot in self._labels.items():
            by_slot.setdefault(slot, []).append(name)
        symbols = {slot: names[0] for slot, names in by_slot.items()}
        insns = encode(self.instructions(maps, allow_unresolved_maps=True))
        names = {getattr(v, "fd", v): k for k, v in (maps or {}).items()}
        lines: List[str] = []
        map_refs = {r.slot: r.target for r in self.relocations if r.kind == "map"}
        for slot, text in disassemble_indexed(insns, symbols=symbols, helpers=True, maps=names):
            if slot in map_refs:
                text = f"{text.split('  ; ')[0]}  ; map {map_refs[slot]!r}"
            lines.extend(f"{name}:" for name in by_slot.get(slot, ()))
            lines.append(f"    {text}")
        lines.extend(f"{name}:" for name in by_slot.get(self._slots, ()))
        return lines
