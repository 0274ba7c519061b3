"""Re-encode BTF for BTF_LOAD, fill DATASECs clang leaves empty, and sanitise for older kernels; pure.

``marshal`` writes the header, the type records and the string table. Names keep their original string offsets
when unchanged, so a clang-produced .BTF re-encodes byte for byte; new or changed names are appended.
"""

from __future__ import annotations

import copy
import struct
from array import array
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from rawbpf.btf.parse import BTF, HEADER_LEN, MAGIC
from rawbpf.btf.types import (
    FUNC_GLOBAL,
    FUNC_STATIC,
    SIZED_KINDS,
    VAR_GLOBAL_ALLOCATED,
    VAR_GLOBAL_EXTERN,
    VAR_STATIC,
    BtfType,
    EnumValue,
    Kind,
    Member,
)
from rawbpf.errors import BTFError

__tier__ = "pure"

# DATASECs backing externs: libbpf sizes them itself and no ELF symbol backs every VAR.
_EXTERN_SECS = (".kconfig", ".ksyms")


class _Strings:
    """The string table being written: the original table, then names that are new."""

    def __init__(self, btf: BTF) -> None:
        self.btf = btf
        self.blob = bytearray(btf.raw_strings or b"\0")
        self.known: Optional[Dict[str, int]] = None

    def off(self, name: str, orig: int) -> int:
        btf = self.btf
        if not name:
            return 0 if btf.base is None or orig == 0 else self.intern(name)
        if 0 < orig < btf.str_len and btf.string_at(orig) == name:
            return orig
        return self.intern(name)

    def intern(self, name: str) -> int:
        if self.known is None:
            self.known = {}
            pos = 0
            for raw in bytes(self.blob).split(b"\0"):
                self.known.setdefault(raw.decode("utf-8", "surrogateescape"), pos)
                pos += len(raw) + 1
        hit = self.known.get(name)
        if hit is not None:
            return self.btf.str_start + hit
        pos = len(self.blob)
        self.blob += name.encode("utf-8", "surrogateescape") + b"\0"
        self.known[name] = pos
        return self.btf.str_start + pos


def _u32(v: int, what: str) -> int:
    if not 0 <= v <= 0xFFFFFFFF:
        raise BTFError(f"btf: marshal: {what} value {v} does not fit 32 bits")
    return v


def _encode(t: BtfType, strs: _Strings, out: List[int]) -> None:
    k = t.kind
    what = f"type [{t.id}] {t.name}"
    vlen = t.vlen
    if vlen > 0xFFFFFF:
        raise BTFError(f"btf: marshal: {what} has too many members ({vlen})")
    info = (int(k) << 24) | vlen | (0x80000000 if t.kind_flag else 0)
    out += (strs.off(t.name, t.name_off), info, _u32(t.size if k in SIZED_KINDS else t.type, what))
    if k == Kind.INT:
        out.append(((t.int_encoding & 0x0F) << 24) | ((t.int_offset & 0xFF) << 16) | (t.int_bits & 0xFF))
    elif k == Kind.ARRAY:
        a = t.array
        if a is None:
            raise BTFError(f"btf: marshal: {what}: array without payload")
        out += (_u32(a.type, what), _u32(a.index_type, what), _u32(a.nelems, what))
    elif k in (Kind.STRUCT, Kind.UNION):
        for m in t.members:
            if t.kind_flag:
                if m.bits_offset > 0xFFFFFF or m.bitfield_size > 0xFF:
                    raise BTFError(f"btf: marshal: {what} member '{m.name}' offset/bitfield out of range")
                off = (m.bitfield_size << 24) | m.bits_offset
            else:
                off = m.bits_offset
            out += (strs.off(m.name, m.name_off), _u32(m.type, what), _u32(off, what))
    elif k == Kind.ENUM:
        for ev in t.values:
            out += (strs.off(ev.name, ev.name_off), ev.value & 0xFFFFFFFF)
    elif k == Kind.ENUM64:
        for ev in t.values:
            raw = ev.value & 0xFFFFFFFFFFFFFFFF
            out += (strs.off(ev.name, ev.name_off), raw & 0xFFFFFFFF, raw >> 32)
    elif k == Kind.FUNC_PROTO:
        for p in t.params:
            out += (strs.off(p.name, p.name_off), _u32(p.type, what))
    elif k == Kind.VAR:
        out.append(_u32(t.linkage, what))
    elif k == Kind.DATASEC:
        for v in t.vars:
            out += (_u32(v.type, what), _u32(v.offset, what), _u32(v.size, what))
    elif k == Kind.DECL_TAG:
        out.append(t.component_idx & 0xFFFFFFFF)


