"""BTF: parse, query, re-encode and sanitise type information, .BTF.ext records, and CO-RE; pure.

Nothing here makes a syscall; :mod:`rawbpf.btf.kernel` only reads files (vmlinux and module BTF).
"""

from __future__ import annotations

from rawbpf.btf.ext import BTFExt, CoreRelo, CoreReloKind, FuncInfo, LineInfo
from rawbpf.btf.marshal import BtfFeatures, fill_datasecs, fixup_externs, marshal, sanitized
from rawbpf.btf.parse import BTF
from rawbpf.btf.pretty import format_c
from rawbpf.btf.types import Array, BtfType, EnumValue, Kind, Member, Param, VarSecInfo

__tier__ = "pure"

__all__ = [
    "BTF",
    "Array",
    "BTFExt",
    "BtfFeatures",
    "BtfType",
    "CoreRelo",
    "CoreReloKind",
    "EnumValue",
    "FuncInfo",
    "Kind",
    "LineInfo",
    "Member",
    "Param",
    "VarSecInfo",
    "fill_datasecs",
    "fixup_externs",
    "format_c",
    "marshal",
    "sanitized",
]
