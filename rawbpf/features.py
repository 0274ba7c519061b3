"""Cached probes of what the running kernel supports, each a tiny real kernel operation. Touches the kernel.

Every probe creates the smallest object that proves the feature (a map, a two-instruction
program, a three-type BTF blob), closes every fd it opened, and is cached per process: ``has("ringbuf")``.
``require(name)`` raises :class:`~rawbpf.errors.NotSupportedError` naming the first kernel release with it.
A probe that fails for a reason other than "the kernel lacks it" (e.g. no privileges) raises instead of
answering False, so a missing capability is never mistaken for an old kernel.
"""

from __future__ import annotations

import errno as _errno
import mmap as _mmap
import struct
import threading
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from rawbpf import _sys
from rawbpf._types import LinkCreateAttr
from rawbpf.asm import codec
from rawbpf.consts import BPF_F_MMAPABLE, AttachType, Cmd, MapType, ProgType
from rawbpf.errors import NotSupportedError, RawBPFError, SyscallError, VerifierError
from rawbpf.kbtf import KernelBTF
from rawbpf.maps import ENOTSUPP, Map
from rawbpf.programs import Program, enable_stats

__tier__ = "kernel"

# errnos a probe reads as "the kernel does not have this"
_ABSENT = (_errno.EINVAL, _errno.EOPNOTSUPP, ENOTSUPP, _errno.E2BIG, _errno.ENOENT)


@dataclass(frozen=True)
class Feature:
    """A probe: its name, what it checks, and the first Linux release that has it."""

    name: str
    description: str
    min_kernel: str
    probe: Callable[[], bool]


_FEATURES: Dict[str, Feature] = {}
_cache: Dict[str, bool] = {}
_lock = threading.RLock()


ProbeFn = Callable[[], bool]


def _feature(name: str, description: str, min_kernel: str) -> Callable[[ProbeFn], ProbeFn]:
    def register(fn: ProbeFn) -> ProbeFn:
        _FEATURES[name] = Feature(name, description, min_kernel, fn)
        return fn
    return register


def names() -> List[str]:
    """Every probe name, in a stable order."""
    return list(_FEATURES)


def feature(name: str) -> Feature:
    try:
        return _FEATURES[name]
    except KeyError:
        raise RawBPFError(f"feature probe '{name}': unknown (known: {', '.join(_FEATURES)})") from None


def has(name: str) -> bool:
    """Whether the kernel supports ``name`` (probed once per process)."""
    f = feature(name)
    with _lock:
        if name not in _cache:
            _cache[name] = bool(f.probe())
        return _cache[name]


def require(name: str) -> None:
    """Raise NotSupportedError if the kernel lacks ``name``."""
    if not has(name):
        f = _FEATURES[name]
        raise NotSupportedError(f.description, f.min_kernel)


def probe_all() -> Dict[str, bool]:
    """Every probe's answer (cached)."""
    return {name: has(name) for name in _FEATURES}


def reset_cache() -> None:
    """Forget cached answers (tests, or after a kernel.* sysctl change)."""
    with _lock:
        _cache.clear()


def _absent(err: SyscallError) -> bool:
    if err.errno in _ABSENT:
        return False
    raise err


# --- tiny BTF blobs ------------------------------------------------------------------------------

BTF_KIND_INT, BTF_KIND_PTR, BTF_KIND_ENUM = 1, 2, 6
BTF_KIND_FUNC, BTF_KIND_FUNC_PROTO, BTF_KIND_VAR, BTF_KIND_DATASEC = 12, 13, 14, 15
BTF_KIND_FLOAT, BTF_KIND_DECL_TAG, BTF_KIND_TYPE_TAG, BTF_KIND_ENUM64 = 16, 17, 18, 19


