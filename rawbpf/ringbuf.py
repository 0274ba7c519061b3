"""BPF ring-buffer consumer: a pure record walker plus an mmap/epoll reader that touches the kernel.

Layout of a ``BPF_MAP_TYPE_RINGBUF`` map as user space sees it (``kernel/bpf/ringbuf.c``):

* offset 0, one page, read-write: the consumer position (u64), advanced by the consumer;
* offset ``PAGE``, read-only: one page holding the producer position (u64), then the data area of
  ``max_entries`` bytes mapped **twice** back to back, so a record that wraps past the end is still
  contiguous.

Every record starts with an 8-byte header: ``u32 len`` whose bit 31 (BUSY) says the producer has reserved but
not yet committed it and bit 30 (DISCARD) says it was thrown away, then ``u32`` page offset (kernel use). A
record occupies ``round_up(len + 8, 8)`` bytes. The consumer stops at the first BUSY record (records are
committed in any order but consumed in reservation order), skips DISCARD records and publishes its position so
the producer can reuse the space.

Speed: the walker (:func:`walk`) finds *runs* of consecutive records of equal length with one strided compare
of their headers, so decoders can unpack a whole run with a single ``struct.iter_unpack``. By default the sink
decodes in place from the mapping and the consumer position is committed once per drain, after the sink
returns (views handed out are valid only during the call). With ``copy=True`` the consumed span is copied out
and committed *before* decoding, which gives the space back to the producer sooner at the price of a memcpy.

Wakeups: the kernel wakes an epoll waiter only when the producer submits without ``BPF_RB_NO_WAKEUP`` and the
consumer had caught up. Producers that submit with ``BPF_RB_NO_WAKEUP`` (and ``BPF_RB_FORCE_WAKEUP`` above a
fill threshold) are served because :meth:`RingBuffer.poll` always drains once before it sleeps, and sleeps at
most its timeout: a timer-driven drain.

Memory ordering: the producer publishes a record by clearing BUSY with a release store after writing the data;
reading the header before the data is enough on strongly ordered CPUs (x86-64). Python cannot issue acquire
loads: on weakly ordered CPUs (arm64) a record could in theory be read before its data is visible; this reader
is only tested on x86-64.
"""

from __future__ import annotations

import ctypes
import mmap
import operator
import os
import select
import struct
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, Union

from rawbpf._fd import FD
from rawbpf.consts import BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT, BPF_RINGBUF_HDR_SZ, MapType
from rawbpf.errors import RawBPFError

if TYPE_CHECKING:
    from rawbpf.maps import Map

__tier__ = "kernel"

__all__ = ["HDR_SIZE", "Run", "WalkResult", "walk", "RingBuffer", "RunSink", "RecordCallback"]

HDR_SIZE = BPF_RINGBUF_HDR_SZ
_BUSY = BPF_RINGBUF_BUSY_BIT
_DISCARD = BPF_RINGBUF_DISCARD_BIT
_LEN_MASK = ~(_BUSY | _DISCARD) & 0xFFFFFFFF

#: ``(header_offset, length, count, stride)``: ``count`` consecutive records of payload ``length`` whose
#: headers start at ``header_offset`` and every ``stride`` bytes after it; payload ``i`` is at ``header_offset
#: + i * stride + 8``.
Run = Tuple[int, int, int, int]
#: ``(runs, new_consumer_position, discarded_records)``
WalkResult = Tuple[List[Run], int, int]
#: called with ``(buffer, runs)``: ``buffer`` holds the consumed span, ``runs`` index into it (a view of the
#: ring itself unless ``copy=True``: valid only during the call)
RunSink = Callable[[bytes, List[Run]], object]
#: called once per record with a view of its payload (valid only during the call unless ``copy=True``)
RecordCallback = Callable[[memoryview], object]

_PATTERNS: Dict[int, bytes] = {}
_COUNT = operator.itemgetter(2)  # a run's record count


