"""User-space CO-RE: resolve .BTF.ext relocations against a target BTF and patch instructions; pure.

The decisions follow the kernel/libbpf CO-RE rules, so an object relocated here loads into the same
instructions the kernel's own CO-RE (Linux ≥ 5.17) produces:

* candidates are the target types of a compatible kind whose *essential* name (the name without a
  ``___flavor`` suffix) equals the local one — vmlinux first, module BTF only when vmlinux has none;
* a field access string ("0:1:2") is walked through members (anonymous structs/unions included) and array
  indexes; every matching candidate must give the same offset and value, or the relocation is ambiguous;
* a relocation with no matching candidate poisons its instruction (``call 0xbad2310``) rather than failing,
  because existence checks expect that; the verifier only complains if the instruction is reachable, and
  :attr:`AppliedRelo.reason` tells what was missing. ``strict=True`` turns poisoning into an error instead.

Failures are :class:`RelocationError` naming the program, the type and field path and the C source line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from rawbpf.asm import codec
from rawbpf.asm.codec import INSN_SIZE
from rawbpf.btf.ext import CoreRelo, CoreReloKind
from rawbpf.btf.match import (
    Accessor,
    CoreFailure,
    Resolution,
    Spec,
    calc,
    essential_name,
    find_candidates,
    match_spec,
    parse_spec,
    types_are_compat,
    types_match,
)
from rawbpf.btf.parse import BTF
from rawbpf.errors import BTFError, RelocationError

__tier__ = "pure"

__all__ = [
    "POISON_IMM",
    "Accessor",
    "AppliedRelo",
    "Relocator",
    "Resolution",
    "Spec",
    "TargetBTF",
    "Targets",
    "essential_name",
    "explain_poison",
    "find_candidates",
    "match_spec",
    "parse_spec",
    "relocate_program",
    "types_are_compat",
    "types_match",
]

POISON_IMM = 0xBAD2310  # libbpf's "bad relo" helper id: "invalid func unknown#195896080"
_U64 = (1 << 64) - 1

# instruction encoding
_CLS_LDX, _CLS_ST, _CLS_STX, _CLS_ALU, _CLS_ALU64 = 0x01, 0x02, 0x03, 0x04, 0x07
_LD_IMM64 = 0x18  # BPF_LD | BPF_IMM | BPF_DW
_CALL = 0x85  # BPF_JMP | BPF_CALL
_SIZE_BYTES = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}
_BYTES_SIZE = {v: k for k, v in _SIZE_BYTES.items()}


# ----------------------------------------------------------------------------------------------- targets


class Targets:
    """Where candidates come from: a main BTF (vmlinux) and, only if it has none, module BTFs split on it.

    ``modules`` may be a callable so module BTF is read only when a lookup first needs it.
    """

    def __init__(self, main: BTF, modules: Union[Sequence[BTF], Callable[[], Sequence[BTF]]] = ()) -> None:
        self.main = main
        self._modules = modules
        self._loaded: Optional[Sequence[BTF]] = None if callable(modules) else modules

    @property
    def modules(self) -> Sequence[BTF]:
        if self._loaded is None:
            assert callable(self._modules)
            self._loaded = self._modules()
        return self._loaded


TargetBTF = Union[BTF, Targets]


# --------------------------------------------------------------------------------------------- resolving


class Relocator:
    """Resolves CO-RE relocations of one local BTF against a target, caching candidate lists per type."""

    def __init__(self, local: BTF, target: TargetBTF) -> None:
        self.local = local
        self.targets = target if isinstance(target, Targets) else Targets(target)
        self._cands: Dict[int, List[Tuple[BTF, int]]] = {}

    def candidates(self, local_id: int) -> List[Tuple[BTF, int]]:
        """(target BTF, type id) candidates for a local type: vmlinux's, else the modules'."""
        got = self._cands.get(local_id)
        if got is None:
            main = self.targets.main
            got = [(main, i) for i in find_candidates(self.local, local_id, main)]
            if not got:
                for mod in self.targets.modules:
                    got += [(mod, i) for i in find_candidates(self.local, local_id, mod)]
            self._cands[local_id] = got
        return got

    def resolve(self, type_id: int, access: str, kind: CoreReloKind) -> Tuple[Spec, Resolution]:
        """Resolve one relocation without patching anything (RelocationError on hard failures)."""
        try:
            local = parse_spec(self.local, type_id, access, kind)
            return local, self.resolve_spec(local)
        except (CoreFailure, BTFError) as err:
            raise RelocationError(f"CO-RE {kind.name.lower()} of type [{type_id}] '{access}': {err}") from err

    def resolve_spec(self, local: Spec) -> Resolution:
        """Resolve a parsed local spec against its root type's candidates (hard failures: CoreFailure)."""
        type_id, kind = local.root_type_id, local.kind
        if kind == CoreReloKind.TYPE_ID_LOCAL:
            return Resolution(type_id, type_id, validate=False)
        if not self.local[type_id].name:
            raise CoreFailure("anonymous types cannot be relocated")
        best: Optional[Resolution] = None
        for tb, cid in self.candidates(type_id):
            cand = match_spec(local, tb, cid)
            if cand is None:
                continue
            res = calc(local, cand)
            if best is None:
                best = res
            elif best.target is not None and cand.bit_offset != best.target.bit_offset:
                first = best.target
                raise CoreFailure(f"field offset ambiguity between candidates [{first.root_type_id}] "
                                  f"and [{cid}]: bit {first.bit_offset} != {cand.bit_offset}")
            elif res.poison != best.poison or res.new_val != best.new_val:
                first_id = best.target.root_type_id if best.target else 0
                raise CoreFailure(f"candidates [{first_id}] and [{cid}] resolve differently: "
                                  f"{best.new_val} != {res.new_val}")
        if best is None:
            best = calc(local, None)
        return best


