"""Pure reader of clang-built BPF ELF objects into a :class:`~rawbpf.spec.CollectionSpec`; makes no syscalls.

It follows libbpf's reading of an object: every executable section holds programs split by their FUNC
symbols (``.text`` holds subprograms), relocations are classified by the instruction they patch and the
symbol they name, BTF-defined ``.maps`` are read field by field, ``.data*``/``.rodata*``/``.bss*`` become
one-entry array maps, and the ``.BTF.ext`` func/line info and CO-RE records are cut per function. Anything
malformed is one :class:`~rawbpf.errors.ObjectError` naming the object and the section.
"""

from __future__ import annotations

import io
import mmap
import os
import re
import struct
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from rawbpf import sections as _sections
from rawbpf.asm import codec
from rawbpf.consts import BPF_F_LINK, BPF_F_MMAPABLE, BPF_F_RDONLY_PROG, MapType, ProgType
from rawbpf.errors import BTFError, ObjectError, RawBPFError
from rawbpf.spec import (
    INSN_SIZE,
    CollectionSpec,
    CoreReloRec,
    ExternSpec,
    FuncInfoRec,
    LineInfoRec,
    MapKind,
    MapSpec,
    Pinning,
    ProgramSpec,
    Relocation,
    RelocKind,
    StructOpsSpec,
    VariableSpec,
)

__tier__ = "pure"

EM_BPF = 247
SHT_NULL = 0
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_NOBITS = 8
SHT_REL = 9
SHF_EXECINSTR = 0x4
SHF_COMPRESSED = 0x800
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00

OP_LD_IMM64 = codec.LD_IMM64
OP_CALL = 0x85
BPF_PSEUDO_CALL = 1

PAGE_SIZE = mmap.PAGESIZE
SHDR_SIZE = 64  # sizeof(Elf64_Shdr)
SYM_SIZE = 24  # sizeof(Elf64_Sym)

# The largest map value the kernel can ever accept: INT_MAX bytes. array_map_alloc_check()
# (kernel/bpf/arraymap.c) refuses a larger value_size with E2BIG, the other map types stop lower (hash,
# queue and stack values below KMALLOC_MAX_SIZE, per-CPU values at PCPU_MIN_UNIT_SIZE), and bpf(2) copies
# every value through kvmalloc(), which refuses more than INT_MAX bytes. A global-data section
# (.data*/.rodata*/.bss*) and the .kconfig area each become the value of a one-entry array map, so a bigger
# one could never load: it is refused while reading, before anything is allocated for it.
MAX_VALUE_SIZE = (1 << 31) - 1

# zero_fill_limit()'s floor: what inspect/disasm allow zero-filled data whatever the file's size
ZERO_FILL_FLOOR = 64 << 20

_NAMED_SYM_TYPES = ("STT_OBJECT", "STT_NOTYPE", "STT_FUNC")
_DATA_RE = re.compile(r"^\.(data|rodata|bss)(\..+)?$")


class _Sym:
    """The fields of an ELF symbol rawbpf needs (pyelftools objects are slow to query repeatedly)."""

    __slots__ = ("bind", "index", "name", "shndx", "size", "type", "value", "visibility")

    def __init__(
        self, index: int, name: str, value: int, size: int, type_: str, bind: str, shndx: int, visibility: str
    ) -> None:
        self.index = index
        self.name = name
        self.value = value
        self.size = size
        self.type = type_
        self.bind = bind
        self.shndx = shndx
        self.visibility = visibility


class _Shdr:
    """The Elf64_Shdr fields checked before pyelftools builds a section from them."""

    __slots__ = ("entsize", "name", "offset", "size", "type")

    def __init__(self, name: int, type_: int, offset: int, size: int, entsize: int) -> None:
        self.name = name
        self.type = type_
        self.offset = offset
        self.size = size
        self.entsize = entsize

    @classmethod
    def unpack(cls, data: bytes, at: int) -> _Shdr:
        name, type_, _flags, _addr, offset, size, _link, _info, _align, entsize = _SHDR.unpack_from(data, at)
        return cls(name, type_, offset, size, entsize)


_SHDR = struct.Struct("<IIQQQQIIQQ")


def _shndx(raw: Union[int, str]) -> int:
    if isinstance(raw, int):
        return raw
    return {"SHN_UNDEF": 0, "SHN_ABS": 0xFFF1, "SHN_COMMON": 0xFFF2}.get(raw, 0xFFFF)


_SYM = struct.Struct("<IBBHQQ")  # Elf64_Sym: st_name, st_info, st_other, st_shndx, st_value, st_size


# st_info/st_other values by the names pyelftools gives them (a unit test holds them to its tables)
SYM_TYPES = {0: "STT_NOTYPE", 1: "STT_OBJECT", 2: "STT_FUNC", 3: "STT_SECTION", 4: "STT_FILE",
             5: "STT_COMMON", 6: "STT_TLS", 7: "STT_NUM", 8: "STT_RELC", 9: "STT_SRELC", 10: "STT_LOOS",
             12: "STT_HIOS", 13: "STT_LOPROC", 15: "STT_HIPROC"}
SYM_BINDS = {0: "STB_LOCAL", 1: "STB_GLOBAL", 2: "STB_WEAK", 3: "STB_NUM", 10: "STB_LOOS", 12: "STB_HIOS",
             13: "STB_LOPROC", 15: "STB_HIPROC"}
SYM_VISIBILITIES = {0: "STV_DEFAULT", 1: "STV_INTERNAL", 2: "STV_HIDDEN", 3: "STV_PROTECTED",
                    4: "STV_EXPORTED", 5: "STV_SINGLETON", 6: "STV_ELIMINATE"}


