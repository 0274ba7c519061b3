"""load_spec refuses section and map headers no kernel could accept: quickly, by name, allocating nothing."""

from __future__ import annotations

import io
import re
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from rawbpf import elf as elfmod
from rawbpf.elf import MAX_VALUE_SIZE, load_spec
from rawbpf.errors import BTFError, ObjectError

DATA = Path(__file__).resolve().parent.parent / "data"

# Elf64_Ehdr / Elf64_Shdr field offsets
E_SHOFF, E_SHENTSIZE, E_SHNUM, E_SHSTRNDX = 0x28, 0x3A, 0x3C, 0x3E
SH_TYPE, SH_FLAGS, SH_OFFSET, SH_SIZE, SH_ENTSIZE = 4, 8, 24, 32, 56
SHT_NOBITS, SHF_COMPRESSED = 8, 0x800


def _obj(name: str) -> bytes:
    return (DATA / name).read_bytes()


def _shdr(data: bytes, section: str) -> int:
    """Offset of the named section's header."""
    elf = ELFFile(io.BytesIO(data))
    idx = next(i for i, sec in enumerate(elf.iter_sections()) if sec.name == section)
    return int(elf["e_shoff"]) + idx * int(elf["e_shentsize"])


def _patch(data: bytes, at: int, value: int, width: int) -> bytes:
    out = bytearray(data)
    out[at : at + width] = value.to_bytes(width, "little")
    return bytes(out)


def _set_field(name: str, section: str, field: int, value: int, width: int = 8) -> bytes:
    data = _obj(name)
    return _patch(data, _shdr(data, section) + field, value, width)


def _refused(data: bytes, pattern: str) -> ObjectError:
    t0 = time.thread_time()
    with pytest.raises(ObjectError, match=pattern) as info:
        load_spec(data, "obj")
    assert time.thread_time() - t0 < 0.5
    assert "\n" not in str(info.value)
    return info.value


# -- global data sizes ---------------------------------------------------------------------------------------


def test_limit_is_the_kernels_array_value_cap() -> None:
    assert MAX_VALUE_SIZE == 2**31 - 1  # INT_MAX: array_map_alloc_check() refuses more with E2BIG


@pytest.mark.parametrize("size", [MAX_VALUE_SIZE + 1, 1 << 40, 2**64 - 1])
def test_huge_bss_is_refused_without_allocating(size: int) -> None:
    data = _set_field("globals.o", ".bss", SH_SIZE, size)
    _refused(
        data,
        rf"^object 'obj': section '\.bss': size {size} exceeds the largest map value the kernel accepts "
        rf"\({MAX_VALUE_SIZE} bytes\)$",
    )


def test_global_data_limit_is_inclusive(monkeypatch: pytest.MonkeyPatch) -> None:
    """A section exactly at the limit loads, one byte more does not (a small limit stands in for INT_MAX)."""
    monkeypatch.setattr(elfmod, "MAX_VALUE_SIZE", 4096)
    spec = load_spec(_set_field("globals.o", ".bss", SH_SIZE, 4096), "obj")
    bss = spec.maps["obj.bss"]
    assert bss.value_size == 4096 and bss.data == bytearray(4096)
    data = _set_field("globals.o", ".bss", SH_SIZE, 4097)
    _refused(data, r"^object 'obj': section '\.bss': size 4097 exceeds")


def test_progbits_global_data_is_held_to_the_limit_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(elfmod, "MAX_VALUE_SIZE", 8)
    _refused(_obj("globals.o"), r"^object 'obj': section '\.rodata[^']*': size \d+ exceeds the largest")


# -- data that must lie within the file ---------------------------------------------------------------------


@pytest.mark.parametrize("section", ["license", ".BTF", ".data", ".rodata", "socket", ".symtab",
                                     ".rel.BTF.ext"])
@pytest.mark.parametrize(("field", "value"), [(SH_SIZE, 1 << 40), (SH_OFFSET, 1 << 40),
                                              (SH_OFFSET, 2**64 - 1)])
def test_section_data_outside_the_file(section: str, field: int, value: int) -> None:
    data = _set_field("globals.o", section, field, value)
    _refused(data, rf"^object 'obj': section '{section}': data \(\d+ bytes at offset \d+\) lies outside the "
                   rf"{len(data)}-byte file$")


def test_section_running_one_byte_past_the_end() -> None:
    data = _obj("globals.o")
    at = _shdr(data, ".BTF")
    offset = struct.unpack_from("<Q", data, at + SH_OFFSET)[0]
    _refused(_patch(data, at + SH_SIZE, len(data) - offset + 1, 8), r"section '\.BTF': data .* lies outside")
    load_spec(_patch(data, at + SH_OFFSET, offset, 8), "obj")  # unchanged header still loads


