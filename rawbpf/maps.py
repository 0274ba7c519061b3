"""BPF maps: create, look up, update, delete, iterate, batch, freeze, pin, mmap. Touches the kernel.

A :class:`Map` owns one map fd; closing it releases the map unless it is pinned or used by a loaded program.
Keys and values are ``bytes``; an ``int`` is accepted wherever a key or value goes and is packed little-endian
to the map's key/value size. :meth:`Map.view` gives a dict-like view that packs and unpacks with
:mod:`struct` formats. Per-CPU maps hold one value per *possible* CPU, each rounded up to 8 bytes.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import mmap as _mmap
import os
import re
import struct
from dataclasses import dataclass
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from rawbpf import _sys, bpffs
from rawbpf._fd import FD
from rawbpf._types import MapBatchAttr, MapCreateAttr, MapElemAttr, MapInfoStruct, ptr
from rawbpf.consts import (
    BPF_ANY,
    BPF_F_MMAPABLE,
    BPF_F_NO_PREALLOC,
    BPF_F_NUMA_NODE,
    BPF_F_RDONLY_PROG,
    Cmd,
    MapType,
)
from rawbpf.errors import ENOTSUPP, ConfigError, RawBPFError, SyscallError

__tier__ = "kernel"


KeyLike = Union[bytes, bytearray, memoryview, int]
ValueLike = Union[bytes, bytearray, memoryview, int, FD, Sequence[Union[bytes, int]]]

_NAME_OK = re.compile(r"[^A-Za-z0-9_.]")

# map types whose user-space API has no key (push/pop/peek) and must be created with key_size 0
_KEYLESS = (MapType.QUEUE, MapType.STACK, MapType.BLOOM_FILTER)
_FD_VALUE = (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS, MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY)


def possible_cpus(path: str = "/sys/devices/system/cpu/possible") -> int:
    """Number of possible CPUs (the highest possible CPU + 1), from e.g. ``0-3`` or ``0,2-5``."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError as err:
        raise RawBPFError(f"read {path}: {err.strerror.lower() if err.strerror else err}") from err
    return parse_cpu_list(text)


def parse_cpu_list(text: str) -> int:
    """Highest CPU + 1 of a kernel CPU list such as ``0-3,8``; pure."""
    highest = -1
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        try:
            hi = int(part.split("-")[-1])
        except ValueError:
            raise RawBPFError(f"parse cpu list {text!r}: bad range {part!r}") from None
        highest = max(highest, hi)
    if highest < 0:
        raise RawBPFError(f"parse cpu list {text!r}: empty")
    return highest + 1


def sanitize_name(name: str) -> str:
    """A name the kernel accepts for maps and programs: [A-Za-z0-9_.], at most 15 bytes."""
    return _NAME_OK.sub("_", name)[:15]


def _round8(n: int) -> int:
    return (n + 7) & ~7


@dataclass(frozen=True)
class MapInfo:
    """What BPF_OBJ_GET_INFO_BY_FD says about a map."""

    id: int
    type: int
    name: str
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    btf_id: int
    btf_key_type_id: int
    btf_value_type_id: int
    btf_vmlinux_value_type_id: int
    map_extra: int

    @property
    def type_name(self) -> str:
        try:
            return MapType(self.type).name.lower()
        except ValueError:
            return f"type{self.type}"


def _info(fd: int, what: str) -> MapInfo:
    raw = MapInfoStruct()
    _sys.obj_get_info(fd, raw, what)
    return MapInfo(
        id=raw.id, type=raw.type, name=raw.name.decode(errors="replace"), key_size=raw.key_size,
        value_size=raw.value_size, max_entries=raw.max_entries, flags=raw.map_flags, btf_id=raw.btf_id,
        btf_key_type_id=raw.btf_key_type_id, btf_value_type_id=raw.btf_value_type_id,
        btf_vmlinux_value_type_id=raw.btf_vmlinux_value_type_id, map_extra=raw.map_extra,
    )


_KEYED = (MapType.HASH, MapType.ARRAY, MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_HASH,
          MapType.LRU_PERCPU_HASH, MapType.LPM_TRIE, MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY,
          MapType.STACK_TRACE, MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS)
_INDEXED = (MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY,
            MapType.ARRAY_OF_MAPS, MapType.STACK_TRACE)


