#!/usr/bin/env python3
"""Check rawbpf/_types.py against the running kernel's BTF: every field offset, and that no layout is larger
than the kernel's type except by fields of later kernels past its end (which bpf(2) accepts while zero).
Reads /sys/kernel/btf/vmlinux with rawbpf's own BTF parser (``--bpftool`` uses ``bpftool -j btf dump``
instead, as an independent second opinion); no root needed when the file is readable.
Exit status 0: all layouts match; 1: a mismatch (printed); 2: BTF unavailable.

    python3 tools/check_types.py [--vmlinux PATH] [--bpftool] [--verbose]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rawbpf import _types as T
from rawbpf.errors import RawBPFError

Types = Dict[int, Dict[str, Any]]
_SKIP_KINDS = ("TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG")


def load_types(vmlinux: str) -> Types:
    """Every type of ``vmlinux`` as bpftool's JSON records, by id."""
    out = subprocess.run(["bpftool", "-j", "btf", "dump", "file", vmlinux], check=True,
                         capture_output=True, text=True).stdout
    return {int(t["id"]): t for t in json.loads(out)["types"]}


class RawbpfTypes(Dict[int, Dict[str, Any]]):
    """The same records as :func:`load_types`, decoded on demand by rawbpf.btf (vmlinux is parsed lazily)."""

    def __init__(self, vmlinux: str) -> None:
        super().__init__()
        from rawbpf.btf import BTF

        with open(vmlinux, "rb") as f:
            self.btf = BTF.parse(f.read(), lazy=True)

    def record(self, tid: int) -> Dict[str, Any]:
        t = self.btf[tid]
        return {"id": tid, "kind": t.kind.name, "name": t.name or "(anon)", "size": t.size, "type_id": t.type,
                "members": [{"name": m.name or "(anon)", "type_id": m.type, "bits_offset": m.bits_offset}
                            for m in t.members]}

    def get(self, tid: int, default: Any = None) -> Any:
        try:
            return self.record(tid)
        except Exception:
            return default

    def named(self, name: str) -> Optional[Dict[str, Any]]:
        for t in self.btf.find_all(name):
            if t.kind.name in ("STRUCT", "UNION"):
                return self.record(t.id)
        return None


def _resolve(types: Types, tid: int) -> Dict[str, Any]:
    t = types.get(tid, {"kind": "VOID"})
    while t.get("kind") in _SKIP_KINDS:
        t = types.get(int(t["type_id"]), {"kind": "VOID"})
    return t


def flatten(types: Types, t: Dict[str, Any], base: int = 0, prefix: str = "") -> Dict[str, int]:
    """{dotted member name: byte offset}; anonymous struct/union members merge into their parent."""
    out: Dict[str, int] = {}
    for m in t.get("members", []):
        off = base + int(m["bits_offset"]) // 8
        sub = _resolve(types, int(m["type_id"]))
        name = m["name"]
        if name in ("(anon)", ""):
            if sub.get("kind") in ("STRUCT", "UNION"):
                out.update(flatten(types, sub, off, prefix))
            continue
        out.setdefault(prefix + name, off)
        if sub.get("kind") in ("STRUCT", "UNION"):
            out.update(flatten(types, sub, off, prefix + name + "."))
    return out


def find_named(types: Types, name: str) -> Optional[Dict[str, Any]]:
    if isinstance(types, RawbpfTypes):
        return types.named(name)
    for t in types.values():
        if t.get("name") == name and t.get("kind") in ("STRUCT", "UNION"):
            return t
    return None


def kernel_layout(types: Types, layout: type) -> Tuple[Dict[str, int], int]:
    """(flattened member offsets, size) of the kernel type a layout mirrors."""
    tname, member = layout._kernel_  # type: ignore[attr-defined]
    top = find_named(types, tname)
    if top is None:
        raise LookupError(f"{tname}: not in the kernel's BTF")
    if not member:
        return flatten(types, top), int(top["size"])
    for m in top.get("members", []):
        sub = _resolve(types, int(m["type_id"]))
        if member.startswith("anon:"):
            if m["name"] == "(anon)" and member[5:] in flatten(types, sub):
                return flatten(types, sub), int(sub["size"])
        elif m["name"] == member:
            return flatten(types, sub), int(sub["size"])
    raise LookupError(f"{tname}: no member {member}")


def check(types: Types, verbose: bool = False) -> List[str]:
    problems: List[str] = []
    for layout in T.ALL_LAYOUTS:
        try:
            kflat, ksize = kernel_layout(types, layout)
        except LookupError as err:
            problems.append(f"{layout.__name__}: {err}")
            continue
        ours = T.field_offsets(layout)
        bad = 0
        newer = []
        for name, off in ours.items():
            if name not in kflat and off >= ksize:
                # a field of a later kernel, past the end of this kernel's type: bpf(2) accepts the longer
                # attr as long as that tail is zero, which it is while rawbpf does not use the field
                newer.append(name)
            elif name not in kflat:
                problems.append(f"{layout.__name__}.{name}: the kernel has no such field")
                bad += 1
            elif kflat[name] != off:
                problems.append(f"{layout.__name__}.{name}: offset {off}, kernel says {kflat[name]}")
                bad += 1
        size = ctypes.sizeof(layout)
        if size > ksize and not newer:
            problems.append(f"{layout.__name__}: {size} bytes, larger than the kernel's {ksize}")
            bad += 1
        if verbose:
            state = "ok" if not bad else f"{bad} problem(s)"
            if newer:
                state += f" (newer than this kernel: {', '.join(newer)})"
            print(f"{layout.__name__:22} {len(ours):3} fields  {size:4}/{ksize:<4} bytes  {state}")
    return problems


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--vmlinux", default="/sys/kernel/btf/vmlinux")
    ap.add_argument("--bpftool", action="store_true", help="read the BTF with bpftool instead of rawbpf.btf")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    reader = "bpftool" if args.bpftool else "rawbpf.btf"
    try:
        types: Types = load_types(args.vmlinux) if args.bpftool else RawbpfTypes(args.vmlinux)
    except (OSError, subprocess.CalledProcessError, ValueError, RawBPFError) as err:
        print(f"check_types: cannot read {args.vmlinux} with {reader}: {err}", file=sys.stderr)
        return 2
    problems = check(types, args.verbose)
    for p in problems:
        print(f"check_types: {p}", file=sys.stderr)
    if not problems:
        print(f"check_types: {len(T.ALL_LAYOUTS)} layouts match {args.vmlinux} (read with {reader})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
