"""Pure parser for .BTF.ext (func_info, line_info, CO-RE relocations) and the PROG_LOAD record packers.

Record offsets (``insn_off``) are kept as the file has them: **bytes** from the start of the ELF section. The
kernel wants func_info/line_info ``insn_off`` as instruction indexes and CO-RE ``insn_off`` in bytes; the
``pack_*`` helpers take an instruction base and do that conversion.
"""

from __future__ import annotations

import bisect
import enum
import struct
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Tuple

from rawbpf.asm.codec import INSN_SIZE
from rawbpf.btf.parse import BTF
from rawbpf.errors import BTFError

__tier__ = "pure"

EXT_HEADER_MIN = 24  # through line_info_len
EXT_HEADER_CORE = 32  # with core_relo_off/len
FUNC_INFO_SIZE = 8  # struct bpf_func_info
LINE_INFO_SIZE = 16  # struct bpf_line_info
CORE_RELO_SIZE = 16  # struct bpf_core_relo


class CoreReloKind(enum.IntEnum):
    """enum bpf_core_relo_kind."""

    FIELD_BYTE_OFFSET = 0
    FIELD_BYTE_SIZE = 1
    FIELD_EXISTS = 2
    FIELD_SIGNED = 3
    FIELD_LSHIFT_U64 = 4
    FIELD_RSHIFT_U64 = 5
    TYPE_ID_LOCAL = 6
    TYPE_ID_TARGET = 7
    TYPE_EXISTS = 8
    TYPE_SIZE = 9
    ENUMVAL_EXISTS = 10
    ENUMVAL_VALUE = 11
    TYPE_MATCHES = 12

    @property
    def is_field(self) -> bool:
        return self <= CoreReloKind.FIELD_RSHIFT_U64

    @property
    def is_type(self) -> bool:
        return self in (CoreReloKind.TYPE_ID_LOCAL, CoreReloKind.TYPE_ID_TARGET, CoreReloKind.TYPE_EXISTS,
                        CoreReloKind.TYPE_SIZE, CoreReloKind.TYPE_MATCHES)

    @property
    def is_enumval(self) -> bool:
        return self in (CoreReloKind.ENUMVAL_EXISTS, CoreReloKind.ENUMVAL_VALUE)


@dataclass
class FuncInfo:
    """A function's start (``insn_off`` in bytes within its section) and its BTF FUNC type id."""

    insn_off: int
    type_id: int


@dataclass
class LineInfo:
    """The C source line of the instruction at ``insn_off`` (bytes within its section)."""

    insn_off: int
    file: str
    line_text: str
    line: int
    col: int
    file_name_off: int = field(default=0, repr=False)
    line_off: int = field(default=0, repr=False)

    def where(self) -> str:
        """``file.c:123: code`` for messages."""
        return f"{self.file}:{self.line}: {self.line_text.strip()}"


@dataclass
class CoreRelo:
    """A CO-RE relocation of the instruction at ``insn_off`` (bytes within its section).

    ``access`` is the access string ("0:1:2": array index, then member/array indexes); ``type_id`` the local
    root type.
    """

    insn_off: int
    type_id: int
    access: str
    kind: CoreReloKind
    access_str_off: int = field(default=0, repr=False)


