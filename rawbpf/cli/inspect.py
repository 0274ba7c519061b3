"""``rawbpf inspect`` and ``rawbpf disasm``: read a BPF object without loading it (no root, no syscalls)."""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

import click

from rawbpf.describe import describe, disasm_lines
from rawbpf.spec import CollectionSpec
from rawbpf.termsafe import escape

__tier__ = "pure"


def _spec(path: str) -> CollectionSpec:
    from rawbpf.elf import load_spec

    return load_spec(path, bounded=True)  # no more memory than a small multiple of the file's size


def _safe(v: Any) -> Any:
    """``v`` with every string escaped for the terminal (names and texts come from the file)."""
    if isinstance(v, str):
        return escape(v, backslash=False)
    if isinstance(v, dict):
        return {k: _safe(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_safe(x) for x in v]
    return v


def _print_text(d: Dict[str, Any]) -> None:
    echo = click.echo
    values = [repr(g["value"]) for g in d["globals"]]  # repr escapes what a terminal would act on
    d = _safe(d)
    echo(f"object {d['object']} ({d['path'] or '-'}): license {d['license']!r}"
         + (f", kern_version {d['kern_version']:#x}" if d["kern_version"] else "")
         + f", BTF {'yes' if d['btf'] else 'no'}, {d['relocations']} relocations, {d['core_relos']} CO-RE")
    echo(f"programs ({len(d['programs'])}):")
    for p in d["programs"]:
        subs = f" + {', '.join(p['subprograms'])}" if p.get("subprograms") else ""
        if "linked_insns" in p:
            linked = f" ({p['linked_insns']} linked{subs})"
        else:
            linked = f" (link: {p['link_error']})"
        lazy = "" if p["autoload"] else " (not loaded by default)"
        echo(f"  {p['name']}: {p['type']} [{p['section']}]{lazy} → {p['attach_text']}; "
             f"{p['insns']} insns{linked}; {p['relocations']} relocations, {p['core_relos']} CO-RE")
    if d["subprograms"]:
        echo(f"subprograms ({len(d['subprograms'])}): "
             + ", ".join(f"{s['name']} ({s['insns']} insns)" for s in d["subprograms"]))
    echo(f"maps ({len(d['maps'])}):")
    for m in d["maps"]:
        echo(f"  {_map_line(m)}")
    if d["globals"]:
        echo(f"globals ({len(d['globals'])}):")
        for g, value in zip(d["globals"], values):
            ro = " (read-only)" if g["readonly"] and "const" not in g["type"] else ""
            if len(value) > 100:
                value = value[:97] + "..."
            echo(f"  {g['name']}: {g['type'] or '?'}{ro} in {g['section']}+{g['offset']} ({g['size']} bytes)"
                 f" = {value}")
    if d["externs"]:
        echo("externs: " + ", ".join(f"{e['name']} ({e['kind']}{', weak' if e['weak'] else ''})"
                                     for e in d["externs"]))


def _map_line(m: Dict[str, Any]) -> str:
    parts = [f"{m['name']}: {m['type']}",
             f"key {m['key_size']}" + (f" ({m['key_type']})" if m["key_type"] else ""),
             f"value {m['value_size']}" + (f" ({m['value_type']})" if m["value_type"] else ""),
             f"max_entries {m['max_entries']}"
             + (f" (declared {m['declared_max_entries']})" if "declared_max_entries" in m else "")]
    if m["flags"]:
        parts.append(f"flags {m['flags_text']}")
    if m["numa_node"] is not None:
        parts.append(f"numa_node {m['numa_node']}")
    if m["pinning"] != "none":
        parts.append(f"pinning {m['pinning']}")
    if m["map_extra"]:
        parts.append(f"map_extra {m['map_extra']}")
    if "inner" in m:
        parts.append(f"inner [{_map_line(m['inner'])}]")
    if "values" in m:
        parts.append("values " + ", ".join(f"[{s}]={n}" for s, n in m["values"]))
    if "struct_ops" in m:
        st = m["struct_ops"]
        members = ", ".join(f"{k} ← {v}" for k, v in st["members"].items()) or "no programs"
        parts.append(f"registered {'through a BPF link' if st['link'] else 'by map update'}: {members}")
    parts.append(f"from {m['section']}")
    return ", ".join(parts)


@click.command("inspect")
@click.argument("obj", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of text.")
def inspect(obj: str, as_json: bool) -> None:
    """Show what a BPF object holds: programs and attach targets, maps, globals, relocations. No root."""
    d = describe(_spec(obj))
    if as_json:
        click.echo(json.dumps(d, indent=2, default=str))
    else:
        _print_text(d)


@click.command("disasm")
@click.argument("obj", type=click.Path(dir_okay=False))
@click.argument("prog", required=False)
@click.option("--as-compiled", is_flag=True,
              help="Print the object's code sections as compiled, exactly as "
                   "llvm-objdump -d --no-show-raw-insn does (nothing linked or relocated).")
@click.option("-r", "--reloc", "relocs", is_flag=True,
              help="With --as-compiled: a relocation line after each instruction it patches "
                   "(llvm-objdump -dr).")
@click.option("--alu32", is_flag=True, help="With --as-compiled: 32-bit register names (--mattr=+alu32).")
def disasm(obj: str, prog: Optional[str], as_compiled: bool, relocs: bool, alu32: bool) -> None:
    """Disassemble a BPF object's programs as they would be loaded, with C source lines. No root.

    --as-compiled prints the sections as clang wrote them instead, for diffing against llvm-objdump."""
    from rawbpf.errors import ConfigError

    if as_compiled:
        if prog is not None:
            raise ConfigError(f"disasm --as-compiled {obj}: prints whole sections; drop '{prog}'")
        from rawbpf.objdump import objdump_lines

        for line in objdump_lines(obj, relocs=relocs, alu32=alu32):  # tabs are llvm-objdump's columns
            click.echo("\t".join(escape(part, backslash=False) for part in line.split("\t")))
        return
    if relocs or alu32:
        raise ConfigError("disasm: --reloc and --alu32 apply to --as-compiled")
    spec = _spec(obj)
    names = list(spec.programs)
    if prog is not None:
        if prog not in spec.programs:
            raise ConfigError(f"object '{spec.name}': no program '{prog}' (known: {', '.join(names)})")
        names = [prog]
    for i, name in enumerate(names):
        p = spec.programs[name]
        if i:
            click.echo("")
        click.echo(escape(f"program {name} ({p.type.name.lower()}, section {p.section}):", backslash=False))
        for line in disasm_lines(spec, name):
            click.echo(escape(line, backslash=False))
