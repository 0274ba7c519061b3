"""CO-RE matching rules: access specs, candidate search, type compatibility, relocation values; pure.

This is the decision half of CO-RE (what libbpf's relo_core.c decides); :mod:`rawbpf.btf.core` applies the
decisions to instructions. Failures are :class:`CoreFailure` (hard error) or :class:`Unrelocatable` (the
instruction is to be poisoned); the caller turns them into messages with context.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from rawbpf.btf.ext import CoreReloKind
from rawbpf.btf.parse import BTF
from rawbpf.btf.types import INT_SIGNED, BtfType, Kind

__tier__ = "pure"

SPEC_MAX_LEN = 64
_MAX_LEVEL = 32
_U64 = (1 << 64) - 1


class Unrelocatable(Exception):
    """The relocation has no value for this spec: the instruction is poisoned."""


class CoreFailure(Exception):
    """A hard CO-RE failure (bad access string, ambiguity, unexpected instruction)."""


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
    index = target.name_index()
    if index is None:
        offs = target.string_offsets(ess)
        offs += [o for o in target.strings_with_prefix(ess + "___")
                 if essential_name(target.string_at(o)) == ess]
        ids = target.ids_by_name_offsets(offs)
    else:
        ids = list(index.get(ess, ()))
        for name in target.flavored_names():
            if name.startswith(ess) and essential_name(name) == ess:
                ids += index[name]
    out = []
    for tid in ids:
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
        raise CoreFailure(f"bad access string '{access}'")
    spec = Spec(btf, type_id, kind)
    if kind.is_type:
        if access != "0":
            raise CoreFailure(f"type relocation with access string '{access}' (want '0')")
        return spec
    try:
        spec.raw = [int(p) for p in access.split(":")]
    except ValueError:
        raise CoreFailure(f"bad access string '{access}'") from None
    if any(i < 0 for i in spec.raw) or len(spec.raw) > SPEC_MAX_LEN:
        raise CoreFailure(f"bad access string '{access}'")
    t, tid = _skip(btf, type_id)
    first = spec.raw[0]
    if kind.is_enumval:
        if not t.is_enum or len(spec.raw) > 1 or first >= len(t.values):
            raise CoreFailure(f"enum value access '{access}' does not fit {btf.type_name(type_id)}")
        spec.access.append(Accessor(tid, first, t.values[first].name))
        return spec
    spec.access.append(Accessor(tid, first))
    spec.bit_offset = first * btf.size_of(tid) * 8
    for i in range(1, len(spec.raw)):
        t, tid = _skip(btf, tid)
        idx = spec.raw[i]
        if t.is_composite:
            if idx >= len(t.members):
                raise CoreFailure(f"access '{access}': member #{idx} beyond {btf.type_name(tid)}")
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
                raise CoreFailure(f"access '{access}': index {idx} beyond {btf.type_name(t.id)}")
            spec.access.append(Accessor(tid, idx))
            spec.bit_offset += idx * btf.size_of(tid) * 8
        else:
            raise CoreFailure(f"access '{access}' (at #{i}) steps into {btf.type_name(tid)}, "
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
    raise CoreFailure("type nesting too deep")


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
                    raise CoreFailure("type nesting too deep")
                if not types_are_compat(lb, lb.resolve(lp.type), tb, tb.resolve(tp.type), level - 1):
                    return False
            lid, tid = lt.type, tt.type
        else:
            return False
    raise CoreFailure("type nesting too deep")


def _names_match(ln: str, tn: str) -> bool:
    if not tn:
        return not ln
    return essential_name(ln) == essential_name(tn)


def types_match(lb: BTF, lid: int, tb: BTF, tid: int, behind_ptr: bool = False,
                level: int = _MAX_LEVEL) -> bool:
    """The stricter TYPE_MATCHES relation (layouts agree member by member, enums by enumerator names)."""
    if level <= 0:
        raise CoreFailure("type nesting too deep")
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
    raise CoreFailure("type nesting too deep")


# ---------------------------------------------------------------------------------------------- matching


def _match_member(local: Spec, acc: Accessor, tb: BTF, tid: int, spec: Spec) -> Tuple[bool, int]:
    """Find the local named member in target type ``tid`` (descending into anonymous members)."""
    tt, tid = _skip(tb, tid)
    if not tt.is_composite:
        return False, 0
    lm = local.btf[acc.type_id].members[acc.idx]
    for i, m in enumerate(tt.members):
        if len(spec.raw) >= SPEC_MAX_LEN:
            raise CoreFailure("access nested too deep")
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
            raise CoreFailure("access nested too deep")
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
        raise Unrelocatable()
    btf = spec.btf
    acc = spec.access[-1]
    if acc.name is None:  # array element (or the root pointer's element)
        size = btf.size_of(acc.type_id)
        if kind == CoreReloKind.FIELD_BYTE_OFFSET:
            return _Field(spec.bit_offset // 8, size, acc.type_id)
        if kind == CoreReloKind.FIELD_BYTE_SIZE:
            return _Field(size)
        raise CoreFailure(f"{kind.name.lower()} cannot apply to an array element")
    t = btf[acc.type_id]
    m = t.members[acc.idx]
    mt, field_tid = _skip(btf, m.type)
    bit_off = spec.bit_offset
    bit_sz = m.bitfield_size if t.kind_flag else 0
    bitfield = bit_sz > 0
    if bitfield:
        byte_sz = mt.size
        if byte_sz <= 0:
            raise CoreFailure(f"bitfield of unsized {btf.type_name(field_tid)}")
        byte_off = bit_off // 8 // byte_sz * byte_sz
        while bit_off + bit_sz - byte_off * 8 > byte_sz * 8:
            if byte_sz >= 8:
                raise CoreFailure("bitfield cannot be read with a 64-bit load")
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
    raise CoreFailure(f"unknown field relocation kind {int(kind)}")


def _calc_type(spec: Optional[Spec], kind: CoreReloKind) -> Tuple[int, bool]:
    if spec is None:
        return 0, True
    if kind == CoreReloKind.TYPE_ID_TARGET:
        return spec.root_type_id, False
    if kind in (CoreReloKind.TYPE_EXISTS, CoreReloKind.TYPE_MATCHES):
        return 1, True
    if kind == CoreReloKind.TYPE_SIZE:
        return spec.btf.size_of(spec.root_type_id), True
    raise CoreFailure(f"unknown type relocation kind {int(kind)}")


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
        raise Unrelocatable()
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


def calc(local: Spec, targ: Optional[Spec]) -> Resolution:
    """The relocation's compiled-in and target values for one candidate (``targ`` None: no candidate)."""
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
    except Unrelocatable:
        res.poison = True
    return res
