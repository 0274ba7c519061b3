"""Resolve an object's externs the way libbpf does: ``__kconfig`` values, ``__ksym`` variables and kfuncs.

Reads files only (/proc/config.gz or /boot/config-*, /proc/kallsyms, /sys/kernel/btf/vmlinux); the resulting
values are patched into instructions by :func:`rawbpf.linker.patch_data`. Paths are injectable for tests.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Dict, Optional

from rawbpf.errors import RelocationError
from rawbpf.linker import ExternValue

if TYPE_CHECKING:  # pragma: no cover
    from rawbpf.btf import BTF
    from rawbpf.spec import CollectionSpec

__tier__ = "files"

VMLINUX = "/sys/kernel/btf/vmlinux"
_vmlinux: Dict[str, Any] = {}


def vmlinux(path: str = VMLINUX) -> BTF:
    """The kernel's BTF, parsed once per process (lazily indexed by name)."""
    btf = _vmlinux.get(path)
    if btf is None:
        from rawbpf.btf import kernel as _kernel

        btf = _kernel.vmlinux(path)
        _vmlinux[path] = btf
    return btf


def vmlinux_type_id(name: str, kind: str, path: str = VMLINUX) -> int:
    """Id of the named type of ``kind`` ("FUNC", "VAR", "TYPEDEF", …) in vmlinux BTF, 0 if absent.

    Found ids are remembered for the rest of the boot (:mod:`rawbpf.vmlinux_ids`): indexing vmlinux BTF
    costs every start a tenth of a second or more."""
    from rawbpf import vmlinux_ids

    return vmlinux_ids.type_id(name, kind, path, lambda n, k: _scan_type_id(n, k, path))


def _scan_type_id(name: str, kind: str, path: str = VMLINUX) -> int:
    from rawbpf.btf import Kind

    t = vmlinux(path).find(name, Kind[kind])
    return int(t.id) if t is not None else 0


def kernel_version_code(release: Optional[str] = None) -> int:
    """LINUX_VERSION_CODE of the running kernel (patch level capped at 255, as the kernel does)."""
    release = release or os.uname().release
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    if not m:
        return 0
    a, b, c = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    return (a << 16) | (b << 8) | min(c, 255)


def read_kconfig(paths: Optional[list] = None) -> Dict[str, str]:
    """CONFIG_* = value from /proc/config.gz or /boot/config-$(uname -r) ({} when neither exists)."""
    paths = paths or ["/proc/config.gz", f"/boot/config-{os.uname().release}"]
    for p in paths:
        if not os.path.exists(p):
            continue
        try:
            if p.endswith(".gz"):
                import gzip  # only here: most objects have no kconfig externs

                with gzip.open(p, "rt") as gz:
                    text = gz.read()
            else:
                with open(p) as f:
                    text = f.read()
        except OSError:
            continue
        out: Dict[str, str] = {}
        for line in text.splitlines():
            if line.startswith("CONFIG_") and "=" in line:
                k, v = line.split("=", 1)
                out[k] = v
        return out
    return {}


def fill_kconfig(spec: CollectionSpec, config: Optional[Dict[str, str]] = None) -> None:
    """Write kconfig extern values into the spec's .kconfig map data (before the map is created)."""
    kexts = [e for e in spec.externs.values() if e.kind == "kconfig"]
    if not kexts:
        return
    mspec = next(m for m in spec.maps.values() if m.section == ".kconfig")
    assert mspec.data is not None
    cfg = config if config is not None else read_kconfig()
    for e in kexts:
        if e.name.startswith("LINUX_"):
            raw = _virtual_kconfig(spec, e.name, e.size, e.weak)
        elif e.name in cfg:
            raw = _kconfig_bytes(cfg[e.name], e.size)
        elif e.weak:
            raw = bytes(e.size)
        else:
            raise RelocationError(f"extern '{e.name}' (__kconfig) is not set in the kernel config"
                                  ).with_context(f"object '{spec.name}'")
        if raw is None:
            raise RelocationError(f"unsupported size {e.size}").with_context(
                f"object '{spec.name}': extern '{e.name}'")
        mspec.data[e.offset : e.offset + e.size] = raw