def marshal(btf: BTF) -> bytes:
    """Encode ``btf``'s own types and strings (split BTF: without its base) in its byte order."""
    strs = _Strings(btf)
    words: List[int] = []
    for t in btf.own_types():
        _encode(t, strs, words)
    types = array("I", words)
    e = "<" if btf.byte_order == "little" else ">"
    if (e == "<") != (struct.pack("=I", 1) == b"\1\0\0\0"):
        types.byteswap()
    type_bytes = types.tobytes()
    strings = bytes(strs.blob)
    n = len(type_bytes)
    hdr = struct.pack(e + "HBBIIIII", MAGIC, 1, 0, HEADER_LEN, 0, n, n, len(strings))
    return hdr + type_bytes + strings


def fill_datasecs(btf: BTF, section_sizes: Dict[str, int], symbol_offsets: Dict[str, Dict[str, int]],
                  hidden: Sequence[str] = ()) -> None:
    """Fill what clang leaves zero in DATASECs, as libbpf's btf_fixup_datasec does, in place.

    A DATASEC of size 0 gets the ELF section's size and each non-static, non-extern VAR its symbol's value
    (``symbol_offsets[section][var]``). Global VARs whose symbol has hidden/internal visibility (``hidden``,
    symbol names) become static. Entries are then sorted by offset. ``.kconfig``/``.ksyms`` are only sorted.
    """
    hidden_set = set(hidden)
    for t in btf.own_types():
        if t.kind != Kind.DATASEC:
            continue
        sec = t.name
        if sec not in _EXTERN_SECS:
            fix_offsets = False
            if t.size == 0:
                size = section_sizes.get(sec, 0)
                if not size:
                    raise BTFError(f"btf: datasec '{sec}': no ELF section size to fill it from")
                t.size = size
                fix_offsets = True
            syms = symbol_offsets.get(sec, {})
            for vsi in t.vars:
                var = btf[vsi.type]
                if var.kind != Kind.VAR:
                    raise BTFError(f"btf: datasec '{sec}': entry [{vsi.type}] is a {var.kind.name.lower()}, "
                                   "not a var")
                if var.linkage in (VAR_STATIC, VAR_GLOBAL_EXTERN):
                    continue
                if var.name not in syms:
                    raise BTFError(f"btf: datasec '{sec}': no ELF symbol for var '{var.name}'")
                if fix_offsets:
                    vsi.offset = syms[var.name]
                if var.name in hidden_set:
                    var.linkage = VAR_STATIC
        t.vars.sort(key=lambda v: v.offset)


def fixup_externs(btf: BTF, kconfig_offsets: Optional[Dict[str, int]] = None, kconfig_size: int = 0) -> None:
    """Make the extern-backing DATASECs loadable, in place, as libbpf does when it collects externs.

    ``.ksyms``: every entry becomes a 4-byte slot at ``4 * i``; variables turn into allocated ``int`` VARs,
    functions into global FUNCs whose slot points at an added ``dummy_ksym`` VAR (the kernel refuses extern
    linkage in program BTF), and their unnamed parameters borrow its name. ``.kconfig``: variables become
    allocated at the offsets the loader laid them out at (``kconfig_offsets``, ``kconfig_size`` in all).
    Run before :func:`fill_datasecs`.
    """
    ksyms = btf.find(".ksyms", Kind.DATASEC)
    if ksyms is not None and ksyms.vars:
        int_id = next((t.id for t in btf.own_types() if t.kind == Kind.INT and t.int_bits == 32), 0)
        dummy = 0
        if any(btf[v.type].kind == Kind.FUNC for v in ksyms.vars):
            dummy = btf.add(BtfType(0, Kind.VAR, "dummy_ksym", type=int_id, linkage=VAR_GLOBAL_ALLOCATED))
        for i, vs in enumerate(ksyms.vars):
            vt = btf[vs.type]
            if vt.kind == Kind.FUNC:
                for p in btf[vt.type].params:
                    if p.type and not p.name:
                        p.name, p.name_off = "dummy_ksym", 0
                vs.type = dummy
                vt.linkage = FUNC_GLOBAL
            elif vt.kind == Kind.VAR:
                vt.linkage, vt.type = VAR_GLOBAL_ALLOCATED, int_id
            else:
                raise BTFError(f"btf: datasec '.ksyms': entry [{vs.type}] is a {vt.kind.name.lower()}")
            vs.offset, vs.size = 4 * i, 4
        ksyms.size = 4 * len(ksyms.vars)
    kcfg = btf.find(".kconfig", Kind.DATASEC)
    if kcfg is not None and kcfg.vars:
        offs = kconfig_offsets or {}
        for vs in kcfg.vars:
            vt = btf[vs.type]
            if vt.name not in offs:
                raise BTFError(f"btf: datasec '.kconfig': no offset for extern '{vt.name}'")
            vt.linkage = VAR_GLOBAL_ALLOCATED
            vs.offset = offs[vt.name]
        kcfg.size = kconfig_size or max(v.offset + v.size for v in kcfg.vars)