@dataclass
class AppliedRelo:
    """What one relocation did to the program."""

    insn: int  # instruction index in the buffer
    kind: CoreReloKind
    local: str  # e.g. "struct task_struct.real_parent"
    target_id: int  # root type id of the chosen target (0: none)
    orig: int  # the instruction's value before patching
    new: int
    poisoned: bool = False
    reason: str = ""  # why it was poisoned
    source: str = ""  # "file.c:12: code"

    def describe(self) -> str:
        """One line for logs and messages."""
        head = f"insn {self.insn}: {self.kind.name.lower()} of {self.local}"
        if self.source:
            head += f" at {self.source}"
        if self.poisoned:
            return f"{head}: poisoned ({self.reason})"
        return f"{head}: {self.orig} -> {self.new}"


ReloInput = Union[CoreRelo, Tuple[int, Any]]


def _normalise(relo: ReloInput, local: BTF) -> Tuple[int, int, str, CoreReloKind]:
    """(insn index, type id, access string, kind) from a CoreRelo or an (insn index, record) pair."""
    if isinstance(relo, CoreRelo):
        if relo.insn_off % INSN_SIZE:
            raise CoreFailure(f"misaligned instruction offset {relo.insn_off}")
        return relo.insn_off // INSN_SIZE, relo.type_id, relo.access, CoreReloKind(relo.kind)
    idx, rec = relo
    access = getattr(rec, "access", "") or local.string_at(int(rec.access_str_off))
    return int(idx), int(rec.type_id), str(access), CoreReloKind(int(rec.kind))


def relocate_program(insns: bytearray, relos: Iterable[ReloInput], local: BTF,
                     target: Union[BTF, Targets, Relocator], *,
                     line_of: Optional[Callable[[int], str]] = None, prog_name: str = "",
                     strict: bool = False) -> List[AppliedRelo]:
    """Apply CO-RE relocations to ``insns`` in place, as libbpf would before loading.

    ``relos`` are :class:`CoreRelo` records (``insn_off`` in bytes from the start of ``insns``) or
    ``(instruction index, record)`` pairs whose record has ``type_id``, ``kind`` and ``access`` (or
    ``access_str_off``). ``target`` is the BTF to relocate against; the running kernel's is
    :func:`rawbpf.btf.kernel.targets` (vmlinux, then modules).
    ``line_of(insn_index)`` gives the C source line for messages. Returns what was done per relocation.
    """
    rel = target if isinstance(target, Relocator) else Relocator(local, target)
    out: List[AppliedRelo] = []
    n_insns = len(insns) // INSN_SIZE
    for no, relo in enumerate(relos):
        idx, type_id, access, kind = -1, 0, "", CoreReloKind.FIELD_EXISTS
        desc = ""
        try:
            idx, type_id, access, kind = _normalise(relo, local)
            desc = f"{local.type_name(type_id)} ({access})" if type_id < len(local) else f"type [{type_id}]"
            if not 0 <= idx < n_insns:
                raise CoreFailure(f"instruction {idx} is outside the program ({n_insns} instructions)")
            spec = parse_spec(local, type_id, access, kind)
            desc = spec.describe()
            res = rel.resolve_spec(spec)
            applied = AppliedRelo(idx, kind, desc, res.target.root_type_id if res.target else 0,
                                  res.orig_val, res.new_val)
            _patch(insns, idx, res, applied)
            if applied.poisoned and not applied.reason:
                applied.reason = _why_missing(kind, spec)
        except (CoreFailure, BTFError, ValueError) as err:
            reason = str(err)
            reason = reason[5:] if reason.startswith("btf: ") else reason
            raise RelocationError(_context(prog_name, no, kind, desc, idx, line_of) + f": {reason}") from err
        if line_of is not None:
            applied.source = line_of(idx)
        if applied.poisoned and strict:
            raise RelocationError(_context(prog_name, no, kind, desc, idx, line_of) + f": {applied.reason}")
        out.append(applied)
    return out


