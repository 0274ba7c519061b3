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

import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from rawbpf.btf.ext import INSN_SIZE, CoreRelo, CoreReloKind
from rawbpf.btf.parse import BTF
from rawbpf.btf.types import INT_SIGNED, BtfType, Kind
from rawbpf.errors import BTFError, RelocationError

POISON_IMM = 0xBAD2310  # libbpf's "bad relo" helper id: "invalid func unknown#195896080"
SPEC_MAX_LEN = 64
_MAX_LEVEL = 32
_U64 = (1 << 64) - 1

# instruction encoding
_CLS_LDX, _CLS_ST, _CLS_STX, _CLS_ALU, _CLS_ALU64 = 0x01, 0x02, 0x03, 0x04, 0x07
_LD_IMM64 = 0x18  # BPF_LD | BPF_IMM | BPF_DW
_CALL = 0x85  # BPF_JMP | BPF_CALL
_SIZE_BYTES = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}
_BYTES_SIZE = {v: k for k, v in _SIZE_BYTES.items()}


class _Poison(Exception):
    """Internal: the relocation cannot be computed for this spec; poison the instruction."""


class _Fail(Exception):
    """Internal: a hard failure; turned into a RelocationError with context."""


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


def essential_name(name: str) -> str:
    """The name without its ``___flavor`` suffix (the last ``x___y`` separator, x and y not ``_``)."""
    for i in range(len(name) - 5, -1, -1):
        if name[i] != "_" and name[i + 1: i + 4] == "___" and name[i + 4] != "_":
            return name[: i + 1]
    return name


def _kinds_compat(a: BtfType, b: BtfType) -> bool:
    return a.kind == b.kind or (a.is_enum and b.is_enum)


def find_candidates(local: BTF, local_id: int, target: BTF) -> List[int]:
    """Ids of the target types (its own, not its base's) that are candidates for local type ``local_id``."""
    lt = local[local_id]
    ess = essential_name(lt.name)
    offs = target.string_offsets(ess)
    offs += [o for o in target.strings_with_prefix(ess + "___") if essential_name(target.string_at(o)) == ess]
    out = []
    for tid in target.ids_by_name_offsets(offs):
        t = target[tid]
        if t.name and _kinds_compat(t, lt) and essential_name(t.name) == ess:
            out.append(tid)
    out += [t.id for t in target.added_types() if t.name and _kinds_compat(t, lt)
            and essential_name(t.name) == ess]
    return sorted(set(out))


# ------------------------------------------------------------------------------------------------- specs


@dataclass
class Accessor:
    """One semantically meaningful step of an access: a named member, or an array index (name None)."""

    type_id: int
    idx: int
    name: Optional[str] = None


@dataclass
class Spec:
    """A parsed (local) or matched (target) access: accessors, raw indexes and the resulting bit offset."""

    btf: BTF
    root_type_id: int
    kind: CoreReloKind
    access: List[Accessor] = field(default_factory=list)
    raw: List[int] = field(default_factory=list)
    bit_offset: int = 0

    def describe(self) -> str:
        """``struct task_struct.real_parent``, ``struct s[2].arr[3]``, ``enum pid_type::PIDTYPE_SID``."""
        btf = self.btf
        root = btf.type_name(self.root_type_id)
        if self.kind.is_type or not self.access:
            return root
        if self.kind.is_enumval:
            return f"{root}::{self.access[0].name}"
        out = root
        for i, acc in enumerate(self.access):
            if acc.name is not None:
                out += f".{acc.name}"
            elif i > 0 or acc.idx:
                out += f"[{acc.idx}]"
        return out


def _skip(btf: BTF, type_id: int) -> Tuple[BtfType, int]:
    tid = btf.resolve(type_id)
    return btf[tid], tid


def _is_flex(btf: BTF, parent: Optional[Accessor], nelems: int) -> bool:
    if parent is None or parent.name is None or nelems > 0:
        return False
    return parent.idx == len(btf[parent.type_id].members) - 1