@pytest.mark.parametrize("section", ["license", ".BTF", "maps"])
def test_nobits_where_data_is_read(section: str) -> None:
    """pyelftools would hand back sh_size zero bytes for a NOBITS section: the header is refused instead."""
    name = "maps_legacy.o" if section == "maps" else "globals.o"
    data = _set_field(name, section, SH_TYPE, SHT_NOBITS, 4)
    data = _patch(data, _shdr(data, section) + SH_SIZE, 1 << 40, 8)
    _refused(data, rf"^object 'obj': section '{section}': no data in the file \(SHT_NOBITS\)$")


def test_compressed_section_is_refused() -> None:
    data = _set_field("globals.o", ".BTF", SH_FLAGS, SHF_COMPRESSED)
    _refused(data, r"^object 'obj': section '\.BTF': compressed sections are not supported$")


@pytest.mark.parametrize(("field", "value"), [(SH_ENTSIZE, 0), (SH_ENTSIZE, 16), (SH_SIZE, 25)])
def test_symbol_table_entries(field: int, value: int) -> None:
    data = _set_field("globals.o", ".symtab", field, value)
    _refused(data, r"^object 'obj': section '\.symtab': symbol table of \d+ bytes in entries of \d+ "
                   r"\(an ELF64 symbol is 24 bytes\)$")


# -- the section header table -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "value", "width", "pattern"),
    [
        (E_SHOFF, 0, 8, r"malformed ELF: no section header table$"),
        (E_SHOFF, 1 << 40, 8, r"malformed ELF: section header table offset 1099511627776 lies outside the"),
        (E_SHENTSIZE, 32, 2, r"malformed ELF: section header size 32 is not 64$"),
        (E_SHNUM, 0xFEFF, 2, r"malformed ELF: section header table \(65279 entries at offset \d+\) runs"),
        (E_SHSTRNDX, 0, 2, r"malformed ELF: section name table index 0 is not among \d+ sections$"),
    ],
)
def test_section_header_table(at: int, value: int, width: int, pattern: str) -> None:
    _refused(_patch(_obj("globals.o"), at, value, width), r"^object 'obj': " + pattern)


@pytest.mark.parametrize(
    ("field", "value"),
    [(SH_OFFSET, 1 << 40), (SH_OFFSET, 2**64 - 1), (SH_SIZE, 1 << 40), (SH_TYPE, SHT_NOBITS)],
)
def test_section_name_table_outside_the_file(field: int, value: int) -> None:
    """.strtab is also the section name table here: without it no section has a name to report."""
    data = _set_field("globals.o", ".strtab", field, value, 4 if field == SH_TYPE else 8)
    _refused(data, r"^object 'obj': malformed ELF: section name table \(section \d+, \d+ bytes at offset "
                   r"\d+\) lies outside the \d+-byte file$")


def test_section_name_outside_the_name_table() -> None:
    data = _set_field("globals.o", ".BTF", 0, 1 << 20, 4)  # sh_name
    _refused(data, r"^object 'obj': malformed ELF: section \d+: name offset 1048576 is outside the name")


def test_section_count_from_section_zero_is_bounded() -> None:
    """With e_shnum 0 the count comes from section 0's sh_size: a huge one is refused, not iterated."""
    data = _patch(_obj("globals.o"), E_SHNUM, 0, 2)
    shoff = struct.unpack_from("<Q", data, E_SHOFF)[0]
    data = _patch(data, shoff + SH_SIZE, 2**64 - 1, 8)
    _refused(data, r"^object 'obj': malformed ELF: section header table \(18446744073709551615 entries")


# -- map value sizes ----------------------------------------------------------------------------------------


def test_legacy_map_value_size_beyond_the_kernel_limit() -> None:
    data = _obj("maps_legacy.o")
    elf = ELFFile(io.BytesIO(data))
    maps, symtab = elf.get_section_by_name("maps"), elf.get_section_by_name(".symtab")
    assert maps is not None and isinstance(symtab, SymbolTableSection)
    sym = next(s for s in symtab.iter_symbols() if s.name == "legacy_hash")
    at = int(maps["sh_offset"]) + int(sym["st_value"]) + 8  # struct bpf_map_def.value_size
    _refused(
        _patch(data, at, 0xFFFFFFFF, 4),
        rf"^object 'obj': section 'maps': map 'legacy_hash': value size 4294967295 exceeds the largest the "
        rf"kernel accepts \({MAX_VALUE_SIZE} bytes\)$",
    )


def test_btf_map_value_size_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(elfmod, "MAX_VALUE_SIZE", 12)
    _refused(_obj("maps_btf.o"), r"^object 'obj': section '\.maps': map '\w+': value size 16 exceeds the")


# -- the catch-all names the section and the real problem ---------------------------------------------------


