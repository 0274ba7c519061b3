"""Pure parser and query API for BTF blobs (.BTF sections, vmlinux, module split BTF); makes no syscalls.

Parsing scans the type section once into an array of record offsets and decodes a type only when it is asked
for, so the 127k-type vmlinux blob indexes in tens of milliseconds. ``BTF.parse`` of an object's .BTF decodes
(and so validates) everything up front; ``BTF.parse(..., lazy=True)`` validates the record framing and string
table only, and decodes on demand. Anything malformed raises a one-line :class:`BTFError`.
"""

from __future__ import annotations

import struct
import sys
from array import array
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union, overload

from rawbpf.btf.types import (
    KIND_MAX,
    SIZED_KINDS,
    Array,
    BtfType,
    EnumValue,
    Kind,
    Member,
    Param,
    VarSecInfo,
    kind_name,
)
from rawbpf.errors import BTFError

__tier__ = "pure"

MAGIC = 0xEB9F
HEADER_LEN = 24
_MAX_DEPTH = 32  # resolve chains deeper than this are cycles (libbpf's MAX_RESOLVE_DEPTH)

# Extra 32-bit words after the 3-word header: fixed part, and per vlen entry.
_FIXED_WORDS = {Kind.INT: 1, Kind.ARRAY: 3, Kind.VAR: 1, Kind.DECL_TAG: 1}
_VLEN_WORDS = {Kind.STRUCT: 3, Kind.UNION: 3, Kind.ENUM: 2, Kind.FUNC_PROTO: 2, Kind.DATASEC: 3,
               Kind.ENUM64: 3}
# per kind value (7 bits): words from a record's start to its vlen entries (-1: no such kind), words per entry
_STEP = [3 + _FIXED_WORDS.get(Kind(k), 0) if 0 < k <= KIND_MAX else -1 for k in range(128)]
_PER = [_VLEN_WORDS.get(Kind(k), 0) if 0 < k <= KIND_MAX else 0 for k in range(128)]

FieldPath = Tuple[Tuple[Member, int], ...]


def _s32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


def _s64(v: int) -> int:
    return v - (1 << 64) if v & (1 << 63) else v