def parse_spec(btf: BTF, type_id: int, access: str, kind: CoreReloKind) -> Spec:
    """Turn a local relocation's access string into a :class:`Spec` (raises _Fail with the reason)."""
    if not access or access[0] == ":":
        raise _Fail(f"bad access string '{access}'")
    spec = Spec(btf, type_id, kind)
    if kind.is_type:
        if access != "0":
            raise _Fail(f"type relocation with access string '{access}' (want '0')")
        return spec
    try:
        spec.raw = [int(p) for p in access.split(":")]
    except ValueError:
        raise _Fail(f"bad access string '{access}'") from None
    if any(i < 0 for i in spec.raw) or len(spec.raw) > SPEC_MAX_LEN:
        raise _Fail(f"bad access string '{access}'")
    t, tid = _skip(btf, type_id)
    first = spec.raw[0]
    if kind.is_enumval:
        if not t.is_enum or len(spec.raw) > 1 or first >= len(t.values):
            raise _Fail(f"enum value access '{access}' does not fit {btf.type_name(type_id)}")
        spec.access.append(Accessor(tid, first, t.values[first].name))
        return spec
    spec.access.append(Accessor(tid, first))
    spec.bit_offset = first * btf.size_of(tid) * 8
    for i in range(1, len(spec.raw)):
        t, tid = _skip(btf, tid)
        idx = spec.raw[i]
        if t.is_composite:
            if idx >= len(t.members):
                raise _Fail(f"access '{access}': member #{idx} beyond {btf.type_name(tid)}")
            m = t.members[idx]
            spec.bit_offset += m.bits_offset
            if m.name:
                spec.access.append(Accessor(tid, idx, m.name))
            tid = m.type
        elif t.kind == Kind.ARRAY:
            assert t.array is not None
            _, tid = _skip(btf, t.array.type)
            parent = spec.access[-1] if spec.access else None
            if not _is_flex(btf, parent, t.array.nelems) and idx >= t.array.nelems:
                raise _Fail(f"access '{access}': index {idx} beyond {btf.type_name(t.id)}")
            spec.access.append(Accessor(tid, idx))
            spec.bit_offset += idx * btf.size_of(tid) * 8
        else:
            raise _Fail(f"access '{access}' (at #{i}) steps into {btf.type_name(tid)}, "
                        "not a struct, union or array")
    return spec


# ----------------------------------------------------------------------------------------- compatibility


def _fields_compat(lb: BTF, lid: int, tb: BTF, tid: int) -> bool:
    for _ in range(_MAX_LEVEL):
        lt, lid = _skip(lb, lid)
        tt, tid = _skip(tb, tid)
        if lt.is_composite and tt.is_composite:
            return True
        if not _kinds_compat(lt, tt):
            return False
        k = lt.kind
        if k in (Kind.PTR, Kind.FLOAT):
            return True
        if k in (Kind.FWD, Kind.ENUM, Kind.ENUM64):
            le, te = essential_name(lt.name), essential_name(tt.name)
            return not le or not te or le == te
        if k == Kind.INT:
            return lt.int_offset == 0 and tt.int_offset == 0
        if k == Kind.ARRAY:
            assert lt.array is not None and tt.array is not None
            lid, tid = lt.array.type, tt.array.type
            continue
        return False
    raise _Fail("type nesting too deep")


def types_are_compat(lb: BTF, lid: int, tb: BTF, tid: int, level: int = _MAX_LEVEL) -> bool:
    """The compatibility TYPE_EXISTS/TYPE_SIZE/TYPE_ID_TARGET require (names checked by the caller)."""
    if not _kinds_compat(lb[lid], tb[tid]):
        return False
    for _ in range(_MAX_LEVEL):
        lt, lid = _skip(lb, lid)
        tt, tid = _skip(tb, tid)
        if not _kinds_compat(lt, tt):
            return False
        k = lt.kind
        if k in (Kind.UNKN, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.FWD, Kind.ENUM64):
            return True
        if k == Kind.INT:
            return lt.int_offset == 0 and tt.int_offset == 0
        if k == Kind.PTR:
            lid, tid = lt.type, tt.type
        elif k == Kind.ARRAY:
            assert lt.array is not None and tt.array is not None
            lid, tid = lt.array.type, tt.array.type
        elif k == Kind.FUNC_PROTO:
            if len(lt.params) != len(tt.params):
                return False
            for lp, tp in zip(lt.params, tt.params):
                if level <= 0:
                    raise _Fail("type nesting too deep")
                if not types_are_compat(lb, lb.resolve(lp.type), tb, tb.resolve(tp.type), level - 1):
                    return False
            lid, tid = lt.type, tt.type
        else:
            return False
    raise _Fail("type nesting too deep")


def _names_match(ln: str, tn: str) -> bool:
    if not tn:
        return not ln
    return essential_name(ln) == essential_name(tn)


