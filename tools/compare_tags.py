"""Compare program tags of rawbpf and libbpf (Debian libbpf-dev) for any BPF objects, on this kernel.

usage: sudo python3 tools/compare_tags.py OBJ... [--pin-root DIR]

Builds tools/libbpf_loader.c with gcc, loads each object with libbpf and with rawbpf (CO-RE in the kernel and
in user space) and compares the kernel's program tags. When libbpf cannot load a whole object on this kernel
(e.g. fentry programs, which this kernel refuses), the programs of the kinds the kernel can load are compared
on their own. rawbpf is stricter than libbpf on purpose for objects with malformed BTF.
Prints one line per object; exits 1 if any tag differs or rawbpf refuses what libbpf loads.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rawbpf.collection import Collection  # noqa: E402
from rawbpf.consts import AttachType, ProgType  # noqa: E402
from rawbpf.elf import load_spec  # noqa: E402
from rawbpf.errors import RawBPFError  # noqa: E402

_NOT_HERE = (AttachType.TRACE_FENTRY, AttachType.TRACE_FEXIT, AttachType.MODIFY_RETURN)


def build_loader(tmp: str) -> str:
    out = os.path.join(tmp, "libbpf_loader")
    src = str(ROOT / "tools" / "libbpf_loader.c")
    subprocess.run(["gcc", "-O1", "-Wall", "-o", out, src, "-lbpf"], check=True)
    return out


def libbpf_tags(loader: str, obj: str, pin: str, progs: List[str]) -> Optional[Dict[str, str]]:
    r = subprocess.run([loader, obj, pin, *progs], capture_output=True, text=True, timeout=120)
    if r.returncode:
        return None
    return {line.split()[0]: line.split()[1] for line in r.stdout.splitlines()}


def rawbpf_tags(obj: str, pin: str, progs: List[str], kernel_core: bool) -> Dict[str, str]:
    coll = Collection.load(load_spec(obj), pin_dir=pin, kernel_core=kernel_core, programs=progs or None)
    try:
        return {n: p.info().tag.hex() for n, p in coll.programs.items()}
    finally:
        coll.close(keep_pinned_maps=False)


def compare(loader: str, obj: str, pin: str) -> bool:
    name = os.path.basename(obj)
    try:
        spec = load_spec(obj)
    except RawBPFError as err:
        refused = libbpf_tags(loader, obj, pin, []) is None
        # by design rawbpf refuses objects with malformed BTF; libbpf goes on
        deliberate = "bad BTF" in str(err)
        verdict = "too" if refused else ("loads it (rawbpf is stricter here by design)" if deliberate
                                         else "LOADS IT")
        print(f"{name}: rawbpf refuses it ({err.summary()}); libbpf {verdict}")
        return refused or deliberate
    if any(m.struct_ops is not None and m.struct_ops.link for m in spec.maps.values()):
        # libbpf 1.1 skips the section as unrecognised data and loads the object without those maps
        print(f"{name}: skipped (libbpf 1.1 ignores .struct_ops.link sections; they came in libbpf 1.2)")
        return True
    # struct_ops programs in SEC("?struct_ops/...") that a struct_ops map uses: libbpf 1.4+ loads them (as
    # rawbpf does), libbpf 1.1 leaves them out
    st_extra = {n for n, p in spec.programs.items() if p.type == ProgType.STRUCT_OPS and not p.autoload
                and any(m.struct_ops is not None and n in m.struct_ops.funcs.values()
                        for m in spec.maps.values())}
    progs: List[str] = []
    want = libbpf_tags(loader, obj, pin, progs)
    if want is None:
        progs = [n for n, p in spec.programs.items() if p.autoload and p.type != ProgType.LSM
                 and not (p.type == ProgType.TRACING and p.expected_attach_type in _NOT_HERE)]
        want = libbpf_tags(loader, obj, pin, progs) if progs else None
        if want is None:
            print(f"{name}: skipped (libbpf cannot load it on this kernel)")
            return True
    ok = True
    for kernel_core in (True, False):
        try:
            got = rawbpf_tags(obj, pin, progs, kernel_core)
        except RawBPFError as err:
            print(f"{name}: rawbpf failed ({'kernel' if kernel_core else 'user'} CO-RE): {err.summary()}")
            ok = False
            continue
        if st_extra and not progs:
            got = {k: v for k, v in got.items() if k not in st_extra or k in want}
        if got != want:
            diff = {k: (got.get(k), want.get(k)) for k in set(got) | set(want) if got.get(k) != want.get(k)}
            print(f"{name}: MISMATCH ({'kernel' if kernel_core else 'user'} CO-RE): {diff}")
            ok = False
    if ok:
        subset = f" (subset: {len(want)} of {len(spec.programs)} programs)" if progs else ""
        if st_extra and not progs:
            subset += (f"; {', '.join(sorted(st_extra))} (?struct_ops used by a map) loaded by rawbpf and "
                       "libbpf 1.4+ only")
        print(f"{name}: {len(want)} programs, tags equal with CO-RE in the kernel and in user space{subset}")
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("objects", nargs="+")
    ap.add_argument("--pin-root", default=f"/sys/fs/bpf/rawbpf-compare-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rawbpf-compare-")
    try:
        loader = build_loader(tmp)
        results = [compare(loader, obj, args.pin_root) for obj in args.objects]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            os.rmdir(args.pin_root)
        except OSError:
            pass
    print(f"{sum(results)}/{len(results)} objects agree")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