class _TypeView(Sequence[BtfType]):
    """``btf.types``: every type id, base types included, decoded on access."""

    def __init__(self, btf: BTF) -> None:
        self._btf = btf

    def __len__(self) -> int:
        return len(self._btf)

    @overload
    def __getitem__(self, i: int) -> BtfType: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[BtfType]: ...

    def __getitem__(self, i: Union[int, slice]) -> Union[BtfType, Sequence[BtfType]]:
        if isinstance(i, slice):
            return [self._btf[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        return self._btf[i]

    def __iter__(self) -> Iterator[BtfType]:
        for i in range(len(self)):
            yield self._btf[i]


class BTF:
    """A parsed BTF blob. Type ids index :attr:`types`; id 0 is ``void``.

    For split BTF (kernel module BTF) ``base`` is the BTF it extends: ids below :attr:`start_id` and string
    offsets below the base's string length refer to the base.
    """

    def __init__(self, *, strings: bytes, words: Sequence[int], offsets: Sequence[int],
                 base: Optional[BTF] = None, byte_order: str = "little") -> None:
        self.base = base
        self.byte_order = byte_order
        self._strings = strings
        self._words = words
        self._offs = offsets
        self.start_id = len(base) if base is not None else 1
        self.str_start = base.str_len if base is not None else 0
        self._cache: List[Optional[BtfType]] = [None] * len(offsets)
        self._name_index: Optional[bytes] = None
        self._by_name: Optional[Dict[str, List[int]]] = None
        self._flavored: List[str] = []
        self._name_lookups = 0
        self._void = BtfType(0, Kind.UNKN)

    # ----------------------------------------------------------------- parsing

    @classmethod
    def parse(cls, data: bytes, base: Optional[BTF] = None, *, lazy: bool = False) -> BTF:
        """Parse a BTF blob (header, types, strings). ``base`` makes it split BTF.

        Without ``lazy`` every type is decoded now, so a malformed blob fails here; with ``lazy`` (vmlinux)
        only the record framing is checked and types decode when first used.
        """
        data = bytes(data)
        if len(data) < HEADER_LEN:
            raise BTFError(f"btf: {len(data)} bytes is too short for a header")
        magic_le = struct.unpack_from("<H", data)[0]
        if magic_le == MAGIC:
            order, e = "little", "<"
        elif magic_le == 0x9FEB:
            order, e = "big", ">"
        else:
            raise BTFError(f"btf: bad magic 0x{magic_le:04x} (want 0xeb9f)")
        fields = struct.unpack_from(e + "HBBIIIII", data)
        _, version, flags, hdr_len, type_off, type_len, str_off, str_len = fields
        if version != 1:
            raise BTFError(f"btf: unsupported version {version}")
        if flags:
            raise BTFError(f"btf: unsupported header flags 0x{flags:x}")
        if hdr_len < HEADER_LEN or hdr_len > len(data):
            raise BTFError(f"btf: bad header length {hdr_len}")
        if base is not None and base.byte_order != order:
            raise BTFError("btf: split BTF and its base differ in byte order")
        body = len(data) - hdr_len
        if type_off + type_len > body or str_off + str_len > body:
            raise BTFError(f"btf: sections overrun the {len(data)}-byte blob")
        if type_len % 4 or type_off % 4:
            raise BTFError(f"btf: type section at {type_off} of {type_len} bytes is not 4-byte aligned")
        if type_off < str_off < type_off + type_len or str_off < type_off < str_off + str_len:
            raise BTFError("btf: type and string sections overlap")
        strings = data[hdr_len + str_off: hdr_len + str_off + str_len]
        if base is None and (not strings or strings[0] != 0):
            raise BTFError("btf: string section must start with an empty string")
        if strings and strings[-1] != 0:
            raise BTFError("btf: string section is not NUL-terminated")
        words = array("I", data[hdr_len + type_off: hdr_len + type_off + type_len])
        if (order == "little") != (sys.byteorder == "little"):
            words.byteswap()
        offsets = _scan(words)
        btf = cls(strings=strings, words=words, offsets=offsets, base=base, byte_order=order)
        if len(btf) > 0xFFFFFFFF:
            raise BTFError("btf: too many types")
        if not lazy:
            for i in range(btf.start_id, len(btf)):
                btf[i]
        return btf

    # ------------------------------------------------------------------ access

    def __len__(self) -> int:
        """Number of type ids, void and base types included (btf__type_cnt)."""
        return self.start_id + len(self._cache)

    def __getitem__(self, type_id: int) -> BtfType:
        if type_id < self.start_id:
            if self.base is not None:
                return self.base[type_id]
            if type_id == 0:
                return self._void
            raise BTFError(f"btf: type id {type_id} out of range")
        i = type_id - self.start_id
        if i >= len(self._cache):
            raise BTFError(f"btf: type id {type_id} out of range (have {len(self)})")
        t = self._cache[i]
        if t is None:
            t = self._decode(type_id, self._offs[i])
            self._cache[i] = t
        return t

    @property
    def types(self) -> Sequence[BtfType]:
        """Every type by id (``types[0]`` is void), decoded on access."""
        return _TypeView(self)

    def own_types(self) -> Iterator[BtfType]:
        """The types this blob defines (not its base's), in id order."""
        for i in range(self.start_id, len(self)):
            yield self[i]

    @property
    def decoded_count(self) -> int:
        """How many of this blob's own types have been decoded so far (lazy parsing)."""
        return sum(1 for t in self._cache if t is not None)

    def added_types(self) -> List[BtfType]:
        """Types appended with :meth:`add` (not in the parsed blob)."""
        return [t for t in self._cache[len(self._offs):] if t is not None]

    def add(self, t: BtfType) -> int:
        """Append a type (used by sanitising); sets and returns its id."""
        t.id = len(self)
        self._cache.append(t)
        return t.id

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BTF):
            return NotImplemented
        return (len(self) == len(other) and self.start_id == other.start_id
                and list(self.own_types()) == list(other.own_types()))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        split = f", split from {self.start_id}" if self.base is not None else ""
        return f"<BTF {len(self)} types{split}>"

    # ----------------------------------------------------------------- strings

    @property
    def str_len(self) -> int:
        """Total string-table length, base included (the first string offset of a split BTF on top)."""
        return self.str_start + len(self._strings)

    @property
    def raw_strings(self) -> bytes:
        """This blob's own string table as it was parsed."""
        return self._strings

    def string_at(self, off: int) -> str:
        """The NUL-terminated string at string-table offset ``off``."""
        if off < self.str_start:
            assert self.base is not None
            return self.base.string_at(off)
        rel = off - self.str_start
        if rel >= len(self._strings):
            raise BTFError(f"btf: string offset {off} out of range (table has {self.str_len} bytes)")
        end = self._strings.index(b"\0", rel)
        return self._strings[rel:end].decode("utf-8", "surrogateescape")

    def string_offsets(self, name: str) -> List[int]:
        """Every string-table offset (base included) at which the string ``name`` starts."""
        out = self.base.string_offsets(name) if self.base is not None else []
        needle = name.encode("utf-8", "surrogateescape") + b"\0"
        s = self._strings
        p = s.find(needle)
        while p >= 0:
            out.append(self.str_start + p)
            p = s.find(needle, p + 1)
        return out

    def strings_with_prefix(self, prefix: str) -> List[int]:
        """Offsets (base included) of every string starting with ``prefix`` (a non-empty prefix)."""
        out = self.base.strings_with_prefix(prefix) if self.base is not None else []
        needle = prefix.encode("utf-8", "surrogateescape")
        s = self._strings
        p = s.find(needle)
        while p >= 0:
            out.append(self.str_start + p)
            p = s.find(needle, p + 1)
        return out

    # ---------------------------------------------------------------- decoding

    def _decode(self, tid: int, w: int) -> BtfType:
        try:
            t = self._decode_raw(tid, w)
        except BTFError as err:
            what = kind_name((self._words[w + 1] >> 24) & 0x7F)
            raise BTFError(f"btf: type [{tid}] {what}: {str(err).removeprefix('btf: ')}") from None
        last = len(self) - 1
        refs = [t.type]
        if t.array is not None:
            refs += (t.array.type, t.array.index_type)
        refs += [m.type for m in t.members]
        refs += [p.type for p in t.params]
        refs += [v.type for v in t.vars]
        if max(refs) > last:
            raise BTFError(f"btf: type [{tid}] {kind_name(t.kind)} refers to type id {max(refs)}, "
                           f"beyond the last id {last}")
        return t

    def _decode_raw(self, tid: int, w: int) -> BtfType:
        words, name = self._words, self.string_at
        name_off, info, st = words[w], words[w + 1], words[w + 2]
        kind = Kind((info >> 24) & 0x7F)
        vlen = info & 0xFFFFFF
        kflag = bool(info >> 31)
        t = BtfType(tid, kind, name(name_off), kind_flag=kflag, name_off=name_off)
        if kind in SIZED_KINDS:
            t.size = st
        else:
            t.type = st
        p = w + 3
        if kind == Kind.INT:
            v = words[p]
            t.int_encoding, t.int_offset, t.int_bits = (v >> 24) & 0x0F, (v >> 16) & 0xFF, v & 0xFF
        elif kind == Kind.ARRAY:
            t.array = Array(words[p], words[p + 1], words[p + 2])
        elif kind == Kind.STRUCT or kind == Kind.UNION:
            members = t.members
            for _ in range(vlen):
                m_name, off = words[p], words[p + 2]
                if kflag:
                    members.append(Member(name(m_name), words[p + 1], off & 0xFFFFFF, off >> 24, m_name))
                else:
                    members.append(Member(name(m_name), words[p + 1], off, 0, m_name))
                p += 3
        elif kind == Kind.ENUM:
            for _ in range(vlen):
                v = words[p + 1]
                t.values.append(EnumValue(name(words[p]), _s32(v) if kflag else v, words[p]))
                p += 2
        elif kind == Kind.ENUM64:
            for _ in range(vlen):
                v = words[p + 1] | (words[p + 2] << 32)
                t.values.append(EnumValue(name(words[p]), _s64(v) if kflag else v, words[p]))
                p += 3
        elif kind == Kind.FUNC:
            t.linkage = vlen
        elif kind == Kind.FUNC_PROTO:
            for _ in range(vlen):
                t.params.append(Param(name(words[p]), words[p + 1], words[p]))
                p += 2
        elif kind == Kind.VAR:
            t.linkage = words[p]
        elif kind == Kind.DATASEC:
            for _ in range(vlen):
                t.vars.append(VarSecInfo(words[p], words[p + 1], words[p + 2]))
                p += 3
        elif kind == Kind.DECL_TAG:
            t.component_idx = _s32(words[p])
        return t

    # ----------------------------------------------------------------- lookups

    def _names(self) -> bytes:
        """Every own type's name_off as packed native u32s, made on first lookup (a C-speed search)."""
        if self._name_index is None:
            words = self._words
            self._name_index = array("I", [words[w] for w in self._offs]).tobytes()
        return self._name_index

    INDEX_AFTER = 8  # name lookups answered by scanning before the names are indexed whole

    def name_index(self) -> Optional[Dict[str, List[int]]]:
        """Own parsed types' ids by name, or None while a scan per lookup is cheaper.

        The first :attr:`INDEX_AFTER` calls return None (the caller scans: a few milliseconds each even in
        vmlinux); the next builds the index in one pass and keeps it. A caller with hundreds of names to
        resolve (user-space CO-RE against vmlinux) then pays ~0.1 s once instead of a scan of the name and
        string tables per name. Types appended with :meth:`add` are not in it.
        """
        if self._by_name is None:
            self._name_lookups += 1
            if self._name_lookups <= self.INDEX_AFTER:
                return None
            by_off: Dict[int, List[int]] = {}
            words, start = self._words, self.start_id
            for i, w in enumerate(self._offs):
                off = words[w]
                if off:
                    by_off.setdefault(off, []).append(start + i)
            by_name: Dict[str, List[int]] = {}
            for off, ids in by_off.items():
                by_name.setdefault(self.string_at(off), []).extend(ids)
            self._by_name = by_name
            self._flavored = [n for n in by_name if "___" in n]
        return self._by_name

    def flavored_names(self) -> List[str]:
        """The names in :meth:`name_index` that contain ``___`` (CO-RE flavours among them); empty before."""
        return self._flavored

    def ids_by_name_offsets(self, offsets: Sequence[int]) -> List[int]:
        """Own type ids, as parsed, whose name_off is one of ``offsets`` (ascending)."""
        names = self._names()
        out = set()
        for off in offsets:
            if not off:
                continue
            needle = struct.pack("=I", off)
            p = names.find(needle)
            while p >= 0:
                if p % 4 == 0:
                    out.add(p // 4 + self.start_id)
                p = names.find(needle, p + 1)
        return sorted(out)

    def find_all(self, name: str, kind: Optional[Kind] = None) -> List[BtfType]:
        """Every type called ``name`` (of ``kind`` if given), base types first, in id order.

        Names are indexed as parsed (plus types appended with :meth:`add`); renaming a type in place does not
        re-index it.
        """
        if not name:
            return []
        found: List[BtfType] = []
        if self.base is not None:
            found.extend(self.base.find_all(name, kind))
        own = self.ids_by_name_offsets(self.string_offsets(name))
        own += [t.id for t in self._cache[len(self._offs):] if t is not None and t.name == name]
        for tid in own:
            t = self[tid]
            if t.name == name and (kind is None or t.kind == kind):
                found.append(t)
        return found

    def find(self, name: str, kind: Optional[Kind] = None) -> Optional[BtfType]:
        """The first type called ``name`` (of ``kind`` if given), or None."""
        found = self.find_all(name, kind)
        return found[0] if found else None

    def get(self, name: str, kind: Optional[Kind] = None) -> BtfType:
        """Like :meth:`find` but a missing type is a BTFError."""
        t = self.find(name, kind)
        if t is None:
            what = f"{kind_name(kind)} '{name}'" if kind is not None else f"'{name}'"
            raise BTFError(f"btf: no type {what}")
        return t

    def resolve(self, type_id: int) -> int:
        """Skip typedefs and qualifiers (const, volatile, restrict, type tags) to the type beneath."""
        for _ in range(_MAX_DEPTH):
            t = self[type_id]
            if not t.is_modifier:
                return type_id
            type_id = t.type
        raise BTFError(f"btf: type [{type_id}]: typedef/modifier chain too deep (a cycle?)")

    def resolved(self, type_id: int) -> BtfType:
        """The type beneath typedefs and qualifiers."""
        return self[self.resolve(type_id)]

    def size_of(self, type_id: int) -> int:
        """Size in bytes as the kernel computes it (btf_resolve_size); unsized kinds are a BTFError."""
        nelems = 1
        tid = type_id
        for _ in range(_MAX_DEPTH):
            t = self[tid]
            k = t.kind
            if k in SIZED_KINDS:
                size = t.size
                break
            if k == Kind.PTR:
                size = 8
                break
            if t.is_modifier or k in (Kind.VAR, Kind.DECL_TAG):
                tid = t.type
            elif k == Kind.ARRAY:
                assert t.array is not None
                nelems *= t.array.nelems
                tid = t.array.type
            else:
                raise BTFError(f"btf: type [{type_id}] {self.type_name(type_id)} has no size "
                               f"({kind_name(k)})")
        else:
            raise BTFError(f"btf: type [{type_id}]: chain too deep to size (a cycle?)")
        if nelems and size > 0xFFFFFFFF // nelems:
            raise BTFError(f"btf: type [{type_id}] is larger than 4 GiB")
        return nelems * size

    def members_of(self, type_id: int) -> List[Member]:
        """Members of the struct/union beneath ``type_id`` (typedefs and qualifiers skipped)."""
        t = self.resolved(type_id)
        if not t.is_composite:
            raise BTFError(f"btf: {self.type_name(type_id)} is not a struct or union")
        return t.members

    def member_path(self, type_id: int, name: str) -> Optional[FieldPath]:
        """Find member ``name`` of a struct/union, looking inside anonymous struct/union members.

        Returns the chain of (member, its bit offset from the outer type) from the outer type down to the
        named member, or None.
        """
        return self._member_path(type_id, name, 0, 0)

    def _member_path(self, type_id: int, name: str, base_bits: int, depth: int) -> Optional[FieldPath]:
        if depth > _MAX_DEPTH:
            raise BTFError(f"btf: type [{type_id}]: anonymous members nested too deep")
        t = self.resolved(type_id)
        if not t.is_composite:
            return None
        for m in t.members:
            off = base_bits + m.bits_offset
            if m.name == name:
                return ((m, off),)
            if not m.name and self.resolved(m.type).is_composite:
                sub = self._member_path(m.type, name, off, depth + 1)
                if sub is not None:
                    return ((m, off), *sub)
        return None

    def field(self, type_id: int, path: str) -> Tuple[int, int, int]:
        """Resolve a dotted member path (``"a.b.c"``; anonymous members are transparent).

        Returns (member type id, bit offset from ``type_id``, bitfield size).
        """
        bits = 0
        tid = type_id
        bf = 0
        for part in path.split("."):
            found = self.member_path(tid, part)
            if found is None:
                raise BTFError(f"btf: {self.type_name(tid)} has no member '{part}'")
            m, off = found[-1]
            bits += off
            tid, bf = m.type, m.bitfield_size
        return tid, bits, bf

    # ----------------------------------------------------------------- naming

    def type_name(self, type_id: int) -> str:
        """A C-ish spelling of a type for messages: ``struct task_struct *``, ``char[16]``, ``void``."""
        return _type_name(self, type_id, 0)

    def copy(self) -> BTF:
        """An independent copy (every own type decoded and cloned; the base, if any, is shared)."""
        new = BTF(strings=self._strings, words=self._words, offsets=self._offs, base=self.base,
                  byte_order=self.byte_order)
        new._cache = [_clone(self[i]) for i in range(self.start_id, len(self))]
        return new


def _clone(t: BtfType) -> BtfType:
    """A copy of ``t`` sharing nothing mutable with it (faster than copy.deepcopy)."""
    c = object.__new__(BtfType)
    c.__dict__.update(t.__dict__)
    if t.members:
        c.members = [Member(m.name, m.type, m.bits_offset, m.bitfield_size, m.name_off) for m in t.members]
    if t.values:
        c.values = [EnumValue(v.name, v.value, v.name_off) for v in t.values]
    if t.params:
        c.params = [Param(p.name, p.type, p.name_off) for p in t.params]
    if t.vars:
        c.vars = [VarSecInfo(v.type, v.offset, v.size) for v in t.vars]
    if t.array is not None:
        c.array = Array(t.array.type, t.array.index_type, t.array.nelems)
    for name in ("members", "values", "params", "vars"):
        if not getattr(t, name):
            setattr(c, name, [])
    return c


def _scan(words: Sequence[int]) -> array:
    """Word index of every type record; checks kinds and that records tile the type section exactly."""
    offs = array("I")
    append = offs.append
    step, per = _STEP, _PER
    n = len(words)
    w = 0
    try:
        while w < n:
            info = words[w + 1]
            kind = (info >> 24) & 0x7F
            fixed = step[kind]
            if fixed < 0:
                raise BTFError(f"btf: type #{len(offs) + 1} has unknown kind {kind}")
            append(w)
            w += fixed + per[kind] * (info & 0xFFFFFF)
    except IndexError:
        raise BTFError(f"btf: type #{len(offs) + 1} is truncated") from None
    if w != n:
        raise BTFError(f"btf: type #{len(offs)} runs past the end of the type section")
    return offs


def _type_name(btf: BTF, type_id: int, depth: int) -> str:
    if depth > _MAX_DEPTH:
        return "..."
    t = btf[type_id]
    k = t.kind
    if k == Kind.UNKN:
        return "void"
    if k in (Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.FWD):
        fwd = "union" if t.kind_flag else "struct"
        word = {Kind.STRUCT: "struct", Kind.UNION: "union", Kind.FWD: fwd}.get(k, "enum")
        return f"{word} {t.name or '(anon)'}"
    if k in (Kind.INT, Kind.FLOAT, Kind.TYPEDEF):
        return t.name or "(anon)"
    if k == Kind.PTR:
        inner = _type_name(btf, t.type, depth + 1)
        return inner + ("*" if inner.endswith("*") else " *")
    if k in (Kind.CONST, Kind.VOLATILE, Kind.RESTRICT):
        return f"{k.name.lower()} {_type_name(btf, t.type, depth + 1)}"
    if k == Kind.TYPE_TAG:
        return f"{_type_name(btf, t.type, depth + 1)} __tag({t.name})"
    if k == Kind.ARRAY:
        dims = ""
        while t.kind == Kind.ARRAY and depth <= _MAX_DEPTH:
            assert t.array is not None
            dims += f"[{t.array.nelems}]"
            t = btf[t.array.type]
            depth += 1
        return f"{_type_name(btf, t.id, depth + 1)}{dims}"
    if k == Kind.FUNC_PROTO:
        params = ", ".join("..." if (p.type == 0 and not p.name) else _type_name(btf, p.type, depth + 1)
                           for p in t.params)
        return f"{_type_name(btf, t.type, depth + 1)} (*)({params or 'void'})"
    if k in (Kind.FUNC, Kind.VAR, Kind.DATASEC, Kind.DECL_TAG):
        return f"{k.name.lower()} {t.name}"
    return f"{kind_name(k)} {t.name}"