def types_match(lb: BTF, lid: int, tb: BTF, tid: int, behind_ptr: bool = False,
                level: int = _MAX_LEVEL) -> bool:
    """The stricter TYPE_MATCHES relation (layouts agree member by member, enums by enumerator names)."""
    if level <= 0:
        raise _Fail("type nesting too deep")
    for _ in range(_MAX_LEVEL):
        lt, lid = _skip(lb, lid)
        tt, tid = _skip(tb, tid)
        if not _names_match(lt.name, tt.name):
            return False
        lk, tk = lt.kind, tt.kind
        if lk == Kind.UNKN:
            return tk == Kind.UNKN
        if lk == Kind.FWD:
            if behind_ptr and lk != tk:
                return (tk == Kind.STRUCT and not lt.kind_flag) or (tk == Kind.UNION and lt.kind_flag)
            return lk == tk and lt.kind_flag == tt.kind_flag
        if lt.is_enum:
            if not tt.is_enum or lt.size != tt.size or len(lt.values) > len(tt.values):
                return False
            return all(any(_names_match(lv.name, tv.name) for tv in tt.values) for lv in lt.values)
        if lt.is_composite:
            if behind_ptr:
                return lk == tk or (tk == Kind.FWD and (lk == Kind.UNION) == tt.kind_flag)
            if lk != tk or len(lt.members) > len(tt.members):
                return False
            for lm in lt.members:
                if not any(_names_match(lm.name, tm.name)
                           and types_match(lb, lm.type, tb, tm.type, behind_ptr, level - 1)
                           for tm in tt.members):
                    return False
            return True
        if lk == Kind.INT:
            return (tk == Kind.INT and lt.size == tt.size
                    and (lt.int_encoding & INT_SIGNED) == (tt.int_encoding & INT_SIGNED))
        if lk == Kind.PTR:
            if tk != lk:
                return False
            behind_ptr = True
            lid, tid = lt.type, tt.type
        elif lk == Kind.ARRAY:
            assert lt.array is not None
            if tk != lk or tt.array is None or lt.array.nelems != tt.array.nelems:
                return False
            lid, tid = lt.array.type, tt.array.type
        elif lk == Kind.FUNC_PROTO:
            if tk != lk or len(lt.params) != len(tt.params):
                return False
            for lp, tp in zip(lt.params, tt.params):
                if not types_match(lb, lb.resolve(lp.type), tb, tb.resolve(tp.type), behind_ptr, level - 1):
                    return False
            lid, tid = lb.resolve(lt.type), tb.resolve(tt.type)
        else:
            return False
    raise _Fail("type nesting too deep")


# ---------------------------------------------------------------------------------------------- matching


def _match_member(local: Spec, acc: Accessor, tb: BTF, tid: int, spec: Spec) -> Tuple[bool, int]:
    """Find the local named member in target type ``tid`` (descending into anonymous members)."""
    tt, tid = _skip(tb, tid)
    if not tt.is_composite:
        return False, 0
    lm = local.btf[acc.type_id].members[acc.idx]
    for i, m in enumerate(tt.members):
        if len(spec.raw) >= SPEC_MAX_LEN:
            raise _Fail("access nested too deep")
        spec.bit_offset += m.bits_offset
        spec.raw.append(i)
        if not m.name:
            found, nxt = _match_member(local, acc, tb, m.type, spec)
            if found:
                return True, nxt
        elif m.name == lm.name:
            if _fields_compat(local.btf, lm.type, tb, m.type):
                spec.access.append(Accessor(tid, i, m.name))
                return True, m.type
            return False, 0
        spec.bit_offset -= m.bits_offset
        spec.raw.pop()
    return False, 0


def match_spec(local: Spec, tb: BTF, targ_id: int) -> Optional[Spec]:
    """Match a local spec against one candidate; the target spec, or None if it does not match."""
    spec = Spec(tb, targ_id, local.kind)
    kind = local.kind
    if kind.is_type:
        ok = (types_match(local.btf, local.root_type_id, tb, targ_id) if kind == CoreReloKind.TYPE_MATCHES
              else types_are_compat(local.btf, local.root_type_id, tb, targ_id))
        return spec if ok else None
    if kind.is_enumval:
        tt, tid = _skip(tb, targ_id)
        if not tt.is_enum:
            return None
        want = essential_name(local.access[0].name or "")
        for i, v in enumerate(tt.values):
            if essential_name(v.name) == want:
                spec.access.append(Accessor(tid, i, v.name))
                spec.raw.append(i)
                return spec
        return None
    tid = targ_id
    for i, acc in enumerate(local.access):
        tt, tid = _skip(tb, tid)
        if acc.name is not None:
            found, tid = _match_member(local, acc, tb, tid, spec)
            if not found:
                return None
            continue
        if i > 0:
            if tt.kind != Kind.ARRAY:
                return None
            assert tt.array is not None
            parent = spec.access[-1] if spec.access else None
            if not _is_flex(tb, parent, tt.array.nelems) and acc.idx >= tt.array.nelems:
                return None
            _, tid = _skip(tb, tt.array.type)
        if len(spec.raw) >= SPEC_MAX_LEN:
            raise _Fail("access nested too deep")
        spec.access.append(Accessor(tid, acc.idx))
        spec.raw.append(acc.idx)
        spec.bit_offset += acc.idx * tb.size_of(tid) * 8
    return spec