def _check_create(label: str, map_type: MapType, key_size: int, value_size: int, max_entries: int,
                  flags: int, inner_map_fd: int) -> None:
    """Refuse parameters the kernel would reject with a bare EINVAL, saying which and why."""
    for field, v in (("key_size", key_size), ("value_size", value_size), ("max_entries", max_entries)):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 1 << 32:
            raise ConfigError(f"create {label}: {field} must be an integer in 0..2^32-1, got {v!r}")
    tname = map_type.name.lower()
    page = _mmap.PAGESIZE
    if map_type == MapType.RINGBUF:
        if key_size or value_size:
            raise ConfigError(f"create {label}: ringbuf maps need key_size 0 and value_size 0")
        if max_entries < page or max_entries & (max_entries - 1):
            raise ConfigError(f"create {label}: ringbuf size {max_entries} must be a power of 2 "
                              f"and at least the page size ({page})")
        return
    if map_type in _KEYLESS and key_size != 0:
        raise ConfigError(f"create {label}: {tname} maps have no key (key_size must be 0)")
    if map_type in _KEYED and key_size == 0:
        raise ConfigError(f"create {label}: key_size must be > 0 for {tname} maps")
    if map_type in _INDEXED and key_size != 4:
        raise ConfigError(f"create {label}: {tname} keys are 4-byte indexes (key_size must be 4)")
    if map_type == MapType.LPM_TRIE and key_size <= 4:
        raise ConfigError(f"create {label}: lpm_trie keys are a 4-byte prefix length plus data "
                          "(key_size > 4)")
    if (map_type in _KEYED or map_type in _KEYLESS) and value_size == 0:
        raise ConfigError(f"create {label}: value_size must be > 0 for {tname} maps")
    if map_type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
        if inner_map_fd < 0:
            raise ConfigError(f"create {label}: {tname} needs inner_map_fd (a template map)")
        if value_size != 4:
            raise ConfigError(f"create {label}: map-in-map values are 4-byte fds (value_size must be 4)")
    if map_type in (MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY) and value_size != 4:
        raise ConfigError(f"create {label}: {tname} values are 4-byte fds (value_size must be 4)")
    if map_type == MapType.STACK_TRACE and value_size % 8:
        raise ConfigError(f"create {label}: stack_trace values are arrays of u64 (value_size % 8 == 0)")
    if max_entries == 0 and (map_type in _KEYED or map_type in _KEYLESS):
        raise ConfigError(f"create {label}: max_entries must be > 0")