@dataclass
class BTFExt:
    """A parsed .BTF.ext: records per ELF section name, in file order."""

    func_info: Dict[str, List[FuncInfo]] = field(default_factory=dict)
    line_info: Dict[str, List[LineInfo]] = field(default_factory=dict)
    core_relos: Dict[str, List[CoreRelo]] = field(default_factory=dict)
    func_info_rec_size: int = FUNC_INFO_SIZE
    line_info_rec_size: int = LINE_INFO_SIZE
    core_relo_rec_size: int = CORE_RELO_SIZE
    #: string offset of each section name as the file has it (re-encoding reuses it)
    section_name_offs: Dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def parse(cls, data: bytes, btf: BTF) -> BTFExt:
        """Parse .BTF.ext; names and strings are looked up in ``btf`` (the object's .BTF)."""
        data = bytes(data)
        if len(data) < 8:
            raise BTFError(f"btf.ext: {len(data)} bytes is too short for a header")
        magic = struct.unpack_from("<H", data)[0]
        if magic == 0xEB9F:
            e = "<"
        elif magic == 0x9FEB:
            e = ">"
        else:
            raise BTFError(f"btf.ext: bad magic 0x{magic:04x} (want 0xeb9f)")
        _, version, flags, hdr_len = struct.unpack_from(e + "HBBI", data)
        if version != 1:
            raise BTFError(f"btf.ext: unsupported version {version}")
        if flags:
            raise BTFError(f"btf.ext: unsupported header flags 0x{flags:x}")
        if hdr_len < EXT_HEADER_MIN or hdr_len > len(data):
            raise BTFError(f"btf.ext: bad header length {hdr_len}")
        fi_off, fi_len, li_off, li_len = struct.unpack_from(e + "IIII", data, 8)
        cr_off = cr_len = 0
        if hdr_len >= EXT_HEADER_CORE:
            cr_off, cr_len = struct.unpack_from(e + "II", data, 24)
        ext = cls()
        body = data[hdr_len:]
        names = ext.section_name_offs
        ext.func_info_rec_size = _walk(body, e, fi_off, fi_len, FUNC_INFO_SIZE, "func_info", btf, names,
                                       lambda sec, rec: ext.func_info.setdefault(sec, []).append(
                                           FuncInfo(*struct.unpack_from(e + "II", rec))))

        four = struct.Struct(e + "IIII")
        texts: Dict[int, str] = {}  # lines share their file name, and inlined code its source lines

        def text(off: int, what: str) -> str:
            got = texts.get(off)
            if got is None:
                got = texts[off] = _string(btf, off, what)
            return got

        def lines(sec: str, recs: Iterable[Tuple[int, ...]]) -> None:
            # thousands of records per object: one pass with the string lookups cached
            out = ext.line_info.setdefault(sec, [])
            add = out.append
            for insn_off, file_off, line_off, line_col in recs:
                name = texts.get(file_off)
                if name is None:
                    name = text(file_off, "line_info file name")
                code = texts.get(line_off)
                if code is None:
                    code = text(line_off, "line_info line")
                add(LineInfo(insn_off, name, code, line_col >> 10, line_col & 0x3FF, file_off, line_off))

        ext.line_info_rec_size = _walk_blocks(body, e, li_off, li_len, LINE_INFO_SIZE, "line_info", btf,
                                              names, four, lines)

        def relo(sec: str, rec: bytes) -> None:
            insn_off, type_id, acc_off, kind = struct.unpack_from(e + "IIII", rec)
            try:
                k = CoreReloKind(kind)
            except ValueError:
                raise BTFError(f"btf.ext: section '{sec}': unknown CO-RE relocation kind {kind}") from None
            if type_id >= len(btf):
                raise BTFError(f"btf.ext: section '{sec}': CO-RE relocation refers to type id {type_id}, "
                               f"beyond the last id {len(btf) - 1}")
            access = _string(btf, acc_off, "CO-RE access string")
            if not access:
                raise BTFError(f"btf.ext: section '{sec}': CO-RE relocation at {insn_off} has an empty "
                               "access string")
            ext.core_relos.setdefault(sec, []).append(CoreRelo(insn_off, type_id, access, k, acc_off))

        if cr_len:
            ext.core_relo_rec_size = _walk(body, e, cr_off, cr_len, CORE_RELO_SIZE, "core_relo", btf, names,
                                           relo)
        return ext

    def source_lines(self, section: str) -> Callable[[int], str]:
        """A lookup ``insn index → "file.c:123: code"`` (nearest line_info at or before it) in a section."""
        recs = sorted(self.line_info.get(section, []), key=lambda r: r.insn_off)
        offs = [r.insn_off for r in recs]

        def lookup(insn: int) -> str:
            i = bisect.bisect_right(offs, insn * INSN_SIZE)
            return recs[i - 1].where() if i else ""

        return lookup

    def marshal(self, btf: BTF) -> bytes:
        """Re-encode in ``btf``'s byte order with the standard record sizes (strings must be in ``btf``)."""
        e = "<" if btf.byte_order == "little" else ">"

        def block(recs: Dict[str, List[Tuple[int, ...]]], size: int) -> bytes:
            if not recs:
                return b""
            out = [struct.pack(e + "I", size)]
            for sec, rows in recs.items():
                off = self.section_name_offs.get(sec)
                if off is None or off >= btf.str_len or btf.string_at(off) != sec:
                    offs = btf.string_offsets(sec)
                    if not offs:
                        raise BTFError(f"btf.ext: marshal: section name '{sec}' is not a BTF string")
                    off = offs[0]
                out.append(struct.pack(e + "II", off, len(rows)))
                out.extend(struct.pack(e + "I" * len(row), *row) for row in rows)
            return b"".join(out)

        fi = block({s: [(r.insn_off, r.type_id) for r in v] for s, v in self.func_info.items()},
                   FUNC_INFO_SIZE)
        li = block({s: [(r.insn_off, r.file_name_off, r.line_off, (r.line << 10) | (r.col & 0x3FF))
                        for r in v] for s, v in self.line_info.items()}, LINE_INFO_SIZE)
        cr = block({s: [(r.insn_off, r.type_id, r.access_str_off, int(r.kind)) for r in v]
                    for s, v in self.core_relos.items()}, CORE_RELO_SIZE)
        hdr = struct.pack(e + "HBBIIIIIII", 0xEB9F, 1, 0, EXT_HEADER_CORE, 0, len(fi), len(fi), len(li),
                          len(fi) + len(li), len(cr))
        return hdr + fi + li + cr