# ------------------------------------------------------------------------------------------- calculation


@dataclass
class _Field:
    val: int
    size: int = 0
    type_id: int = 0
    validate: bool = True


def _calc_field(spec: Optional[Spec], kind: CoreReloKind) -> _Field:
    if kind == CoreReloKind.FIELD_EXISTS:
        return _Field(1 if spec is not None else 0)
    if spec is None:
        raise _Poison()
    btf = spec.btf
    acc = spec.access[-1]
    if acc.name is None:  # array element (or the root pointer's element)
        size = btf.size_of(acc.type_id)
        if kind == CoreReloKind.FIELD_BYTE_OFFSET:
            return _Field(spec.bit_offset // 8, size, acc.type_id)
        if kind == CoreReloKind.FIELD_BYTE_SIZE:
            return _Field(size)
        raise _Fail(f"{kind.name.lower()} cannot apply to an array element")
    t = btf[acc.type_id]
    m = t.members[acc.idx]
    mt, field_tid = _skip(btf, m.type)
    bit_off = spec.bit_offset
    bit_sz = m.bitfield_size if t.kind_flag else 0
    bitfield = bit_sz > 0
    if bitfield:
        byte_sz = mt.size
        if byte_sz <= 0:
            raise _Fail(f"bitfield of unsized {btf.type_name(field_tid)}")
        byte_off = bit_off // 8 // byte_sz * byte_sz
        while bit_off + bit_sz - byte_off * 8 > byte_sz * 8:
            if byte_sz >= 8:
                raise _Fail("bitfield cannot be read with a 64-bit load")
            byte_sz *= 2
            byte_off = bit_off // 8 // byte_sz * byte_sz
    else:
        byte_sz = btf.size_of(field_tid)
        byte_off = bit_off // 8
        bit_sz = byte_sz * 8
    validate = not bitfield
    if kind == CoreReloKind.FIELD_BYTE_OFFSET:
        return _Field(byte_off, 0 if bitfield else byte_sz, 0 if bitfield else field_tid, validate)
    if kind == CoreReloKind.FIELD_BYTE_SIZE:
        return _Field(byte_sz, validate=validate)
    if kind == CoreReloKind.FIELD_SIGNED:
        signed = (mt.is_enum and mt.kind_flag) or (mt.kind == Kind.INT and bool(mt.int_encoding & INT_SIGNED))
        return _Field(int(signed))
    if kind == CoreReloKind.FIELD_LSHIFT_U64:
        return _Field(64 - (bit_off + bit_sz - byte_off * 8), validate=validate)
    if kind == CoreReloKind.FIELD_RSHIFT_U64:
        return _Field(64 - bit_sz)
    raise _Fail(f"unknown field relocation kind {int(kind)}")


def _calc_type(spec: Optional[Spec], kind: CoreReloKind) -> Tuple[int, bool]:
    if spec is None:
        return 0, True
    if kind == CoreReloKind.TYPE_ID_TARGET:
        return spec.root_type_id, False
    if kind in (CoreReloKind.TYPE_EXISTS, CoreReloKind.TYPE_MATCHES):
        return 1, True
    if kind == CoreReloKind.TYPE_SIZE:
        return spec.btf.size_of(spec.root_type_id), True
    raise _Fail(f"unknown type relocation kind {int(kind)}")


def _enum_raw(t: BtfType, idx: int) -> int:
    v = t.values[idx].value
    if t.kind == Kind.ENUM:  # struct btf_enum's s32 val, widened to u64 with its sign
        v &= 0xFFFFFFFF
        v = v - (1 << 32) if v & 0x80000000 else v
    return v & _U64


def _calc_enumval(spec: Optional[Spec], kind: CoreReloKind) -> int:
    if kind == CoreReloKind.ENUMVAL_EXISTS:
        return 1 if spec is not None else 0
    if spec is None:
        raise _Poison()
    return _enum_raw(spec.btf[spec.access[0].type_id], spec.access[0].idx)


@dataclass
class Resolution:
    """What a relocation resolves to: the value compiled in, the value to patch in, or poison."""

    orig_val: int = 0
    new_val: int = 0
    poison: bool = False
    validate: bool = True
    fail_memsz_adjust: bool = False
    orig_sz: int = 0
    new_sz: int = 0
    target: Optional[Spec] = None


def _calc(local: Spec, targ: Optional[Spec]) -> Resolution:
    kind = local.kind
    res = Resolution(target=targ)
    try:
        if kind.is_field:
            lf = _calc_field(local, kind)
            res.orig_val, res.orig_sz, res.validate = lf.val & _U64, lf.size, lf.validate
            tf = _calc_field(targ, kind)
            res.new_val, res.new_sz = tf.val & _U64, tf.size
            if res.orig_sz != res.new_sz:
                assert targ is not None
                ot, nt = local.btf[lf.type_id], targ.btf[tf.type_id]
                ok = (ot.kind == Kind.PTR and nt.kind == Kind.PTR) or (
                    ot.kind == Kind.INT and nt.kind == Kind.INT and ot.int_encoding != INT_SIGNED
                    and nt.int_encoding != INT_SIGNED)
                res.fail_memsz_adjust = not ok
        elif kind.is_type:
            res.orig_val, res.validate = _calc_type(local, kind)
            res.new_val, _ = _calc_type(targ, kind)
        else:
            res.orig_val = _calc_enumval(local, kind)
            res.new_val = _calc_enumval(targ, kind)
    except _Poison:
        res.poison = True
    return res


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
        except (_Fail, BTFError) as err:
            raise RelocationError(f"CO-RE {kind.name.lower()} of type [{type_id}] '{access}': {err}") from err

    def resolve_spec(self, local: Spec) -> Resolution:
        """Resolve a parsed local spec against the candidates of its root type (internal failures: _Fail)."""
        type_id, kind = local.root_type_id, local.kind
        if kind == CoreReloKind.TYPE_ID_LOCAL:
            return Resolution(type_id, type_id, validate=False)
        if not self.local[type_id].name:
            raise _Fail("anonymous types cannot be relocated")
        best: Optional[Resolution] = None
        for tb, cid in self.candidates(type_id):
            cand = match_spec(local, tb, cid)
            if cand is None:
                continue
            res = _calc(local, cand)
            if best is None:
                best = res
            elif best.target is not None and cand.bit_offset != best.target.bit_offset:
                raise _Fail(f"field offset ambiguity between candidates [{best.target.root_type_id}] and "
                            f"[{cid}]: bit {best.target.bit_offset} != {cand.bit_offset}")
            elif res.poison != best.poison or res.new_val != best.new_val:
                raise _Fail(f"candidates [{best.target.root_type_id if best.target else 0}] and [{cid}] "
                            f"resolve differently: {best.new_val} != {res.new_val}")
        if best is None:
            best = _calc(local, None)
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
            raise _Fail(f"misaligned instruction offset {relo.insn_off}")
        return relo.insn_off // INSN_SIZE, relo.type_id, relo.access, CoreReloKind(relo.kind)
    idx, rec = relo
    access = getattr(rec, "access", "") or local.string_at(int(rec.access_str_off))
    return int(idx), int(rec.type_id), str(access), CoreReloKind(int(rec.kind))


def relocate_program(insns: bytearray, relos: Iterable[ReloInput], local: BTF,
                     target: Union[BTF, Targets, Relocator, None] = None, *,
                     line_of: Optional[Callable[[int], str]] = None, prog_name: str = "",
                     strict: bool = False) -> List[AppliedRelo]:
    """Apply CO-RE relocations to ``insns`` in place, as libbpf would before loading.

    ``relos`` are :class:`CoreRelo` records (``insn_off`` in bytes from the start of ``insns``) or
    ``(instruction index, record)`` pairs whose record has ``type_id``, ``kind`` and ``access`` (or
    ``access_str_off``). ``target`` defaults to the running kernel's BTF (vmlinux, then modules).
    ``line_of(insn_index)`` gives the C source line for messages. Returns what was done per relocation.
    """
    if target is None:
        from rawbpf.btf import kernel

        target = kernel.targets()
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
                raise _Fail(f"instruction {idx} is outside the program ({n_insns} instructions)")
            spec = parse_spec(local, type_id, access, kind)
            desc = spec.describe()
            res = rel.resolve_spec(spec)
            applied = AppliedRelo(idx, kind, desc, res.target.root_type_id if res.target else 0,
                                  res.orig_val, res.new_val)
            _patch(insns, idx, res, applied)
            if applied.poisoned and not applied.reason:
                applied.reason = _why_missing(kind, spec)
        except (_Fail, BTFError, ValueError) as err:
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
                   target: Union[BTF, Targets, Relocator, None] = None, *,
                   line_of: Optional[Callable[[int], str]] = None, prog_name: str = "") -> str:
    """Why instruction ``insn`` became ``call 0xbad2310`` ("invalid func unknown#195896080"), or "".

    Both libbpf-style user-space CO-RE and the kernel's own CO-RE poison an instruction whose relocation has
    no target; the verifier then only says "invalid func unknown#195896080". This resolves the relocations
    of that instruction (or of the ld_imm64 it is the second half of) again and names the type, the field
    path and the C source line. Use it when a load fails that way.
    """
    if target is None:
        from rawbpf.btf import kernel

        target = kernel.targets()
    rel = target if isinstance(target, Relocator) else Relocator(local, target)
    for no, relo in enumerate(relos):
        try:
            idx, type_id, access, kind = _normalise(relo, local)
            if idx not in (insn, insn - 1):
                continue
            spec = parse_spec(local, type_id, access, kind)
            res = rel.resolve_spec(spec)
        except (_Fail, BTFError, ValueError):
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
    struct.pack_into("<BBhi", insns, idx * INSN_SIZE, _CALL, 0, 0, POISON_IMM)


