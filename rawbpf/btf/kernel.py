"""The running kernel's BTF from files: vmlinux and module (split) BTF; reads files only, no syscalls.

vmlinux BTF is indexed lazily (:meth:`rawbpf.btf.BTF.parse` with ``lazy=True``): one pass records where each
type record starts, names are indexed on first lookup, and types are decoded when first used, so CO-RE
against a ~127k-type vmlinux costs tens of milliseconds rather than seconds. Paths are injectable for tests.
"""

from __future__ import annotations

import os
from typing import Dict, List

from rawbpf.btf.core import Targets
from rawbpf.btf.parse import BTF
from rawbpf.errors import BTFError

__tier__ = "files"

BTF_DIR = "/sys/kernel/btf"
VMLINUX = BTF_DIR + "/vmlinux"

_cache: Dict[str, BTF] = {}


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise BTFError(f"{what} '{path}': {err.strerror.lower() if err.strerror else err}") from err


def vmlinux(path: str = VMLINUX) -> BTF:
    """The kernel's BTF, parsed lazily once per process (per path: the running kernel's cannot change)."""
    key = os.path.abspath(path)
    hit = _cache.get(key)
    if hit is not None:
        return hit
    data = _read(path, "vmlinux btf")
    try:
        btf = BTF.parse(data, lazy=True)
    except BTFError as err:
        raise BTFError(f"vmlinux btf '{path}': {err}") from err
    _cache[key] = btf
    return btf


def module_names(btf_dir: str = BTF_DIR) -> List[str]:
    """Names of the modules that have BTF (every file in ``btf_dir`` but vmlinux), sorted."""
    try:
        return sorted(n for n in os.listdir(btf_dir) if n != "vmlinux")
    except OSError:
        return []


def module(name: str, base: BTF, btf_dir: str = BTF_DIR) -> BTF:
    """A module's BTF, split on ``base`` (vmlinux), parsed lazily."""
    path = os.path.join(btf_dir, name)
    data = _read(path, "module btf")
    try:
        return BTF.parse(data, base=base, lazy=True)
    except BTFError as err:
        raise BTFError(f"module btf '{path}': {err}") from err


def modules(base: BTF, btf_dir: str = BTF_DIR) -> List[BTF]:
    """Every module's BTF split on ``base``; unreadable ones (a module being unloaded) are skipped."""
    out = []
    for name in module_names(btf_dir):
        try:
            out.append(module(name, base, btf_dir))
        except BTFError:
            continue
    return out


def targets(btf_dir: str = BTF_DIR) -> Targets:
    """CO-RE targets of the running kernel: vmlinux, then (read only if needed) module BTF."""
    main = vmlinux(os.path.join(btf_dir, "vmlinux"))
    return Targets(main, lambda: modules(main, btf_dir))
