"""Kernel BTF objects: load a raw blob (BPF_BTF_LOAD), open one by id, read its info. Touches the kernel.

A :class:`KernelBTF` owns the BTF fd that maps and programs reference (``btf_fd``);
closing it drops this process's reference. Loading follows the program-load log strategy: no log first, then
a level-1 log in a buffer that grows on ENOSPC, and a :class:`~rawbpf.errors.BTFError` that quotes the
kernel's reason and the log's tail.
"""

from __future__ import annotations

import ctypes
import errno as _errno
from dataclasses import dataclass
from typing import Optional

from rawbpf import _sys
from rawbpf._fd import FD
from rawbpf._types import BtfInfoStruct, BtfLoadAttr
from rawbpf.consts import Cmd
from rawbpf.errors import BTFError, BTFLoadError, SyscallError

__tier__ = "kernel"
__all__ = ["BTFLoadError", "BtfInfo", "KernelBTF"]

LOG_BUF_START = 64 * 1024
LOG_BUF_MAX = (1 << 30) - 1
_NOISE = ("magic:", "version:", "flags:", "hdr_len:", "type_off:", "type_len:", "str_off:", "str_len:",
          "btf_total_size:")


@dataclass(frozen=True)
class BtfInfo:
    """What BPF_OBJ_GET_INFO_BY_FD says about a BTF object."""

    id: int
    name: str
    size: int
    kernel_btf: bool


def _reason(log: str) -> str:
    """What a BTF log says is wrong: its last line that is not the header dump, prefixed with the type being
    checked (``[2] STRUCT s size=4 vlen=1: m type_id=9 bits_offset=0 Invalid member``) when that line is one
    of the type's indented members."""
    lines = [ln for ln in log.splitlines() if ln.strip()]
    for i in range(len(lines) - 1, -1, -1):
        ln = lines[i]
        if ln.strip().startswith(_NOISE):
            continue
        if ln[:1].isspace():
            header = next((h.strip() for h in reversed(lines[:i]) if h.startswith("[")), "")
            if header:
                return f"{header}: {ln.strip()}"
        return ln.strip()
    return ""


class KernelBTF(FD):
    """One BTF object loaded into (or opened from) the kernel."""

    kind = "btf"

    def __init__(self, fd: int, *, owned: bool = True, log: str = "") -> None:
        super().__init__(fd, owned=owned)
        #: the kernel's log when loaded with log_level > 0
        self.log = log
        self._id = 0

    @classmethod
    def load(cls, raw: bytes, log_level: int = 0, *, name: str = "") -> KernelBTF:
        """BPF_BTF_LOAD ``raw`` (header + types + strings). Raises BTFError with the kernel's log tail."""
        what = f"load btf '{name}'" if name else "load btf"
        if not raw:
            raise BTFError(f"{what}: empty blob")
        data = ctypes.create_string_buffer(bytes(raw), len(raw))
        attr = BtfLoadAttr(btf=ctypes.addressof(data), btf_size=len(raw))
        hints = {_errno.E2BIG: "the blob is larger than the kernel allows",
                 _errno.EINVAL: "the kernel refused the blob"}
        first: Optional[SyscallError] = None
        if log_level == 0:
            try:
                return cls(_sys.bpf(Cmd.BTF_LOAD, attr, what, hints=hints))
            except SyscallError as err:
                if err.errno in (_errno.EPERM, _errno.EACCES):
                    raise
                first = err
        size = LOG_BUF_START
        while True:
            logbuf = ctypes.create_string_buffer(size)
            attr.btf_log_buf, attr.btf_log_size = ctypes.addressof(logbuf), size
            attr.btf_log_level, attr.btf_log_true_size = log_level or 1, 0
            try:
                fd = _sys.bpf(Cmd.BTF_LOAD, attr, what, hints=hints)
            except SyscallError as err:
                if err.errno == _errno.ENOSPC and size < LOG_BUF_MAX:
                    size = min(LOG_BUF_MAX, max(int(attr.btf_log_true_size) + 1, size * 4))
                    continue
                text = logbuf.value.decode(errors="replace")
                reason = _reason(text)
                if not reason:
                    raise (first or err) from None
                raise BTFLoadError(what, reason, text, err.errno or _errno.EINVAL) from err
            return cls(fd, log=logbuf.value.decode(errors="replace"))

    @classmethod
    def from_id(cls, btf_id: int) -> KernelBTF:
        """Open a BTF object by id (e.g. a module's or vmlinux's BTF)."""
        k = cls(_sys.get_fd_by_id(Cmd.BTF_GET_FD_BY_ID, btf_id, f"open btf id {btf_id}"))
        k._id = btf_id
        return k

    @classmethod
    def from_fd(cls, fd: int, owned: bool = True) -> KernelBTF:
        return cls(fd, owned=owned)

    def info(self) -> BtfInfo:
        """Id, name (kernel BTF: "vmlinux" or the module), size and whether it is kernel BTF."""
        name = ctypes.create_string_buffer(64)
        raw = BtfInfoStruct(name=ctypes.addressof(name), name_len=64)
        _sys.obj_get_info(self.fd, raw, f"inspect btf fd {self.fd}")
        self._id = raw.id
        return BtfInfo(id=raw.id, name=name.value.decode(errors="replace"), size=raw.btf_size,
                       kernel_btf=bool(raw.kernel_btf))

    @property
    def id(self) -> int:
        if not self._id:
            self._id = self.info().id
        return self._id

    def data(self) -> bytes:
        """The raw BTF bytes as the kernel holds them."""
        size = self.info().size
        buf = ctypes.create_string_buffer(max(size, 1))
        raw = BtfInfoStruct(btf=ctypes.addressof(buf), btf_size=size)
        _sys.obj_get_info(self.fd, raw, f"read btf id {self._id}")
        return buf.raw[: raw.btf_size]
