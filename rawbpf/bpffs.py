"""The BPF filesystem: detect and mount bpffs, pin objects, open pins, remove pin trees. Touches the kernel.

A pin keeps a map, program or link alive after every fd is closed; it lives until it is unlinked. Only paths
on a bpffs mount can hold pins, so every helper that writes checks the mount first and says so when it is not.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
from typing import Union

from rawbpf import _sys
from rawbpf._types import ObjAttr
from rawbpf.consts import Cmd
from rawbpf.errors import ConfigError, SyscallError

__tier__ = "kernel"

BPF_FS_MAGIC = 0xCAFE4A11
DEFAULT_BPFFS = "/sys/fs/bpf"

# BPF_OBJ_GET file_flags
BPF_F_RDONLY = 1 << 3
BPF_F_WRONLY = 1 << 4

PathLike = Union[str, "os.PathLike[str]"]


def is_bpffs(path: PathLike) -> bool:
    """True if ``path`` exists and is on a bpffs mount (statfs magic)."""
    return _sys.statfs_type(os.fspath(path)) == BPF_FS_MAGIC


def ensure_mounted(path: PathLike = DEFAULT_BPFFS) -> bool:
    """Make sure a bpffs is mounted at ``path``; returns True if this call mounted it."""
    p = os.fspath(path)
    if is_bpffs(p):
        return False
    if os.geteuid() != 0:
        raise ConfigError(f"mount bpffs at {p}: not mounted, and mounting it needs root "
                          f"(run: sudo mount -t bpf bpf {p})")
    try:
        os.makedirs(p, exist_ok=True)
    except OSError as err:
        why = (err.strerror or str(err)).lower()
        raise ConfigError(f"mount bpffs at {p}: cannot create the directory: {why}") from err
    _sys.mount("bpf", p, "bpf", f"mount bpffs at {p}")
    return True


def _bpffs_parent(path: str, what: str) -> None:
    """Create the missing parent directories of ``path``, refusing to create them outside bpffs."""
    parent = os.path.dirname(os.path.abspath(path)) or "/"
    missing = []
    probe = parent
    while not os.path.exists(probe):
        missing.append(probe)
        probe = os.path.dirname(probe)
    if not is_bpffs(probe):
        raise ConfigError(f"{what}: {probe} is not on a bpffs mount "
                          "(mount one with: rawbpf doctor --mount-bpffs)")
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass
        except OSError as err:
            raise ConfigError(f"{what}: cannot create {d}: {(err.strerror or str(err)).lower()}") from err


def pin(fd: int, path: PathLike, what: str = "") -> None:
    """BPF_OBJ_PIN ``fd`` at ``path`` (missing parent directories on bpffs are created)."""
    p = os.fspath(path)
    what = what or f"pin fd {fd} at {p}"
    _bpffs_parent(p, what)
    name = ctypes.create_string_buffer(os.fsencode(p))
    attr = ObjAttr(pathname=ctypes.addressof(name), bpf_fd=fd)
    _sys.bpf(Cmd.OBJ_PIN, attr, what, hints={
        _errno.EEXIST: "something is already pinned there",
        _errno.EPERM: "not a bpffs path, or need root",
    })


def get(path: PathLike, what: str = "", flags: int = 0) -> int:
    """BPF_OBJ_GET: a new fd (owned by the caller) for the object pinned at ``path``."""
    p = os.fspath(path)
    what = what or f"open pin {p}"
    name = ctypes.create_string_buffer(os.fsencode(p))
    attr = ObjAttr(pathname=ctypes.addressof(name), file_flags=flags)
    return _sys.bpf(Cmd.OBJ_GET, attr, what, hints={
        _errno.ENOENT: "nothing is pinned there",
        _errno.EINVAL: "not a bpffs pin",
        _errno.EPERM: "not a bpffs pin, or need root",
    })


def unpin(path: PathLike, *, missing_ok: bool = True) -> bool:
    """Remove the pin at ``path``; returns False if it was not there (and ``missing_ok``)."""
    p = os.fspath(path)
    try:
        os.unlink(p)
    except FileNotFoundError:
        if missing_ok:
            return False
        raise ConfigError(f"unpin {p}: nothing is pinned there") from None
    except OSError as err:
        raise SyscallError(f"unpin {p}", err.errno or _errno.EIO) from err
    return True


def remove_tree(path: PathLike) -> int:
    """Remove a pin directory and everything in it; refuses anything that is not on bpffs.

    Returns the number of pins removed. Missing paths are fine (0). Symlinks are not followed.
    """
    root = os.fspath(path)
    if not os.path.exists(root):
        return 0
    if not is_bpffs(root):
        raise ConfigError(f"remove pins under {root}: not on a bpffs mount, refusing to delete")
    if os.path.realpath(root) == DEFAULT_BPFFS or os.path.ismount(root):
        raise ConfigError(f"remove pins under {root}: refusing to delete a whole bpffs mount")
    removed = 0
    for dirpath, dirnames, filenames in os.walk(root, topdown=False, followlinks=False):
        for f in filenames:
            os.unlink(os.path.join(dirpath, f))
            removed += 1
        for d in dirnames:
            os.rmdir(os.path.join(dirpath, d))
    os.rmdir(root)
    return removed
