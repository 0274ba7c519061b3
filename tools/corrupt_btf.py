#!/usr/bin/env python3
"""Write tests/data/bad_btf.o: a copy of a corpus object whose .BTF section is corrupt; files only.

The first BTF type's kind is set to 31, a kind no kernel defines, so a parser has to reject the section by
itself. The output is a pure function of the input bytes, so the committed file rebuilds identically.
"""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

from elftools.elf.elffile import ELFFile

BAD_KIND = 31
_HDR = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, type_off, type_len, str_off, str_len


def corrupt(data: bytes) -> bytes:
    """Return ``data`` with the kind of BTF type id 1 replaced by an undefined kind."""
    import io

    elf = ELFFile(io.BytesIO(data))
    sec = elf.get_section_by_name(".BTF")
    if sec is None:
        raise SystemExit("corrupt_btf: input has no .BTF section")
    base = sec["sh_offset"]
    magic, _ver, _flags, hdr_len, type_off, _type_len, _str_off, _str_len = _HDR.unpack_from(data, base)
    if magic != 0xEB9F:
        raise SystemExit("corrupt_btf: .BTF has a bad magic or is big-endian")
    info_at = base + hdr_len + type_off + 4  # btf_type: name_off u32, info u32, size/type u32
    (info,) = struct.unpack_from("<I", data, info_at)
    info = (info & ~(0x1F << 24)) | (BAD_KIND << 24)
    out = bytearray(data)
    struct.pack_into("<I", out, info_at, info)
    return bytes(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="a BPF object with a .BTF section")
    ap.add_argument("dst", type=Path, help="where to write the corrupted copy")
    args = ap.parse_args(argv)
    args.dst.write_bytes(corrupt(args.src.read_bytes()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
