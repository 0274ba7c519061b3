"""C-like rendering of BTF types for ``rawbpf inspect`` and error messages; pure, makes no syscalls."""

from __future__ import annotations

from typing import TYPE_CHECKING, List

from rawbpf.btf.types import Kind

if TYPE_CHECKING:
    from rawbpf.btf.parse import BTF

__tier__ = "pure"

_MAX_DEPTH = 32


def declare(btf: BTF, type_id: int, name: str, depth: int = 0) -> str:
    """``type name`` as a C declarator: ``char comm[16]``, ``struct task *parent``, ``int (*cb)(void)``."""
    if depth > _MAX_DEPTH:
        return f"... {name}".rstrip()
    t = btf[type_id]
    k = t.kind
    if k == Kind.PTR:
        inner = btf[t.type]
        if inner.kind in (Kind.ARRAY, Kind.FUNC_PROTO):
            return declare(btf, t.type, f"(*{name})", depth + 1)
        return declare(btf, t.type, f"*{name}", depth + 1)
    if k == Kind.ARRAY:
        assert t.array is not None
        return declare(btf, t.array.type, f"{name}[{t.array.nelems}]", depth + 1)
    if k == Kind.FUNC_PROTO:
        params = ", ".join("..." if (p.type == 0 and not p.name) else declare(btf, p.type, p.name, depth + 1)
                           for p in t.params) or "void"
        return declare(btf, t.type, f"{name}({params})", depth + 1)
    if k in (Kind.CONST, Kind.VOLATILE, Kind.RESTRICT):
        q = k.name.lower()
        if btf[t.type].kind == Kind.PTR:
            return declare(btf, t.type, f"{q} {name}".rstrip(), depth + 1)
        return f"{q} {declare(btf, t.type, name, depth + 1)}"
    if k == Kind.TYPE_TAG:
        return declare(btf, t.type, f"__attribute__((btf_type_tag(\"{t.name}\"))) {name}".rstrip(), depth + 1)
    base = btf.type_name(type_id)
    return f"{base} {name}".rstrip() if name else base


def format_c(btf: BTF, type_id: int) -> str:
    """A C declaration of a type: struct/union/enum bodies expanded one level, bitfields and offsets shown."""
    t = btf[type_id]
    k = t.kind
    if t.is_composite:
        word = "struct" if k == Kind.STRUCT else "union"
        lines: List[str] = [f"{word} {t.name + ' ' if t.name else ''}{{"]
        for m in t.members:
            decl = declare(btf, m.type, m.name)
            bits = f" : {m.bitfield_size}" if m.bitfield_size else ""
            lines.append(f"\t{decl}{bits};{'':<1}/* offset {m.bits_offset // 8}"
                         + (f" bit {m.bits_offset % 8}" if m.bits_offset % 8 or bits else "") + " */")
        lines.append(f"}};  /* size {t.size} */")
        return "\n".join(lines)
    if t.is_enum:
        lines = [f"enum {t.name + ' ' if t.name else ''}{{"]
        lines += [f"\t{v.name} = {v.value}," for v in t.values]
        lines.append("};")
        return "\n".join(lines)
    if k == Kind.TYPEDEF:
        return f"typedef {declare(btf, t.type, t.name)};"
    if k == Kind.FUNC:
        linkage = {0: "static ", 2: "extern "}.get(t.linkage, "")
        return f"{linkage}{declare(btf, t.type, t.name)};"
    if k == Kind.VAR:
        linkage = {0: "static ", 2: "extern "}.get(t.linkage, "")
        return f"{linkage}{declare(btf, t.type, t.name)};"
    if k == Kind.DATASEC:
        lines = [f"SEC(\"{t.name}\") {{  /* size {t.size} */"]
        for v in t.vars:
            vt = btf[v.type]
            decl = declare(btf, vt.type, vt.name) if vt.kind == Kind.VAR else btf.type_name(v.type)
            lines.append(f"\t{decl};  /* offset {v.offset}, size {v.size} */")
        lines.append("}")
        return "\n".join(lines)
    if k == Kind.FWD:
        return f"{'union' if t.kind_flag else 'struct'} {t.name};"
    if k == Kind.DECL_TAG:
        where = f" on member/param {t.component_idx}" if t.component_idx >= 0 else ""
        return f"/* btf_decl_tag(\"{t.name}\") on {btf.type_name(t.type)}{where} */"
    return declare(btf, type_id, "")


_INT_ENC = {0: "(none)", 1: "SIGNED", 2: "CHAR", 4: "BOOL"}
_LINKAGE = {0: "static", 1: "global", 2: "extern"}


def dump_raw(btf: BTF) -> str:
    """Every own type in the layout of ``bpftool btf dump file X format raw`` (goldens compare against it)."""
    out: List[str] = []
    for t in btf.own_types():
        k = t.kind
        name = t.name or "(anon)"
        head = f"[{t.id}] {k.name} '{name}'"
        if k == Kind.INT:
            out.append(f"{head} size={t.size} bits_offset={t.int_offset} nr_bits={t.int_bits} "
                       f"encoding={_INT_ENC.get(t.int_encoding, 'UNKN')}")
        elif k in (Kind.PTR, Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG):
            out.append(f"{head} type_id={t.type}")
        elif k == Kind.ARRAY:
            assert t.array is not None
            out.append(f"{head} type_id={t.array.type} index_type_id={t.array.index_type} "
                       f"nr_elems={t.array.nelems}")
        elif t.is_composite:
            out.append(f"{head} size={t.size} vlen={len(t.members)}")
            for m in t.members:
                bf = f" bitfield_size={m.bitfield_size}" if m.bitfield_size else ""
                out.append(f"\t'{m.name or '(anon)'}' type_id={m.type} bits_offset={m.bits_offset}{bf}")
        elif t.is_enum:
            enc = "SIGNED" if t.kind_flag else "UNSIGNED"
            out.append(f"{head} encoding={enc} size={t.size} vlen={len(t.values)}")
            suffix = ("LL" if t.kind_flag else "ULL") if k == Kind.ENUM64 else ""
            out += [f"\t'{v.name}' val={v.value}{suffix}" for v in t.values]
        elif k == Kind.FWD:
            out.append(f"{head} fwd_kind={'union' if t.kind_flag else 'struct'}")
        elif k == Kind.FUNC:
            out.append(f"{head} type_id={t.type} linkage={_LINKAGE.get(t.linkage, 'UNKN')}")
        elif k == Kind.FUNC_PROTO:
            out.append(f"{head} ret_type_id={t.type} vlen={len(t.params)}")
            out += [f"\t'{p.name or '(anon)'}' type_id={p.type}" for p in t.params]
        elif k == Kind.VAR:
            out.append(f"{head} type_id={t.type}, linkage={_LINKAGE.get(t.linkage, 'UNKN')}")
        elif k == Kind.DATASEC:
            out.append(f"{head} size={t.size} vlen={len(t.vars)}")
            for v in t.vars:
                vt = btf[v.type]
                out.append(f"\ttype_id={v.type} offset={v.offset} size={v.size} "
                           f"({vt.kind.name} '{vt.name or '(anon)'}')")
        elif k == Kind.FLOAT:
            out.append(f"{head} size={t.size}")
        elif k == Kind.DECL_TAG:
            out.append(f"{head} type_id={t.type} component_idx={t.component_idx}")
        else:
            out.append(head)
    return "\n".join(out) + "\n"
