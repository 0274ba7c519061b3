"""Can this machine run rawbpf? Privileges, kernel, bpffs, tracefs, BTF, lockdown and every feature probe,
as :class:`Check` results (``rawbpf doctor`` prints them); kernel (probes load tiny maps and programs).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import List, Optional

from rawbpf import bpffs, features, tracefs
from rawbpf.errors import RawBPFError

__tier__ = "kernel"
__all__ = ["Check", "REQUIRED_FEATURES", "effective_caps", "run_checks"]

OK, MISSING, WARN, INFO = "ok", "missing", "warn", "info"

CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39

#: feature probes rawbpf cannot work without (the rest have fallbacks or are optional)
REQUIRED_FEATURES = ("bpf", "btf", "ringbuf", "probe_read_kernel")


@dataclass
class Check:
    """One line of the report."""

    name: str
    status: str
    detail: str
    required: bool = False


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def effective_caps(status_text: Optional[str] = None) -> int:
    """The CapEff bit mask of this process (from /proc/self/status)."""
    text = status_text if status_text is not None else (_read("/proc/self/status") or "")
    for line in text.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def _privileges() -> Check:
    caps = effective_caps()
    known = (("CAP_BPF", CAP_BPF), ("CAP_PERFMON", CAP_PERFMON), ("CAP_SYS_ADMIN", CAP_SYS_ADMIN))
    names = [n for n, bit in known if caps >> bit & 1]
    who = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"
    enough = bool(caps >> CAP_SYS_ADMIN & 1) or (bool(caps >> CAP_BPF & 1) and bool(caps >> CAP_PERFMON & 1))
    detail = f"{who} ({', '.join(names) or 'no BPF capabilities'})"
    if not enough:
        detail += "; need CAP_BPF and CAP_PERFMON, or root"
    return Check("privileges", OK if enough else MISSING, detail, required=True)


def _kernel() -> Check:
    release = platform.release()
    try:
        major, minor = (int(x) for x in release.split(".")[:2])
    except ValueError:
        return Check("kernel", WARN, f"Linux {release} (cannot parse the version)")
    if (major, minor) < (5, 8):
        return Check("kernel", MISSING, f"Linux {release} {platform.machine()}; rawbpf needs 5.8 or later",
                     required=True)
    return Check("kernel", OK, f"Linux {release} {platform.machine()}", required=True)


def _kernel_has_fs(*names: str) -> bool:
    """Whether the kernel knows one of the filesystem types ``names`` (/proc/filesystems)."""
    known = {ln.split()[-1] for ln in (_read("/proc/filesystems") or "").splitlines() if ln.split()}
    return not known or any(n in known for n in names)


def _unmounted(name: str, path: str, fstypes: tuple) -> Check:
    """The check for a filesystem rawbpf mounts on demand that is not mounted yet."""
    if os.geteuid() != 0:
        return Check(name, MISSING, f"needs root (not mounted or not readable at {path}; "
                     "only root can mount it)", required=True)
    if not _kernel_has_fs(*fstypes):
        return Check(name, MISSING, f"this kernel has no {' or '.join(fstypes)} filesystem", required=True)
    return Check(name, INFO, f"not mounted at {path} yet; rawbpf mounts it when it needs it "
                 "(now: rawbpf doctor --mount)", required=True)


def _bpffs(mount: bool) -> Check:
    path = bpffs.DEFAULT_BPFFS
    if bpffs.is_bpffs(path):
        return Check("bpffs", OK, f"mounted at {path}", required=True)
    if mount:
        try:
            bpffs.ensure_mounted(path)
            return Check("bpffs", OK, f"mounted at {path} (just now)", required=True)
        except RawBPFError as err:
            return Check("bpffs", MISSING, str(err), required=True)
    return _unmounted("bpffs", path, ("bpf",))


def _tracefs(mount: bool) -> Check:
    found = tracefs.find()
    if found:
        return Check("tracefs", OK, f"mounted at {found}", required=True)
    if mount:
        try:
            root = tracefs.ensure_mounted("mount tracefs")
            return Check("tracefs", OK, f"mounted at {root} (just now)", required=True)
        except RawBPFError as err:
            return Check("tracefs", MISSING, str(err), required=True)
    return _unmounted("tracefs", tracefs.TRACEFS, ("tracefs", "debugfs"))


def _vmlinux_btf() -> Check:
    path = "/sys/kernel/btf/vmlinux"
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            magic = f.read(2)
    except OSError as err:
        return Check("vmlinux btf", MISSING, f"{path}: {(err.strerror or str(err)).lower()} "
                     "(kernel built without CONFIG_DEBUG_INFO_BTF)", required=True)
    if magic != b"\x9f\xeb":
        return Check("vmlinux btf", MISSING, f"{path}: not BTF", required=True)
    return Check("vmlinux btf", OK, f"{path} ({size // 1024} KiB)", required=True)


def _unprivileged() -> Check:
    value = _read("/proc/sys/kernel/unprivileged_bpf_disabled")
    meaning = {"0": "unprivileged bpf allowed", "1": "unprivileged bpf disabled (locked)",
               "2": "unprivileged bpf disabled"}
    if value is None:
        return Check("unprivileged bpf", INFO, "unknown (no kernel.unprivileged_bpf_disabled)")
    return Check("unprivileged bpf", INFO, f"kernel.unprivileged_bpf_disabled={value}: "
                 f"{meaning.get(value, 'unknown value')}")


def _lockdown() -> Check:
    text = _read("/sys/kernel/security/lockdown")
    if text is None:
        return Check("lockdown", OK, "not active (no /sys/kernel/security/lockdown)")
    mode = next((w.strip("[]") for w in text.split() if w.startswith("[")), "none")
    if mode == "confidentiality":
        return Check("lockdown", MISSING, "confidentiality: bpf_probe_read_kernel is blocked", required=True)
    if mode == "integrity":
        return Check("lockdown", WARN, "integrity: bpf_probe_write_user is blocked (rawbpf does not use it)")
    return Check("lockdown", OK, mode)


def _perf_paranoid() -> Check:
    value = _read("/proc/sys/kernel/perf_event_paranoid")
    return Check("perf_event_paranoid", INFO, f"kernel.perf_event_paranoid={value} "
                 "(above 1, tracepoint/uprobe events need CAP_PERFMON)")


def _stats() -> Check:
    value = _read("/proc/sys/kernel/bpf_stats_enabled")
    state = {"0": "off (rawbpf enables it on demand)", "1": "on (sysctl)"}.get(value or "", "unknown")
    return Check("bpf stats sysctl", INFO, f"kernel.bpf_stats_enabled={value}: {state}")


def _probes() -> List[Check]:
    out: List[Check] = []
    for name in features.names():
        f = features.feature(name)
        required = name in REQUIRED_FEATURES
        try:
            ok = features.has(name)
        except RawBPFError as err:
            out.append(Check(f"feature {name}", MISSING if required else WARN, f"probe failed: {err}",
                             required))
            continue
        if ok:
            out.append(Check(f"feature {name}", OK, f.description, required))
        else:
            out.append(Check(f"feature {name}", MISSING if required else WARN,
                             f"{f.description}: not available (Linux {f.min_kernel}+)", required))
    return out


def run_checks(mount_bpffs: bool = False, mount_tracefs: bool = False) -> List[Check]:
    """Every check, in report order; the mount flags mount a missing bpffs / tracefs first (root)."""
    checks = [_privileges(), _kernel(), _bpffs(mount_bpffs), _tracefs(mount_tracefs), _vmlinux_btf(),
              _unprivileged(),
              _lockdown(), _perf_paranoid(), _stats()]
    return checks + _probes()