def _patch(insns: bytearray, idx: int, res: Resolution, applied: AppliedRelo) -> None:
    base = idx * INSN_SIZE
    code, _regs, off, imm = struct.unpack_from("<BBhi", insns, base)
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
            raise _Fail(f"instruction {idx} (ALU) uses a register operand")
        if res.validate and (imm & _U64) != orig:
            raise _Fail(f"instruction {idx} (ALU) has imm {imm}, expected {orig} (object and BTF disagree)")
        struct.pack_into("<i", insns, base + 4, _s32(new))
        orig = imm
    elif cls in (_CLS_LDX, _CLS_ST, _CLS_STX):
        if res.validate and (off & _U64) != orig:
            raise _Fail(f"instruction {idx} (LDX/ST/STX) has offset {off}, expected {orig}")
        if new > 0x7FFF:
            raise _Fail(f"instruction {idx} (LDX/ST/STX): offset {new} is too big")
        if res.fail_memsz_adjust:
            applied.poisoned = True
            applied.reason = ("the field's size differs in the target and it is not a pointer or unsigned "
                              "integer; read fields of matching type and size")
            _poison(insns, idx)
            return
        struct.pack_into("<h", insns, base + 2, new)
        orig = off
        if res.new_sz != res.orig_sz:
            have = _SIZE_BYTES.get(code & 0x18)
            if have != res.orig_sz:
                raise _Fail(f"instruction {idx} (LDX/ST/STX) accesses {have} bytes, expected {res.orig_sz}")
            size = _BYTES_SIZE.get(res.new_sz)
            if size is None:
                raise _Fail(f"instruction {idx} (LDX/ST/STX): no load/store of {res.new_sz} bytes")
            insns[base] = (code & 0xE7) | size
    elif code == _LD_IMM64:
        if idx + 1 >= len(insns) // INSN_SIZE:
            raise _Fail(f"instruction {idx} (LDIMM64) is truncated")
        c2, r2, o2, imm2 = struct.unpack_from("<BBhi", insns, base + INSN_SIZE)
        if (_regs >> 4) != 0 or off != 0 or c2 != 0 or r2 != 0 or o2 != 0:
            raise _Fail(f"instruction {idx} (LDIMM64) has an unexpected form")
        val = (imm & 0xFFFFFFFF) | ((imm2 & _U64) << 32 & _U64)
        if res.validate and val != orig:
            raise _Fail(f"instruction {idx} (LDIMM64) holds {val}, expected {orig}")
        struct.pack_into("<i", insns, base + 4, _s32(new))
        struct.pack_into("<i", insns, base + INSN_SIZE + 4, _s32(new >> 32))
        orig = val
    else:
        raise _Fail(f"instruction {idx} (code 0x{code:02x}) cannot be relocated")
    applied.orig, applied.new = orig, new


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v
