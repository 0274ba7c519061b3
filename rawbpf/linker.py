"""Pure linker: appends subprograms to each entry program the way libbpf does and patches map, data, callback
and extern references from plain tables; makes no syscalls.

libbpf's order matters because the kernel's program tag hashes the final instruction stream: for each entry
program, instructions are scanned in order; the first call (or callback address load) into a .text function
not yet appended appends it at the end and processes it recursively before the scan continues. Each main
program gets its own copy of every subprogram it reaches, and .BTF.ext func/line info and CO-RE records
travel with the copied instructions (converted from byte offsets to instruction indexes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

from rawbpf.asm import codec
from rawbpf.consts import (
    BPF_PSEUDO_BTF_ID,
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_FUNC,
    BPF_PSEUDO_KFUNC_CALL,
    BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_VALUE,
)
from rawbpf.errors import RelocationError
from rawbpf.spec import (
    INSN_SIZE,
    CollectionSpec,
    CoreReloRec,
    LineInfoRec,
    ProgramSpec,
    Relocation,
    RelocKind,
)

__tier__ = "pure"

OP_LD_IMM64 = codec.LD_IMM64
OP_CALL = 0x85


@dataclass
class LinkedProgram:
    """An entry program with its subprograms appended; data references still to be patched."""

    name: str
    spec: ProgramSpec
    insns: bytearray
    func_info: List[Tuple[int, int]] = field(default_factory=list)  # (insn index, BTF FUNC id)
    line_info: List[Tuple[int, LineInfoRec]] = field(default_factory=list)
    core_relos: List[Tuple[int, CoreReloRec]] = field(default_factory=list)
    relocations: List[Relocation] = field(default_factory=list)  # insn = final index
    layout: List[Tuple[str, int]] = field(default_factory=list)  # (function, first insn index)

    @property
    def insn_count(self) -> int:
        return len(self.insns) // INSN_SIZE

    def function_at(self, insn: int) -> str:
        """The function an instruction of the linked program came from."""
        name = self.name
        for fname, start in self.layout:
            if insn >= start:
                name = fname
        return name

    def source_line(self, insn: int) -> str:
        """``file:line: code`` of the nearest line_info at or before ``insn`` ("" if none)."""
        best: Optional[LineInfoRec] = None
        best_idx = -1
        for idx, rec in self.line_info:
            if best_idx <= idx <= insn:
                best, best_idx = rec, idx
        if best is None:
            return ""
        fname = best.file.rsplit("/", 1)[-1] if best.file else "?"
        text = best.text.strip()
        return f"{fname}:{best.line}: {text}" if text else f"{fname}:{best.line}"


def decode(insns: Union[bytes, bytearray], idx: int) -> Tuple[int, int, int, int, int]:
    """(code, dst, src, off, imm) of instruction ``idx``."""
    return tuple(codec.read(insns, idx))  # type: ignore[return-value]


def _put(
    insns: bytearray,
    idx: int,
    *,
    src: Optional[int] = None,
    off: Optional[int] = None,
    imm: Optional[int] = None,
) -> None:
    if src is not None:
        codec.set_src(insns, idx, src)
    if off is not None:
        codec.set_off(insns, idx, off)
    if imm is not None:
        codec.set_imm(insns, idx, imm)


def _subprog_at(spec: CollectionSpec, insn_idx: int) -> Optional[ProgramSpec]:
    for sub in spec.subprograms.values():
        if sub.section_offset <= insn_idx < sub.section_offset + sub.insn_count:
            return sub
    return None


def link(spec: CollectionSpec, name: str) -> LinkedProgram:
    """Append the subprograms ``name`` reaches and resolve bpf-to-bpf calls and callback addresses."""
    main = spec.programs.get(name)
    if main is None:
        raise RelocationError(f"no program '{name}'").with_context(f"object '{spec.name}'")
    out = LinkedProgram(name=name, spec=main, insns=bytearray(main.insns))
    placed: Dict[int, int] = {}  # subprogram's .text offset -> where it starts in this program
    has_func = bool(main.func_info)
    has_line = bool(main.line_info)

    def add_ext(prog: ProgramSpec, base: int) -> None:
        nonlocal has_func, has_line
        if has_func:
            if not prog.func_info:
                raise RelocationError(f"program '{name}': subprogram '{prog.name}' has no .BTF.ext func_info")
            out.func_info.extend((base + r.insn, r.type_id) for r in prog.func_info)
        if has_line:
            if not prog.line_info:
                raise RelocationError(f"program '{name}': subprogram '{prog.name}' has no .BTF.ext line_info")
            out.line_info.extend((base + r.insn, r) for r in prog.line_info)
        out.core_relos.extend((base + r.insn, r) for r in prog.core_relos)
        for r in prog.relocations:
            if r.kind not in (RelocKind.CALL, RelocKind.SUBPROG_ADDR):
                out.relocations.append(Relocation(base + r.insn, r.kind, r.target, r.offset, r.symbol))

    def process(prog: ProgramSpec, base: int) -> None:
        add_ext(prog, base)
        relos = {r.insn: r for r in prog.relocations}
        insns = out.insns  # grows in place as subprograms are appended
        for i in range(prog.insn_count):
            if insns[(base + i) * INSN_SIZE] not in (OP_CALL, OP_LD_IMM64):
                continue  # only calls and 16-byte loads can reach a subprogram: no need to decode the rest
            code, _dst, src, _off, imm = decode(insns, base + i)
            is_call = code == OP_CALL and src == BPF_PSEUDO_CALL
            relo = relos.get(i)
            is_func = code == OP_LD_IMM64 and relo is not None and relo.kind == RelocKind.SUBPROG_ADDR
            if not is_call and not is_func:
                continue
            if relo is not None and relo.kind == RelocKind.EXTERN_FUNC:
                continue
            if relo is not None and relo.kind not in (RelocKind.CALL, RelocKind.SUBPROG_ADDR):
                raise RelocationError(
                    f"program '{name}': unexpected {relo.kind.value} relocation on the call "
                    f"at instruction {i} of '{prog.name}'"
                )
            if relo is not None and relo.kind == RelocKind.CALL:
                target = relo.offset // INSN_SIZE + imm + 1
            elif relo is not None:
                if (relo.offset + imm) % INSN_SIZE:
                    raise RelocationError(f"program '{name}': misaligned callback address in '{prog.name}'")
                target = (relo.offset + imm) // INSN_SIZE
            else:
                if prog.section_index != spec.text_section_index:
                    raise RelocationError(
                        f"program '{name}': call at instruction {i} has no relocation and "
                        "does not stay in .text"
                    )
                target = prog.section_offset + i + imm + 1
            sub = _subprog_at(spec, target)
            if sub is None or sub.section_offset != target:
                raise RelocationError(
                    f"program '{name}': call from '{prog.name}' at instruction {i} does not "
                    "land on the start of a .text function"
                )
            if sub.section_offset not in placed:
                start = len(out.insns) // INSN_SIZE
                placed[sub.section_offset] = start
                out.layout.append((sub.name, start))
                out.insns += sub.insns
                process(sub, start)
            at = base + i
            delta = placed[sub.section_offset] - at - 1
            if is_func:
                _put(out.insns, at, src=BPF_PSEUDO_FUNC, imm=delta)
            else:
                _put(out.insns, at, imm=delta)

    out.layout.append((name, 0))
    process(main, 0)
    out.relocations.sort(key=lambda r: r.insn)
    return out


@dataclass
class ExternValue:
    """How an extern resolves: a map value (kconfig), a kernel BTF id (typed ksym, kfunc) or an address."""

    kind: str  # "map_value", "btf_id", "addr", "kfunc"
    fd: int = 0  # kconfig map fd
    offset: int = 0  # kconfig offset
    btf_id: int = 0
    btf_obj_fd: int = 0  # 0 = vmlinux
    btf_fd_idx: int = 0  # kfunc: index in fd_array (0 = vmlinux)
    addr: int = 0


def patch_data(
    linked: LinkedProgram, map_fds: Dict[str, int], externs: Optional[Dict[str, ExternValue]] = None
) -> None:
    """Write map fds, map value offsets and extern values into the linked instructions, as libbpf does."""
    externs = externs or {}
    ins = linked.insns
    for r in linked.relocations:
        if r.kind == RelocKind.MAP:
            fd = _fd(linked, map_fds, r)
            _put(ins, r.insn, src=BPF_PSEUDO_MAP_FD, imm=fd)
        elif r.kind == RelocKind.DATA:
            fd = _fd(linked, map_fds, r)
            imm0 = decode(ins, r.insn)[4]
            _put(ins, r.insn + 1, imm=imm0 + r.offset)
            _put(ins, r.insn, src=BPF_PSEUDO_MAP_VALUE, imm=fd)
        elif r.kind in (RelocKind.EXTERN_VAR, RelocKind.EXTERN_FUNC):
            ext = externs.get(r.target)
            if ext is None:
                raise RelocationError(f"program '{linked.name}': extern '{r.target}' is not resolved")
            if r.kind == RelocKind.EXTERN_FUNC:
                _put(ins, r.insn, src=BPF_PSEUDO_KFUNC_CALL, imm=ext.btf_id, off=ext.btf_fd_idx)
            elif ext.kind == "map_value":
                _put(ins, r.insn, src=BPF_PSEUDO_MAP_VALUE, imm=ext.fd)
                _put(ins, r.insn + 1, imm=ext.offset)
            elif ext.kind == "btf_id" or (ext.kind == "kfunc" and ext.btf_id):
                # a kfunc's address (bpf_ksym_exists) is a BTF-id load, as libbpf writes it: the verifier
                # then knows the kfunc exists and keeps the calls it guards; a missing weak kfunc stays 0
                _put(ins, r.insn, src=BPF_PSEUDO_BTF_ID, imm=ext.btf_id)
                _put(ins, r.insn + 1, imm=ext.btf_obj_fd)
            else:
                _put(ins, r.insn, imm=ext.addr & 0xFFFFFFFF)
                _put(ins, r.insn + 1, imm=(ext.addr >> 32) & 0xFFFFFFFF)


def _fd(linked: LinkedProgram, map_fds: Dict[str, int], r: Relocation) -> int:
    fd = map_fds.get(r.target)
    if fd is None:
        raise RelocationError(
            f"program '{linked.name}': map '{r.target}' (symbol '{r.symbol}') was not created"
        )
    return fd


__all__ = ["ExternValue", "LinkedProgram", "decode", "link", "patch_data"]