def _plain_symbols(tab: Any, raw: bytes) -> Optional[List[_Sym]]:
    """A well-formed little-endian 64-bit symbol table read in one pass (pyelftools parses each entry through
    construct, a third of the object's parse). The fields read as pyelftools names them; None for anything
    unusual (entry size, string table, field values outside its names), which the pyelftools path then reads
    and reports exactly as before."""
    strtab = getattr(tab, "stringtable", None)
    if tab["sh_entsize"] != _SYM.size or strtab is None or strtab["sh_type"] == "SHT_NOBITS" \
            or strtab["sh_flags"] & SHF_COMPRESSED:
        return None
    try:
        strs = strtab.data()
    except Exception:
        return None
    if len(strs) != strtab["sh_size"]:
        return None
    types, binds, visibilities = SYM_TYPES, SYM_BINDS, SYM_VISIBILITIES
    out: List[_Sym] = []
    entries = _SYM.iter_unpack(raw[:len(raw) // _SYM.size * _SYM.size])
    for i, (name_off, info, other, shndx, value, size) in enumerate(entries):
        type_, bind, vis = types.get(info & 0xF), binds.get(info >> 4), visibilities.get(other & 7)
        if type_ is None or bind is None or vis is None or SHN_LORESERVE <= shndx not in (0xFFF1, 0xFFF2):
            return None
        end = strs.find(b"\0", name_off)
        if end < 0:
            return None
        name = strs[name_off:end].decode("utf-8", errors="replace")
        out.append(_Sym(i, name, value, size, type_, bind, shndx, vis))
    return out


class _NeedsPyelftools(Exception):
    """The direct reading met something it leaves to pyelftools: the object is read again through it."""


_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")  # Elf64_Ehdr
_SHT_STRTAB = 3
_SHT_LLVM_ADDRSIG = 0x6FFF4C03
#: the section types of clang's BPF objects, by pyelftools' names (another type goes through pyelftools)
_PLAIN_SH_TYPES: Dict[int, Union[str, int]] = {
    SHT_NULL: "SHT_NULL", SHT_PROGBITS: "SHT_PROGBITS", SHT_SYMTAB: "SHT_SYMTAB", _SHT_STRTAB: "SHT_STRTAB",
    SHT_NOBITS: "SHT_NOBITS", SHT_REL: "SHT_REL", _SHT_LLVM_ADDRSIG: _SHT_LLVM_ADDRSIG,
}
_SHDR_FIELDS = ("sh_name", "sh_type", "sh_flags", "sh_addr", "sh_offset", "sh_size", "sh_link", "sh_info",
                "sh_addralign", "sh_entsize")


class _PlainSection:
    """A section of a plain object, read with ``struct``: what the reader asks of a pyelftools section."""

    __slots__ = ("_file", "header", "name", "stringtable")

    def __init__(self, name: str, header: Dict[str, Any], file: bytes) -> None:
        self.name, self.header, self._file = name, header, file
        self.stringtable: Optional[_PlainSection] = None

    def __getitem__(self, key: str) -> Any:
        return self.header[key]

    def data(self) -> bytes:
        off, size = self.header["sh_offset"], self.header["sh_size"]
        return self._file[off: off + size]


class _PlainELF:
    """A little-endian 64-bit BPF relocatable object whose headers and section types are all ordinary, read
    without pyelftools (importing it costs more CPU than reading the object): the same answers it would give.
    :func:`plain_elf` builds one only where pyelftools could not fail and would not read differently."""

    def __init__(self, data: bytes, shoff: int, count: int, strndx: int) -> None:
        self.data, self.shoff, self.count, self.strndx = data, shoff, count, strndx
        self.elfclass, self.little_endian = 64, True
        self.header = {"e_machine": "EM_BPF", "e_shoff": shoff, "e_shentsize": SHDR_SIZE}
        self._sections: Dict[int, _PlainSection] = {}

    def __getitem__(self, key: str) -> Any:
        return self.header[key]

    def num_sections(self) -> int:
        return self.count

    def get_shstrndx(self) -> int:
        return self.strndx

    def get_section(self, idx: int) -> _PlainSection:
        sec = self._sections.get(idx)
        if sec is None:
            raw = _SHDR.unpack_from(self.data, self.shoff + idx * SHDR_SIZE)
            header = dict(zip(_SHDR_FIELDS, raw))
            header["sh_type"] = _PLAIN_SH_TYPES[raw[1]]
            table = _SHDR.unpack_from(self.data, self.shoff + self.strndx * SHDR_SIZE)
            start = table[4] + raw[0]
            name = self.data[start: self.data.index(b"\0", start)].decode("utf-8", errors="replace")
            sec = self._sections[idx] = _PlainSection(name, header, self.data)
            if raw[1] == SHT_SYMTAB:
                sec.stringtable = self.get_section(raw[6])
        return sec


def plain_elf(data: bytes) -> Optional[_PlainELF]:
    """A :class:`_PlainELF` of ``data``, or None when anything is unusual (pyelftools reads it then, and
    reports what is wrong as before): not 64-bit little-endian BPF, extended section numbering, a section
    header, name or string table outside the file, a section type clang does not emit, compressed sections,
    a relocation table or symbol table whose entry size or string table link is off."""
    if len(data) < _EHDR.size:
        return None
    ident, _etype, machine, _ver, _entry, _phoff, shoff, _flags, _ehsize, _phentsize, _phnum, shentsize, \
        count, strndx = _EHDR.unpack_from(data)
    if ident[4] != 2 or ident[5] != 1 or machine != EM_BPF or shentsize != SHDR_SIZE:
        return None
    if not 0 < count < SHN_LORESERVE or not 0 < strndx < count or shoff + count * SHDR_SIZE > len(data):
        return None
    headers = [_SHDR.unpack_from(data, shoff + i * SHDR_SIZE) for i in range(count)]

    def in_file(h: Tuple[int, ...]) -> bool:
        return h[4] <= len(data) and h[5] <= len(data) - h[4]

    for h in headers:
        _name, sh_type, sh_flags, _addr, _off, _size, link, _info, _align, entsize = h
        if sh_type not in _PLAIN_SH_TYPES or sh_flags & SHF_COMPRESSED:
            return None
        if sh_type == SHT_REL and entsize != 16:
            return None
        if sh_type == SHT_SYMTAB and (entsize != SYM_SIZE or not 0 < link < count
                                      or headers[link][1] != _SHT_STRTAB or not in_file(headers[link])):
            return None
    table = headers[strndx]
    if table[1] != _SHT_STRTAB or not in_file(table):
        return None
    for h in headers:
        if h[0] >= table[5] or data.find(b"\0", table[4] + h[0], table[4] + table[5]) < 0:
            return None
    return _PlainELF(data, shoff, count, strndx)


def object_name(path: str) -> str:
    """libbpf's object name: the file's base name up to its first dot."""
    base = os.path.basename(path) or "object"
    return base.split(".", 1)[0] or base


def internal_map_name(obj_name: str, section: str) -> str:
    """The kernel-visible name libbpf gives a global-data map (e.g. ``my_objec.rodata``)."""
    sfx_len = min(max(7, len(section)), 15)
    pfx_len = 0 if "." in section[1:] else min(16 - sfx_len - 1, len(obj_name))
    name = obj_name[:pfx_len] + section[:sfx_len]
    return "".join(c if (c.isalnum() and c.isascii()) or c in "_." else "_" for c in name)


def zero_fill_limit(file_size: int) -> int:
    """What a command that only reads an object (inspect, disasm) allows its zero-filled data (.bss
    sections, the .kconfig area) to take in memory: 16 times the file, and never less than 64 MiB, so a
    real object's large buffers still read while a few bytes of headers cannot claim gigabytes."""
    return max(ZERO_FILL_FLOOR, 16 * file_size)


def load_spec(
    source: Union[str, os.PathLike, bytes], name: Optional[str] = None, *, strict: bool = False,
    bounded: bool = False,
) -> CollectionSpec:
    """Parse a BPF ELF object (a path or its bytes) into a CollectionSpec. Pure: no syscalls.

    Raises ObjectError with a one-line message naming the object and section. A program in a section libbpf
    would not recognise is kept with ``known_section=False`` (inspect shows it, loading refuses it);
    ``strict=True`` refuses it here already. ``bounded=True`` (commands that only read the object) bounds the
    zero-filled data (``.bss*`` sections and the externs' ``.kconfig`` area together) the object may declare
    by :func:`zero_fill_limit` of its size, checked before any of it is allocated; the file's own bytes are
    bounded by its size already.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        path = ""
        obj = name or "object"
    else:
        path = os.fspath(source)
        obj = name or object_name(path)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as err:
            raise ObjectError(f"object '{path}': {os.strerror(err.errno or 0).lower()}") from err
    label = os.path.basename(path) if path else obj
    reader = _Reader(data, obj, label, strict)
    reader.max_zero_fill = zero_fill_limit(len(data)) if bounded else None
    try:
        try:
            spec = reader.read()
        except _NeedsPyelftools:
            reader = _Reader(data, obj, label, strict, plain=False)
            reader.max_zero_fill = zero_fill_limit(len(data)) if bounded else None
            spec = reader.read()
    except ObjectError:
        raise
    except RawBPFError as err:  # e.g. a BTFError from a type lookup while reading a section
        raise reader.fail(str(err), reader.where) from err
    except Exception as err:  # pyelftools raises many kinds on corrupt input; anything else is a rawbpf bug
        raise reader.fail(f"malformed ELF: {_describe(err)}", reader.where) from err
    spec.path = path
    return spec


def _size_text(n: int) -> str:
    """``6 GiB``, ``1.5 GiB``, ``4.8 KB``-style sizes for messages (binary units, one decimal when needed)."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            v = n / (1 << shift)
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n} bytes"


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__).lower()