def explain_poison(relos: Iterable[ReloInput], local: BTF, insn: int,
                   target: Union[BTF, Targets, Relocator], *,
                   line_of: Optional[Callable[[int], str]] = None, prog_name: str = "") -> str:
    """Why instruction ``insn`` became ``call 0xbad2310`` ("invalid func unknown#195896080"), or "".

    Both libbpf-style user-space CO-RE and the kernel's own CO-RE poison an instruction whose relocation has
    no target; the verifier then only says "invalid func unknown#195896080". This resolves the relocations
    of that instruction (or of the ld_imm64 it is the second half of) again and names the type, the field
    path and the C source line. Use it when a load fails that way.
    """
    rel = target if isinstance(target, Relocator) else Relocator(local, target)
    for no, relo in enumerate(relos):
        try:
            idx, type_id, access, kind = _normalise(relo, local)
            if idx not in (insn, insn - 1):
                continue
            spec = parse_spec(local, type_id, access, kind)
            res = rel.resolve_spec(spec)
        except (CoreFailure, BTFError, ValueError):
            continue
        if res.poison:
            reason = _why_missing(kind, spec)
        elif res.fail_memsz_adjust:
            reason = "the field's size differs in the target and it is not a pointer or unsigned integer"
        else:
            continue
        return _context(prog_name, no, kind, spec.describe(), idx, line_of) + f": {reason}"
    return ""


def _context(prog: str, no: int, kind: CoreReloKind, desc: str, idx: int,
             line_of: Optional[Callable[[int], str]]) -> str:
    head = f"program '{prog}': " if prog else ""
    what = f"CO-RE relocation #{no} ({kind.name.lower()}"
    what += f" of {desc})" if desc else ")"
    src = line_of(idx) if (line_of is not None and idx >= 0) else ""
    return head + what + (f" [at {src}]" if src else "")


def _why_missing(kind: CoreReloKind, spec: Spec) -> str:
    if kind.is_enumval:
        return f"no enumerator {spec.describe()} in the target BTF"
    return f"no field {spec.describe()} in the target BTF"


# ------------------------------------------------------------------------------------------------ patching


def _poison(insns: bytearray, idx: int) -> None:
    codec.write(insns, idx, _CALL, imm=POISON_IMM)


def _patch(insns: bytearray, idx: int, res: Resolution, applied: AppliedRelo) -> None:
    base = idx * INSN_SIZE
    code, _dst, src, off, imm = codec.read(insns, idx)
    cls = code & 0x07
    if res.poison:
        applied.poisoned = True
        if code == _LD_IMM64 and idx + 1 < len(insns) // INSN_SIZE:
            _poison(insns, idx + 1)
        _poison(insns, idx)
        return
    orig, new = res.orig_val, res.new_val
    if cls in (_CLS_ALU, _CLS_ALU64):
        if code & 0x08:  # BPF_X
            raise CoreFailure(f"instruction {idx} (ALU) uses a register operand")
        if res.validate and (imm & _U64) != orig:
            raise CoreFailure(f"instruction {idx} (ALU) has imm {imm}, expected {orig} "
                              "(object and BTF disagree)")
        codec.set_imm(insns, idx, new)
        orig = imm
    elif cls in (_CLS_LDX, _CLS_ST, _CLS_STX):
        if res.validate and (off & _U64) != orig:
            raise CoreFailure(f"instruction {idx} (LDX/ST/STX) has offset {off}, expected {orig}")
        if new > 0x7FFF:
            raise CoreFailure(f"instruction {idx} (LDX/ST/STX): offset {new} is too big")
        if res.fail_memsz_adjust:
            applied.poisoned = True
            applied.reason = ("the field's size differs in the target and it is not a pointer or unsigned "
                              "integer; read fields of matching type and size")
            _poison(insns, idx)
            return
        codec.set_off(insns, idx, new)
        orig = off
        if res.new_sz != res.orig_sz:
            have = _SIZE_BYTES.get(code & 0x18)
            if have != res.orig_sz:
                raise CoreFailure(f"instruction {idx} (LDX/ST/STX) accesses {have} bytes, "
                                  f"expected {res.orig_sz}")
            size = _BYTES_SIZE.get(res.new_sz)
            if size is None:
                raise CoreFailure(f"instruction {idx} (LDX/ST/STX): no load/store of {res.new_sz} bytes")
            insns[base] = (code & 0xE7) | size
    elif code == _LD_IMM64:
        if idx + 1 >= len(insns) // INSN_SIZE:
            raise CoreFailure(f"instruction {idx} (LDIMM64) is truncated")
        second = codec.read(insns, idx + 1)
        if src != 0 or off != 0 or second.code != 0 or second.dst != 0 or second.src != 0 or second.off != 0:
            raise CoreFailure(f"instruction {idx} (LDIMM64) has an unexpected form")
        val = codec.imm64(insns, idx)
        if res.validate and val != orig:
            raise CoreFailure(f"instruction {idx} (LDIMM64) holds {val}, expected {orig}")
        codec.set_imm64(insns, idx, new)
        orig = val
    else:
        raise CoreFailure(f"instruction {idx} (code 0x{code:02x}) cannot be relocated")
    applied.orig, applied.new = orig, new

