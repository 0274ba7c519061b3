"""Pure blueprints of a BPF object: programs, maps, global variables and externs; makes no syscalls.

A :class:`CollectionSpec` is what :func:`rawbpf.elf.load_spec` reads out of a clang-built ELF object. It is
plain data, deterministic, and can be inspected, edited (e.g. constants set) and handed to
:meth:`rawbpf.collection.Collection.load`, which is the only step that touches the kernel.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from rawbpf.asm.codec import INSN_SIZE
from rawbpf.consts import MapType, ProgType
from rawbpf.errors import ConfigError
from rawbpf.globals import encode_value

if TYPE_CHECKING:  # pragma: no cover
    from rawbpf.btf import BTF
    from rawbpf.btf.ext import BTFExt

__tier__ = "pure"



class RelocKind(enum.Enum):
    """What an ELF relocation against a program instruction refers to (libbpf's RELO_* kinds)."""

    MAP = "map"  # ld_imm64 of a map (BTF .maps or legacy maps): fd
    DATA = "data"  # ld_imm64 of a global variable: map value + offset
    CALL = "call"  # bpf-to-bpf call into .text
    SUBPROG_ADDR = "subprog_addr"  # ld_imm64 of a .text function address (callbacks, e.g. bpf_loop)
    EXTERN_VAR = "extern_var"  # ld_imm64 of an extern (.kconfig value or __ksym variable)
    EXTERN_FUNC = "extern_func"  # call of an extern function (kfunc)


class MapKind(enum.Enum):
    """Where a map came from in the object."""

    BTF = "btf"  # SEC(".maps") definition
    LEGACY = "legacy"  # SEC("maps") struct bpf_map_def
    DATA = "data"  # .data / .data.*
    RODATA = "rodata"  # .rodata / .rodata.*
    BSS = "bss"  # .bss / .bss.*
    KCONFIG = "kconfig"  # extern ... __kconfig values
    STRUCT_OPS = "struct_ops"  # a variable of SEC(".struct_ops") / SEC(".struct_ops.link")


class Pinning(enum.IntEnum):
    NONE = 0
    BY_NAME = 1


@dataclass
class Relocation:
    """One relocation of a program instruction, by target rather than by R_BPF_* number."""

    insn: int  # instruction index within the function's own instructions
    kind: RelocKind
    target: str  # map name, extern name, or "" for CALL/SUBPROG_ADDR
    offset: int = 0  # DATA: byte offset of the symbol in its section; CALL/SUBPROG_ADDR: symbol's byte
    # offset in .text (the instruction's imm adds to it)
    symbol: str = ""  # the ELF symbol, for messages


@dataclass
class FuncInfoRec:
    """A .BTF.ext func_info record, its instruction index relative to the start of its function."""

    insn: int
    type_id: int


@dataclass
class LineInfoRec:
    """A .BTF.ext line_info record (relative index), with the raw string offsets the kernel wants."""

    insn: int
    file_name_off: int
    line_off: int
    line: int
    col: int
    file: str = ""
    text: str = ""


@dataclass
class CoreReloRec:
    """A .BTF.ext CO-RE relocation record (relative index) for the instruction it patches."""

    insn: int
    type_id: int
    access_str_off: int
    kind: int
    access: str = ""


@dataclass
class ProgramSpec:
    """One function of the object: an entry program, or a .text subprogram appended to its callers."""

    name: str
    section: str
    type: ProgType
    expected_attach_type: int
    attach_to: str  # section name after its prefix, e.g. "syscalls/sys_enter_execve"
    insns: bytes  # the function's own instructions, before linking
    license: str = "GPL"
    kern_version: int = 0
    flags: int = 0  # prog_flags (sleepable, xdp frags)
    attach_kind: str = ""  # see rawbpf.sections.SecDef.attach
    section_index: int = 0
    section_offset: int = 0  # index of the first instruction within its section
    relocations: List[Relocation] = field(default_factory=list)
    func_info: List[FuncInfoRec] = field(default_factory=list)
    line_info: List[LineInfoRec] = field(default_factory=list)
    core_relos: List[CoreReloRec] = field(default_factory=list)
    is_subprog: bool = False
    is_global: bool = True
    hidden: bool = False  # global but STV_HIDDEN: libbpf marks its BTF FUNC static
    autoload: bool = True
    known_section: bool = True  # False: libbpf would not know the section name; loading refuses it

    @property
    def insn_count(self) -> int:
        return len(self.insns) // INSN_SIZE


@dataclass
class StructOpsSpec:
    """What a struct_ops map holds, as the object declares it: a variable of a kernel struct's type.

    ``funcs`` maps each function-pointer member the object sets to the program it names (from the
    relocations of the section); every other member's value is the map's ``data``."""

    type_name: str  # the struct's name, e.g. "tcp_congestion_ops"
    type_id: int  # the struct in the object's BTF
    link: bool = False  # .struct_ops.link: registered through a BPF link (BPF_F_LINK)
    funcs: Dict[str, str] = field(default_factory=dict)


@dataclass
class MapSpec:
    """A map to create. For global data, ``data`` is the initial value of its single element."""

    name: str
    type: MapType
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    kind: MapKind = MapKind.BTF
    numa_node: Optional[int] = None
    pinning: Pinning = Pinning.NONE
    map_extra: int = 0
    inner: Optional[MapSpec] = None
    contents: List[Tuple[int, str]] = field(default_factory=list)  # prog array / map-in-map slots → name
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    section: str = ""  # ELF section the definition (or data) lives in
    section_index: int = 0
    offset: int = 0  # symbol offset within that section (BTF/legacy maps)
    data: Optional[bytearray] = None  # global data initial contents (value of key 0)
    declared_max_entries: int = 0  # before ringbuf page rounding
    struct_ops: Optional[StructOpsSpec] = None  # kind STRUCT_OPS: the struct and its programs

    @property
    def is_global_data(self) -> bool:
        return self.kind in (MapKind.DATA, MapKind.RODATA, MapKind.BSS, MapKind.KCONFIG)

    @property
    def frozen(self) -> bool:
        """Read-only data maps are frozen after their contents are written, as libbpf does."""
        return self.kind in (MapKind.RODATA, MapKind.KCONFIG)


@dataclass
class VariableSpec:
    """A global variable living in a data map at ``offset``; ``type_id`` is its BTF type (0 if unknown)."""

    name: str
    map: str
    section: str
    offset: int
    size: int
    type_id: int = 0
    type_name: str = ""
    is_global: bool = True
    readonly: bool = False  # in .rodata*: settable only before load (const volatile)

    def value(self, spec: CollectionSpec) -> bytes:
        """Current initial bytes of the variable in the spec's data map."""
        data = spec.maps[self.map].data or bytearray()
        return bytes(data[self.offset : self.offset + self.size])


@dataclass
class ExternSpec:
    """An ``extern`` the loader resolves: a kconfig value, a kernel variable (__ksym) or a kfunc."""

    name: str
    kind: str  # "kconfig", "ksym", "kfunc"
    type_id: int = 0  # BTF VAR / FUNC id in the object's BTF
    weak: bool = False
    size: int = 0
    offset: int = 0  # kconfig: offset within the .kconfig map
    typed: bool = False  # ksym declared with a type: resolved by BTF id rather than by address


@dataclass
class CollectionSpec:
    """Everything in one BPF object, before it meets the kernel."""

    name: str
    programs: Dict[str, ProgramSpec] = field(default_factory=dict)
    subprograms: Dict[str, ProgramSpec] = field(default_factory=dict)
    maps: Dict[str, MapSpec] = field(default_factory=dict)
    variables: Dict[str, VariableSpec] = field(default_factory=dict)
    externs: Dict[str, ExternSpec] = field(default_factory=dict)
    btf: Optional[BTF] = None
    btf_ext: Optional[BTFExt] = None
    btf_raw: bytes = b""
    license: str = ""
    kern_version: int = 0
    text_section_index: int = 0
    section_sizes: Dict[str, int] = field(default_factory=dict)
    symbol_offsets: Dict[str, Dict[str, int]] = field(default_factory=dict)
    hidden_symbols: List[str] = field(default_factory=list)  # global but STV_HIDDEN/INTERNAL variables
    path: str = ""

    def set_constant(self, name: str, value: Any) -> None:
        """Set a global variable's initial value before load; the value is encoded per its BTF type."""
        var = self.variables.get(name)
        if var is None:
            known = ", ".join(sorted(self.variables)) or "none"
            raise ConfigError(f"no global variable '{name}' (known: {known})").with_context(
                f"object '{self.name}'")
        raw = encode_value(self, var, value)
        data = self.maps[var.map].data
        assert data is not None
        data[var.offset : var.offset + var.size] = raw

    def core_relo_count(self) -> int:
        return sum(len(p.core_relos) for p in (*self.programs.values(), *self.subprograms.values()))

    def relocation_count(self) -> int:
        return sum(len(p.relocations) for p in (*self.programs.values(), *self.subprograms.values()))


def pack_func_info(recs: List[Tuple[int, int]]) -> bytes:
    """Kernel ``struct bpf_func_info`` records (insn index, type id)."""
    return b"".join(struct.pack("<II", i, t) for i, t in recs)


def pack_line_info(recs: List[Tuple[int, LineInfoRec]]) -> bytes:
    """Kernel ``struct bpf_line_info`` records."""
    return b"".join(
        struct.pack("<IIII", i, r.file_name_off, r.line_off, (r.line << 10) | (r.col & 0x3FF))
        for i, r in recs
    )


def pack_core_relos(recs: List[Tuple[int, CoreReloRec]]) -> bytes:
    """Kernel ``struct bpf_core_relo`` records; the instruction offset is in bytes."""
    return b"".join(struct.pack("<IIII", i * INSN_SIZE, r.type_id, r.access_str_off, r.kind) for i, r in recs)