class Map(FD):
    """One BPF map (owns its fd). Closing it releases the map unless pinned or referenced by a program."""

    kind = "map"

    def __init__(self, fd: int, *, owned: bool = True, info: Optional[MapInfo] = None) -> None:
        super().__init__(fd, owned=owned)
        if info is None:
            try:
                info = _info(fd, f"inspect map fd {fd}")
            except BaseException:
                self.close()
                raise
        self._info = info
        self.type: MapType = _map_type(info.type)
        self.key_size = info.key_size
        self.value_size = info.value_size
        self.max_entries = info.max_entries
        self.flags = info.flags
        self.name = info.name
        self._id = info.id
        self._per_cpu = self.type.per_cpu
        self._ncpus = possible_cpus() if self._per_cpu else 1
        self._label = f"map '{self.name}'" if self.name else f"map fd {fd}"
        self._stride = _round8(self.value_size) if self._per_cpu else self.value_size
        self._bufsize = self._stride * self._ncpus

    # --- construction ---------------------------------------------------------------------------

    @classmethod
    def create(cls, map_type: int, key_size: int, value_size: int, max_entries: int, *, name: str = "",
               flags: int = 0, inner_map_fd: int = -1, numa_node: Optional[int] = None, btf_fd: int = -1,
               btf_key_type_id: int = 0, btf_value_type_id: int = 0, btf_vmlinux_value_type_id: int = 0,
               map_extra: int = 0) -> Map:
        """BPF_MAP_CREATE. LPM tries get BPF_F_NO_PREALLOC (the kernel requires it); a perf event array with
        max_entries 0 gets one slot per possible CPU."""
        label = f"map '{name}'" if name else "map"
        try:
            mtype = MapType(map_type)
        except ValueError:
            raise ConfigError(f"create {label}: unknown map type {map_type}") from None
        if mtype == MapType.LPM_TRIE:
            flags |= BPF_F_NO_PREALLOC
        if mtype == MapType.PERF_EVENT_ARRAY and max_entries == 0:
            max_entries = possible_cpus()
        _check_create(label, mtype, key_size, value_size, max_entries, flags, inner_map_fd)
        attr = MapCreateAttr(
            map_type=int(mtype), key_size=key_size, value_size=value_size, max_entries=max_entries,
            map_flags=flags, map_name=sanitize_name(name).encode(),
            btf_key_type_id=btf_key_type_id, btf_value_type_id=btf_value_type_id,
            btf_vmlinux_value_type_id=btf_vmlinux_value_type_id, map_extra=map_extra,
        )
        if inner_map_fd >= 0:
            attr.inner_map_fd = inner_map_fd
        if numa_node is not None:
            attr.numa_node = numa_node
            attr.map_flags |= BPF_F_NUMA_NODE
        if btf_fd >= 0:
            attr.btf_fd = btf_fd
        hint = (f"the kernel refused {mtype.name.lower()} with key_size={key_size} value_size={value_size} "
                f"max_entries={max_entries} flags={attr.map_flags:#x}")
        fd = _sys.bpf(Cmd.MAP_CREATE, attr, f"create {label}", hints={
            _errno.EINVAL: hint,
            _errno.E2BIG: "key, value or max_entries too large for this map type",
            _errno.ENOMEM: "not enough memory (or RLIMIT_MEMLOCK/memcg limit) for this map",
        })
        info = MapInfo(id=0, type=int(mtype), name=sanitize_name(name), key_size=key_size,
                       value_size=value_size, max_entries=max_entries, flags=attr.map_flags, btf_id=0,
                       btf_key_type_id=btf_key_type_id, btf_value_type_id=btf_value_type_id,
                       btf_vmlinux_value_type_id=btf_vmlinux_value_type_id, map_extra=map_extra)
        return cls(fd, info=info)

    @classmethod
    def from_fd(cls, fd: int, owned: bool = True) -> Map:
        """Wrap an existing map fd (``owned``: close it with the Map). A non-map fd is refused, left open."""
        kind = _sys.fd_kind(fd)
        if kind != "map":
            raise ConfigError(f"wrap fd {fd} as a map: not a map (a {kind or 'non-bpf'} object)")
        return cls(fd, owned=owned)

    @classmethod
    def from_pin(cls, path: Union[str, os.PathLike[str]], *, flags: int = 0) -> Map:
        """Open the map pinned at ``path``."""
        what = f"open map pinned at {os.fspath(path)}"
        return cls._wrap_new(bpffs.get(path, what, flags), what)

    @classmethod
    def from_id(cls, map_id: int) -> Map:
        """Open a map by its kernel id."""
        what = f"open map id {map_id}"
        return cls._wrap_new(_sys.get_fd_by_id(Cmd.MAP_GET_FD_BY_ID, map_id, what), what)

    @classmethod
    def _wrap_new(cls, fd: int, what: str) -> Map:
        """Own a freshly opened fd: check it is a map (closing it if not) and read its info."""
        kind = _sys.fd_kind(fd)
        if kind != "map":
            _sys.close(fd)
            raise ConfigError(f"{what}: not a map (a {kind or 'non-bpf'} object)")
        try:
            info = _info(fd, what)
        except BaseException:
            _sys.close(fd)
            raise
        return cls(fd, info=info)

    # --- description ----------------------------------------------------------------------------

    @property
    def label(self) -> str:
        """How messages name this map."""
        return self._label

    def info(self) -> MapInfo:
        """Fresh BPF_OBJ_GET_INFO_BY_FD (id, BTF ids, flags as the kernel sees them)."""
        info = _info(self.fd, f"inspect {self.label}")
        self._id = info.id
        return info

    @property
    def id(self) -> int:
        """The kernel id (queried once)."""
        if not self._id:
            self._id = self.info().id
        return self._id

    @property
    def per_cpu(self) -> bool:
        return self._per_cpu

    @property
    def ncpus(self) -> int:
        """Values per key: the number of possible CPUs for per-CPU maps, else 1."""
        return self._ncpus

    @property
    def value_stride(self) -> int:
        """Bytes per CPU in a per-CPU value buffer (value_size rounded up to 8)."""
        return self._stride

    @property
    def buffer_size(self) -> int:
        """Bytes of one value as user space reads it (all CPUs for per-CPU maps)."""
        return self._bufsize

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"fd={self._fd}"
        return (f"<Map {self.name!r} {self.type.name.lower()} key={self.key_size} value={self.value_size} "
                f"max={self.max_entries} {state}>")

    # --- packing --------------------------------------------------------------------------------

    def _key(self, key: Optional[KeyLike]) -> Optional[ctypes.Array]:
        if key is None:
            return None
        data = _pack(key, self.key_size, f"{self.label}: key")
        return ctypes.create_string_buffer(data, self.key_size or 1)

    def _value_bytes(self, value: ValueLike) -> bytes:
        """Pack a user value: bytes, int, an fd owner such as a Map or Program (its fd: map-in-map, prog
        array), or for per-CPU maps a sequence (one per CPU)."""
        if isinstance(value, FD):
            value = value.fd
        if self._per_cpu:
            if isinstance(value, (list, tuple)):
                if len(value) != self._ncpus:
                    raise ConfigError(f"{self.label}: per-cpu value needs {self._ncpus} entries, "
                                      f"got {len(value)}")
                parts = [_pack(v, self.value_size, f"{self.label}: value").ljust(self.value_stride, b"\0")
                         for v in value]
                return b"".join(parts)
            if isinstance(value, (bytes, bytearray, memoryview)) and len(value) == self.buffer_size \
                    and self.buffer_size != self.value_size:
                return bytes(value)
            one = _pack(value, self.value_size, f"{self.label}: value")
            return one.ljust(self.value_stride, b"\0") * self._ncpus
        if isinstance(value, (list, tuple)):
            raise ConfigError(f"{self.label}: a list of values is only for per-cpu maps")
        return _pack(value, self.value_size, f"{self.label}: value")

    # --- element operations ---------------------------------------------------------------------

    def lookup(self, key: Optional[KeyLike]) -> Optional[bytes]:
        """The value at ``key`` (all CPUs' values concatenated for per-CPU maps), or None if absent."""
        kbuf = self._key(key)
        vbuf = ctypes.create_string_buffer(max(self.buffer_size, 1))
        attr = MapElemAttr(map_fd=self.fd, key=ptr(kbuf), value=ptr(vbuf))
        try:
            _sys.bpf(Cmd.MAP_LOOKUP_ELEM, attr, f"look up {self.label}", hints=_ELEM_HINTS)
        except SyscallError as err:
            if err.errno == _errno.ENOENT:
                return None
            raise
        return vbuf.raw[: self.buffer_size]

    def lookup_percpu(self, key: KeyLike) -> Optional[List[bytes]]:
        """One value per possible CPU (each ``value_size`` bytes), or None if absent."""
        if not self._per_cpu:
            raise ConfigError(f"{self.label}: lookup_percpu needs a per-cpu map, "
                              f"this is {self.type.name.lower()}")
        raw = self.lookup(key)
        if raw is None:
            return None
        s = self.value_stride
        return [raw[i * s: i * s + self.value_size] for i in range(self._ncpus)]

    def lookup_int(self, key: KeyLike, *, signed: bool = False) -> Optional[int]:
        """The value as a little-endian integer (summed over CPUs for per-CPU maps), or None."""
        if self._per_cpu:
            vals = self.lookup_percpu(key)
            if vals is None:
                return None
            return sum(int.from_bytes(v, "little", signed=signed) for v in vals)
        raw = self.lookup(key)
        return None if raw is None else int.from_bytes(raw, "little", signed=signed)

    def lookup_struct(self, key: KeyLike, fmt: str) -> Optional[Tuple[object, ...]]:
        """The value unpacked with the struct format ``fmt`` (which must cover value_size), or None."""
        raw = self.lookup(key)
        if raw is None:
            return None
        return _unpack(fmt, raw[: self.value_size], f"{self.label}: value")

    def update(self, key: Optional[KeyLike], value: ValueLike, flags: int = BPF_ANY) -> None:
        """Set ``key`` to ``value`` (BPF_ANY / BPF_NOEXIST / BPF_EXIST / BPF_F_LOCK)."""
        kbuf = self._key(key)
        data = self._value_bytes(value)
        vbuf = ctypes.create_string_buffer(data, max(len(data), 1))
        attr = MapElemAttr(map_fd=self.fd, key=ptr(kbuf), value=ptr(vbuf), flags=flags)
        _sys.bpf(Cmd.MAP_UPDATE_ELEM, attr, f"update {self.label}", hints=_UPDATE_HINTS)

    def __setitem__(self, key: KeyLike, value: ValueLike) -> None:
        self.update(key, value)

    def __getitem__(self, key: KeyLike) -> bytes:
        v = self.lookup(key)
        if v is None:
            raise KeyError(key)
        return v

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, (bytes, bytearray, memoryview, int)):
            return False
        return self.lookup(key) is not None

    def delete(self, key: KeyLike) -> bool:
        """Remove ``key``; False if it was not there."""
        kbuf = self._key(key)
        attr = MapElemAttr(map_fd=self.fd, key=ptr(kbuf))
        try:
            _sys.bpf(Cmd.MAP_DELETE_ELEM, attr, f"delete from {self.label}", hints=_ELEM_HINTS)
        except SyscallError as err:
            if err.errno == _errno.ENOENT:
                return False
            raise
        return True

    def next_key(self, key: Optional[KeyLike]) -> Optional[bytes]:
        """The key after ``key`` (the first key for None), or None at the end."""
        if self.key_size == 0:
            raise ConfigError(f"{self._label}: {self.type.name.lower()} maps have no keys to iterate")
        kbuf = self._key(key)
        nbuf = ctypes.create_string_buffer(max(self.key_size, 1))
        attr = MapElemAttr(map_fd=self.fd, key=ptr(kbuf), value=ptr(nbuf))
        try:
            _sys.bpf(Cmd.MAP_GET_NEXT_KEY, attr, f"iterate {self.label}", hints=_ELEM_HINTS)
        except SyscallError as err:
            if err.errno == _errno.ENOENT:
                return None
            raise
        return nbuf.raw[: self.key_size]

    def keys(self) -> Iterator[bytes]:
        """Every key, by BPF_MAP_GET_NEXT_KEY (a key deleted meanwhile may restart a hash walk)."""
        key: Optional[bytes] = None
        seen = 0
        limit = self.max_entries if self.max_entries else 1 << 32
        while True:
            key = self.next_key(key)
            if key is None:
                return
            yield key
            seen += 1
            if seen > limit * 2:  # a map changing under us must not make this loop forever
                return

    def __iter__(self) -> Iterator[bytes]:
        return self.keys()

    def items(self) -> Iterator[Tuple[bytes, bytes]]:
        """(key, value) pairs; keys that vanish between the walk and the lookup are skipped."""
        for key in self.keys():
            value = self.lookup(key)
            if value is not None:
                yield key, value

    def values(self) -> Iterator[bytes]:
        for _, v in self.items():
            yield v

    def __len__(self) -> int:
        return sum(1 for _ in self.keys())

    def clear(self) -> int:
        """Delete every key (hash-like maps); returns how many were deleted."""
        n = 0
        while True:
            key = self.next_key(None)
            if key is None or not self.delete(key):
                return n
            n += 1

    # --- batch ----------------------------------------------------------------------------------

    def lookup_batch(self, batch_size: int = 256, *, delete: bool = False) -> List[Tuple[bytes, bytes]]:
        """Every (key, value) by BPF_MAP_LOOKUP_BATCH (or LOOKUP_AND_DELETE_BATCH with ``delete``).

        Values of per-CPU maps are all CPUs' values concatenated. A hash bucket larger than the batch
        (ENOSPC) doubles the batch and retries. Map types without batch support raise SyscallError."""
        if batch_size <= 0:
            raise ConfigError(f"{self.label}: batch size must be > 0")
        cmd = Cmd.MAP_LOOKUP_AND_DELETE_BATCH if delete else Cmd.MAP_LOOKUP_BATCH
        token_size = max(self.key_size, 8)
        in_tok = ctypes.create_string_buffer(token_size)
        out_tok = ctypes.create_string_buffer(token_size)
        keys = ctypes.create_string_buffer(self.key_size * batch_size)
        vals = ctypes.create_string_buffer(self.buffer_size * batch_size)
        out: List[Tuple[bytes, bytes]] = []
        first = True
        while True:
            attr = MapBatchAttr(in_batch=0 if first else ptr(in_tok), out_batch=ptr(out_tok), keys=ptr(keys),
                                values=ptr(vals), count=batch_size, map_fd=self.fd)
            done = False
            try:
                _sys.bpf(cmd, attr, f"batch lookup {self.label}", hints=_BATCH_HINTS)
            except SyscallError as err:
                if err.errno == _errno.ENOSPC and int(attr.count) == 0 and batch_size < (1 << 20):
                    batch_size *= 2
                    keys = ctypes.create_string_buffer(self.key_size * batch_size)
                    vals = ctypes.create_string_buffer(self.buffer_size * batch_size)
                    continue
                if err.errno != _errno.ENOENT:
                    raise
                done = True
            n = int(attr.count)
            kraw, vraw = keys.raw, vals.raw
            for i in range(n):
                out.append((kraw[i * self.key_size:(i + 1) * self.key_size],
                            vraw[i * self.buffer_size:(i + 1) * self.buffer_size]))
            if done:
                return out
            ctypes.memmove(in_tok, out_tok, token_size)
            first = False

    def update_batch(self, pairs: Mapping[KeyLike, ValueLike], flags: int = BPF_ANY) -> int:
        """Set many keys with one BPF_MAP_UPDATE_BATCH; returns how many the kernel applied."""
        if not pairs:
            return 0
        kdata = b"".join(_pack(k, self.key_size, f"{self.label}: key") for k in pairs)
        vdata = b"".join(self._value_bytes(v) for v in pairs.values())
        kbuf = ctypes.create_string_buffer(kdata, len(kdata))
        vbuf = ctypes.create_string_buffer(vdata, len(vdata))
        attr = MapBatchAttr(keys=ptr(kbuf), values=ptr(vbuf), count=len(pairs), map_fd=self.fd,
                            elem_flags=flags)
        _sys.bpf(Cmd.MAP_UPDATE_BATCH, attr, f"batch update {self.label}", hints=_BATCH_HINTS)
        return int(attr.count)

    def delete_batch(self, keys: Sequence[KeyLike]) -> int:
        """Delete many keys with one BPF_MAP_DELETE_BATCH; returns how many were deleted."""
        if not keys:
            return 0
        kdata = b"".join(_pack(k, self.key_size, f"{self.label}: key") for k in keys)
        kbuf = ctypes.create_string_buffer(kdata, len(kdata))
        attr = MapBatchAttr(keys=ptr(kbuf), count=len(keys), map_fd=self.fd)
        try:
            _sys.bpf(Cmd.MAP_DELETE_BATCH, attr, f"batch delete {self.label}", hints=_BATCH_HINTS)
        except SyscallError as err:
            if err.errno != _errno.ENOENT:
                raise
        return int(attr.count)

    # --- queue / stack / bloom filter -----------------------------------------------------------

    def push(self, value: ValueLike, flags: int = BPF_ANY) -> None:
        """Queue/stack: add ``value`` (BPF_EXIST overwrites the oldest when full); bloom filter: add."""
        self._need_keyless("push")
        self.update(None, value, flags)

    def lookup_and_delete(self, key: KeyLike) -> Optional[bytes]:
        """Hash-like maps (Linux 5.14+): remove ``key`` and return its value in one step (None if absent)."""
        return self.lookup_and_delete_each([key])[0]

    def lookup_and_delete_each(self, keys: Sequence[KeyLike]) -> List[Optional[bytes]]:
        """:meth:`lookup_and_delete` of each key in turn (one atomic removal per key, one system call each,
        the buffers made once): the value each key held when it went, None for a key already gone."""
        kbuf = ctypes.create_string_buffer(max(self.key_size, 1))
        vbuf = ctypes.create_string_buffer(max(self._bufsize, 1))
        attr = MapElemAttr(map_fd=self.fd, key=ptr(kbuf), value=ptr(vbuf))
        what, size, bufsize, label = f"look up and delete in {self._label}", self.key_size, self._bufsize, \
            f"{self.label}: key"
        out: List[Optional[bytes]] = []
        for key in keys:
            data = key if isinstance(key, bytes) and len(key) == size else _pack(key, size, label)
            ctypes.memmove(kbuf, data, size)
            try:
                _sys.bpf(Cmd.MAP_LOOKUP_AND_DELETE_ELEM, attr, what, hints=_ELEM_HINTS)
            except SyscallError as err:
                if err.errno != _errno.ENOENT:
                    raise
                out.append(None)
                continue
            out.append(vbuf.raw[:bufsize])
        return out

    def pop(self) -> Optional[bytes]:
        """Queue/stack: remove and return the next value, or None if empty."""
        self._need_keyless("pop")
        vbuf = ctypes.create_string_buffer(self.value_size)
        attr = MapElemAttr(map_fd=self.fd, value=ptr(vbuf))
        try:
            _sys.bpf(Cmd.MAP_LOOKUP_AND_DELETE_ELEM, attr, f"pop from {self.label}", hints=_ELEM_HINTS)
        except SyscallError as err:
            if err.errno == _errno.ENOENT:
                return None
            raise
        return vbuf.raw

    def peek(self) -> Optional[bytes]:
        """Queue/stack: the next value without removing it, or None if empty."""
        self._need_keyless("peek")
        return self.lookup(None)

    def contains(self, value: ValueLike) -> bool:
        """Bloom filter: True if ``value`` may be present (false positives possible, no false negatives)."""
        if self.type != MapType.BLOOM_FILTER:
            raise ConfigError(f"{self.label}: contains() is for bloom filters, "
                              f"this is {self.type.name.lower()}")
        data = self._value_bytes(value)
        vbuf = ctypes.create_string_buffer(data, len(data))
        attr = MapElemAttr(map_fd=self.fd, value=ptr(vbuf))
        try:
            _sys.bpf(Cmd.MAP_LOOKUP_ELEM, attr, f"look up {self.label}", hints=_ELEM_HINTS)
        except SyscallError as err:
            if err.errno == _errno.ENOENT:
                return False
            raise
        return True

    def _need_keyless(self, op: str) -> None:
        if self.type not in _KEYLESS:
            raise ConfigError(f"{self.label}: {op}() is for queue, stack and bloom filter maps, "
                              f"this is {self.type.name.lower()}")

    # --- whole-map operations -------------------------------------------------------------------

    def freeze(self) -> None:
        """BPF_MAP_FREEZE: user space can no longer write the map (programs still can unless RDONLY_PROG)."""
        attr = MapElemAttr(map_fd=self.fd)
        _sys.bpf(Cmd.MAP_FREEZE, attr, f"freeze {self.label}", hints={
            _errno.EBUSY: "already frozen, or writably mmap'd",
        })

    def pin(self, path: Union[str, os.PathLike[str]]) -> None:
        """Pin at ``path`` on bpffs (the map outlives this process until unpinned)."""
        bpffs.pin(self.fd, path, f"pin {self.label} at {os.fspath(path)}")

    def mmap(self, *, writable: bool = True) -> _mmap.mmap:
        """Map a BPF_F_MMAPABLE array's values into memory (caller closes the mmap)."""
        if not self.flags & BPF_F_MMAPABLE:
            raise ConfigError(f"mmap {self.label}: created without BPF_F_MMAPABLE")
        size = self.value_stride * self.max_entries
        size = (size + _mmap.PAGESIZE - 1) // _mmap.PAGESIZE * _mmap.PAGESIZE
        prot = _mmap.PROT_READ | (_mmap.PROT_WRITE if writable and not self.flags & BPF_F_RDONLY_PROG else 0)
        try:
            return _mmap.mmap(self.fd, size, _mmap.MAP_SHARED, prot)
        except OSError as err:
            raise SyscallError(f"mmap {self.label}", err.errno or _errno.EINVAL,
                               "frozen maps can only be mapped read-only" if err.errno == _errno.EPERM
                               else "") from err

    def view(self, value_fmt: str, key_fmt: Optional[str] = None) -> MapView:
        """A dict-like view packing values (and keys, if ``key_fmt``) with struct formats."""
        return MapView(self, value_fmt, key_fmt)


