"""Decoding of ring-buffer records driven by the object's own BTF, plus value formatting; pure, no syscalls.

No record layout is written down in Python: every decoder is generated from the BTF of the object that
produces the records, compiled once into a ``struct`` format and a Python function, and reused.

Which struct describes a ring's records (first match wins):

1. an explicit ``record_type`` (``rawbpf load --record-type NAME``);
2. a struct named after the ring map: map ``events`` → ``struct events``, ``struct event``,
   ``struct events_record``, ``struct event_record``;
3. a *tagged family*: an enum whose enumerators share a prefix (``REC_EXEC``, ``REC_EXIT`` …) and for which
   structs named by the lower-cased enumerators exist (``struct rec_exec``, ``struct rec_exit``), each
   starting with an integer member ``type`` at offset 0 that holds the enumerator's value. A record's ``type``
   selects its struct; enumerators without a struct (``REC_KINDS``) decode as ``raw``.

Output: a dict with ``type`` first: the enumerator name without the common prefix, lower-case (``exec``), or
the struct name for single-struct rings. Then the fields in declaration order:

* integers, floats, pointers (as ints); ``bool`` as bool;
* enums by name (common prefix stripped, lower-case; unknown values stay ints);
* ``char`` arrays as strings: up to the first NUL, utf-8 with replacement characters. When the struct also has
  an integer member ``<name>_len``, exactly that many bytes are taken (embedded NULs kept, e.g. NUL-separated
  argv or abstract unix socket paths), so records sent shorter than the struct (``bpf_ringbuf_output`` of the
  used bytes only) decode fully;
* other arrays as lists (``__u8``/``unsigned char`` arrays as bytes); nested structs as dicts; members of
  anonymous structs/unions are lifted into the parent;
* a union following an enum member named ``type`` or ``kind`` is *discriminated*: only the union member named
  like the enumerator (``exec``) is decoded, its fields lifted into the record; other unions decode as a dict
  of every member's interpretation;
* bitfields as ints;
* members named ``pad``, ``padding``, ``reserved`` or ``unused`` (optionally numbered or with leading
  underscores) are alignment padding and left out.

A field named ``ts`` (an integer) is a kernel timestamp: ``ts`` in the output is wall-clock ns, converted with
the offset between CLOCK_REALTIME and the kernel clock the stamp came from (``bpf_ktime_get_ns`` is
CLOCK_MONOTONIC, ``bpf_ktime_get_boot_ns`` CLOCK_BOOTTIME; :class:`TimeBase` picks whichever is nearest on the
first stamp unless told). Records without one get the time they were read. A field named ``seq`` is output as
``seq_`` and a non-discriminant field named ``type`` as ``type_``, since ``seq`` and ``type`` belong to the
log.

Records come from the running kernel, so they are decoded in the host's byte order. Records shorter than
their struct are zero-filled; longer ones ignore the excess (a trailing flexible array
member takes it). Speed: :meth:`RecordDecoder.decode_run` unpacks a whole run of equal-length records with one
``struct.iter_unpack`` and builds the dicts in one generated comprehension.
"""

from __future__ import annotations

import errno as _errno
import ipaddress
import itertools
import re
import signal as _signal
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import msgpack

from rawbpf.btf import BTF, BtfType, Kind
from rawbpf.errors import BTFError
from rawbpf.logformat import pack_records

__tier__ = "pure"

__all__ = [
    "RecordDecoder", "RingDecoder", "TimeBase", "find_record_layout", "ring_decoder",
    "format_addr", "errno_name", "signal_name", "cstr", "common_prefix",
]

HDR_SIZE = 8
_MAX_DEPTH = 32
_RESERVED = {"seq": "seq_", "type": "type_"}
_PAD = re.compile(r"^_*(?:pad|padding|reserved|unused)\d*$")


# -- value helpers

def cstr(b: bytes) -> str:
    """A C string from a fixed-size buffer: up to the first NUL, utf-8 with replacement characters."""
    i = b.find(b"\0")
    return (b if i < 0 else b[:i]).decode("utf-8", "replace")


def _lenstr(b: bytes, n: int) -> str:
    return b[:max(0, min(n, len(b)))].decode("utf-8", "replace")


def format_addr(family: Any, addr: bytes) -> str:
    """An IPv4/IPv6 address in its usual text form (``family`` 2/``inet`` or 10/``inet6``)."""
    fam = {2: "inet", 10: "inet6"}.get(family, family) if isinstance(family, int) else str(family)
    if fam in ("inet", "af_inet", "ipv4"):
        return str(ipaddress.IPv4Address(bytes(addr[:4])))
    if fam in ("inet6", "af_inet6", "ipv6"):
        return str(ipaddress.IPv6Address(bytes(addr[:16])))
    return bytes(addr).hex()


def errno_name(value: int) -> str:
    """``-111`` or ``111`` → ``ECONNREFUSED``; 0 → ``""``; unknown numbers as text."""
    v = abs(int(value))
    if v == 0:
        return ""
    return _errno.errorcode.get(v, str(v))


