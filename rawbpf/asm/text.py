"""Text assembler: llvm-objdump's BPF syntax (what the disassembler prints) back into instructions; pure.

Accepts one instruction per line in the syntax :mod:`rawbpf.asm.disasm` prints, plus what makes hand-written
text convenient:

- ``name:`` defines a label; jump, ``gotol``, ``may_goto`` and ``call`` targets are labels or ``+N``/``-N``;
- ``call bpf_map_lookup_elem`` (a helper by name), ``call 14`` (a helper by id), ``call name`` (a
  bpf-to-bpf call of the subprogram at label ``name``);
- ``r1 = map(counts) ll``, ``r1 = map_value(counts, 8) ll``, ``r1 = func(callback) ll``,
  ``r1 = btf_id(1234) ll`` for the ld_imm64 pseudo sources (map names resolved by ``assemble(maps=…)``),
  and llvm's own ``ld_pseudo r1, SRC, IMM``;
- immediates in decimal or hex; comments after ``;``, ``#`` or ``//``; pasted ``llvm-objdump -d`` output
  (addresses, ``0000000000000178 <LBB0_2>:`` headers and ``<sym+0x8>`` target suffixes) is understood.

Some encodings print alike and come back as the plain form: ``call N`` is always a helper call (llvm-objdump
prints bpf-to-bpf and kfunc calls the same way), ``skb[rN]`` has no offset, ``ld_pseudo`` keeps only the
low 32 bits of its immediate. Errors are :class:`AsmError` naming the line.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterator, List, Mapping, Optional, Set, Tuple

from rawbpf.asm.dsl import Assembler, Reg
from rawbpf.asm.helpers import HELPERS
from rawbpf.asm.insn import Instruction
from rawbpf.errors import AsmError

__tier__ = "pure"

_REG = r"([rw])(\d+)"
_NUM = r"(-?(?:0x[0-9a-fA-F]+|\d+))"
_ADDR = r"r(\d+) ([+-]) (0x[0-9a-fA-F]+|\d+)"
_TARGET = r"([+-]?\d+|[A-Za-z_.$][\w.$]*)"
_TYPES = {"u8": "b", "u16": "h", "u32": "w", "u64": "dw", "s8": "b", "s16": "h", "s32": "w"}
_ALU = {"+": "add", "-": "sub", "*": "mul", "/": "div", "s/": "sdiv", "%": "mod", "s%": "smod", "|": "or_",
        "&": "and_", "<<": "lsh", ">>": "rsh", "s>>": "arsh", "^": "xor"}
_JMP = {"==": "jeq", "!=": "jne", ">": "jgt", ">=": "jge", "<": "jlt", "<=": "jle", "s>": "jsgt",
        "s>=": "jsge", "s<": "jslt", "s<=": "jsle", "&": "jset"}
_LOCK = {"+": "atomic_add", "|": "atomic_or", "&": "atomic_and", "^": "atomic_xor"}


def _num(text: str) -> int:
    if not re.fullmatch(_NUM, text):
        raise AsmError(f"expected a register or a number, got {text!r}")
    neg = text.startswith("-")
    body = text[1:] if neg else text
    value = int(body, 16) if body.lower().startswith("0x") else int(body)
    return -value if neg else value


def _reg(kind: str, num: str) -> Reg:
    n = int(num)
    if n > 10:
        raise AsmError(f"bad register {kind}{n} (use r0..r10 or w0..w10)")
    return Reg(n, kind == "r")


def _operand(text: str) -> Any:
    m = re.fullmatch(_REG, text)
    return _reg(m.group(1), m.group(2)) if m else _num(text)


def _target(text: str) -> Any:
    return int(text) if re.fullmatch(r"[+-]?\d+", text) else text


def _off(sign: str, value: str) -> int:
    return _num(value) * (-1 if sign == "-" else 1)


Handler = Callable[[Assembler, "re.Match[str]"], Any]
_RULES: List[Tuple[re.Pattern[str], Handler]] = []


def _rule(pattern: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _RULES.append((re.compile(pattern + r"$"), fn))
        return fn
    return register


@_rule(r"exit")
def _exit(p: Assembler, m: re.Match[str]) -> Any:
    return p.exit()


_CALL = re.compile(r"call " + _TARGET + "$")


def _call(p: Assembler, target: str, labels: Set[str]) -> Any:
    """``call N`` is a helper id; ``call name`` a label defined in the text, else a helper, else a label
    (reported as undefined when assembled). A ``bpf_`` name that is no helper gets the helper error."""
    if re.fullmatch(r"[+-]?\d+", target):
        return p.raw(p._make("call", code=0x85, imm=int(target)))
    helper = target in HELPERS or "bpf_" + target in HELPERS or target.startswith("bpf_")
    if helper and target not in labels:
        return p.call(target)
    return p.call_label(target)


@_rule(r"gotox r(\d+)")
def _gotox(p: Assembler, m: re.Match[str]) -> Any:
    return p.gotox(_reg("r", m.group(1)))


@_rule(r"callx r(\d+)")
def _callx(p: Assembler, m: re.Match[str]) -> Any:
    return p.callx(_reg("r", m.group(1)))


@_rule(r"(goto|gotol|may_goto) " + _TARGET)
def _goto(p: Assembler, m: re.Match[str]) -> Any:
    method = {"goto": p.ja, "gotol": p.gotol, "may_goto": p.may_goto}[m.group(1)]
    return method(_target(m.group(2)))


@_rule(r"if " + _REG + r" (==|!=|>=|>|<=|<|s>=|s>|s<=|s<|&) (\S+) goto " + _TARGET)
def _if(p: Assembler, m: re.Match[str]) -> Any:
    method = getattr(p, _JMP[m.group(3)])
    return method(_reg(m.group(1), m.group(2)), _operand(m.group(4)), _target(m.group(5)))


@_rule(_REG + r" = " + _REG)
def _mov_reg(p: Assembler, m: re.Match[str]) -> Any:
    return p.mov(_reg(m.group(1), m.group(2)), _reg(m.group(3), m.group(4)))


@_rule(_REG + r" = " + _NUM)
def _mov_imm(p: Assembler, m: re.Match[str]) -> Any:
    return p.mov(_reg(m.group(1), m.group(2)), _num(m.group(3)))


@_rule(_REG + r" (s>>|<<|>>|s/|s%|[-+*/%|&^])= (\S+)")
def _alu(p: Assembler, m: re.Match[str]) -> Any:
    return getattr(p, _ALU[m.group(3)])(_reg(m.group(1), m.group(2)), _operand(m.group(4)))


@_rule(_REG + r" = -" + _REG)
def _neg(p: Assembler, m: re.Match[str]) -> Any:
    if m.group(1, 2) != m.group(3, 4):
        raise AsmError("negation works in place: write rN = -rN")
    return p.neg(_reg(m.group(1), m.group(2)))


@_rule(_REG + r" = \(s(8|16|32)\)" + _REG)
def _movsx(p: Assembler, m: re.Match[str]) -> Any:
    return p.movsx(_reg(m.group(1), m.group(2)), _reg(m.group(4), m.group(5)), int(m.group(3)))


@_rule(r"r(\d+) = (be|le|bswap)(16|32|64) r(\d+)")
def _end(p: Assembler, m: re.Match[str]) -> Any:
    if m.group(1) != m.group(4):
        raise AsmError("byte swaps work in place: write rN = be16 rN")
    return getattr(p, m.group(2))(_reg("r", m.group(1)), int(m.group(3)))


@_rule(r"r(\d+) = addr_space_cast\(r(\d+), " + _NUM + ", " + _NUM + r"\)")
def _asc(p: Assembler, m: re.Match[str]) -> Any:
    return p.addr_space_cast(_reg("r", m.group(1)), _reg("r", m.group(2)), _num(m.group(3)), _num(m.group(4)))


@_rule(r"r(\d+) = &\(void __percpu \*\)\(r(\d+)\)")
def _percpu(p: Assembler, m: re.Match[str]) -> Any:
    return p.raw(Instruction(0xBF, _reg("r", m.group(1)).num, _reg("r", m.group(2)).num, -1))


@_rule(r"nospec")
def _nospec(p: Assembler, m: re.Match[str]) -> Any:
    return p.raw(Instruction(0xC2))


@_rule(r"r(\d+) = " + _NUM + " ll")
def _ld64(p: Assembler, m: re.Match[str]) -> Any:
    return p.ld_imm64(_reg("r", m.group(1)), _num(m.group(2)))


@_rule(r"r(\d+) = (map|map_value|func|btf_id)\(([\w.$]+)(?:, " + _NUM + r")?\) ll")
def _ld_pseudo_named(p: Assembler, m: re.Match[str]) -> Any:
    dst, kind, arg, off = _reg("r", m.group(1)), m.group(2), m.group(3), m.group(4)
    if off is not None and kind != "map_value":
        raise AsmError(f"{kind}() takes one argument")
    ref: Any = _num(arg) if re.fullmatch(_NUM, arg) else arg
    if kind == "map":
        return p.ld_map_fd(dst, ref)
    if kind == "map_value":
        return p.ld_map_value(dst, ref, _num(off) if off else 0)
    if kind == "func":
        return p.ld_func(dst, ref)
    return p.ld_btf_id(dst, ref)


@_rule(r"ld_pseudo\s+r(\d+), (\d+), " + _NUM)
def _ld_pseudo(p: Assembler, m: re.Match[str]) -> Any:
    return p.raw(Instruction(0x18, int(m.group(1)), int(m.group(2)), 0, _num(m.group(3)) & 0xFFFFFFFF))


@_rule(_REG + r" = \*\((u8|u16|u32|u64|s8|s16|s32) \*\)\(" + _ADDR + r"\)")
def _load(p: Assembler, m: re.Match[str]) -> Any:
    method = p.ldsx if m.group(3).startswith("s") else p.ldx
    return method(_TYPES[m.group(3)], _reg(m.group(1), m.group(2)), _reg("r", m.group(4)),
                  _off(m.group(5), m.group(6)))


@_rule(r"\*\((u8|u16|u32|u64) \*\)\(" + _ADDR + r"\) = (\S+)")
def _store(p: Assembler, m: re.Match[str]) -> Any:
    size, dst, off, src = _TYPES[m.group(1)], _reg("r", m.group(2)), _off(m.group(3), m.group(4)), m.group(5)
    value = _operand(src)
    if isinstance(value, Reg):
        return p.stx(size, dst, off, value)
    return p.st(size, dst, off, value)


@_rule(r"r0 = \*\((u8|u16|u32) \*\)skb\[(?:r(\d+)(?: \+ " + _NUM + r")?|" + _NUM + r")\]")
def _skb(p: Assembler, m: re.Match[str]) -> Any:
    size = _TYPES[m.group(1)]
    if m.group(2) is not None:
        return p.ld_ind(size, _reg("r", m.group(2)), _num(m.group(3)) if m.group(3) else 0)
    return p.ld_abs(size, _num(m.group(4)))


def _sized(reg: str, width: str) -> Reg:
    """The source register of an atomic at the width its memory type says (llvm 14 may print r for u32)."""
    return Reg(_reg("r", reg).num, width == "u64")


@_rule(r"lock \*\((u32|u64) \*\)\(" + _ADDR + r"\) ([+|&^])= [rw](\d+)")
def _lock(p: Assembler, m: re.Match[str]) -> Any:
    method = getattr(p, _LOCK[m.group(5)])
    return method(_reg("r", m.group(2)), _off(m.group(3), m.group(4)), _sized(m.group(6), m.group(1)))


@_rule(r"[rw](\d+) = atomic_fetch_(add|or|and|xor)\(\((u32|u64) \*\)\(" + _ADDR + r"\), [rw](\d+)\)")
def _fetch(p: Assembler, m: re.Match[str]) -> Any:
    if m.group(1) != m.group(7):
        raise AsmError("atomic_fetch_* returns the old value in its source register")
    method = getattr(p, "atomic_" + m.group(2))
    return method(_reg("r", m.group(4)), _off(m.group(5), m.group(6)), _sized(m.group(7), m.group(3)),
                  fetch=True)


@_rule(r"[rw](\d+) = xchg(_64|32_32)\(" + _ADDR + r", [rw](\d+)\)")
def _xchg(p: Assembler, m: re.Match[str]) -> Any:
    if m.group(1) != m.group(6):
        raise AsmError("xchg returns the old value in its source register")
    width = "u64" if m.group(2) == "_64" else "u32"
    return p.xchg(_reg("r", m.group(3)), _off(m.group(4), m.group(5)), _sized(m.group(6), width))


@_rule(r"[rw]0 = cmpxchg(_64|32_32)\(" + _ADDR + r", [rw]0, [rw](\d+)\)")
def _cmpxchg(p: Assembler, m: re.Match[str]) -> Any:
    width = "u64" if m.group(1) == "_64" else "u32"
    return p.cmpxchg(_reg("r", m.group(2)), _off(m.group(3), m.group(4)), _sized(m.group(5), width))


@_rule(_REG + r" = load_acquire\(\((u8|u16|u32|u64) \*\)\(" + _ADDR + r"\)\)")
def _load_acquire(p: Assembler, m: re.Match[str]) -> Any:
    return p.load_acquire(_TYPES[m.group(3)], _reg(m.group(1), m.group(2)), _reg("r", m.group(4)),
                          _off(m.group(5), m.group(6)))


@_rule(r"store_release\(\((u8|u16|u32|u64) \*\)\(" + _ADDR + r"\), " + _REG + r"\)")
def _store_release(p: Assembler, m: re.Match[str]) -> Any:
    return p.store_release(_TYPES[m.group(1)], _reg("r", m.group(2)), _off(m.group(3), m.group(4)),
                           _reg(m.group(5), m.group(6)))


_COMMENT = re.compile(r"\s*(;|#|//).*$")
_ADDRESS = re.compile(r"^\s*\d+:\s+")
_SYMBOL_HEADER = re.compile(r"^[0-9a-fA-F]+ <([^>]+)>:$")
_LABEL = re.compile(r"^([A-Za-z_.$][\w.$]*):$")
_SUFFIX = re.compile(r"\s+<[^<>\s]*>$")


def _lines(source: str) -> Iterator[Tuple[int, str, str, Optional[str]]]:
    """(line number, raw line, instruction text, label defined there) for each line that says something."""
    for number, raw_line in enumerate(source.splitlines(), 1):
        line = _COMMENT.sub("", raw_line).strip()
        if not line or line.startswith("Disassembly of section") or "file format" in line:
            continue
        m = _SYMBOL_HEADER.match(line) or _LABEL.match(line)
        if m:
            yield number, raw_line, "", m.group(1)
            continue
        text = _SUFFIX.sub("", _ADDRESS.sub("", line))
        yield number, raw_line, re.sub(r"\s+", " ", text.replace("\t", " ")), None


def parse(source: str, *, name: str = "") -> Assembler:
    """An :class:`Assembler` holding the program written in ``source`` (labels still unresolved)."""
    p = Assembler(name)
    labels = {label for _, _, _, label in _lines(source) if label}
    for number, raw_line, text, label in _lines(source):
        try:
            if label:
                p.label(label)
                continue
            call = _CALL.match(text)
            if call:
                _call(p, call.group(1), labels)
                continue
            for pattern, handler in _RULES:
                m = pattern.match(text)
                if m:
                    handler(p, m)
                    break
            else:
                raise AsmError(f"cannot parse {raw_line.strip()!r}")
        except AsmError as err:
            raise AsmError(f"line {number}: {err}") from err
    return p


def assemble_text(source: str, maps: Optional[Mapping[str, Any]] = None, *,
                  allow_unresolved_maps: bool = False) -> bytes:
    """Assemble ``source`` into program bytes (see :func:`parse` and :meth:`Assembler.assemble`)."""
    return parse(source).assemble(maps, allow_unresolved_maps=allow_unresolved_maps)
