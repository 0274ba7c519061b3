"""BTF type model: kinds, the BtfType record and its parts; pure, makes no syscalls.

One :class:`BtfType` dataclass covers every kind; the fields a kind does not use keep their defaults. Values
are decoded (names as ``str``, enum values as Python ints with the kind's signedness), and ``name_off`` fields
remember where a name came from so that re-encoding clang's output is byte-identical.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import List, Optional

__tier__ = "pure"


class Kind(enum.IntEnum):
    """BTF_KIND_* from include/uapi/linux/btf.h."""

    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


KIND_MAX = max(Kind)

# INT encoding bits (BTF_INT_ENCODING)
INT_SIGNED = 1
INT_CHAR = 2
INT_BOOL = 4

# FUNC linkage (btf_func_linkage) and VAR linkage (BTF_VAR_*)
FUNC_STATIC = 0
FUNC_GLOBAL = 1
FUNC_EXTERN = 2
VAR_STATIC = 0
VAR_GLOBAL_ALLOCATED = 1
VAR_GLOBAL_EXTERN = 2

# Kinds whose third header word is a size; for the others it is a referenced type id.
SIZED_KINDS = frozenset({Kind.INT, Kind.ENUM, Kind.STRUCT, Kind.UNION, Kind.DATASEC, Kind.FLOAT, Kind.ENUM64})
# Kinds skipped when resolving a type to what it really is.
MODIFIER_KINDS = frozenset({Kind.TYPEDEF, Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG})


@dataclass
class Member:
    """A struct/union member. ``bits_offset`` from the start of the aggregate; ``bitfield_size`` 0 if none."""

    name: str
    type: int
    bits_offset: int
    bitfield_size: int = 0
    name_off: int = field(default=0, compare=False, repr=False)


@dataclass
class EnumValue:
    """An enumerator; ``value`` is signed or unsigned as the enum's kind_flag says."""

    name: str
    value: int
    name_off: int = field(default=0, compare=False, repr=False)


@dataclass
class Array:
    """ARRAY payload: element type, index type, element count."""

    type: int
    index_type: int
    nelems: int


@dataclass
class Param:
    """A FUNC_PROTO parameter (type 0 with an empty name means ``...``)."""

    name: str
    type: int
    name_off: int = field(default=0, compare=False, repr=False)


@dataclass
class VarSecInfo:
    """A DATASEC entry: a VAR (or FUNC for externs) at ``offset`` of ``size`` bytes."""

    type: int
    offset: int
    size: int


@dataclass
class BtfType:
    """One BTF type of any kind (id 0 is ``void``, kind UNKN).

    ``size`` is used by sized kinds (INT, ENUM, ENUM64, STRUCT, UNION, DATASEC, FLOAT), ``type`` by the others
    (PTR, TYPEDEF, modifiers, FUNC, FUNC_PROTO's return type, VAR, DECL_TAG, TYPE_TAG). ``linkage`` is FUNC's
    linkage (stored in vlen) or VAR's. ``kind_flag`` means: bitfield encoding for STRUCT/UNION, signed for
    ENUM/ENUM64, union for FWD, attribute style for DECL_TAG/TYPE_TAG.
    """

    id: int
    kind: Kind
    name: str = ""
    size: int = 0
    type: int = 0
    kind_flag: bool = False
    members: List[Member] = field(default_factory=list)
    values: List[EnumValue] = field(default_factory=list)
    array: Optional[Array] = None
    params: List[Param] = field(default_factory=list)
    vars: List[VarSecInfo] = field(default_factory=list)
    linkage: int = 0
    component_idx: int = -1
    int_encoding: int = 0
    int_bits: int = 0
    int_offset: int = 0
    name_off: int = field(default=0, compare=False, repr=False)

    @property
    def vlen(self) -> int:
        """The number of trailing records (members, enumerators, params, vars; FUNC: its linkage)."""
        k = self.kind
        if k in (Kind.STRUCT, Kind.UNION):
            return len(self.members)
        if k in (Kind.ENUM, Kind.ENUM64):
            return len(self.values)
        if k == Kind.FUNC_PROTO:
            return len(self.params)
        if k == Kind.DATASEC:
            return len(self.vars)
        if k == Kind.FUNC:
            return self.linkage
        return 0

    @property
    def is_composite(self) -> bool:
        return self.kind in (Kind.STRUCT, Kind.UNION)

    @property
    def is_enum(self) -> bool:
        return self.kind in (Kind.ENUM, Kind.ENUM64)

    @property
    def is_modifier(self) -> bool:
        """TYPEDEF, CONST, VOLATILE, RESTRICT or TYPE_TAG: a name or qualifier over another type."""
        return self.kind in MODIFIER_KINDS

    @property
    def signed(self) -> bool:
        """Whether an INT or an enum is signed."""
        if self.kind == Kind.INT:
            return bool(self.int_encoding & INT_SIGNED)
        return self.is_enum and self.kind_flag

    def member(self, index: int) -> Member:
        return self.members[index]


def kind_name(kind: int) -> str:
    """The lower-case name of a kind for messages (``struct``, ``enum64``); unknown kinds by number."""
    try:
        return Kind(kind).name.lower()
    except ValueError:
        return f"kind {kind}"