class _Blob:
    """Just enough of a BTF writer for probes: types as raw words, a string table, the header."""

    def __init__(self) -> None:
        self.types = b""
        self.strings = b"\0"

    def s(self, text: str) -> int:
        off = len(self.strings)
        self.strings += text.encode() + b"\0"
        return off

    def t(self, name: str, kind: int, vlen: int, size_or_type: int, *extra: int,
          kind_flag: bool = False) -> None:
        info = (kind << 24) | vlen | (1 << 31 if kind_flag else 0)
        self.types += struct.pack("<III", self.s(name) if name else 0, info, size_or_type)
        self.types += struct.pack(f"<{len(extra)}I", *[x & 0xFFFFFFFF for x in extra])

    def int32(self) -> None:
        self.t("int", BTF_KIND_INT, 0, 4, (1 << 24) | 32)  # signed, 32 bits

    def raw(self) -> bytes:
        n = len(self.types)
        hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, n, n, len(self.strings))
        return hdr + self.types + self.strings


def _btf_loads(blob: _Blob) -> bool:
    try:
        KernelBTF.load(blob.raw()).close()
        return True
    except RawBPFError as err:
        if isinstance(err, SyscallError) and err.errno in (_errno.EPERM, _errno.EACCES):
            raise
        return False


def _func_blob(linkage: int) -> _Blob:
    b = _Blob()
    b.int32()                                                   # [1] int
    b.t("", BTF_KIND_FUNC_PROTO, 1, 1, b.s("a"), 1)             # [2] int (*)(int a)
    b.t("f", BTF_KIND_FUNC, linkage, 2)                         # [3] f
    return b


def _datasec_blob(section: str) -> _Blob:
    b = _Blob()
    b.int32()                                                   # [1] int
    b.t("a", BTF_KIND_VAR, 0, 1, 1)                             # [2] global var a
    b.t(section, BTF_KIND_DATASEC, 1, 4, 2, 0, 4)               # [3] section {a @0, 4 bytes}
    return b


@_feature("btf", "BTF loading", "4.18")
def _btf() -> bool:
    b = _Blob()
    b.int32()
    return _btf_loads(b)


@_feature("btf_func", "BTF FUNC and FUNC_PROTO", "5.0")
def _btf_func() -> bool:
    return _btf_loads(_func_blob(0))


@_feature("btf_func_global", "BTF global FUNC linkage", "5.6")
def _btf_func_global() -> bool:
    return _btf_loads(_func_blob(1))


@_feature("btf_datasec", "BTF VAR and DATASEC", "5.2")
def _btf_datasec() -> bool:
    return _btf_loads(_datasec_blob(".data"))


@_feature("btf_qmark_datasec", "BTF DATASEC names starting with '?'", "6.9")
def _btf_qmark_datasec() -> bool:
    return _btf_loads(_datasec_blob("?.data"))


@_feature("btf_float", "BTF FLOAT", "5.13")
def _btf_float() -> bool:
    b = _Blob()
    b.t("float", BTF_KIND_FLOAT, 0, 4)
    return _btf_loads(b)


@_feature("btf_decl_tag", "BTF DECL_TAG", "5.16")
def _btf_decl_tag() -> bool:
    b = _Blob()
    b.int32()                                                   # [1] int
    b.t("a", BTF_KIND_VAR, 0, 1, 1)                             # [2] var a
    b.t("tag", BTF_KIND_DECL_TAG, 0, 2, -1)                     # [3] tag on a
    return _btf_loads(b)


@_feature("btf_type_tag", "BTF TYPE_TAG", "5.17")
def _btf_type_tag() -> bool:
    b = _Blob()
    b.int32()                                                   # [1] int
    b.t("tag", BTF_KIND_TYPE_TAG, 0, 1)                         # [2] int __tag("tag")
    b.t("", BTF_KIND_PTR, 0, 2)                                 # [3] pointer to it
    return _btf_loads(b)