def signal_name(value: int) -> str:
    """``9`` → ``SIGKILL``; 0 → ``""``; unknown numbers as text."""
    if not value:
        return ""
    try:
        return _signal.Signals(int(value)).name
    except ValueError:
        return str(value)


def common_prefix(names: Sequence[str]) -> str:
    """The longest common prefix of enumerator names, cut after the last ``_`` (``REC_EXEC, REC_EXIT`` →
    ``REC_``); "" for a single name without ``_``."""
    if not names:
        return ""
    if len(names) == 1:
        n = names[0]
        return n[: n.rfind("_") + 1]
    pre = names[0]
    for n in names[1:]:
        while not n.startswith(pre):
            pre = pre[:-1]
    return pre[: pre.rfind("_") + 1]


def enum_labels(t: BtfType) -> Dict[int, str]:
    """Enumerator value → name without the common prefix, lower-case (first name wins for duplicates)."""
    pre = common_prefix([v.name for v in t.values])
    out: Dict[int, str] = {}
    for v in t.values:
        out.setdefault(v.value, (v.name[len(pre):] or v.name).lower())
    return out


# -- clocks

class TimeBase:
    """Converts kernel timestamps (ns on CLOCK_MONOTONIC or CLOCK_BOOTTIME) to wall-clock ns.

    ``clock`` is ``"monotonic"``, ``"boottime"`` or ``"auto"``: pick the clock whose current value is nearest
    the first stamp seen (records are fresh; the two clocks differ by the time the host was suspended).
    :meth:`refresh` re-reads the offset (call it now and then: NTP steps the wall clock).
    """

    def __init__(self, clock: str = "auto") -> None:
        if clock not in ("auto", "monotonic", "boottime"):
            raise BTFError(f"time base: unknown clock '{clock}' (monotonic, boottime or auto)")
        self.clock = clock
        self.offset = 0
        if clock != "auto":
            self.refresh()

    @staticmethod
    def _now(clock: str) -> int:
        cid = time.CLOCK_MONOTONIC if clock == "monotonic" else getattr(time, "CLOCK_BOOTTIME", 7)
        return time.clock_gettime_ns(cid)

    def refresh(self) -> int:
        if self.clock != "auto":
            self.offset = time.time_ns() - self._now(self.clock)
        return self.offset

    def settle(self, stamp: int) -> int:
        """Decide the clock from a first stamp (auto mode); returns the offset."""
        if self.clock == "auto":
            mono, boot = self._now("monotonic"), self._now("boottime")
            self.clock = "monotonic" if abs(stamp - mono) < abs(stamp - boot) else "boottime"
            self.refresh()
        return self.offset


# -- layout

@dataclass
class _Gen:
    """Accumulates the struct format (fields at increasing offsets) and slot variables."""

    btf: BTF
    fmt: List[str] = field(default_factory=list)
    pos: int = 0
    nslots: int = 0
    helpers: Dict[str, Any] = field(default_factory=dict)

    def slot(self, offset: int, code: str) -> str:
        if offset < self.pos:
            raise BTFError(f"record layout: overlapping field at offset {offset}")
        if offset > self.pos:
            self.fmt.append(f"{offset - self.pos}x")
        self.fmt.append(code)
        self.pos = offset + struct.calcsize("=" + code)
        v = f"v{self.nslots}"
        self.nslots += 1
        return v

    def helper(self, prefix: str, value: Any) -> str:
        name = f"_{prefix}{len(self.helpers)}"
        self.helpers[name] = value
        return name


_INT_CODES = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h", (4, False): "I",
              (4, True): "i", (8, False): "Q", (8, True): "q"}


def _is_char(t: BtfType) -> bool:
    return t.kind == Kind.INT and t.size == 1 and t.name == "char"