@dataclass(frozen=True)
class BtfFeatures:
    """Which BTF kinds and flavours the kernel accepts (all True: this kernel, nothing to replace)."""

    func: bool = True  # FUNC, FUNC_PROTO (4.20 / 5.0)
    func_global: bool = True  # FUNC linkage global (5.6)
    datasec: bool = True  # VAR, DATASEC (5.2)
    qmark_datasec: bool = True  # DATASEC names starting with '?' (5.18)
    float: bool = True  # FLOAT (5.13)
    decl_tag: bool = True  # DECL_TAG (5.16)
    type_tag: bool = True  # TYPE_TAG (5.17)
    enum64: bool = True  # ENUM64 and signed ENUM (6.0)

    @classmethod
    def none(cls) -> BtfFeatures:
        """A kernel with plain BTF only: every optional kind replaced."""
        return cls(False, False, False, False, False, False, False, False)


def sanitized(btf: BTF, f: BtfFeatures) -> BTF:
    """A copy of ``btf`` with the kinds the kernel lacks replaced the way libbpf replaces them.

    VAR and DECL_TAG become 1-byte INTs, DATASEC a STRUCT of its vars ('.'/'?' in the name → '_'),
    FUNC_PROTO an ENUM of its params (unnamed ones named ``__argN``), FUNC a TYPEDEF (or loses global
    linkage), FLOAT an anonymous empty STRUCT of its size, TYPE_TAG an anonymous CONST, ENUM64 a UNION of a
    1-byte placeholder INT (and ENUM loses its sign flag).
    Type ids do not change, so func_info and map type ids stay valid.
    """
    out = btf.copy()
    placeholder = 0
    for t in list(out.own_types()):
        k = t.kind
        if (not f.datasec and k == Kind.VAR) or (not f.decl_tag and k == Kind.DECL_TAG):
            _reset(t, Kind.INT, name=t.name, name_off=t.name_off)
            t.size, t.int_bits = 1, 8
        elif not f.datasec and k == Kind.DATASEC:
            members = [Member(out[v.type].name, v.type, v.offset * 8, 0, out[v.type].name_off)
                       for v in t.vars]
            name, size = t.name.replace(".", "_").replace("?", "_"), t.size
            _reset(t, Kind.STRUCT, name=name, name_off=t.name_off if name == t.name else 0)
            t.size, t.members = size, members
        elif not f.qmark_datasec and k == Kind.DATASEC and t.name.startswith("?"):
            t.name = "_" + t.name[1:]
        elif not f.func and k == Kind.FUNC_PROTO:
            # unnamed params would be unnamed enumerators, which kernels since 5.0 refuse: name them
            values = [EnumValue(p.name or f"__arg{i}", p.type, p.name_off) for i, p in enumerate(t.params)]
            _reset(t, Kind.ENUM, name=t.name, name_off=t.name_off)
            t.size, t.values = 4, values
        elif not f.func and k == Kind.FUNC:
            _reset(t, Kind.TYPEDEF, name=t.name, name_off=t.name_off, type_=t.type)
        elif not f.func_global and k == Kind.FUNC:
            t.linkage = FUNC_STATIC
        elif not f.float and k == Kind.FLOAT:
            size = t.size
            _reset(t, Kind.STRUCT)
            t.size = size
        elif not f.type_tag and k == Kind.TYPE_TAG:
            _reset(t, Kind.CONST, type_=t.type)
        elif not f.enum64 and k == Kind.ENUM:
            t.kind_flag = False
            for v in t.values:  # same bits, now read as unsigned
                v.value &= 0xFFFFFFFF
        elif not f.enum64 and k == Kind.ENUM64:
            if not placeholder:
                placeholder = out.add(BtfType(0, Kind.INT, "enum64_placeholder", size=1, int_bits=8))
            members = [Member(v.name, placeholder, 0, 0, v.name_off) for v in t.values]
            size = t.size
            _reset(t, Kind.UNION, name=t.name, name_off=t.name_off)
            t.size, t.members = size, members
    return out


def _reset(t: BtfType, kind: Kind, *, name: str = "", name_off: int = 0, type_: int = 0) -> None:
    """Turn ``t`` into a bare type of ``kind`` keeping its id (fields of the old kind cleared)."""
    fresh = BtfType(t.id, kind, name, type=type_, name_off=name_off)
    t.__dict__.update(copy.copy(fresh.__dict__))