@_feature("btf_enum64", "BTF ENUM64 and signed ENUM", "6.0")
def _btf_enum64() -> bool:
    b = _Blob()
    b.t("e", BTF_KIND_ENUM64, 1, 8, b.s("v"), 1, 1, kind_flag=True)  # enum e : s64 { v = 1 << 32 | 1 }
    return _btf_loads(b)


# --- maps and programs ---------------------------------------------------------------------------


_insn = codec.pack


_RET0 = _insn(0xB7, 0, 0, 0, 0) + _insn(0x95)  # r0 = 0; exit


def _map_creates(map_type: int, key: int, value: int, entries: int, flags: int = 0) -> bool:
    try:
        Map.create(map_type, key, value, entries, flags=flags).close()
        return True
    except SyscallError as err:
        return _absent(err)


@_feature("bpf", "the bpf() syscall with map creation", "3.18")
def _bpf() -> bool:
    return _map_creates(MapType.ARRAY, 4, 4, 1)


@_feature("ringbuf", "BPF ring buffer maps", "5.8")
def _ringbuf() -> bool:
    return _map_creates(MapType.RINGBUF, 0, 0, _mmap.PAGESIZE)


@_feature("mmapable_array", "mmap()able BPF array maps (BPF_F_MMAPABLE)", "5.5")
def _mmapable() -> bool:
    try:
        m = Map.create(MapType.ARRAY, 4, 8, 1, flags=BPF_F_MMAPABLE)
    except SyscallError as err:
        return _absent(err)
    try:
        with m.mmap() as mm:
            mm[0:8] = (7).to_bytes(8, "little")
        return m.lookup_int(0) == 7
    except RawBPFError:
        return False
    finally:
        m.close()


@_feature("perf_link", "BPF perf links (BPF_LINK_CREATE on a perf event)", "5.15")
def _perf_link() -> bool:
    with Program.load(ProgType.TRACEPOINT, _RET0, name="probe_perf_link") as prog:
        attr = LinkCreateAttr(prog_fd=prog.fd, target_fd=(1 << 32) - 1, attach_type=AttachType.PERF_EVENT)
        try:
            fd = _sys.bpf(Cmd.LINK_CREATE, attr, "probe perf link")
        except SyscallError as err:
            # the kernel looked the (invalid) perf event fd up: it knows perf links
            return err.errno == _errno.EBADF
        _sys.close(fd)
        return True


@_feature("kernel_core", "kernel-side CO-RE relocation at program load", "5.17")
def _kernel_core() -> bool:
    b = _Blob()
    b.int32()                                                   # [1] int
    b.t("", BTF_KIND_FUNC_PROTO, 0, 1)                          # [2] int (void)
    b.t("main", BTF_KIND_FUNC, 1, 2)                            # [3] global main
    access = b.s("0")
    try:
        btf = KernelBTF.load(b.raw())
    except SyscallError as err:
        return _absent(err)
    except RawBPFError:
        return False
    func_info = struct.pack("<II", 0, 3)
    # BPF_CORE_TYPE_ID_LOCAL (6) on insn 0 (r0 = 0): the kernel rewrites the immediate to local type id 1
    relo = struct.pack("<IIII", 0, 1, access, 6)
    try:
        with Program.load(ProgType.SOCKET_FILTER, _RET0, name="probe_core", btf_fd=btf.fd,
                          func_info=func_info, core_relos=relo) as prog:
            return prog.test_run(b"\0" * 64).retval == 1
    except VerifierError:
        return False
    except SyscallError as err:
        return _absent(err)
    finally:
        btf.close()


@_feature("isa_v4", "BPF ISA v4 instructions (sign-extending loads and moves, bswap, signed div/mod, gotol)",
          "6.6")
def _isa_v4() -> bool:
    # r0 = (s8)r0 (MOVSX: ALU64 MOV X with off 8); older verifiers refuse the non-zero offset as reserved
    try:
        with Program.load(ProgType.SOCKET_FILTER, _insn(0xB7, 0, 0, 0, 0x80) + _insn(0xBF, 0, 0, 8) +
                          _insn(0x95), name="probe_isa_v4") as prog:
            return prog.test_run(b"\0" * 64).retval == 0xFFFFFF80
    except VerifierError:
        return False
    except SyscallError as err:
        return _absent(err)