class MapView:
    """Dict-like access to a :class:`Map` through struct formats.

    ``m.view("<IQ")[3] = (1, 2)``; values unpack to tuples (a single-field format to the bare value); per-CPU
    maps give one item per CPU. Keys are ints/bytes, or tuples when ``key_fmt`` is given.
    """

    def __init__(self, m: Map, value_fmt: str, key_fmt: Optional[str] = None) -> None:
        self.map = m
        self.value_fmt = value_fmt
        self.key_fmt = key_fmt
        if struct.calcsize(value_fmt) != m.value_size:
            raise ConfigError(f"{m.label}: value format {value_fmt!r} is {struct.calcsize(value_fmt)} bytes, "
                              f"values are {m.value_size}")
        if key_fmt is not None and struct.calcsize(key_fmt) != m.key_size:
            raise ConfigError(f"{m.label}: key format {key_fmt!r} is {struct.calcsize(key_fmt)} bytes, "
                              f"keys are {m.key_size}")

    def _k(self, key: object) -> KeyLike:
        if self.key_fmt is None:
            return key  # type: ignore[return-value]
        parts = key if isinstance(key, tuple) else (key,)
        return struct.pack(self.key_fmt, *parts)

    def _kout(self, raw: bytes) -> object:
        if self.key_fmt is None:
            return raw
        t = struct.unpack(self.key_fmt, raw)
        return t[0] if len(t) == 1 else t

    def _vin(self, value: object) -> bytes:
        parts = value if isinstance(value, tuple) else (value,)
        try:
            return struct.pack(self.value_fmt, *parts)
        except struct.error as err:
            raise ConfigError(f"{self.map.label}: cannot pack {value!r} "
                              f"as {self.value_fmt!r}: {err}") from None

    def _vout(self, raw: bytes) -> object:
        t = struct.unpack(self.value_fmt, raw)
        return t[0] if len(t) == 1 else t

    def get(self, key: object, default: object = None) -> object:
        m = self.map
        raw = m.lookup(self._k(key))
        if raw is None:
            return default
        if m.per_cpu:
            s = m.value_stride
            return [self._vout(raw[i * s: i * s + m.value_size]) for i in range(m.ncpus)]
        return self._vout(raw)

    def __getitem__(self, key: object) -> object:
        sentinel = object()
        v = self.get(key, sentinel)
        if v is sentinel:
            raise KeyError(key)
        return v

    def __setitem__(self, key: object, value: object) -> None:
        if self.map.per_cpu and isinstance(value, list):
            self.map.update(self._k(key), [self._vin(v) for v in value])
        else:
            self.map.update(self._k(key), self._vin(value))

    def __delitem__(self, key: object) -> None:
        if not self.map.delete(self._k(key)):
            raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return self.map.lookup(self._k(key)) is not None

    def __iter__(self) -> Iterator[object]:
        for k in self.map:
            yield self._kout(k)

    def items(self) -> Iterator[Tuple[object, object]]:
        for k in self.map:
            v = self.get(k if self.key_fmt is None else self._kout(k))
            if v is not None:
                yield self._kout(k), v

    def to_dict(self) -> Dict[object, object]:
        return dict(self.items())