def _pattern(length: int, n: int) -> bytes:
    """``n`` little-endian copies of the u32 ``length`` (cached, grown on demand)."""
    pat = _PATTERNS.get(length)
    if pat is None or len(pat) < 4 * n:
        pat = struct.pack("=I", length) * max(n, 64)
        _PATTERNS[length] = pat
    return pat


def walk(data: memoryview, cons: int, prod: int, limit: int = 1 << 62, *,
         what: str = "ring buffer", relative: bool = False) -> WalkResult:
    """Find the committed records between the consumer and producer positions; pure.

    ``data`` is the data area mapped twice (``2 * size`` bytes; ``size`` a power of two), as the kernel maps
    it; positions are the kernel's free-running byte counters. Stops at the first BUSY record, at ``prod``, or
    after ``limit`` records. DISCARD records are skipped (and counted). Returns runs of equal-length records
    with header offsets into ``data`` (contiguous from ``cons % size``, so a run may reach into the second
    mapping; the consumed span is ``data[cons % size : cons % size + new - cons]``), the position to publish,
    and the number of discarded records (``relative=True``: header offsets into the consumed span instead).
    A header that claims more bytes than the producer has published
    raises :class:`RawBPFError` (a corrupt or foreign ring).
    """
    size = len(data) >> 1
    if size <= 0 or size & (size - 1):
        raise RawBPFError(f"{what}: data area of {len(data)} bytes is not twice a power of two")
    mask = size - 1
    u32 = data.cast("I") if data.format != "I" else data
    runs: List[Run] = []
    discarded = 0
    count = 0
    pos = cons
    base = (cons & mask) - cons  # offsets stay contiguous past the end, in the second mapping
    shift = -(cons & mask) if relative else 0
    flagged = _BUSY | _DISCARD
    pad = HDR_SIZE + 7
    while pos < prod and count < limit:
        off = base + pos
        hdr = u32[off >> 2]
        stride = ((hdr & _LEN_MASK) + pad) & ~7
        if hdr & flagged or pos + stride > prod or stride > size:
            if hdr & _BUSY:
                break
            if pos + stride > prod or stride > size:
                raise RawBPFError(f"{what}: corrupt record header at position {pos} (length "
                                  f"{hdr & _LEN_MASK}, producer at {prod})")
            pos += stride  # discarded
            discarded += 1
            continue
        # hdr is the payload's length now (no flag bits)
        if pos + 2 * stride > prod or count + 1 >= limit or u32[(off + stride) >> 2] != hdr:
            # the next record differs (records of mixed sizes), or there is none: a run of one
            runs.append((off + shift, hdr, 1, stride))
            pos += stride
            count += 1
            continue
        n = min((prod - pos) // stride, limit - count)
        step = stride >> 2
        first = off >> 2
        if n > 2 and u32[first + (n - 1) * step] != hdr:
            n = _run_length(u32, first, step, hdr, n)  # the run ends before the span does
        else:
            heads = u32[first:first + n * step:step]
            pat = _pattern(hdr, n)
            if heads.tobytes() != pat[:4 * n]:
                n = _matching_prefix(heads, pat)
        runs.append((off + shift, hdr, n, stride))
        pos += n * stride
        count += n
    return runs, pos, discarded


def _run_length(u32: memoryview, first: int, step: int, length: int, n: int) -> int:
    """How many of the ``n`` headers from u32 index ``first`` (every ``step``) say ``length``, knowing the
    first two do and the last does not: windows doubling from the run's start, so a short run among records
    of other sizes costs about its own length, not the rest of the span's."""
    if u32[first + 2 * step] != length:
        return 2
    w = 4
    while True:
        w = min(w, n)
        heads = u32[first:first + w * step:step]
        pat = _pattern(length, w)
        if heads.tobytes() != pat[:4 * w]:
            return _matching_prefix(heads, pat)
        w *= 2  # (the window of all n fails: the last header differs)


def _matching_prefix(heads: memoryview, pat: bytes) -> int:
    """Length of the longest prefix of ``heads`` equal to ``pat`` (at least 1: the first header matched)."""
    lo, hi = 1, len(heads) - 1  # heads[:lo] matches; heads[:hi + 1] does not
    while lo < hi:
        mid = (lo + hi + 1) >> 1
        if heads[:mid].tobytes() == pat[:4 * mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def iter_records(buf: bytes, runs: List[Run]) -> List[memoryview]:
    """Views of each record's payload in ``buf`` for the given runs (the slow, general path)."""
    mv = memoryview(buf)
    out: List[memoryview] = []
    for off, length, n, stride in runs:
        start = off + HDR_SIZE
        for i in range(n):
            p = start + i * stride
            out.append(mv[p:p + length])
    return out


class _Pos(ctypes.Structure):
    _fields_ = [("value", ctypes.c_uint64)]


class RingBuffer(FD):
    """Consumes one ``BPF_MAP_TYPE_RINGBUF`` map through mmap, with an epoll fd for wakeups.

    ``source`` is a :class:`~rawbpf.maps.Map` (e.g. from a loaded Collection; not closed here) or the path of
    a pinned map (opened and closed here). Give either ``sink`` (called per drain with the consumed bytes and
    the runs, the fast path) or ``callback`` (called per record with its payload). The owned fd is the epoll
    fd; :meth:`close` unmaps the ring and closes everything this object opened.
    """

    kind = "ring buffer"

    def __init__(self, source: Union[Map, str, os.PathLike], *, sink: Optional[RunSink] = None,
                 callback: Optional[RecordCallback] = None, name: str = "", copy: bool = False) -> None:
        if (sink is None) == (callback is None):
            raise RawBPFError("ring buffer: give exactly one of sink or callback")
        self._copy = copy
        self._sink: Optional[RunSink] = sink
        self._callback: Optional[RecordCallback] = callback
        #: records delivered, discarded records skipped, drains done (cumulative)
        self.records = 0
        self.discarded = 0
        self.drains = 0
        self._map: Optional[Map] = None
        self._owns_map = False
        self._cons_mm: Optional[mmap.mmap] = None
        self._prod_mm: Optional[mmap.mmap] = None
        self._cons_pos: Optional[_Pos] = None
        self._data: Optional[memoryview] = None
        self._epoll: Optional[select.epoll] = None
        if isinstance(source, (str, os.PathLike)):
            from rawbpf.maps import Map as _Map

            self.name = name or os.path.basename(os.fspath(source))
            self._map = _Map.from_pin(os.fspath(source))
            self._owns_map = True
        else:
            self._map = source
            self.name = name or getattr(source, "name", "") or "ringbuf"
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
        if int(m.type) != MapType.RINGBUF:
            raise RawBPFError(f"ring buffer '{self.name}': map type is {MapType(int(m.type)).name.lower()}, "
                              "not ringbuf")
        size = int(m.max_entries)
        if size <= 0 or size & (size - 1):
            raise RawBPFError(f"ring buffer '{self.name}': size {size} is not a power of two")
        page = mmap.PAGESIZE
        fd = m.fd
        try:
            self._cons_mm = mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
            self._prod_mm = mmap.mmap(fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        except OSError as err:
            why = os.strerror(err.errno or 0).lower()
            raise RawBPFError(f"ring buffer '{self.name}': mmap: {why}") from err
        self._size = size
        self._mask = size - 1
        self._cons_pos = _Pos.from_buffer(self._cons_mm)
        self._data = memoryview(self._prod_mm)[page:page + 2 * size]
        self._cons = int(self._cons_pos.value)
        #: records per sink call and consumer-position commit (a quarter of the ring of 64-byte records)
        self.chunk = max(256, size // 256)
        self._epoll = select.epoll()
        self._epoll.register(fd, select.EPOLLIN)

    @property
    def map(self) -> Map:
        """The ring's map (owned here only when opened from a pin)."""
        if self._map is None:
            raise RawBPFError(f"ring buffer '{self.name}' is closed")
        return self._map

    @property
    def size(self) -> int:
        return self._size

    def producer_position(self) -> int:
        assert self._prod_mm is not None
        return int(struct.unpack_from("=Q", self._prod_mm, 0)[0])

    def consumer_position(self) -> int:
        return self._cons

    def available(self) -> int:
        """Bytes published by the producer and not yet consumed."""
        return self.producer_position() - self._cons

    def drain(self, limit: int = 1 << 62) -> int:
        """Consume up to ``limit`` committed records now; returns how many were delivered (never blocks).

        Records go to the sink in chunks of :attr:`chunk` records, and the consumer position is committed
        after each chunk, so a fast producer gets space back while the rest is still being decoded.
        """
        total = 0
        chunk = self.chunk
        while total < limit:
            want = min(chunk, limit - total)
            n = self._drain_once(want)
            total += n
            if n < want:
                break
        return total

    def _drain_once(self, limit: int) -> int:
        data = self._data
        if data is None:
            raise RawBPFError(f"ring buffer '{self.name}' is closed")
        assert self._prod_mm is not None and self._cons_pos is not None
        prod = struct.unpack_from("=Q", self._prod_mm, 0)[0]
        cons = self._cons
        if prod == cons:
            return 0
        runs, new, discarded = walk(data, cons, prod, limit, what=f"ring buffer '{self.name}'", relative=True)
        if new == cons:
            return 0
        start = cons & self._mask
        if self._copy:
            buf: Any = bytes(data[start:start + (new - cons)])
            self._cons = new
            self._cons_pos.value = new
        else:
            buf = data[start:start + (new - cons)]
        self.drains += 1
        self.discarded += discarded
        n = 0
        try:
            if runs:
                n = sum(map(_COUNT, runs))
                if self._sink is not None:
                    self._sink(buf, runs)
                else:
                    cb = self._callback
                    assert cb is not None
                    for rec in iter_records(buf, runs):
                        cb(rec)
        finally:
            if not self._copy:
                buf.release()
        if not self._copy:
            # committed only once delivered: a sink that raised sees the same records again
            self._cons = new
            self._cons_pos.value = new
        self.records += n
        return n

    def wait(self, timeout_ms: int) -> bool:
        """Sleep until the kernel signals data or ``timeout_ms`` passes (-1: forever); True if signalled."""
        if self._epoll is None:
            raise RawBPFError(f"ring buffer '{self.name}' is closed")
        try:
            return bool(self._epoll.poll(timeout_ms / 1000.0 if timeout_ms >= 0 else -1, 1))
        except InterruptedError:
            return False

    def poll(self, timeout_ms: int) -> int:
        """Drain; if nothing was there, wait up to ``timeout_ms`` and drain again. Returns records delivered.

        Draining before waiting serves producers that never wake the consumer (``BPF_RB_NO_WAKEUP``): calling
        ``poll`` in a loop drains at least every ``timeout_ms``.
        """
        n = self.drain()
        if n:
            return n
        self.wait(timeout_ms)
        return self.drain()

    def _release(self) -> None:
        self._cons_pos = None
        if self._data is not None:
            self._data.release()
            self._data = None
        for mm in (self._cons_mm, self._prod_mm):
            if mm is not None:
                try:
                    mm.close()
                except BufferError:  # a caller still holds a view; the mapping goes with the object
                    pass
        self._cons_mm = self._prod_mm = None
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        if self._map is not None and self._owns_map:
            self._map.close()
        self._map = None

    def close(self) -> None:
        """Unmap the ring and close the epoll fd (and the map, if it was opened from a pin). Idempotent."""
        super().close()
        self._release()
