"""What a BPF object holds, as plain data and text, without loading it; pure.

:func:`describe` is what ``rawbpf inspect`` shows, :func:`attach_text` where a program attaches, and
:func:`disasm_lines` the programs as they will be loaded.
"""

from __future__ import annotations

from typing import Any, Dict, List

from rawbpf.consts import ProgType
from rawbpf.spec import CollectionSpec, MapSpec, ProgramSpec

__tier__ = "pure"

__all__ = ["attach_text", "describe", "disasm_lines"]


def _flags(flags: int) -> str:
    from rawbpf import consts

    names = [n[6:] for n in dir(consts) if n.startswith("BPF_F_") and n not in (
        "BPF_F_STRICT_ALIGNMENT", "BPF_F_ANY_ALIGNMENT", "BPF_F_TEST_RND_HI32", "BPF_F_TEST_STATE_FREQ",
        "BPF_F_SLEEPABLE", "BPF_F_LOCK") and flags & getattr(consts, n)]
    return "|".join(sorted(names)) if names else "0"


def _type_name(spec: CollectionSpec, type_id: int) -> str:
    if spec.btf is None or not type_id:
        return ""
    try:
        return str(spec.btf.type_name(type_id))
    except Exception:
        return f"[{type_id}]"


def _map_dict(spec: CollectionSpec, m: MapSpec) -> Dict[str, Any]:
    out: Dict[str, Any] = {
        "name": m.name, "type": m.type.name.lower(), "kind": m.kind.value, "section": m.section,
        "key_size": m.key_size, "value_size": m.value_size, "max_entries": m.max_entries,
        "flags": m.flags, "flags_text": _flags(m.flags), "pinning": m.pinning.name.lower(),
        "numa_node": m.numa_node, "map_extra": m.map_extra,
        "key_type": _type_name(spec, m.btf_key_type_id), "value_type": _type_name(spec, m.btf_value_type_id),
    }
    if m.declared_max_entries != m.max_entries:
        out["declared_max_entries"] = m.declared_max_entries
    if m.inner is not None:
        out["inner"] = _map_dict(spec, m.inner)
        out["inner"]["section"] = m.section
    if m.contents:
        out["values"] = [[slot, name] for slot, name in sorted(m.contents)]
    if m.struct_ops is not None:
        out["value_type"] = f"struct {m.struct_ops.type_name}"
        out["struct_ops"] = {"struct": m.struct_ops.type_name, "link": m.struct_ops.link,
                             "members": dict(m.struct_ops.funcs)}
    return out


def _struct_ops_text(spec: CollectionSpec, p: ProgramSpec) -> str:
    """Which struct_ops members a struct_ops program fills (``struct_ops tcp_congestion_ops.ssthresh in map
    'x'``), or that no map uses it."""
    uses = [f"{m.struct_ops.type_name}.{member} in map '{m.name}'" for m in spec.maps.values()
            if m.struct_ops is not None for member, prog in m.struct_ops.funcs.items() if prog == p.name]
    if not uses:
        return f"struct_ops: no struct_ops map uses it ({'refused at load' if p.autoload else 'not loaded'})"
    return "struct_ops " + ", ".join(uses)


def attach_text(p: ProgramSpec) -> str:
    """Where a program attaches, in words (``tracepoint sched:sched_process_exec``)."""
    if not p.known_section:
        return "unknown section"
    if p.attach_kind == "tracepoint":
        return "tracepoint " + p.attach_to.replace("/", ":", 1)
    if p.attach_kind and p.attach_to:
        return f"{p.attach_kind} {p.attach_to}"
    if p.attach_kind:
        return f"{p.attach_kind} (no target: attach manually)"
    return "not auto-attached"