def iter_ids() -> Iterator[int]:
    """Ids of every map in the kernel right now (BPF_MAP_GET_NEXT_ID); maps may vanish while iterating."""
    return _sys.iter_ids(Cmd.MAP_GET_NEXT_ID)


def _map_type(t: int) -> MapType:
    try:
        return MapType(t)
    except ValueError:
        return MapType.UNSPEC


def _pack(v: object, size: int, what: str) -> bytes:
    """bytes of exactly ``size``; ints little-endian (negative ints two's complement)."""
    if isinstance(v, bool):
        v = int(v)
    if isinstance(v, int):
        try:
            return v.to_bytes(size, "little", signed=v < 0)
        except OverflowError:
            raise ConfigError(f"{what} {v} does not fit in {size} bytes") from None
    if isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        if len(b) != size:
            raise ConfigError(f"{what} is {len(b)} bytes, the map wants {size}")
        return b
    raise ConfigError(f"{what} must be bytes or int, not {type(v).__name__}")


def _unpack(fmt: str, raw: bytes, what: str) -> Tuple[object, ...]:
    try:
        return struct.unpack(fmt, raw)
    except struct.error as err:
        raise ConfigError(f"{what}: cannot unpack {len(raw)} bytes as {fmt!r}: {err}") from None


_ELEM_HINTS = {
    _errno.EINVAL: "the operation does not apply to this map type",
    _errno.EOPNOTSUPP: "not supported for this map type from user space",
    ENOTSUPP: "not supported for this map type from user space",
}
_UPDATE_HINTS = {
    **_ELEM_HINTS,
    _errno.EEXIST: "key exists (BPF_NOEXIST)",
    _errno.ENOENT: "no such key (BPF_EXIST)",
    _errno.E2BIG: "the map is full",
    _errno.EPERM: "the map is frozen or read-only for user space",
    _errno.EBADF: "the value is not a valid fd for this map",
}
_BATCH_HINTS = {
    _errno.EINVAL: "batch operations are not supported for this map type",
    ENOTSUPP: "batch operations are not supported for this map type",
    _errno.ENOSPC: "a bucket holds more entries than the batch size",
}