def test_unexpected_exception_names_section_and_type(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader bug is not passed off as a parse error: the message says what was raised, where."""

    def boom(obj: str, section: str) -> str:
        raise OverflowError("cannot fit 'int' into an index-sized integer")

    monkeypatch.setattr(elfmod, "internal_map_name", boom)  # first called while reading a global data section
    with pytest.raises(ObjectError) as info:
        load_spec(_obj("globals.o"), "obj")
    assert re.fullmatch(
        r"object 'obj': section '\.(rodata|data|bss)[^']*': malformed ELF: unexpected OverflowError: "
        r"cannot fit 'int' into an index-sized integer",
        str(info.value),
    )
    assert isinstance(info.value.__cause__, OverflowError)


def test_memory_error_without_message_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(name: str) -> Any:
        raise MemoryError()

    monkeypatch.setattr(elfmod._sections, "lookup", boom)  # called while reading a program section
    pattern = r"^object 'obj': section '[^']+': malformed ELF: unexpected MemoryError$"
    with pytest.raises(ObjectError, match=pattern):
        load_spec(_obj("globals.o"), "obj")


def test_other_rawbpf_errors_become_object_errors_with_the_section(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: Any) -> None:
        self.where = ".bss"
        raise BTFError("btf: type #7 has no size")

    monkeypatch.setattr(elfmod._Reader, "_read_externs", boom)
    with pytest.raises(ObjectError, match=r"^object 'obj': section '\.bss': btf: type #7 has no size$") as e:
        load_spec(_obj("globals.o"), "obj")
    assert isinstance(e.value.__cause__, BTFError)


# -- zero-filled data, bounded for commands that only read ---------------------------------------------------

def _elf_with_bss(sizes: list[int]) -> bytes:
    """A relocatable BPF ELF with a license and one NOBITS ``.bss.N`` section per size: a few hundred bytes
    of headers that declare as much zero-filled data as they like."""
    names = [b"", b".shstrtab", b"license", b".symtab", b".strtab"] + [f".bss.{i}".encode() for i in
                                                                           range(len(sizes))]
    shstr = b"\0".join(names) + b"\0"
    offs, pos = [], 0
    for n in names:
        offs.append(pos)
        pos += len(n) + 1
    license_ = b"GPL\0"
    symtab = bytes(24)  # the null symbol only
    strtab = b"\0"
    body = bytearray(64)
    placed = []
    for blob in (shstr, license_, symtab, strtab):
        placed.append((len(body), len(blob)))
        body += blob
        body += bytes(-len(body) % 8)
    shoff = len(body)
    SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB = 1, 2, 3
    shdrs = [bytes(64)]

    def shdr(name: int, typ: int, flags: int, off: int, size: int, link: int = 0, info: int = 0,
             align: int = 1, entsize: int = 0) -> bytes:
        return struct.pack("<IIQQQQIIQQ", name, typ, flags, 0, off, size, link, info, align, entsize)

    shdrs.append(shdr(offs[1], SHT_STRTAB, 0, *placed[0]))
    shdrs.append(shdr(offs[2], SHT_PROGBITS, 3, *placed[1]))
    shdrs.append(shdr(offs[3], SHT_SYMTAB, 0, *placed[2], link=4, info=1, align=8, entsize=24))
    shdrs.append(shdr(offs[4], SHT_STRTAB, 0, *placed[3]))
    for i, size in enumerate(sizes):
        shdrs.append(shdr(offs[5 + i], SHT_NOBITS, 3, shoff, size, align=8))
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    ehdr = ident + struct.pack("<HHIQQQIHHHHHH", 1, 247, 1, 0, 0, shoff, 0, 64, 0, 0, 64, len(shdrs), 1)
    body[:64] = ehdr
    return bytes(body) + b"".join(shdrs)


def test_reading_refuses_gigabytes_of_declared_zeros_before_allocating(tmp_path: Path) -> None:
    """inspect of a small object with four 1.5 GiB .bss.* sections allocated 3 GB before failing; now the
    sum is refused by its real cause, allocating nothing, while load (bounded=False) still reads it."""
    data = _elf_with_bss([3 << 29] * 4)
    assert len(data) < 2048
    t0 = time.thread_time()
    with pytest.raises(ObjectError) as info:
        load_spec(data, "obj", bounded=True)
    assert time.thread_time() - t0 < 0.5
    msg = str(info.value)
    assert re.search(r"declares 6 GiB of zero-filled data \(\.bss\.\d 1\.5 GiB, .*\) in a \d+ bytes file, "
                     r"more than 64 MiB that reading it may take$", msg), msg
    obj = tmp_path / "zeros.o"
    obj.write_bytes(data)
    import subprocess
    import sys

    for cmd in ("inspect", "disasm"):
        r = subprocess.run([sys.executable, "-m", "rawbpf", cmd, str(obj)], capture_output=True, text=True,
                           timeout=60, cwd=Path(__file__).resolve().parents[2])
        assert r.returncode == 1 and "declares 6 GiB of zero-filled data" in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1


def test_a_real_sized_buffer_still_reads() -> None:
    spec = load_spec(_elf_with_bss([1 << 20, 4096]), "obj", bounded=True)
    assert sorted(m.value_size for m in spec.maps.values()) == [4096, 1 << 20]
