"""Perf event array consumer: per-CPU perf buffers for ``bpf_perf_event_output``; touches the kernel.

For each CPU an event ``PERF_TYPE_SOFTWARE / PERF_COUNT_SW_BPF_OUTPUT`` (sample type ``PERF_SAMPLE_RAW``) is
opened through :func:`rawbpf._sys.perf_event_open`, its ring (one metadata page + ``pages`` data pages)
mapped, its fd stored in the map at the CPU's index and enabled. The kernel appends ``PERF_RECORD_SAMPLE``
records (``u32 size`` then the raw bytes, padded so the record stays 8-byte aligned) and, when a buffer was
full, ``PERF_RECORD_LOST`` (``u64 id, u64 lost``): those counts are handed to ``lost(cpu, count)`` so nothing
is dropped silently (the kernel writes a CPU's lost record just before that CPU's next sample that fits, so a
loss shows up once that CPU emits again). ``data_head``/``data_tail`` live in the metadata page; the data area
is not mapped twice, so a record that wraps is copied out in two pieces.

A drain hands the samples to the same ``sink(buffer, runs)`` as :class:`~rawbpf.ringbuf.RingBuffer` (each
sample framed like a ring-buffer record), so decoders and the daemon treat both kinds of rings alike; or to a
per-record ``callback(cpu, payload)``. Closing the PerfBuffer clears the map slots and closes the events.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import select
import struct
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple, Union

from rawbpf import _sys
from rawbpf._fd import FD
from rawbpf._types import (
    PERF_ATTR_FLAG_DISABLED,
    PERF_COUNT_SW_BPF_OUTPUT,
    PERF_FLAG_FD_CLOEXEC,
    PERF_SAMPLE_RAW,
    PERF_TYPE_SOFTWARE,
    PerfEventAttr,
)
from rawbpf.consts import MapType
from rawbpf.errors import ConfigError, RawBPFError, SyscallError
from rawbpf.ringbuf import Run, RunSink

if TYPE_CHECKING:
    from rawbpf.maps import Map

__tier__ = "kernel"

__all__ = ["PerfBuffer", "PERF_RECORD_SAMPLE", "PERF_RECORD_LOST", "parse_records"]

PERF_RECORD_LOST = 2
PERF_RECORD_SAMPLE = 9
PERF_EVENT_IOC_ENABLE = 0x2400
_HEAD_OFF = 1024  # struct perf_event_mmap_page: data_head, data_tail, data_offset, data_size
_HDR = struct.Struct("=IHH")

LostCallback = Callable[[int, int], object]
SampleCallback = Callable[[int, bytes], object]


def parse_records(data: bytes) -> Tuple[List[bytes], int, int]:
    """Split a linear run of perf records into sample payloads and the lost count; pure.

    Returns ``(samples, lost, consumed_bytes)``; stops at a truncated record. Unknown record types are
    skipped.
    """
    samples: List[bytes] = []
    lost = 0
    pos = 0
    n = len(data)
    while pos + 8 <= n:
        rtype, _misc, size = _HDR.unpack_from(data, pos)
        if size < 8 or pos + size > n:
            break
        if rtype == PERF_RECORD_SAMPLE and size >= 12:
            raw = struct.unpack_from("=I", data, pos + 8)[0]
            samples.append(bytes(data[pos + 12:pos + 12 + min(raw, size - 12)]))
        elif rtype == PERF_RECORD_LOST and size >= 24:
            lost += struct.unpack_from("=Q", data, pos + 16)[0]
        pos += size
    return samples, lost, pos


def frame(samples: List[bytes]) -> Tuple[bytes, List[Run]]:
    """Frame payloads like ring-buffer records (8-byte header, 8-byte aligned) with runs of equal lengths."""
    parts: List[bytes] = []
    runs: List[Run] = []
    off = 0
    for s in samples:
        length = len(s)
        stride = (length + 8 + 7) & ~7
        parts.append(struct.pack("=II", length, 0) + s + bytes(stride - 8 - length))
        if runs and runs[-1][1] == length:
            o, ln, c, st = runs[-1]
            runs[-1] = (o, ln, c + 1, st)
        else:
            runs.append((off, length, 1, stride))
        off += stride
    return b"".join(parts), runs


class _CPUBuffer:
    def __init__(self, cpu: int, fd: int, mm: mmap.mmap, size: int) -> None:
        self.cpu = cpu
        self.fd = fd
        self.mm = mm
        self.size = size
        self.page = mmap.PAGESIZE
        self.tail = ctypes.c_uint64.from_buffer(mm, _HEAD_OFF + 8)

    def read(self) -> bytes:
        """Everything between data_tail and data_head, linearised; advances data_tail."""
        head = struct.unpack_from("=Q", self.mm, _HEAD_OFF)[0]
        tail = int(self.tail.value)
        if head == tail:
            return b""
        size = self.size
        start = tail % size
        n = head - tail
        base = self.page
        if start + n <= size:
            data = self.mm[base + start:base + start + n]
        else:
            first = size - start
            data = self.mm[base + start:base + size] + self.mm[base:base + n - first]
        return data

    def commit(self, consumed: int) -> None:
        self.tail.value = int(self.tail.value) + consumed


class PerfBuffer(FD):
    """Reads a ``BPF_MAP_TYPE_PERF_EVENT_ARRAY`` map's per-CPU buffers. The owned fd is an epoll fd.

    ``source`` is a Map (not closed here) or the path of a pinned map (closed here). ``pages`` (a power of
    two) is each CPU's buffer size in pages.
    """

    kind = "perf buffer"

    def __init__(self, source: Union[Map, str, os.PathLike], *, sink: Optional[RunSink] = None,
                 callback: Optional[SampleCallback] = None, lost: Optional[LostCallback] = None,
                 pages: int = 8, name: str = "") -> None:
        if (sink is None) == (callback is None):
            raise RawBPFError("perf buffer: give exactly one of sink or callback")
        if pages <= 0 or pages & (pages - 1):
            raise ConfigError(f"perf buffer: pages {pages} must be a power of two")
        self._sink = sink
        self._callback = callback
        self._lost_cb = lost
        self._pages = pages
        self._bufs: Dict[int, _CPUBuffer] = {}
        self._epoll: Optional[select.epoll] = None
        self._owns_map = False
        self._map: Optional[Map] = None
        if isinstance(source, (str, os.PathLike)):
            from rawbpf.maps import Map as _Map

            self.name = name or os.path.basename(os.fspath(source))
            self._map = _Map.from_pin(os.fspath(source))
            self._owns_map = True
        else:
            self._map = source
            self.name = name or getattr(source, "name", "") or "perf"
        #: samples delivered and samples the kernel reported lost (cumulative)
        self.records = 0
        self.lost = 0
        try:
            self._setup()
        except BaseException:
            self._release()
            raise
        assert self._epoll is not None
        super().__init__(self._epoll.fileno(), owned=False)

    def _setup(self) -> None:
        m = self._map
        assert m is not None
        if int(m.type) != MapType.PERF_EVENT_ARRAY:
            raise RawBPFError(f"perf buffer '{self.name}': map type is {MapType(int(m.type)).name.lower()}, "
                              "not perf_event_array")
        from rawbpf.maps import possible_cpus

        self._epoll = select.epoll()
        page = mmap.PAGESIZE
        ncpu = min(possible_cpus(), int(m.max_entries))
        for cpu in range(ncpu):
            attr = PerfEventAttr(type=PERF_TYPE_SOFTWARE, config=PERF_COUNT_SW_BPF_OUTPUT, sample_period=1,
                                 sample_type=PERF_SAMPLE_RAW, wakeup_events=1, flags=PERF_ATTR_FLAG_DISABLED)
            attr.size = ctypes.sizeof(PerfEventAttr)
            try:
                fd = _sys.perf_event_open(attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC,
                                          f"perf buffer '{self.name}': open cpu {cpu}")
            except SyscallError as err:
                if err.errno == errno.ENODEV:  # the CPU is offline
                    continue
                raise
            try:
                mm = mmap.mmap(fd, page * (1 + self._pages), mmap.MAP_SHARED,
                               mmap.PROT_READ | mmap.PROT_WRITE)
            except OSError as err:
                _sys.close(fd)
                why = os.strerror(err.errno or 0).lower()
                raise RawBPFError(f"perf buffer '{self.name}': mmap cpu {cpu}: {why}") from err
            buf = _CPUBuffer(cpu, fd, mm, page * self._pages)
            self._bufs[cpu] = buf
            m.update(cpu, struct.pack("=I", fd))
            _sys.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0, f"perf buffer '{self.name}': enable cpu {cpu}")
            self._epoll.register(fd, select.EPOLLIN)
        if not self._bufs:
            raise RawBPFError(f"perf buffer '{self.name}': no online CPU")

    def fds(self) -> List[int]:
        """The per-CPU perf event fds (for an outside epoll)."""
        return [b.fd for b in self._bufs.values()]

    def drain(self) -> int:
        """Consume every CPU's buffer now; returns samples delivered (lost counts go to ``lost``)."""
        total = 0
        for cpu, b in self._bufs.items():
            data = b.read()
            if not data:
                continue
            samples, lost, used = parse_records(data)
            b.commit(used)
            if lost:
                self.lost += lost
                if self._lost_cb is not None:
                    self._lost_cb(cpu, lost)
            if not samples:
                continue
            total += len(samples)
            if self._sink is not None:
                buf, runs = frame(samples)
                self._sink(buf, runs)
            else:
                cb = self._callback
                assert cb is not None
                for s in samples:
                    cb(cpu, s)
        self.records += total
        return total

    def poll(self, timeout_ms: int) -> int:
        """Drain; if nothing was there, wait up to ``timeout_ms`` and drain again."""
        n = self.drain()
        if n or self._epoll is None:
            return n
        try:
            self._epoll.poll(timeout_ms / 1000.0 if timeout_ms >= 0 else -1)
        except InterruptedError:
            pass
        return self.drain()

    def _release(self) -> None:
        for cpu, b in self._bufs.items():
            if self._map is not None and not self._map.closed:
                try:
                    self._map.delete(cpu)
                except RawBPFError:
                    pass
            b.tail = None  # type: ignore[assignment]
            try:
                b.mm.close()
            except BufferError:
                pass
            _sys.close(b.fd)
        self._bufs.clear()
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        if self._map is not None and self._owns_map:
            self._map.close()
        self._map = None

    def close(self) -> None:
        """Clear the map slots, unmap and close every per-CPU event (and the map if opened from a pin)."""
        super().close()
        self._release()