class _Layout:
    """Builds the expression for one struct; ``choose`` maps a discriminated union to its member name."""

    def __init__(self, btf: BTF, gen: _Gen, choose: Optional[str] = None, disc: str = "") -> None:
        self.btf = btf
        self.gen = gen
        self.choose = choose  # the union member to decode (discriminated union)
        self.disc = disc  # the top-level member that holds the kind: left out, ``type`` says it

    def value(self, type_id: int, offset: int, depth: int, size_hint: int = 0) -> str:
        if depth > _MAX_DEPTH:
            raise BTFError("record layout: types nested too deeply")
        btf = self.btf
        t = btf.resolved(type_id)
        k = t.kind
        g = self.gen
        if k == Kind.INT:
            if t.int_encoding & 4 and t.size == 1:
                return g.slot(offset, "?")
            code = _INT_CODES.get((t.size, t.signed))
            if code is None:  # __int128 and other sizes: raw bytes as an unsigned int
                v = g.slot(offset, f"{t.size}s")
                return f"int.from_bytes({v}, 'little', signed={t.signed})"
            return g.slot(offset, code)
        if k in (Kind.ENUM, Kind.ENUM64):
            code = _INT_CODES.get((t.size, t.signed), "I")
            v = g.slot(offset, code)
            labels = g.helper("e", enum_labels(t))
            return f"{labels}.get({v}, {v})"
        if k == Kind.FLOAT:
            return g.slot(offset, {4: "f", 8: "d", 2: "e"}.get(t.size, f"{t.size}x"))
        if k == Kind.PTR:
            return g.slot(offset, "Q")
        if k == Kind.ARRAY:
            assert t.array is not None
            n = t.array.nelems
            elem = btf.resolved(t.array.type)
            esize = btf.size_of(t.array.type)
            if elem.kind == Kind.INT and esize == 1 and elem.int_encoding & 4 == 0:
                v = g.slot(offset, f"{n}s")
                return f"_cstr({v})" if _is_char(elem) else v
            cast: Optional[str] = None
            if elem.kind == Kind.INT and not elem.int_encoding & 4:
                cast = _INT_CODES.get((esize, elem.signed))
            elif elem.kind == Kind.FLOAT:
                cast = {4: "f", 8: "d"}.get(esize)
            if cast is not None and n > 16:  # a long array of numbers: one slot, one cast
                v = g.slot(offset, f"{n * esize}s")
                return f"memoryview({v}).cast({cast!r}).tolist()"
            items = [self.value(t.array.type, offset + i * esize, depth + 1) for i in range(n)]
            return "[" + ", ".join(items) + "]"
        if k == Kind.STRUCT:
            return "{" + ", ".join(self.fields(t, offset, depth + 1)) + "}"
        if k == Kind.UNION:
            return self.union(t, offset, depth)
        raise BTFError(f"record layout: cannot decode {btf.type_name(type_id)} ({k.name.lower()})")

    def union(self, t: BtfType, offset: int, depth: int) -> str:
        # an undiscriminated union: every member's interpretation, decoded from a copy of its bytes
        g = self.gen
        v = g.slot(offset, f"{t.size}s")
        parts = []
        for m in t.members:
            sub = compile_struct(self.btf, m.type, size=t.size, sub_offset=m.bits_offset // 8)
            fn = g.helper("u", sub)
            parts.append(f"{m.name!r}: {fn}({v})")
        return "{" + ", ".join(parts) + "}"

    def fields(self, t: BtfType, base: int, depth: int, top: bool = False) -> List[str]:
        """``'name': expr`` items of a struct's members (anonymous members lifted)."""
        btf = self.btf
        out: List[str] = []
        members = sorted(t.members, key=lambda m: m.bits_offset)
        names = {m.name for m in members}
        len_slots: Dict[str, str] = {}
        i = 0
        while i < len(members):
            m = members[i]
            off = base + m.bits_offset // 8
            mt = btf.resolved(m.type)
            if m.bitfield_size:
                j = i
                while j < len(members) and members[j].bitfield_size:
                    j += 1
                out.extend(self.bitfields(members[i:j], base))
                i = j
                continue
            i += 1
            if mt.kind == Kind.UNION and self.choose is not None and (top or not m.name):
                out.extend(self.chosen(mt, off, depth))
                continue
            if not m.name and mt.kind == Kind.STRUCT:
                out.extend(self.fields(mt, off, depth + 1, top))
                continue
            if not m.name and mt.kind == Kind.UNION:
                out.append(f"**{self.union(mt, off, depth)}")
                continue
            if top and self.disc and m.name == self.disc:
                continue  # its bytes become padding; the record's ``type`` names the kind
            if _PAD.match(m.name):
                continue  # explicit alignment padding carries nothing
            key = _RESERVED.get(m.name, m.name) if top else m.name
            lslot = len_slots.get(m.name + "_len")
            if lslot is not None and mt.kind == Kind.ARRAY:
                assert mt.array is not None
                v = self.gen.slot(off, f"{btf.size_of(m.type)}s")
                if _is_char(btf.resolved(mt.array.type)):
                    out.append(f"{key!r}: _lenstr({v}, {lslot})")
                else:
                    out.append(f"{key!r}: {v}[:max(0, {lslot})]")
                continue
            expr = self.value(m.type, off, depth + 1)
            if m.name.endswith("_len") and m.name[:-4] in names and re.fullmatch(r"v\d+", expr):
                len_slots[m.name] = expr
            if top and m.name == "ts" and mt.kind == Kind.INT:
                expr = f"({expr} + _tsoff)"
            out.append(f"{key!r}: {expr}")
        return out

    def chosen(self, u: BtfType, off: int, depth: int) -> List[str]:
        for m in u.members:
            if m.name == self.choose:
                mt = self.btf.resolved(m.type)
                moff = off + m.bits_offset // 8
                if mt.kind == Kind.STRUCT:
                    return self.fields(mt, moff, depth + 1)
                return [f"{m.name!r}: {self.value(m.type, moff, depth + 1)}"]
        return []

    def bitfields(self, members: Sequence[Any], base: int) -> List[str]:
        lo = min(m.bits_offset for m in members) // 8
        hi = max((m.bits_offset + m.bitfield_size + 7) // 8 for m in members)
        v = self.gen.slot(base + lo, f"{hi - lo}s")
        word = f"int.from_bytes({v}, 'little')"
        out = []
        for m in members:
            shift = m.bits_offset - lo * 8
            mask = (1 << m.bitfield_size) - 1
            expr = f"(({word} >> {shift}) & {mask})"
            if self.btf.resolved(m.type).signed:
                expr = f"_sext({expr}, {m.bitfield_size})"
            if m.name:
                out.append(f"{m.name!r}: {expr}")
        return out


def _sext(v: int, bits: int) -> int:
    return v - (1 << bits) if v >> (bits - 1) & 1 else v


_NS = {"_cstr": cstr, "_lenstr": _lenstr, "_sext": _sext, "_count": itertools.count, "_iter_unpack":
       struct.iter_unpack}


def compile_struct(btf: BTF, type_id: int, *, size: int = 0, sub_offset: int = 0) -> Callable[[bytes], Any]:
    """A function bytes → value for one type (used for union members: all share the union's bytes)."""
    gen = _Gen(btf)
    lay = _Layout(btf, gen)
    expr = lay.value(type_id, sub_offset, 0)
    total = max(size, gen.pos)
    fmt = "=" + "".join(gen.fmt) + (f"{total - gen.pos}x" if total > gen.pos else "")
    st = struct.Struct(fmt)
    names = ", ".join(f"v{i}" for i in range(gen.nslots)) + ("," if gen.nslots == 1 else "")
    src = f"def _f(b):\n    ({names}) = _st.unpack_from(b.ljust({total}, b'\\0'))\n    return {expr}\n"
    if gen.nslots == 0:
        src = f"def _f(b):\n    return {expr}\n"
    ns: Dict[str, Any] = dict(_NS, _st=st, **gen.helpers)
    exec(compile(src, f"<rawbpf record {btf.type_name(type_id)}>", "exec"), ns)
    fn: Callable[[bytes], Any] = ns["_f"]
    return fn


_MARK_U = {1: 0xCC, 2: 0xCD, 4: 0xCE, 8: 0xCF}
_MARK_S = {1: 0xD0, 2: 0xD1, 4: 0xD2, 8: 0xD3}
_MARK_F = {4: 0xCA, 8: 0xCB}
_REP: Dict[int, int] = {}
_IOTA = b""


def _rep(n: int) -> int:
    """The integer whose ``n`` little-endian 64-bit lanes are all 1 (cached)."""
    r = _REP.get(n)
    if r is None:
        r = int.from_bytes(b"\x01\0\0\0\0\0\0\0" * n, "little")
        if len(_REP) > 64:
            _REP.clear()
        _REP[n] = r
    return r


def _iota(n: int) -> bytes:
    """0, 1, … n-1 as little-endian u64 lanes."""
    global _IOTA
    if len(_IOTA) < 8 * n:
        _IOTA = b"".join(i.to_bytes(8, "little") for i in range(max(n, 4096)))
    return _IOTA[: 8 * n]


class ColumnEncoder:
    """Packs runs of fixed-width numeric records straight into msgpack maps, a column at a time; pure.

    When every field of a record struct is an integer or a float (no strings, enums, arrays, nested structs
    or bitfields), every record's map has the same layout once each number is written at its full width
    (msgpack allows any width; readers get the same values). The map is then a template repeated per record,
    and each field's bytes are scattered into it by strided slice assignments straight from the ring's
    little-endian bytes into big-endian order. ``seq`` and the wall-clock ``ts`` are computed for a whole run
    at once: the run's column is read as one big integer of 64-bit lanes and the offset added to every lane
    in one addition (no lane can carry: stamps and offsets stay far below 2**63). The bytes unpack to exactly
    the dicts :class:`RecordDecoder` builds.
    """

    def __init__(self, template: bytes, fields: List[Tuple[int, int, int]], seq_at: int, ts_at: int,
                 ts_src: int) -> None:
        self.template = template
        self.size = len(template)
        self.fields = fields  # (source offset in the slot, width, value offset in the template)
        self.seq_at = seq_at
        self.ts_at = ts_at
        self.ts_src = ts_src  # slot offset of the kernel stamp, or -1: the read time

    @classmethod
    def build(cls, btf: BTF, t: BtfType, kind: str, disc: str) -> Optional[ColumnEncoder]:
        keys: List[Tuple[str, int, int, int]] = []  # (key, marker, width, slot offset)
        ts_src = -1
        for m in sorted(t.members, key=lambda m: m.bits_offset):
            if m.bitfield_size or m.bits_offset % 8 or not m.name:
                return None
            if (disc and m.name == disc) or _PAD.match(m.name):
                continue
            mt = btf.resolved(m.type)
            off = HDR_SIZE + m.bits_offset // 8
            if mt.kind == Kind.INT and mt.size in _MARK_U and not mt.int_encoding & 4:
                marker = (_MARK_S if mt.signed else _MARK_U)[mt.size]
            elif mt.kind == Kind.FLOAT and mt.size in _MARK_F:
                marker = _MARK_F[mt.size]
            else:
                return None
            if m.name == "ts" and mt.kind == Kind.INT:
                if mt.size != 8:
                    return None
                ts_src = off
                continue
            keys.append((_RESERVED.get(m.name, m.name), marker, mt.size, off))
        entries = 3 + len(keys)
        tpl = bytearray(bytes([0x80 | entries]) if entries < 16 else b"\xde" + entries.to_bytes(2, "big"))
        packer = msgpack.Packer(use_bin_type=True)
        tpl += packer.pack("seq") + b"\xcf"
        seq_at = len(tpl)
        tpl += bytes(8) + packer.pack("ts") + b"\xcf"
        ts_at = len(tpl)
        tpl += bytes(8) + packer.pack("type") + packer.pack(kind)
        fields = []
        for key, marker, width, src in keys:
            tpl += packer.pack(key) + bytes([marker])
            fields.append((src, width, len(tpl)))
            tpl += bytes(width)
        return cls(bytes(tpl), fields, seq_at, ts_at, ts_src)

    def encode(self, buf: Any, off: int, count: int, stride: int, seq: int, tsoff: int, now: int
               ) -> Optional[bytes]:
        """The msgpack maps of ``count`` ring slots at ``off`` every ``stride`` bytes, ``seq`` numbered."""
        size = self.size
        out = bytearray(self.template * count)
        ov = memoryview(out)
        rv = memoryview(buf)[off:off + count * stride]
        for src, width, dst in self.fields:
            last = width - 1
            for k in range(width):
                ov[dst + k::size] = rv[src + last - k::stride]
        rep = _rep(count)
        self._lanes(ov, self.seq_at, (int.from_bytes(_iota(count), "little") + seq * rep)
                    .to_bytes(8 * count, "little"))
        if self.ts_src >= 0:
            if max(rv[self.ts_src + 7::stride].tobytes()) >= 0x40:
                return None  # a stamp past 2**62 ns (not a kernel clock): lanes could carry
            col = bytearray(8 * count)
            cv = memoryview(col)
            for k in range(8):
                cv[k::8] = rv[self.ts_src + k::stride]
            stamps = int.from_bytes(col, "little") + tsoff * rep
        else:
            stamps = now * rep
        self._lanes(ov, self.ts_at, stamps.to_bytes(8 * count, "little"))
        return bytes(out)

    def _lanes(self, ov: memoryview, dst: int, le: bytes) -> None:
        lv = memoryview(le)
        size = self.size
        for k in range(8):
            ov[dst + k::size] = lv[7 - k::8]


class RecordDecoder:
    """A compiled decoder for one struct (one record kind).

    :meth:`decode` turns one record's bytes into a dict; :meth:`decode_run` a run of equal-length records from
    a ring buffer into dicts with ``seq`` and ``ts``; :meth:`unpack_run` into plain tuples (the raw fast
    path).
    """

    def __init__(self, btf: BTF, type_id: int, *, kind: str = "", choose: Optional[str] = None,
                 disc: str = "", time_base: Optional[TimeBase] = None) -> None:
        t = btf.resolved(type_id)
        if t.kind != Kind.STRUCT:
            raise BTFError(f"record type {btf.type_name(type_id)}: not a struct")
        self.btf = btf
        self.type_id = type_id
        self.name = t.name
        self.kind = kind or t.name
        self.size = t.size
        self.time_base = time_base or TimeBase()
        gen = _Gen(btf)
        lay = _Layout(btf, gen, choose, disc)
        items = lay.fields(t, 0, 0, top=True)
        if gen.pos > t.size:
            raise BTFError(f"record type {t.name}: fields extend past the struct's size")
        self.body_format = "".join(gen.fmt) + (f"{t.size - gen.pos}x" if t.size > gen.pos else "")
        self.struct = struct.Struct("=" + self.body_format)
        self.has_ts = any(s.startswith("'ts': (") for s in items)
        self.fields = [s.split(":", 1)[0].strip("'*") for s in items]
        names = ", ".join(f"v{i}" for i in range(gen.nslots))
        if gen.nslots == 1:
            names += ","
        body = "{" + f"'type': {self.kind!r}, " + ", ".join(items) + "}"
        # log records: seq, ts (the converted kernel stamp, else the read time), type, then the fields
        ts_items = [i for i in items if i.startswith("'ts': (")]
        rest = [i for i in items if not i.startswith("'ts': (")]
        ts_expr = ts_items[0][len("'ts': "):] if ts_items else "_now"
        logbody = "{" + f"'seq': _s, 'ts': {ts_expr}, 'type': {self.kind!r}, " + ", ".join(rest) + "}"
        target = f"({names})" if gen.nslots else "_"
        src = (
            f"def _one(_b, _tsoff, _now):\n"
            f"    {target} = _st.unpack_from(_b)\n"
            f"    return {body}\n"
            f"def _many(_it, _seq, _tsoff, _now):\n"
            f"    return [{logbody} for _s, {target} in zip(_count(_seq), _it)]\n"
        )
        ns: Dict[str, Any] = dict(_NS, _st=self.struct, **gen.helpers)
        exec(compile(src, f"<rawbpf record {t.name}>", "exec"), ns)
        self._one: Callable[[bytes, int, int], Dict[str, Any]] = ns["_one"]
        self._many: Callable[[Any, int, int, int], List[Dict[str, Any]]] = ns["_many"]
        self._run_structs: Dict[Tuple[int, int], struct.Struct] = {}
        self._source = src
        #: the column encoder when every field is a fixed-width number (see :class:`ColumnEncoder`)
        little = sys.byteorder == "little"  # the encoder reorders little-endian ring bytes
        self.columns = ColumnEncoder.build(btf, t, self.kind, disc) if choose is None and little else None
        # a trailing flexible array member (``__u8 data[]``) takes the bytes past the struct
        self.flex = ""
        self._flex_str = False
        if t.members:
            last = t.members[-1]
            lt = btf.resolved(last.type)
            if lt.kind == Kind.ARRAY and lt.array is not None and lt.array.nelems == 0 and last.name:
                self.flex = _RESERVED.get(last.name, last.name)
                self._flex_str = _is_char(btf.resolved(lt.array.type))

    def _tail(self, d: Dict[str, Any], b: Any) -> Dict[str, Any]:
        if self.flex and len(b) > self.size:
            extra = bytes(b[self.size:])
            d[self.flex] = extra.decode("utf-8", "replace") if self._flex_str else extra
        return d

    @classmethod
    def from_btf(cls, btf: BTF, struct_name: str, **kw: Any) -> RecordDecoder:
        """The decoder for ``struct struct_name``."""
        t = btf.find(struct_name, Kind.STRUCT)
        if t is None:
            raise BTFError(f"record type '{struct_name}': no such struct in the object's BTF")
        return cls(btf, t.id, **kw)

    def _tsoff(self, first_stamp: Optional[int] = None) -> int:
        tb = self.time_base
        if tb.clock == "auto" and self.has_ts and first_stamp is not None:
            return tb.settle(first_stamp)
        return tb.offset

    def _padded(self, b: Any) -> Any:
        n = len(b)
        if n == self.size:
            return b
        return bytes(b[: self.size]) if n > self.size else bytes(b) + bytes(self.size - n)

    def decode(self, buf: Any, now: Optional[int] = None) -> Dict[str, Any]:
        """One record → dict (``type`` first, ``ts`` converted when the struct has one)."""
        b = self._padded(buf)
        off = self._tsoff(self._stamp(b)) if self.has_ts else 0
        return self._tail(self._one(b, off, time.time_ns() if now is None else now), buf)

    def _stamp(self, b: Any) -> Optional[int]:
        if self.time_base.clock != "auto":
            return None
        d = self._one(b, 0, 0)
        ts = d.get("ts")
        return ts if isinstance(ts, int) else None

    def run_struct(self, length: int, stride: int) -> struct.Struct:
        """The format of one ring slot (header + record + padding) for records of ``length`` bytes."""
        key = (length, stride)
        st = self._run_structs.get(key)
        if st is None:
            st = struct.Struct(f"={HDR_SIZE}x{self.body_format}{stride - HDR_SIZE - self.size}x")
            self._run_structs[key] = st
        return st

    def unpack_run(self, buf: Any, off: int, count: int, length: int, stride: int) -> List[Tuple[Any, ...]]:
        """Tuples of the raw field values of ``count`` records (only for ``length == size``)."""
        st = self.run_struct(length, stride)
        return list(st.iter_unpack(memoryview(buf)[off:off + count * stride]))

    def pack_run(self, buf: Any, off: int, count: int, length: int, stride: int, seq: int,
                 now: int) -> bytes:
        """The msgpack bytes of :meth:`decode_run`'s dicts (column-encoded when the layout allows)."""
        cols = self.columns
        if cols is not None and length == self.size:
            if self.has_ts and self.time_base.clock == "auto":
                p = off + HDR_SIZE
                self._tsoff(self._stamp(bytes(memoryview(buf)[p:p + length])))
            tsoff = self.time_base.offset
            if 0 <= tsoff < 1 << 62:
                data = cols.encode(buf, off, count, stride, seq, tsoff, now)
                if data is not None:
                    return data
        return _pack(self.decode_run(buf, off, count, length, stride, seq, now))

    def decode_run(self, buf: Any, off: int, count: int, length: int, stride: int, seq: int,
                   now: Optional[int] = None) -> List[Dict[str, Any]]:
        """Dicts (with ``seq`` from ``seq`` on) for ``count`` ring slots at ``off`` every ``stride`` bytes."""
        now = time.time_ns() if now is None else now
        if length == self.size:
            it = self.run_struct(length, stride).iter_unpack(memoryview(buf)[off:off + count * stride])
            if self.has_ts and self.time_base.clock == "auto":
                self._tsoff(self._stamp(bytes(memoryview(buf)[off + HDR_SIZE:off + HDR_SIZE + length])))
            return self._many(it, seq, self.time_base.offset, now)
        mv = memoryview(buf)
        tuples = []
        for i in range(count):
            p = off + i * stride + HDR_SIZE
            tuples.append(self.struct.unpack(self._padded(mv[p:p + length])))
        if self.has_ts and self.time_base.clock == "auto" and count:
            p = off + HDR_SIZE
            self._tsoff(self._stamp(self._padded(mv[p:p + length])))
        out = self._many(iter(tuples), seq, self.time_base.offset, now)
        if self.flex and length > self.size:
            for i, d in enumerate(out):
                p = off + i * stride + HDR_SIZE
                self._tail(d, mv[p:p + length])
        return out


# -- finding the record layout of a ring

@dataclass
class RecordLayout:
    """How a ring's records are decoded: one struct, or a tagged family (discriminant value → struct)."""

    struct_id: int = 0
    family: Dict[int, Tuple[str, int]] = field(default_factory=dict)  # value → (kind, struct id)
    enum_name: str = ""
    union_choice: Dict[int, str] = field(default_factory=dict)  # value → union member (discriminated union)

    @property
    def tagged(self) -> bool:
        return bool(self.family) or bool(self.union_choice)


def _singular(name: str) -> str:
    return name[:-1] if name.endswith("s") and len(name) > 1 else name


def find_record_layout(btf: BTF, map_name: str, record_type: Optional[str] = None) -> Optional[RecordLayout]:
    """Apply the module's convention; None when nothing describes the ring's records."""
    if record_type:
        t = btf.find(record_type, Kind.STRUCT)
        if t is None:
            raise BTFError(f"record type '{record_type}': no such struct in the object's BTF")
        return _struct_layout(btf, t)
    for cand in (map_name, _singular(map_name), f"{map_name}_record", f"{_singular(map_name)}_record"):
        t = btf.find(cand, Kind.STRUCT)
        if t is not None:
            return _struct_layout(btf, t)
    return _tagged_family(btf)


def _struct_layout(btf: BTF, t: BtfType) -> RecordLayout:
    """A single struct; if it has an enum ``type``/``kind`` member and a union, the union is discriminated."""
    lay = RecordLayout(struct_id=t.id)
    disc = None
    has_union = False
    for m in t.members:
        mt = btf.resolved(m.type)
        if m.name in ("type", "kind") and mt.is_enum and disc is None:
            disc = mt
        if mt.kind == Kind.UNION:
            has_union = True
    if disc is not None and has_union:
        lay.enum_name = disc.name
        lay.union_choice = dict(enum_labels(disc))
    return lay


def _tagged_family(btf: BTF) -> Optional[RecordLayout]:
    best: Optional[RecordLayout] = None
    for t in btf.types:
        if t.kind not in (Kind.ENUM, Kind.ENUM64) or len(t.values) < 1:
            continue
        pre = common_prefix([v.name for v in t.values])
        if not pre:
            continue
        fam: Dict[int, Tuple[str, int]] = {}
        for v in t.values:
            st = btf.find(v.name.lower(), Kind.STRUCT)
            if st is None or not st.members:
                continue
            first = st.members[0]
            if first.name != "type" or first.bits_offset != 0 or btf.resolved(first.type).kind not in (
                    Kind.INT, Kind.ENUM, Kind.ENUM64):
                continue
            fam.setdefault(v.value, (v.name[len(pre):].lower(), st.id))
        if fam and (best is None or len(fam) > len(best.family)):
            best = RecordLayout(family=fam, enum_name=t.name)
    return best


class RingDecoder:
    """Decodes every record of one ring according to a :class:`RecordLayout`.

    ``decode_runs(buf, runs, seq)`` returns the dicts of a drain (``seq`` numbered from ``seq``); records that
    cannot be decoded become ``{"type": "raw", "data": bytes}`` (a decoder for an unknown kind) and never stop
    the stream.
    """

    def __init__(self, btf: Optional[BTF], layout: Optional[RecordLayout], *, clock: str = "auto",
                 map_name: str = "") -> None:
        self.map_name = map_name
        self.time_base = TimeBase(clock)
        self.single: Optional[RecordDecoder] = None
        self.kinds: Dict[int, RecordDecoder] = {}
        self.disc_off = 0
        self.disc_size = 4
        self.sizes: Dict[int, int] = {}
        if btf is not None and layout is not None:
            if layout.family:
                for value, (kind, sid) in layout.family.items():
                    self.kinds[value] = RecordDecoder(btf, sid, kind=kind, disc="type",
                                                      time_base=self.time_base)
                first = next(iter(layout.family.values()))[1]
                self.disc_size = btf.size_of(btf[first].members[0].type)
            elif layout.union_choice:
                t = btf[layout.struct_id]
                dm = next(m for m in t.members if m.name in ("type", "kind"))
                self.disc_off = dm.bits_offset // 8
                self.disc_size = btf.size_of(dm.type)
                for value, member in layout.union_choice.items():
                    self.kinds[value] = RecordDecoder(btf, layout.struct_id, kind=member, choose=member,
                                                      disc=dm.name, time_base=self.time_base)
            else:
                self.single = RecordDecoder(btf, layout.struct_id, time_base=self.time_base)
        self._disc = struct.Struct("=" + {1: "B", 2: "H", 4: "I", 8: "Q"}.get(self.disc_size, "I"))
        #: records that became ``raw`` because no decoder matched
        self.undecoded = 0

    @property
    def raw_only(self) -> bool:
        return self.single is None and not self.kinds

    def decode(self, buf: Any) -> Dict[str, Any]:
        """One record → dict (no ``seq``)."""
        if self.single is not None:
            return self.single.decode(buf)
        dec = self._kind_of(buf, 0)
        if dec is None:
            self.undecoded += 1
            return {"type": "raw", "ts": time.time_ns(), "map": self.map_name, "data": bytes(buf)}
        return dec.decode(buf)

    def _kind_of(self, buf: Any, off: int) -> Optional[RecordDecoder]:
        if not self.kinds or len(buf) - off < self.disc_off + self.disc_size:
            return None
        return self.kinds.get(self._disc.unpack_from(buf, off + self.disc_off)[0])

    def decode_runs(self, buf: bytes, runs: Sequence[Tuple[int, int, int, int]], seq: int,
                    now: Optional[int] = None) -> List[Dict[str, Any]]:
        now = time.time_ns() if now is None else now
        single = self.single
        out: List[Dict[str, Any]] = []
        for off, length, count, stride in runs:
            if single is not None:
                recs = single.decode_run(buf, off, count, length, stride, seq + len(out), now)
                out.extend(recs)
                continue
            uniform = self._uniform_kind(buf, (off, length, count, stride))
            if uniform is not None:
                out.extend(uniform.decode_run(buf, off, count, length, stride, seq + len(out), now))
                continue
            i = 0
            while i < count:
                p = off + i * stride
                dec = self._kind_of(memoryview(buf)[p + HDR_SIZE:p + HDR_SIZE + length], 0)
                # the longest stretch of the same kind decodes as one run
                j = i + 1
                if dec is not None:
                    while j < count and self._kind_of(
                            memoryview(buf)[off + j * stride + HDR_SIZE:off + j * stride + HDR_SIZE + length],
                            0) is dec:
                        j += 1
                    out.extend(dec.decode_run(buf, p, j - i, length, stride, seq + len(out), now))
                else:
                    self.undecoded += 1
                    out.append({"seq": seq + len(out), "ts": now, "type": "raw", "map": self.map_name,
                                "data": bytes(buf[p + HDR_SIZE:p + HDR_SIZE + length])})
                i = j
        return out


    def pack_runs(self, buf: Any, runs: Sequence[Tuple[int, int, int, int]], seq: int,
                  now: Optional[int] = None) -> bytes:
        """The msgpack bytes of :meth:`decode_runs`' records, column-encoded where a run allows it."""
        now = time.time_ns() if now is None else now
        parts: List[bytes] = []
        s = seq
        for run in runs:
            off, length, count, stride = run
            dec = self.single if self.single is not None else self._uniform_kind(buf, run)
            if dec is not None:
                parts.append(dec.pack_run(buf, off, count, length, stride, s, now))
            else:
                parts.append(_pack(self.decode_runs(buf, [run], s, now)))
            s += count
        return b"".join(parts)

    def _uniform_kind(self, buf: Any, run: Tuple[int, int, int, int]) -> Optional[RecordDecoder]:
        """The decoder of a run whose records are all of one kind (checked with one strided compare)."""
        off, length, count, stride = run
        w = self.disc_size
        start = off + HDR_SIZE + self.disc_off
        if not self.kinds or length < self.disc_off + w or w not in (1, 2, 4, 8) or start % w or stride % w:
            return None
        fmt: Any = {1: "B", 2: "H", 4: "I", 8: "Q"}[w]
        col = memoryview(buf).cast("B").cast(fmt)[start // w::stride // w]
        col = col[:count]
        first = col[0]
        dec = self.kinds.get(first)
        if dec is None:
            return None
        if count > 1 and col.tobytes() != first.to_bytes(w, "little") * count:
            return None
        return dec


def _pack(records: List[Dict[str, Any]]) -> bytes:
    return pack_records(records)


def ring_decoder(btf: Optional[BTF], map_name: str, record_type: Optional[str] = None, *,
                 clock: str = "auto") -> RingDecoder:
    """The decoder for ring ``map_name`` of an object with ``btf`` (raw records when nothing matches)."""
    layout = find_record_layout(btf, map_name, record_type) if btf is not None else None
    if btf is None and record_type:
        raise BTFError(f"record type '{record_type}': the object has no BTF")
    return RingDecoder(btf, layout, clock=clock, map_name=map_name)