def _describe(err: BaseException) -> str:
    """pyelftools' own parse errors by their message; any other exception also by its type, so an
    OverflowError or a MemoryError is not passed off as a plain parse error."""
    from elftools.common.exceptions import ELFError

    if isinstance(err, ELFError):
        return _one_line(err)
    text = str(err).strip().splitlines()
    return f"unexpected {type(err).__name__}" + (f": {text[0]}" if text else "")


class _Reader:
    """One pass over one object."""

    def __init__(self, data: bytes, obj: str, label: str, strict: bool = False, plain: bool = True) -> None:
        self.strict = strict
        self.plain = plain  # read a plain object without pyelftools (see plain_elf)
        self.data = data
        self.obj = obj
        self.label = label
        self.spec = CollectionSpec(name=obj)
        self.sec_names: Dict[int, str] = {}
        self.symbols: List[_Sym] = []
        self.funcs: Dict[int, List[ProgramSpec]] = {}  # section index → functions sorted by offset
        self.map_at: Dict[Tuple[int, int], str] = {}  # (section index, offset) → map name
        self.data_map: Dict[int, str] = {}  # data section index → map name
        self.maps_shndx = -1
        self.legacy_maps_shndx = -1
        self.text_shndx = -1
        self.struct_ops_shndx: Dict[int, bool] = {}  # .struct_ops* section index → registered by a link
        self.where = ""  # the section being read, named by load_spec's catch-all
        self.max_zero_fill: Optional[int] = None
        self.zero_fill = 0  # bytes of zero-filled data declared so far
        self.zero_fill_secs: List[Tuple[str, int]] = []

    def _zero_fill(self, section: str, size: int) -> None:
        """Count zero-filled data about to be allocated; refuse past ``max_zero_fill``, naming the total."""
        self.zero_fill += size
        self.zero_fill_secs.append((section, size))

    def _check_zero_fill(self) -> None:
        limit = self.max_zero_fill
        if limit is not None and self.zero_fill > limit:
            biggest = sorted(self.zero_fill_secs, key=lambda x: -x[1])[:4]
            names = ", ".join(f"{n} {_size_text(z)}" for n, z in biggest)
            more = f" and {len(self.zero_fill_secs) - 4} more" if len(self.zero_fill_secs) > 4 else ""
            raise self.fail(f"declares {_size_text(self.zero_fill)} of zero-filled data ({names}{more}) in a "
                            f"{_size_text(len(self.data))} file, more than {_size_text(limit)} that reading "
                            "it may take")

    def fail(self, what: str, section: str = "") -> ObjectError:
        where = f"object '{self.label}'" + (f": section '{section}'" if section else "")
        return ObjectError(what).with_context(where)

    # -- top level -----------------------------------------------------------------------------------------

    def read(self) -> CollectionSpec:
        if self.data[:4] != b"\x7fELF":
            raise self.fail("not an ELF file")
        elf: Any = plain_elf(self.data) if self.plain else None
        if elf is None:
            self.plain = False
            from elftools.common.exceptions import ELFError
            from elftools.elf.elffile import ELFFile

            try:
                elf = ELFFile(io.BytesIO(self.data))
            except ELFError as err:
                raise self.fail(f"malformed ELF: {_one_line(err)}") from err
        if elf["e_machine"] not in ("EM_BPF", EM_BPF):
            raise self.fail(f"not a BPF object (machine {elf['e_machine']})")
        if elf.elfclass != 64 or not elf.little_endian:
            raise self.fail("not a little-endian 64-bit BPF object")

        secs: Dict[int, Any] = {}
        names = self._check_section_table(elf)
        for idx in range(len(names)):
            self.where = names[idx]
            sec = elf.get_section(idx)
            secs[idx] = sec
            self.sec_names[idx] = sec.name
        self._read_symbols(elf, secs)
        btf_data = ext_data = None
        exec_secs: List[int] = []
        data_secs: List[int] = []
        rel_secs: List[int] = []
        for idx, sec in secs.items():
            name, sh_type = sec.name, sec["sh_type"]
            self.where = name
            sh_type = {
                "SHT_PROGBITS": SHT_PROGBITS,
                "SHT_NOBITS": SHT_NOBITS,
                "SHT_REL": SHT_REL,
                "SHT_SYMTAB": SHT_SYMTAB,
            }.get(sh_type, sh_type)
            if name == "license":
                self.spec.license = self._cstr(self._sec_data(sec), name)
            elif name == "version":
                raw = self._sec_data(sec)
                if len(raw) != 4:
                    raise self.fail(f"invalid kernel version size {len(raw)}", name)
                self.spec.kern_version = struct.unpack("<I", raw)[0]
            elif name == "maps":
                self.legacy_maps_shndx = idx
            elif name == ".maps":
                self.maps_shndx = idx
            elif name == ".BTF":
                btf_data = self._sec_data(sec)
            elif name == ".BTF.ext":
                ext_data = self._sec_data(sec)
            elif struct_ops_section(name) is not None and sh_type == SHT_PROGBITS:
                self.struct_ops_shndx[idx] = bool(struct_ops_section(name))
            elif sh_type == SHT_PROGBITS and sec["sh_size"] > 0 and sec["sh_flags"] & SHF_EXECINSTR:
                if name == ".text":
                    self.text_shndx = idx
                exec_secs.append(idx)
            elif sh_type in (SHT_PROGBITS, SHT_NOBITS) and _DATA_RE.match(name) and sec["sh_size"] > 0:
                is_bss = name.startswith(".bss")
                if is_bss != (sh_type == SHT_NOBITS):
                    continue
                data_secs.append(idx)
            elif sh_type == SHT_REL:
                rel_secs.append(idx)
            self.spec.section_sizes[name] = int(sec["sh_size"])
        self.spec.text_section_index = self.text_shndx
        for sym in self.symbols:
            if sym.name and 0 < sym.shndx < SHN_LORESERVE and sym.type in _NAMED_SYM_TYPES:
                secname = self.sec_names.get(sym.shndx, "")
                self.spec.symbol_offsets.setdefault(secname, {}).setdefault(sym.name, sym.value)
                if sym.bind != "STB_LOCAL" and sym.visibility in ("STV_HIDDEN", "STV_INTERNAL"):
                    self.spec.hidden_symbols.append(sym.name)

        self.where = ""
        self._read_btf(btf_data, ext_data)
        for idx in exec_secs:
            self._read_programs(idx, secs[idx])
        if self.maps_shndx >= 0:
            self._read_btf_maps()
        if self.legacy_maps_shndx >= 0:
            self._read_legacy_maps(secs[self.legacy_maps_shndx])
        for idx, link in self.struct_ops_shndx.items():
            self._read_struct_ops(idx, secs[idx], link)
        for idx in data_secs:
            if secs[idx].name.startswith(".bss"):
                self._zero_fill(secs[idx].name, int(secs[idx]["sh_size"]))
        self._check_zero_fill()  # all of them at once: the message gives the real total
        for idx in data_secs:
            self._read_data_section(idx, secs[idx])
        self._read_externs()
        for idx in rel_secs:
            self._read_relocations(secs[idx])
        self._resolve_map_values(secs)
        self._cut_btf_ext()
        return self.spec

    # -- helpers -------------------------------------------------------------------------------------------

    def _check_section_table(self, elf: Any) -> List[str]:
        """The section names, once every section header has been found possible (see _check_section).

        This runs before pyelftools builds any section: it reads names through the section name table as
        the headers place it, and checks some headers only as it builds a section (and then not by name).
        """
        shoff, entsize, size = int(elf["e_shoff"]), int(elf["e_shentsize"]), len(self.data)
        if shoff == 0:
            raise self.fail("malformed ELF: no section header table")
        if entsize != SHDR_SIZE:
            raise self.fail(f"malformed ELF: section header size {entsize} is not {SHDR_SIZE}")
        if shoff > size - SHDR_SIZE:
            raise self.fail(
                f"malformed ELF: section header table offset {shoff} lies outside the {size}-byte file"
            )
        count = int(elf.num_sections())  # e_shnum, or section 0's sh_size when there are 0xff00 or more
        if count > (size - shoff) // SHDR_SIZE:
            raise self.fail(
                f"malformed ELF: section header table ({count} entries at offset {shoff}) runs past the end "
                f"of the {size}-byte file"
            )
        strndx = int(elf.get_shstrndx())
        if not 0 < strndx < count:
            raise self.fail(f"malformed ELF: section name table index {strndx} is not among {count} sections")
        headers = [_Shdr.unpack(self.data, shoff + idx * SHDR_SIZE) for idx in range(count)]
        table = headers[strndx]
        if table.type == SHT_NOBITS or not self._in_file(table):
            raise self.fail(
                f"malformed ELF: section name table (section {strndx}, {table.size} bytes at offset "
                f"{table.offset}) lies outside the {size}-byte file"
            )
        names = [self._section_name(idx, hdr.name, table) for idx, hdr in enumerate(headers)]
        for name, hdr in zip(names, headers):
            self._check_section(name, hdr)
        return names

    def _section_name(self, idx: int, name_off: int, table: _Shdr) -> str:
        end = self.data.find(b"\0", table.offset + min(name_off, table.size), table.offset + table.size)
        if name_off >= table.size or end < 0:
            raise self.fail(f"malformed ELF: section {idx}: name offset {name_off} is outside the name table")
        return self.data[table.offset + name_off : end].decode("utf-8", errors="replace")

    def _in_file(self, hdr: _Shdr) -> bool:
        return hdr.offset <= len(self.data) and hdr.size <= len(self.data) - hdr.offset

    def _check_section(self, name: str, hdr: _Shdr) -> None:
        """Refuse a section header that cannot be true before anything reads or allocates by its size: data in
        the file must lie within it, global data must fit the largest map value the kernel accepts."""
        if hdr.type not in (SHT_NULL, SHT_NOBITS) and hdr.size and not self._in_file(hdr):
            raise self.fail(
                f"data ({hdr.size} bytes at offset {hdr.offset}) lies outside the {len(self.data)}-byte file",
                name,
            )
        if _DATA_RE.match(name) and hdr.size > MAX_VALUE_SIZE:
            raise self.fail(
                f"size {hdr.size} exceeds the largest map value the kernel accepts ({MAX_VALUE_SIZE} bytes)",
                name,
            )
        if hdr.type == SHT_SYMTAB and (hdr.entsize != SYM_SIZE or hdr.size % SYM_SIZE):
            raise self.fail(
                f"symbol table of {hdr.size} bytes in entries of {hdr.entsize} (an ELF64 symbol is "
                f"{SYM_SIZE} bytes)",
                name,
            )

    def _sec_data(self, sec: Any) -> bytes:
        # pyelftools would make up zeroes for a NOBITS section (as many as its header claims) and inflate a
        # compressed one: neither holds what a loader reads (libbpf takes the bytes in the file as they are)
        if sec["sh_type"] == "SHT_NOBITS":
            raise self.fail("no data in the file (SHT_NOBITS)", sec.name)
        if sec["sh_flags"] & SHF_COMPRESSED:
            raise self.fail("compressed sections are not supported", sec.name)
        try:
            data: bytes = sec.data()
        except Exception as err:
            raise self.fail(f"truncated or unreadable section data: {_one_line(err)}", sec.name) from err
        if len(data) != sec["sh_size"]:
            raise self.fail("section data is truncated", sec.name)
        return data

    def _cstr(self, raw: bytes, section: str) -> str:
        text = raw.split(b"\0", 1)[0]
        try:
            return text.decode()
        except UnicodeDecodeError as err:
            raise self.fail("string is not valid UTF-8", section) from err

    def _read_symbols(self, elf: Any, secs: Dict[int, Any]) -> None:
        tabs = [s for s in secs.values() if s["sh_type"] == "SHT_SYMTAB"]
        if not tabs:
            raise self.fail("no symbol table (stripped object?)")
        if len(tabs) > 1:
            raise self.fail("more than one symbol table")
        tab = tabs[0]
        self.where = tab.name
        raw = self._sec_data(tab)
        fast = _plain_symbols(tab, raw)
        if fast is not None:
            self.symbols.extend(fast)
            return
        if self.plain:
            raise _NeedsPyelftools()
        for i, sym in enumerate(tab.iter_symbols()):
            info = sym["st_info"]
            self.symbols.append(
                _Sym(
                    i,
                    sym.name,
                    int(sym["st_value"]),
                    int(sym["st_size"]),
                    info["type"],
                    info["bind"],
                    _shndx(sym["st_shndx"]),
                    sym["st_other"]["visibility"],
                )
            )

    # -- BTF -----------------------------------------------------------------------------------------------

    def _read_btf(self, btf_data: Optional[bytes], ext_data: Optional[bytes]) -> None:
        if btf_data is None:
            return
        from rawbpf.btf import BTF

        self.where = ".BTF"
        try:
            self.spec.btf = BTF.parse(btf_data)
            self.spec.btf_raw = btf_data
            if ext_data is not None:
                from rawbpf.btf.ext import BTFExt

                self.spec.btf_ext = BTFExt.parse(ext_data, self.spec.btf)
        except BTFError as err:
            sec = ".BTF.ext" if self.spec.btf is not None else ".BTF"
            raise self.fail(f"bad BTF: {err}", sec) from err
        except RawBPFError:
            raise
        except Exception as err:
            sec = ".BTF.ext" if self.spec.btf is not None else ".BTF"
            raise self.fail(f"bad BTF: {_one_line(err)}", sec) from err

    def _btf_kind(self, type_id: int) -> str:
        assert self.spec.btf is not None
        return _kind_name(self.spec.btf[type_id])

    def _skip_mods(self, type_id: int) -> int:
        assert self.spec.btf is not None
        return int(self.spec.btf.resolve(type_id))

    # -- programs ------------------------------------------------------------------------------------------

    def _read_programs(self, idx: int, sec: Any) -> None:
        name = sec.name
        self.where = name
        code = self._sec_data(sec)
        if len(code) % INSN_SIZE:
            raise self.fail(f"code size {len(code)} is not a multiple of {INSN_SIZE}", name)
        info = None
        autoload = not name.startswith("?")  # libbpf: SEC("?tp/...") is tp/... not loaded by default
        if idx != self.text_shndx:
            info = _sections.lookup(name if autoload else name[1:])
            if info is None and self.strict:
                raise self.fail("unknown program section (not a libbpf section name)", name)
        funcs = sorted(
            (s for s in self.symbols if s.shndx == idx and s.type == "STT_FUNC"), key=lambda s: s.value
        )
        if not funcs:
            fake = _Sym(
                -1,
                re.sub(r"[^A-Za-z0-9_]", "_", name.strip(".")) or "prog",
                0,
                len(code),
                "STT_FUNC",
                "STB_GLOBAL",
                idx,
                "STV_DEFAULT",
            )
            funcs = [fake]
        out: List[ProgramSpec] = []
        for sym in funcs:
            size = sym.size or (len(code) - sym.value)
            if sym.value % INSN_SIZE or size % INSN_SIZE or sym.value + size > len(code):
                raise self.fail(f"program '{sym.name}' crosses the section boundary or is misaligned", name)
            if idx != self.text_shndx and sym.bind == "STB_LOCAL":
                raise self.fail(
                    f"program '{sym.name}' is static (only .text may hold static functions)", name
                )
            insns = code[sym.value : sym.value + size]
            if idx == self.text_shndx:
                prog = ProgramSpec(
                    name=sym.name,
                    section=name,
                    type=ProgType.UNSPEC,
                    expected_attach_type=0,
                    attach_to="",
                    insns=insns,
                    is_subprog=True,
                )
            elif info is None:
                prog = ProgramSpec(
                    name=sym.name,
                    section=name,
                    type=ProgType.UNSPEC,
                    expected_attach_type=0,
                    attach_to="",
                    insns=insns,
                    known_section=False,
                )
            else:
                prog = ProgramSpec(
                    name=sym.name,
                    section=name,
                    type=info.prog_type,
                    expected_attach_type=int(info.expected_attach_type),
                    attach_to=info.attach_to,
                    insns=insns,
                    flags=info.prog_flags,
                    attach_kind=info.attach_kind,
                )
            prog.autoload = autoload
            prog.license = self.spec.license
            prog.kern_version = self.spec.kern_version
            prog.section_index = idx
            prog.section_offset = sym.value // INSN_SIZE
            prog.is_global = sym.bind != "STB_LOCAL"
            prog.hidden = prog.is_global and sym.visibility in ("STV_HIDDEN", "STV_INTERNAL")
            if idx == self.text_shndx:
                # subprograms are found by offset, not name: a linked object may hold two static functions
                # of one name (one per source file); the later ones are keyed name@offset
                key = prog.name
                if key in self.spec.subprograms:
                    key = f"{prog.name}@{prog.section_offset}"
                self.spec.subprograms[key] = prog
            else:
                if prog.name in self.spec.programs:
                    raise self.fail(f"duplicate program name '{prog.name}'", name)
                self.spec.programs[prog.name] = prog
            out.append(prog)
        self.funcs[idx] = out

    def _func_at(self, shndx: int, insn: int) -> Optional[ProgramSpec]:
        for prog in self.funcs.get(shndx, ()):
            if prog.section_offset <= insn < prog.section_offset + prog.insn_count:
                return prog
        return None

    # -- maps ----------------------------------------------------------------------------------------------

    def _read_btf_maps(self) -> None:
        sec = self.where = ".maps"
        btf = self.spec.btf
        if btf is None:
            raise self.fail("BTF-defined maps need a .BTF section", sec)
        datasec = btf.find(".maps", _kind("DATASEC"))
        if datasec is None:
            raise self.fail("no DATASEC for .maps in BTF", sec)
        offsets = {s.name: s.value for s in self.symbols if s.shndx == self.maps_shndx and s.name}
        for vsi in datasec.vars:
            var = btf[vsi.type]
            if _kind_name(var) != "VAR":
                raise self.fail(f"unexpected {_kind_name(var)} in DATASEC", sec)
            if var.name not in offsets:
                raise self.fail(f"map '{var.name}' has no ELF symbol", sec)
            def_id = self._skip_mods(var.type)
            if _kind_name(btf[def_id]) != "STRUCT":
                raise self.fail(f"map '{var.name}': definition is not a struct", sec)
            mspec = self._parse_map_def(var.name, def_id, inner=False)
            mspec.kind = MapKind.BTF
            mspec.section = sec
            mspec.section_index = self.maps_shndx
            mspec.offset = offsets[var.name]
            self._add_map(mspec, sec)
            self.map_at[(self.maps_shndx, mspec.offset)] = mspec.name

    def _map_int(self, map_name: str, member: Any) -> int:
        btf = self.spec.btf
        assert btf is not None
        ptr = btf[member.type]
        if _kind_name(ptr) != "PTR":
            raise self.fail(f"map '{map_name}': field '{member.name}' is not a __uint() pointer", ".maps")
        arr = btf[self._skip_mods(ptr.type)]
        if _kind_name(arr) != "ARRAY":
            raise self.fail(f"map '{map_name}': field '{member.name}' is not a __uint() array", ".maps")
        assert arr.array is not None
        return int(arr.array.nelems)

    def _parse_map_def(self, map_name: str, def_id: int, inner: bool) -> MapSpec:
        btf = self.spec.btf
        assert btf is not None
        sec = ".maps"
        fields: Dict[str, int] = {}
        key_size = value_size = 0
        key_type = value_type = 0
        inner_spec: Optional[MapSpec] = None
        has_values = False
        members = list(btf[def_id].members)
        for i, m in enumerate(members):
            fname = m.name
            if fname in ("type", "max_entries", "map_flags", "numa_node", "pinning", "map_extra"):
                fields[fname] = self._map_int(map_name, m)
            elif fname in ("key_size", "value_size"):
                sz = self._map_int(map_name, m)
                cur = key_size if fname == "key_size" else value_size
                if cur and cur != sz:
                    raise self.fail(f"map '{map_name}': conflicting {fname} {cur} != {sz}", sec)
                if fname == "key_size":
                    key_size = sz
                else:
                    value_size = sz
            elif fname in ("key", "value"):
                ptr = btf[m.type]
                if _kind_name(ptr) != "PTR":
                    raise self.fail(f"map '{map_name}': {fname} spec is not a pointer", sec)
                try:
                    sz = int(btf.size_of(ptr.type))
                except RawBPFError as err:
                    raise self.fail(f"map '{map_name}': cannot size {fname} type: {err}", sec) from err
                cur = key_size if fname == "key" else value_size
                if cur and cur != sz:
                    raise self.fail(f"map '{map_name}': conflicting {fname} size {cur} != {sz}", sec)
                if fname == "key":
                    key_size, key_type = sz, int(ptr.type)
                else:
                    value_size, value_type = sz, int(ptr.type)
            elif fname == "values":
                mtype = fields.get("type", 0)
                is_mim = mtype in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS)
                if inner:
                    raise self.fail(f"map '{map_name}': multi-level inner maps are not supported", sec)
                if i != len(members) - 1:
                    raise self.fail(f"map '{map_name}': 'values' must be the last field", sec)
                if not is_mim and mtype != MapType.PROG_ARRAY:
                    raise self.fail(f"map '{map_name}': 'values' needs a map-in-map or prog array", sec)
                if value_size and value_size != 4:
                    raise self.fail(f"map '{map_name}': conflicting value size {value_size} != 4", sec)
                value_size = 4
                arr = btf[m.type]
                if _kind_name(arr) != "ARRAY" or arr.array is None or arr.array.nelems:
                    raise self.fail(f"map '{map_name}': 'values' is not a zero-sized array", sec)
                elem = btf[self._skip_mods(arr.array.type)]
                if _kind_name(elem) != "PTR":
                    raise self.fail(f"map '{map_name}': 'values' element is not a pointer", sec)
                target = btf[self._skip_mods(elem.type)]
                has_values = True
                if mtype == MapType.PROG_ARRAY:
                    if _kind_name(target) != "FUNC_PROTO":
                        raise self.fail(f"map '{map_name}': prog array 'values' must point to programs", sec)
                    continue
                if _kind_name(target) != "STRUCT":
                    raise self.fail(f"map '{map_name}': inner map definition is not a struct", sec)
                inner_spec = self._parse_map_def(f"{map_name}.inner", int(target.id), inner=True)
            else:
                # libbpf (non-strict) ignores fields it does not know
                continue
        mtype_raw = fields.get("type", 0)
        if not mtype_raw:
            raise self.fail(f"map '{map_name}': map type is not specified", sec)
        try:
            mtype = MapType(mtype_raw)
        except ValueError as err:
            raise self.fail(f"map '{map_name}': unknown map type {mtype_raw}", sec) from err
        self._check_value_size(map_name, value_size, sec)
        pinning = fields.get("pinning", 0)
        if inner and "pinning" in fields:
            raise self.fail(f"map '{map_name}': an inner map cannot be pinned", sec)
        if pinning not in (0, 1):
            raise self.fail(f"map '{map_name}': invalid pinning value {pinning}", sec)
        max_entries = fields.get("max_entries", 0)
        declared = max_entries
        if mtype == MapType.RINGBUF or mtype == MapType.USER_RINGBUF:
            max_entries = adjust_ringbuf_size(max_entries)
        spec = MapSpec(
            name=map_name,
            type=mtype,
            key_size=key_size,
            value_size=value_size,
            max_entries=max_entries,
            flags=fields.get("map_flags", 0),
            numa_node=fields.get("numa_node"),
            pinning=Pinning(pinning),
            map_extra=fields.get("map_extra", 0),
            inner=inner_spec,
            btf_key_type_id=key_type,
            btf_value_type_id=value_type,
            declared_max_entries=declared,
        )
        if has_values and mtype != MapType.PROG_ARRAY and inner_spec is None:
            raise self.fail(f"map '{map_name}': map-in-map needs an inner map definition", sec)
        return spec

    def _read_legacy_maps(self, sec: Any) -> None:
        name = self.where = "maps"
        raw = self._sec_data(sec)
        syms = sorted(
            (
                s
                for s in self.symbols
                if s.shndx == self.legacy_maps_shndx
                and s.name
                and s.type in ("STT_OBJECT", "STT_NOTYPE")
                and s.bind != "STB_LOCAL"
            ),
            key=lambda s: s.value,
        )
        if not syms:
            return
        per = len(raw) // len(syms)
        if per < 20 or len(raw) % len(syms):
            raise self.fail(f"cannot split {len(raw)} bytes into {len(syms)} map definitions", name)
        for s in syms:
            size = s.size or per
            if size < 20 or s.value + size > len(raw):
                raise self.fail(f"map '{s.name}': definition of {size} bytes is truncated", name)
            mtype_raw, key_size, value_size, max_entries, flags = struct.unpack_from("<5I", raw, s.value)
            try:
                mtype = MapType(mtype_raw)
            except ValueError as err:
                raise self.fail(f"map '{s.name}': unknown map type {mtype_raw}", name) from err
            self._check_value_size(s.name, value_size, name)
            declared = max_entries
            if mtype == MapType.RINGBUF:
                max_entries = adjust_ringbuf_size(max_entries)
            mspec = MapSpec(
                name=s.name,
                type=mtype,
                key_size=key_size,
                value_size=value_size,
                max_entries=max_entries,
                flags=flags,
                kind=MapKind.LEGACY,
                section=name,
                section_index=self.legacy_maps_shndx,
                offset=s.value,
                declared_max_entries=declared,
            )
            self._add_map(mspec, name)
            self.map_at[(self.legacy_maps_shndx, s.value)] = s.name

    def _check_value_size(self, map_name: str, value_size: int, sec: str) -> None:
        if value_size > MAX_VALUE_SIZE:
            raise self.fail(
                f"map '{map_name}': value size {value_size} exceeds the largest the kernel accepts "
                f"({MAX_VALUE_SIZE} bytes)",
                sec,
            )

    def _add_map(self, mspec: MapSpec, sec: str) -> None:
        if mspec.name in self.spec.maps:
            raise self.fail(f"duplicate map name '{mspec.name}'", sec)
        self.spec.maps[mspec.name] = mspec

    # -- struct_ops ----------------------------------------------------------------------------------------

    def _read_struct_ops(self, idx: int, sec: Any, link: bool) -> None:
        """Each variable of a ``.struct_ops``/``.struct_ops.link`` section is one struct_ops map: its BTF type
        names the kernel struct, its bytes are the members' values (function pointers come from
        relocations, read later)."""
        name = self.where = sec.name
        btf = self.spec.btf
        if btf is None:
            raise self.fail("struct_ops maps need the object's BTF (build with -g)", name)
        datasec = btf.find(name, _kind("DATASEC"))
        if datasec is None:
            raise self.fail("no DATASEC for the section in BTF", name)
        raw = self._sec_data(sec)
        syms = {s.name: s for s in self.symbols if s.shndx == idx and s.name and s.type == "STT_OBJECT"}
        for vsi in datasec.vars:
            var = btf[vsi.type]
            if _kind_name(var) != "VAR":
                raise self.fail(f"unexpected {_kind_name(var)} in DATASEC", name)
            sym = syms.get(var.name)
            if sym is None:
                raise self.fail(f"struct_ops map '{var.name}' has no ELF symbol", name)
            type_id = self._skip_mods(var.type)
            t = btf[type_id]
            if _kind_name(t) != "STRUCT" or not t.name:
                raise self.fail(f"struct_ops map '{var.name}': its type is not a named struct", name)
            size = int(t.size)
            if sym.value + size > len(raw):
                raise self.fail(f"struct_ops map '{var.name}': {size}-byte struct {t.name} runs past the "
                                "end of the section", name)
            mspec = MapSpec(
                name=var.name,
                type=MapType.STRUCT_OPS,
                key_size=4,
                value_size=size,
                max_entries=1,
                flags=BPF_F_LINK if link else 0,
                kind=MapKind.STRUCT_OPS,
                section=name,
                section_index=idx,
                offset=sym.value,
                data=bytearray(raw[sym.value : sym.value + size]),
                declared_max_entries=1,
                struct_ops=StructOpsSpec(type_name=t.name, type_id=type_id, link=link),
            )
            self._add_map(mspec, name)

    def _read_struct_ops_relocations(self, sec: Any, target: int) -> None:
        """A relocation in a struct_ops section sets a function-pointer member to a program."""
        btf = self.spec.btf
        assert btf is not None
        tname = self.sec_names[target]
        owners = [m for m in self.spec.maps.values()
                  if m.kind == MapKind.STRUCT_OPS and m.section_index == target]
        for off, sym_idx in self._iter_rels(sec):
            if sym_idx >= len(self.symbols):
                raise self.fail(f"relocation names missing symbol #{sym_idx}", sec.name)
            sym = self.symbols[sym_idx]
            owner = next((m for m in owners if m.offset <= off < m.offset + m.value_size), None)
            if owner is None or owner.struct_ops is None:
                raise self.fail(f"relocation at offset {off} is outside any struct_ops map", tname)
            st = owner.struct_ops
            moff = off - owner.offset
            member = next((m for m in btf[st.type_id].members if m.bits_offset == moff * 8), None)
            if member is None:
                raise self.fail(f"struct_ops map '{owner.name}': relocation at offset {moff} of struct "
                                f"{st.type_name} is not at a member", tname)
            if not is_func_ptr(btf, member.type):
                raise self.fail(f"struct_ops map '{owner.name}': member '{member.name}' is set to "
                                f"'{sym.name}' but is not a function pointer", tname)
            prog = self._func_at(sym.shndx, sym.value // INSN_SIZE) if sym.type == "STT_FUNC" else None
            if prog is None or prog.is_subprog:
                raise self.fail(f"struct_ops map '{owner.name}': member '{member.name}' names '{sym.name}', "
                                "which is not a program", tname)
            if prog.type != ProgType.STRUCT_OPS:
                raise self.fail(f"struct_ops map '{owner.name}': member '{member.name}' names program "
                                f"'{prog.name}' of section '{prog.section}', not a struct_ops program "
                                "(SEC(\"struct_ops/...\"))", tname)
            st.funcs[member.name] = prog.name

    # -- global data ---------------------------------------------------------------------------------------

    def _read_data_section(self, idx: int, sec: Any) -> None:
        name = self.where = sec.name
        size = int(sec["sh_size"])
        kind = {"data": MapKind.DATA, "rodata": MapKind.RODATA, "bss": MapKind.BSS}[name[1:].split(".", 1)[0]]
        contents = bytearray(size) if kind == MapKind.BSS else bytearray(self._sec_data(sec))
        map_name = internal_map_name(self.obj, name)
        mspec = MapSpec(
            name=map_name,
            type=MapType.ARRAY,
            key_size=4,
            value_size=size,
            max_entries=1,
            flags=BPF_F_RDONLY_PROG if kind == MapKind.RODATA else 0,
            kind=kind,
            section=name,
            section_index=idx,
            data=contents,
            declared_max_entries=1,
        )
        syms = {
            s.name: s
            for s in self.symbols
            if s.shndx == idx and s.name and s.type in ("STT_OBJECT", "STT_NOTYPE")
        }
        btf = self.spec.btf
        datasec = btf.find(name, _kind("DATASEC")) if btf is not None else None
        mmapable = False
        if datasec is not None and btf is not None:
            mspec.btf_value_type_id = int(datasec.id)
            for vsi in datasec.vars:
                var = btf[vsi.type]
                if _kind_name(var) != "VAR":
                    continue
                sym = syms.get(var.name)
                if sym is None:
                    continue
                is_global = int(var.linkage) != 0 and var.name not in self.spec.hidden_symbols
                mmapable = mmapable or is_global
                self._add_var(
                    VariableSpec(
                        name=var.name,
                        map=map_name,
                        section=name,
                        offset=sym.value,
                        size=int(btf.size_of(var.type)),
                        type_id=int(var.type),
                        type_name=str(btf.type_name(var.type)),
                        is_global=is_global,
                        readonly=kind == MapKind.RODATA,
                    )
                )
        else:
            for sym in syms.values():
                if sym.type == "STT_OBJECT" and sym.size:
                    self._add_var(
                        VariableSpec(
                            name=sym.name,
                            map=map_name,
                            section=name,
                            offset=sym.value,
                            size=sym.size,
                            is_global=sym.bind != "STB_LOCAL",
                            readonly=kind == MapKind.RODATA,
                        )
                    )
        if mmapable:
            mspec.flags |= BPF_F_MMAPABLE
        if map_name in self.spec.maps:
            raise self.fail(f"global data map name '{map_name}' collides with another map", name)
        self.spec.maps[map_name] = mspec
        self.data_map[idx] = map_name

    def _add_var(self, var: VariableSpec) -> None:
        owner = self.spec.maps.get(var.map)
        if var.offset + var.size > (
            owner.value_size if owner is not None else self.spec.section_sizes.get(var.section, 0)
        ):
            raise self.fail(f"variable '{var.name}' lies outside its section", var.section)
        self.spec.variables.setdefault(var.name, var)

    # -- externs -------------------------------------------------------------------------------------------

    def _read_externs(self) -> None:
        self.where = ".BTF"  # externs are the undefined symbols that BTF's .kconfig/.ksyms describe
        btf = self.spec.btf
        kconfig: Dict[str, int] = {}
        ksyms: Dict[str, int] = {}
        if btf is not None:
            for secname, table in ((".kconfig", kconfig), (".ksyms", ksyms)):
                ds = btf.find(secname, _kind("DATASEC"))
                if ds is None:
                    continue
                for vsi in ds.vars:
                    t = btf[vsi.type]
                    table[t.name] = int(t.id)
            for t in btf.types[1:]:
                if (
                    _kind_name(t) == "FUNC"
                    and int(getattr(t, "linkage", 0) or 0) == 2
                    and t.name not in ksyms
                ):
                    ksyms[t.name] = int(t.id)
        for s in self.symbols:
            if s.shndx != SHN_UNDEF or s.type != "STT_NOTYPE" or s.bind not in ("STB_GLOBAL", "STB_WEAK"):
                continue
            if not s.name:
                continue
            weak = s.bind == "STB_WEAK"
            if s.name in kconfig:
                tid = kconfig[s.name]
                size = int(btf.size_of(btf[tid].type)) if btf is not None else 0
                self.spec.externs[s.name] = ExternSpec(s.name, "kconfig", tid, weak, size)
            elif s.name in ksyms and btf is not None and _kind_name(btf[ksyms[s.name]]) == "FUNC":
                self.spec.externs[s.name] = ExternSpec(s.name, "kfunc", ksyms[s.name], weak)
            else:
                tid = ksyms.get(s.name, 0)
                typed = bool(tid) and btf is not None and int(btf.resolve(btf[tid].type)) != 0
                self.spec.externs[s.name] = ExternSpec(s.name, "ksym", tid, weak, typed=typed)
        if any(e.kind == "kconfig" for e in self.spec.externs.values()):
            self._layout_kconfig()

    def _layout_kconfig(self) -> None:
        """Place kconfig externs in one read-only map, largest alignment first, like libbpf."""
        exts = [e for e in self.spec.externs.values() if e.kind == "kconfig"]
        exts.sort(key=lambda e: (-_align(e.size), e.name))
        off = 0
        for e in exts:
            a = _align(e.size)
            off = (off + a - 1) // a * a
            e.offset = off
            off += e.size
        size = max(off, 1)
        if size > MAX_VALUE_SIZE:
            raise self.fail(
                f"kconfig externs take {size} bytes, more than the largest map value the kernel accepts "
                f"({MAX_VALUE_SIZE} bytes)",
                ".kconfig",
            )
        self._zero_fill(".kconfig", size)
        self._check_zero_fill()
        self.spec.maps[internal_map_name(self.obj, ".kconfig")] = MapSpec(
            name=internal_map_name(self.obj, ".kconfig"),
            type=MapType.ARRAY,
            key_size=4,
            value_size=size,
            max_entries=1,
            flags=BPF_F_RDONLY_PROG,
            kind=MapKind.KCONFIG,
            section=".kconfig",
            data=bytearray(size),
            declared_max_entries=1,
        )

    # -- relocations ---------------------------------------------------------------------------------------

    def _read_relocations(self, sec: Any) -> None:
        target = int(sec["sh_info"])
        rel_name = self.where = sec.name
        if target in self.struct_ops_shndx:
            self._read_struct_ops_relocations(sec, target)
            return
        if target not in self.funcs:
            return  # .rel.maps (prog array / map-in-map values) is handled by _resolve_map_values
        tname = self.sec_names[target]
        for rel in self._iter_rels(sec):
            off, sym_idx = rel
            if off % INSN_SIZE:
                raise self.fail(f"relocation at misaligned offset {off}", rel_name)
            if sym_idx >= len(self.symbols):
                raise self.fail(f"relocation names missing symbol #{sym_idx}", rel_name)
            sym = self.symbols[sym_idx]
            insn_idx = off // INSN_SIZE
            prog = self._func_at(target, insn_idx)
            if prog is None:
                continue  # overridden weak function, as libbpf skips it
            local = insn_idx - prog.section_offset
            prog.relocations.append(self._classify(prog, local, sym, tname))
        for funcs in self.funcs.values():
            for p in funcs:
                p.relocations.sort(key=lambda r: r.insn)

    def _iter_rels(self, sec: Any) -> List[Tuple[int, int]]:
        raw = self._sec_data(sec)
        if len(raw) % 16:
            raise self.fail("relocation table size is not a multiple of 16", sec.name)
        out = []
        for i in range(0, len(raw), 16):
            r_offset, r_info = struct.unpack_from("<QQ", raw, i)
            out.append((r_offset, r_info >> 32))
        return out

    def _classify(self, prog: ProgramSpec, local: int, sym: _Sym, sec: str) -> Relocation:
        code, _dst, src, _off, _imm = codec.read(prog.insns, local)
        symname = sym.name or (self.sec_names.get(sym.shndx, "") if sym.type == "STT_SECTION" else "")
        if code not in (OP_CALL, OP_LD_IMM64):
            raise self.fail(
                f"program '{prog.name}': relocation against '{symname}' on instruction {local} "
                f"(opcode {code:#x}) that is neither a call nor a 64-bit load",
                sec,
            )
        if code == OP_LD_IMM64 and (local + 1) * INSN_SIZE >= len(prog.insns):
            raise self.fail(f"program '{prog.name}': truncated 64-bit load at instruction {local}", sec)
        if sym.shndx == SHN_UNDEF and sym.bind in ("STB_GLOBAL", "STB_WEAK") and sym.type == "STT_NOTYPE":
            kind = RelocKind.EXTERN_FUNC if code == OP_CALL else RelocKind.EXTERN_VAR
            return Relocation(local, kind, sym.name, 0, symname)
        if code == OP_CALL:
            if src != BPF_PSEUDO_CALL:
                raise self.fail(
                    f"program '{prog.name}': relocated call to '{symname}' is not a bpf-to-bpf call", sec
                )
            if sym.shndx != self.text_shndx or self.text_shndx < 0:
                where = self.sec_names.get(sym.shndx, "?")
                raise self.fail(
                    f"program '{prog.name}': call to '{symname}' in section '{where}' "
                    "(subprograms must be in .text)",
                    sec,
                )
            if sym.value % INSN_SIZE:
                raise self.fail(f"program '{prog.name}': call to misaligned '{symname}'", sec)
            return Relocation(local, RelocKind.CALL, "", sym.value, symname)
        if sym.shndx == 0 or sym.shndx >= SHN_LORESERVE:
            raise self.fail(
                f"program '{prog.name}': relocation against '{symname}' in a special section "
                "(uninitialised global variable?)",
                sec,
            )
        if sym.shndx == self.text_shndx and sym.type in ("STT_FUNC", "STT_SECTION"):
            return Relocation(local, RelocKind.SUBPROG_ADDR, "", sym.value, symname)
        if sym.shndx in (self.maps_shndx, self.legacy_maps_shndx):
            name = self.map_at.get((sym.shndx, sym.value))
            if name is None:
                raise self.fail(f"program '{prog.name}': no map at offset {sym.value} for '{symname}'", sec)
            return Relocation(local, RelocKind.MAP, name, 0, symname)
        if sym.shndx in self.data_map:
            return Relocation(local, RelocKind.DATA, self.data_map[sym.shndx], sym.value, symname)
        where = self.sec_names.get(sym.shndx, "?")
        raise self.fail(
            f"program '{prog.name}': relocation against '{symname}' in section '{where}' "
            "that is neither a map nor global data",
            sec,
        )

    def _resolve_map_values(self, secs: Dict[int, Any]) -> None:
        """``.values = { [1] = &prog }`` initialisers: relocations in .rel.maps name the programs/maps."""
        if self.maps_shndx < 0:
            return
        for sec in secs.values():
            if sec["sh_type"] != "SHT_REL" or int(sec["sh_info"]) != self.maps_shndx:
                continue
            self.where = sec.name
            maps_sorted = sorted(
                (m for m in self.spec.maps.values() if m.kind == MapKind.BTF), key=lambda m: m.offset
            )
            for off, sym_idx in self._iter_rels(sec):
                if sym_idx >= len(self.symbols):
                    raise self.fail(f"relocation names missing symbol #{sym_idx}", sec.name)
                sym = self.symbols[sym_idx]
                owner = None
                for m in maps_sorted:
                    if m.offset <= off:
                        owner = m
                if owner is None:
                    raise self.fail(f"relocation at offset {off} is outside any map", sec.name)
                values_off = self._values_offset(owner)
                if values_off is None:
                    raise self.fail(
                        f"map '{owner.name}': initial values given but no 'values' field", sec.name
                    )
                rel = off - owner.offset - values_off
                if rel < 0 or rel % 8:
                    raise self.fail(f"map '{owner.name}': bad 'values' relocation offset {off}", sec.name)
                slot = rel // 8
                if owner.type == MapType.PROG_ARRAY:
                    if sym.type != "STT_FUNC" or sym.name not in self.spec.programs:
                        raise self.fail(
                            f"map '{owner.name}': slot {slot} names '{sym.name}', not a program", sec.name
                        )
                elif sym.shndx != self.maps_shndx or sym.name not in self.spec.maps:
                    raise self.fail(
                        f"map '{owner.name}': slot {slot} names '{sym.name}', not a map", sec.name
                    )
                if slot >= owner.max_entries and owner.type != MapType.HASH_OF_MAPS:
                    raise self.fail(
                        f"map '{owner.name}': slot {slot} beyond max_entries {owner.max_entries}", sec.name
                    )
                owner.contents.append((slot, sym.name))

    def _values_offset(self, mspec: MapSpec) -> Optional[int]:
        btf = self.spec.btf
        if btf is None:
            return None
        datasec = btf.find(".maps", _kind("DATASEC"))
        for vsi in datasec.vars if datasec is not None else ():
            var = btf[vsi.type]
            if var.name != mspec.name:
                continue
            for m in btf[self._skip_mods(var.type)].members:
                if m.name == "values":
                    return int(m.bits_offset) // 8
        return None

    # -- .BTF.ext ------------------------------------------------------------------------------------------

    def _cut_btf_ext(self) -> None:
        """Hand each function its own func/line info and CO-RE records, indexes relative to its start."""
        ext = self.spec.btf_ext
        if ext is None:
            return
        self.where = ".BTF.ext"
        allfuncs = {self.sec_names[i]: f for i, f in self.funcs.items()}
        # (records per section, label, the program's list, record built from (index in program, record))
        kinds: Tuple[Tuple[Mapping[str, Sequence[Any]], str, Callable[[ProgramSpec], List[Any]],
                           Callable[[int, Any], Any]], ...] = (
            (ext.func_info, "func_info", lambda p: p.func_info,
             lambda i, r: FuncInfoRec(i, r.type_id)),
            (ext.line_info, "line_info", lambda p: p.line_info,
             lambda i, r: LineInfoRec(i, r.file_name_off, r.line_off, r.line, r.col, r.file, r.line_text)),
            (ext.core_relos, "CO-RE", lambda p: p.core_relos,
             lambda i, r: CoreReloRec(i, r.type_id, r.access_str_off, int(r.kind), r.access)),
        )
        for per_section, what, dest, make in kinds:
            for secname, recs in per_section.items():
                # each function's span, in section order (the first that holds a record owns it)
                spans = [(p.section_offset, p.section_offset + p.insn_count, p)
                         for p in allfuncs.get(secname, ())]
                for rec in recs:
                    off = rec.insn_off
                    if off % INSN_SIZE:
                        raise self.fail(f".BTF.ext {what} record at misaligned offset {off}", secname)
                    idx = off // INSN_SIZE
                    for lo, hi, prog in spans:
                        if lo <= idx < hi:
                            dest(prog).append(make(idx - lo, rec))
                            break


def struct_ops_section(name: str) -> Optional[bool]:
    """Whether a section holds struct_ops maps, as libbpf reads names: None for other sections, True for
    ``.struct_ops.link`` (registered through a BPF link), False for ``.struct_ops``."""
    if name == ".struct_ops.link" or name.startswith(".struct_ops.link."):
        return True
    if name == ".struct_ops" or name.startswith(".struct_ops."):
        return False
    return None


def is_func_ptr(btf: Any, type_id: int) -> bool:
    """Whether a BTF type is a pointer to a function (typedefs and qualifiers skipped)."""
    t = btf.resolved(type_id)
    return _kind_name(t) == "PTR" and _kind_name(btf.resolved(t.type)) == "FUNC_PROTO"


def _align(size: int) -> int:
    for a in (8, 4, 2):
        if size >= a and size % a == 0:
            return a
    return 1


def adjust_ringbuf_size(size: int) -> int:
    """Round a ring buffer size up to a power-of-two multiple of the page size, as libbpf does (0 stays 0)."""
    if size == 0:
        return 0
    if size % PAGE_SIZE == 0 and _pow2(size // PAGE_SIZE):
        return size
    mul = 1
    while mul * PAGE_SIZE <= size:
        mul <<= 1
    return mul * PAGE_SIZE


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _kind_name(t: Any) -> str:
    kind = getattr(t, "kind", None)
    name = getattr(kind, "name", kind)
    return str(name).upper()


def _kind(name: str) -> Any:
    from rawbpf.btf import Kind

    return Kind[name]