def describe(spec: CollectionSpec) -> Dict[str, Any]:
    """Everything ``inspect --json`` prints, as plain data."""
    from rawbpf.errors import RawBPFError
    from rawbpf.globals import decode_value
    from rawbpf.linker import link

    progs: List[Dict[str, Any]] = []
    for p in spec.programs.values():
        entry: Dict[str, Any] = {
            "name": p.name, "section": p.section, "type": p.type.name.lower(),
            "expected_attach_type": p.expected_attach_type, "attach": p.attach_kind, "attach_to": p.attach_to,
            "attach_text": _struct_ops_text(spec, p) if p.type == ProgType.STRUCT_OPS else attach_text(p),
            "autoload": p.autoload, "known_section": p.known_section, "insns": p.insn_count,
            "relocations": len(p.relocations), "core_relos": len(p.core_relos),
            "func_info": len(p.func_info), "line_info": len(p.line_info), "flags": p.flags,
        }
        try:
            linked = link(spec, p.name)
            entry["linked_insns"] = linked.insn_count
            entry["subprograms"] = [name for name, _ in linked.layout[1:]]
            entry["core_relos_linked"] = len(linked.core_relos)
        except RawBPFError as err:
            entry["link_error"] = str(err)
        progs.append(entry)
    globals_: List[Dict[str, Any]] = []
    for v in spec.variables.values():
        raw = v.value(spec)
        value = decode_value(spec.btf, v.type_id, raw)
        globals_.append({
            "name": v.name, "section": v.section, "map": v.map, "offset": v.offset, "size": v.size,
            "type": v.type_name, "readonly": v.readonly, "global": v.is_global,
            "value": value if not isinstance(value, bytes) else value.hex(),
        })
    return {
        "object": spec.name, "path": spec.path, "license": spec.license, "kern_version": spec.kern_version,
        "btf": spec.btf is not None, "btf_ext": spec.btf_ext is not None,
        "programs": progs,
        "subprograms": [{"name": s.name, "insns": s.insn_count, "global": s.is_global}
                        for s in spec.subprograms.values()],
        "maps": [_map_dict(spec, m) for m in spec.maps.values()],
        "globals": globals_,
        "externs": [{"name": e.name, "kind": e.kind, "weak": e.weak} for e in spec.externs.values()],
        "core_relos": spec.core_relo_count(), "relocations": spec.relocation_count(),
    }


def disasm_lines(spec: CollectionSpec, name: str) -> List[str]:
    """Linked program text (what would be loaded, map references by name) with C source lines."""
    from rawbpf.asm import disassemble_indexed
    from rawbpf.linker import ExternValue, link, patch_data

    linked = link(spec, name)
    ids = {m: i + 1 for i, m in enumerate(spec.maps)}
    externs = {}
    for e in spec.externs.values():
        if e.kind == "kconfig":
            kmap = next((n for n, m in spec.maps.items() if m.section == ".kconfig"), "")
            externs[e.name] = ExternValue("map_value", fd=ids.get(kmap, 0), offset=e.offset)
        elif e.kind == "kfunc":
            externs[e.name] = ExternValue("kfunc")
        else:
            externs[e.name] = ExternValue("addr")
    patch_data(linked, ids, externs)
    starts = {idx: fname for fname, idx in linked.layout}
    lines_at: Dict[int, str] = {}
    for idx, rec in linked.line_info:
        if not rec.line:
            continue
        fname = rec.file.rsplit("/", 1)[-1] if rec.file else "?"
        lines_at[idx] = f"{fname}:{rec.line}: {rec.text.strip()}"
    core_at: Dict[int, str] = {}
    for idx, cr in linked.core_relos:
        core_at[idx] = f"CO-RE {_core_text(spec, cr.type_id, cr.access, cr.kind)}"
    out: List[str] = []
    names = {i: n for n, i in ids.items()}
    last = ""
    for idx, text in disassemble_indexed(bytes(linked.insns), symbols=starts, helpers=True, maps=names):
        if idx in starts and idx:
            out.append(f"{starts[idx]}:")
            last = ""
        src = lines_at.get(idx)
        if src and src != last:
            out.append(f"    ; {src}")
            last = src
        if idx in core_at:
            out.append(f"    ; {core_at[idx]}")
        out.append(f"{idx:6d}: {text}")
    return out


def _core_text(spec: CollectionSpec, type_id: int, access: str, kind: int) -> str:
    """``field_byte_offset struct task_struct.pid`` for a CO-RE record (raw ids when BTF cannot say)."""
    from rawbpf.btf.ext import CoreReloKind

    try:
        k = CoreReloKind(kind)
    except ValueError:
        return f"kind {kind} [{type_id}] {access}"
    if spec.btf is not None:
        try:
            from rawbpf.btf.core import parse_spec

            return f"{k.name.lower()} {parse_spec(spec.btf, type_id, access, k).describe()}"
        except Exception:  # a record the local BTF cannot explain still gets printed
            pass
    return f"{k.name.lower()} [{type_id}] {access}"