#: the architecture's prefix of syscall entry points when the kernel wraps them (pt_regs-taking wrappers)
_SYSCALL_PREFIX = {"x86_64": "__x64_", "aarch64": "__arm64_", "s390x": "__s390x_", "riscv64": "__riscv_"}


def machine() -> str:
    """The running kernel's machine name (``uname -m``)."""
    return os.uname().machine


def has_syscall_wrapper(symbols: Optional[Dict[str, int]] = None) -> bool:
    """Whether syscalls enter through arch wrappers (``__x64_sys_bpf``): then a BPF_KSYSCALL program's
    context is the wrapper's pt_regs, which the object learns from LINUX_HAS_SYSCALL_WRAPPER."""
    prefix = _SYSCALL_PREFIX.get(machine(), "")
    if not prefix:
        return False
    try:
        syms = symbols if symbols is not None else kallsyms()
    except OSError:
        return True  # every supported architecture has had wrappers since 4.17
    return prefix + "sys_bpf" in syms


def _virtual_kconfig(spec: CollectionSpec, name: str, size: int, weak: bool) -> Optional[bytes]:
    """The values a loader fills itself rather than reading the kernel config (libbpf's LINUX_* set).
    One it does not know reads 0 when weak, as libbpf has it, and refuses the object when strong."""
    if name == "LINUX_KERNEL_VERSION":
        return kernel_version_code().to_bytes(size, "little") if size in (4, 8) else None
    if name == "LINUX_HAS_BPF_COOKIE":  # bpf_get_attach_cookie: Linux 5.15; older kernels are not supported
        return b"\1".ljust(size, b"\0")
    if name == "LINUX_HAS_SYSCALL_WRAPPER":
        return bytes([int(has_syscall_wrapper())]).ljust(size, b"\0")
    if weak:
        return bytes(size)
    raise RelocationError(f"unknown virtual extern '{name}' (__kconfig): the known ones are "
                          "LINUX_KERNEL_VERSION, LINUX_HAS_BPF_COOKIE and LINUX_HAS_SYSCALL_WRAPPER"
                          ).with_context(f"object '{spec.name}'")


def _kconfig_bytes(value: str, size: int) -> bytes:
    if value in ("y", "m", "n"):
        code = {"n": 0, "y": 1, "m": 2}[value]
        return code.to_bytes(size, "little")
    if value.startswith('"'):
        return value.strip('"').encode()[: max(size - 1, 0)].ljust(size, b"\0")
    try:
        return (int(value, 0) & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    except ValueError as err:
        raise RelocationError(f"kconfig value '{value}' is not a number") from err


def kallsyms(path: str = "/proc/kallsyms") -> Dict[str, int]:
    out: Dict[str, int] = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] not in out:
                out[parts[2]] = int(parts[0], 16)
    return out


def resolve(spec: CollectionSpec, maps: Dict[str, Any]) -> Dict[str, ExternValue]:
    """ExternValue per extern name, ready for :func:`rawbpf.linker.patch_data`."""
    out: Dict[str, ExternValue] = {}
    syms: Optional[Dict[str, int]] = None
    for e in spec.externs.values():
        where = f"object '{spec.name}': extern '{e.name}'"
        if e.kind == "kconfig":
            mname = next(n for n, m in spec.maps.items() if m.section == ".kconfig")
            out[e.name] = ExternValue("map_value", fd=maps[mname].fd, offset=e.offset)
        elif e.kind == "kfunc":
            tid = vmlinux_type_id(e.name, "FUNC")
            if not tid and not e.weak:
                raise RelocationError("kfunc not found in the kernel's BTF").with_context(where)
            out[e.name] = ExternValue("kfunc", btf_id=tid)
        else:
            if e.typed:
                tid = vmlinux_type_id(e.name, "VAR")
                if not tid and not e.weak:
                    raise RelocationError("kernel variable not found in the kernel's BTF").with_context(where)
                out[e.name] = ExternValue("btf_id", btf_id=tid) if tid else ExternValue("addr")
            else:
                if syms is None:
                    syms = kallsyms()
                addr = syms.get(e.name, 0)
                if not addr and not e.weak:
                    raise RelocationError("symbol not found in /proc/kallsyms").with_context(where)
                out[e.name] = ExternValue("addr", addr=addr)
    return out