@_feature("bpf_stats", "BPF run-time statistics (BPF_ENABLE_STATS)", "5.8")
def _bpf_stats() -> bool:
    try:
        enable_stats().close()
        return True
    except SyscallError as err:
        return _absent(err)


@_feature("uprobe_pmu", "the uprobe perf PMU (perf_event_open uprobes)", "4.17")
def _uprobe_pmu() -> bool:
    import os

    return os.path.exists("/sys/bus/event_source/devices/uprobe/type")


# --- helpers -------------------------------------------------------------------------------------

_helper_cache: Dict[Tuple[int, int], bool] = {}


def has_helper(helper: int, prog_type: int = ProgType.TRACEPOINT) -> bool:
    """Whether programs of ``prog_type`` may call helper ``helper`` (an id, or a name via rawbpf.asm).

    Loads ``call helper; r0 = 0; exit``: the verifier names unknown helpers ("invalid func"/"unknown func");
    any other complaint (e.g. about the arguments) means the helper exists."""
    key = (int(prog_type), int(helper))
    with _lock:
        if key in _helper_cache:
            return _helper_cache[key]
    insns = _insn(0x85, 0, 0, 0, int(helper)) + _RET0
    ok = True
    try:
        Program.load(prog_type, insns, name="probe_helper").close()
    except VerifierError as err:
        text = err.log
        ok = not any(s in text for s in ("invalid func", "unknown func", "program of this type cannot use"))
    except SyscallError as err:
        ok = _absent(err)
    with _lock:
        _helper_cache[key] = ok
    return ok


def helper_by_name(name: str) -> Optional[int]:
    """The id of helper ``name`` (``bpf_loop`` or ``loop``), from rawbpf's helper table, or None."""
    try:
        from rawbpf.asm.helpers import helper_id
    except ImportError:  # pragma: no cover - the table ships with the package
        return None
    try:
        return int(helper_id(name))
    except RawBPFError:
        return None


#: helpers probed by name for doctor and the loader (id, prog type)
HELPERS = {
    "bpf_loop": (181, ProgType.TRACEPOINT),
    "bpf_ringbuf_reserve": (131, ProgType.TRACEPOINT),
    "bpf_probe_read_kernel": (113, ProgType.TRACEPOINT),
    "bpf_probe_read_user": (112, ProgType.TRACEPOINT),
    "bpf_ktime_get_boot_ns": (125, ProgType.TRACEPOINT),
}


@_feature("bpf_loop", "the bpf_loop helper", "5.17")
def _bpf_loop() -> bool:
    return has_helper(181, ProgType.TRACEPOINT)


@_feature("probe_read_kernel", "bpf_probe_read_kernel/user helpers", "5.5")
def _probe_read_kernel() -> bool:
    return has_helper(113, ProgType.TRACEPOINT) and has_helper(112, ProgType.TRACEPOINT)


@_feature("ringbuf_helpers", "bpf_ringbuf_reserve/submit helpers", "5.8")
def _ringbuf_helpers() -> bool:
    return has_helper(131, ProgType.TRACEPOINT)


def btf_features() -> object:
    """A :class:`rawbpf.btf.marshal.BtfFeatures` for sanitising BTF before BPF_BTF_LOAD."""
    from rawbpf.btf.marshal import BtfFeatures

    return BtfFeatures(
        func=has("btf_func"), func_global=has("btf_func_global"), datasec=has("btf_datasec"),
        qmark_datasec=has("btf_qmark_datasec"), float=has("btf_float"), decl_tag=has("btf_decl_tag"),
        type_tag=has("btf_type_tag"), enum64=has("btf_enum64"),
    )