def _string(btf: BTF, off: int, what: str) -> str:
    if off >= btf.str_len:
        raise BTFError(f"btf.ext: {what} offset {off} is outside the BTF string table ({btf.str_len} bytes)")
    return btf.string_at(off)


def _walk(body: bytes, e: str, off: int, length: int, min_size: int, what: str, btf: BTF,
          names: Dict[str, int], each: Callable[[str, bytes], None]) -> int:
    """Walk one info block (record size, then per-section headers and records); returns the record size."""

    def per_record(sec: str, blk: bytes, p: int, n: int, rec_size: int) -> None:
        for i in range(n):
            each(sec, blk[p + i * rec_size: p + i * rec_size + min_size])

    return _sections(body, e, off, length, min_size, what, btf, names, per_record)


def _walk_blocks(body: bytes, e: str, off: int, length: int, min_size: int, what: str, btf: BTF,
                 names: Dict[str, int], rec: struct.Struct,
                 each: Callable[[str, Iterable[Tuple[int, ...]]], None]) -> int:
    """:func:`_walk` handing over each section's records at once, unpacked by ``rec`` (its first
    ``min_size`` bytes when the file's records are longer)."""

    def section(sec: str, blk: bytes, p: int, n: int, rec_size: int) -> None:
        if rec_size == rec.size:
            each(sec, rec.iter_unpack(blk[p: p + n * rec_size]))
        else:
            each(sec, (rec.unpack_from(blk, p + i * rec_size) for i in range(n)))

    return _sections(body, e, off, length, min_size, what, btf, names, section)


def _sections(body: bytes, e: str, off: int, length: int, min_size: int, what: str, btf: BTF,
              names: Dict[str, int], each: Callable[[str, bytes, int, int, int], None]) -> int:
    """The checks and the section headers of one info block; ``each(section, block, at, count, rec_size)``
    gets the records of each section."""
    if length == 0:
        return min_size
    if off + length > len(body):
        raise BTFError(f"btf.ext: {what} block at {off} of {length} bytes overruns the section")
    if off % 4:
        raise BTFError(f"btf.ext: {what} block at {off} is not 4-byte aligned")
    if length < 4:
        raise BTFError(f"btf.ext: {what} block too short for its record size")
    blk = body[off: off + length]
    rec_size = struct.unpack_from(e + "I", blk)[0]
    if rec_size < min_size or rec_size % 4:
        raise BTFError(f"btf.ext: {what} record size {rec_size} is invalid "
                       f"(at least {min_size}, multiple of 4)")
    p = 4
    while p < length:
        if p + 8 > length:
            raise BTFError(f"btf.ext: {what} section header at {p} is truncated")
        name_off, n = struct.unpack_from(e + "II", blk, p)
        sec = _string(btf, name_off, f"{what} section name")
        names.setdefault(sec, name_off)
        if n == 0:
            raise BTFError(f"btf.ext: {what} for section '{sec}' has no records")
        p += 8
        if p + n * rec_size > length:
            raise BTFError(f"btf.ext: {what} for section '{sec}': {n} records overrun the block")
        each(sec, blk, p, n, rec_size)
        p += n * rec_size
    return rec_size



def pack_func_info(infos: Iterable[FuncInfo], insn_base: int = 0) -> bytes:
    """``struct bpf_func_info`` records for PROG_LOAD: insn_off becomes ``insn_base + insn_off / 8``."""
    return b"".join(struct.pack("=II", insn_base + r.insn_off // INSN_SIZE, r.type_id) for r in infos)


def pack_line_info(infos: Iterable[LineInfo], insn_base: int = 0) -> bytes:
    """``struct bpf_line_info`` records for PROG_LOAD: insn_off becomes ``insn_base + insn_off / 8``."""
    return b"".join(struct.pack("=IIII", insn_base + r.insn_off // INSN_SIZE, r.file_name_off, r.line_off,
                                (r.line << 10) | (r.col & 0x3FF)) for r in infos)


def pack_core_relos(relos: Iterable[CoreRelo], insn_base: int = 0) -> bytes:
    """``struct bpf_core_relo`` records for PROG_LOAD: insn_off stays in bytes, moved by ``insn_base * 8``."""
    return b"".join(struct.pack("=IIII", insn_base * INSN_SIZE + r.insn_off, r.type_id, r.access_str_off,
                                int(r.kind)) for r in relos)
