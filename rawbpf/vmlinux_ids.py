"""Type ids looked up in the running kernel's BTF, remembered for the rest of the boot.

A ``tp_btf`` program names its tracepoint by the id of ``btf_trace_<name>`` in vmlinux BTF, and finding one
means indexing some hundred thousand types: a tenth of a second or more of every ``rawbpf load``. The ids
cannot change while the kernel runs, so the ones found are kept in a small JSON file under /run (a tmpfs
emptied at boot) and tagged with the boot id and the BTF's path, size and modification time; a file from
another boot or another BTF is ignored and rewritten. The file is trusted only in a directory owned by the
current user that nobody else can write to; when it cannot be read or written the lookup simply indexes the
BTF, as without it.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
from typing import Any, Dict, Optional

__tier__ = "files"

log = logging.getLogger(__name__)

#: where the ids are kept (``RAWBPF_RUN_DIR`` overrides the directory)
DEFAULT_DIR = "/run/rawbpf"
FILE_NAME = "vmlinux-ids.json"
BOOT_ID = "/proc/sys/kernel/random/boot_id"

_loaded: Dict[str, Dict[str, Any]] = {}  # cache file → its contents, read once per process


def cache_dir() -> str:
    return os.environ.get("RAWBPF_RUN_DIR") or DEFAULT_DIR


def _boot_id(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read().strip() or None
    except OSError:
        return None


def _private(path: str, st: os.stat_result) -> bool:
    """Owned by us and writable by nobody else (a file others could write could point us anywhere)."""
    return st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _tag(btf_path: str, boot_id_path: str) -> Optional[Dict[str, Any]]:
    boot = _boot_id(boot_id_path)
    try:
        st = os.stat(btf_path)
    except OSError:
        return None
    if boot is None:
        return None
    return {"boot_id": boot, "btf": os.path.abspath(btf_path), "btf_size": st.st_size,
            "btf_mtime_ns": st.st_mtime_ns}


def _read(file: str, tag: Dict[str, Any]) -> Dict[str, int]:
    got = _loaded.get(file)
    if got is None:
        got = {}
        try:
            fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                with os.fdopen(fd, "rb") as f:
                    if _private(file, os.fstat(f.fileno())) and _private(
                            os.path.dirname(file), os.stat(os.path.dirname(file))):
                        data = json.loads(f.read(1 << 20))
                        if isinstance(data, dict):
                            got = data
            except (OSError, ValueError) as err:
                log.debug("vmlinux id cache %s: ignored: %s", file, err)
        _loaded[file] = got
    if any(got.get(k) != v for k, v in tag.items()):
        return {}
    ids = got.get("ids")
    if not isinstance(ids, dict):
        return {}
    return {k: v for k, v in ids.items() if isinstance(k, str) and isinstance(v, int) and v > 0}


def _write(file: str, tag: Dict[str, Any], ids: Dict[str, int]) -> None:
    directory = os.path.dirname(file)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        if not _private(directory, os.stat(directory)):
            return
        fd, tmp = tempfile.mkstemp(prefix=".ids-", dir=directory)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({**tag, "ids": ids}, f, sort_keys=True)
            os.replace(tmp, file)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as err:  # a read-only /run or an unprivileged user: the lookup works without it
        log.debug("vmlinux id cache %s: not written: %s", file, err)
        return
    _loaded[file] = {**tag, "ids": ids}


def type_id(name: str, kind: str, btf_path: str, find: Any, *, directory: Optional[str] = None,
            boot_id_path: str = BOOT_ID) -> int:
    """The id of ``name`` of ``kind`` in the BTF at ``btf_path``: remembered from earlier in this boot, else
    ``find(name, kind)`` (0 when absent; misses are not remembered)."""
    tag = _tag(btf_path, boot_id_path)
    if tag is None:
        return int(find(name, kind))
    file = os.path.join(directory or cache_dir(), FILE_NAME)
    ids = _read(file, tag)
    key = f"{kind}:{name}"
    hit = ids.get(key)
    if hit:
        return hit
    tid = int(find(name, kind))
    if tid > 0:
        ids[key] = tid
        _write(file, tag, ids)
    return tid
