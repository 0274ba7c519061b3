#!/usr/bin/env python3
"""Check rawbpf/_types.py against the running kernel's BTF: every field offset, and that no layout is larger
than the kernel's type; fields of later kernels where an older kernel's type has padding, a reserved field or
has ended are listed as newer (bpf(2) and perf_event_open take those bytes while zero, as rawbpf leaves them).
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
        rec = {"id": tid, "kind": t.kind.name, "name": t.name or "(anon)", "size": t.size, "type_id": t.type,
               "members": [{"name": m.name or "(anon)", "type_id": m.type, "bits_offset": m.bits_offset}
                           for m in t.members]}
        if t.array is not None:
            rec["type_id"], rec["nr_elems"] = t.array.type, t.array.nelems
        return rec

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


def _size(types: Types, t: Dict[str, Any]) -> int:
    kind = t.get("kind")
    if kind == "PTR":
        return 8
    if kind == "ARRAY":
        return int(t.get("nr_elems", 0)) * _size(types, _resolve(types, int(t["type_id"])))
    return int(t.get("size") or 0)


def used_bytes(types: Types, t: Dict[str, Any], base: int = 0) -> List[Tuple[int, int]]:
    """[start, end) of every leaf member: bytes outside them are padding the kernel does not read."""
    out: List[Tuple[int, int]] = []
    for m in t.get("members", []):
        off = base + int(m["bits_offset"]) // 8
        sub = _resolve(types, int(m["type_id"]))
        if sub.get("kind") in ("STRUCT", "UNION"):
            out += used_bytes(types, sub, off)
        elif not str(m["name"]).startswith("__reserved"):   # reserved: must be zero, a later field's place
            out.append((off, off + max(_size(types, sub), 1)))
    return out


def find_named(types: Types, name: str) -> Optional[Dict[str, Any]]:
    if isinstance(types, RawbpfTypes):
        return types.named(name)
    for t in types.values():
        if t.get("name") == name and t.get("kind") in ("STRUCT", "UNION"):
            return t
    return None


def kernel_type(types: Types, layout: type) -> Dict[str, Any]:
    """The kernel type a layout mirrors."""
    tname, member = layout._kernel_  # type: ignore[attr-defined]
    top = find_named(types, tname)
    if top is None:
        raise LookupError(f"{tname}: not in the kernel's BTF")
    if not member:
        return top
    for m in top.get("members", []):
        sub = _resolve(types, int(m["type_id"]))
        if member.startswith("anon:"):
            if m["name"] == "(anon)" and member[5:] in flatten(types, sub):
                return sub
        elif m["name"] == member:
            return sub
    raise LookupError(f"{tname}: no member {member}")


def kernel_layout(types: Types, layout: type) -> Tuple[Dict[str, int], int]:
    """(flattened member offsets, size) of the kernel type a layout mirrors."""
    t = kernel_type(types, layout)
    return flatten(types, t), int(t["size"])


def check(types: Types, verbose: bool = False) -> List[str]:
    problems: List[str] = []
    for layout in T.ALL_LAYOUTS:
        try:
            ktype = kernel_type(types, layout)
        except LookupError as err:
            problems.append(f"{layout.__name__}: {err}")
            continue
        kflat, ksize = flatten(types, ktype), int(ktype["size"])
        used = used_bytes(types, ktype)
        ours = T.field_offsets(layout)
        bad = 0
        newer = []
        for name, off in ours.items():
            # absent here: a union variant of later kernels, or where this kernel's type has padding or ended
            later = name not in kflat and (("." in name and name.split(".")[0] not in kflat)
                                           or not any(a <= off < b for a, b in used))
            if later:
                # a field of a later kernel where this kernel's type has padding or has ended: bpf(2) and
                # perf_event_open take such bytes while they are zero, as they are while rawbpf leaves the
                # field unset (and the kernel leaves an info field it does not know zero)
                newer.append(name)
            elif name not in kflat:
                problems.append(f"{layout.__name__}.{name}: the kernel has no such field")
                bad += 1
            elif kflat[name] != off:
                problems.append(f"{layout.__name__}.{name}: offset {off}, kernel says {kflat[name]}")
                bad += 1
        # larger than the kernel's type: only by later fields (above) or by padding, zero either way
        size = ctypes.sizeof(layout)
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
