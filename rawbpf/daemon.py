"""Consume every ring buffer and perf event array of a loaded Collection into the log until signalled; kernel.

:class:`Daemon` drains each ring (timer-driven and on wakeups), decodes records with the object's BTF
(:mod:`rawbpf.records`), and writes them to the rotating msgpack log (:mod:`rawbpf.logfile`). SIGINT/SIGTERM
make :meth:`Daemon.run` drain what is left, flush and return (the caller detaches and unpins); SIGHUP reopens
the log (logrotate); the handlers belong to :mod:`rawbpf.signals`. Nothing is lost silently:

**Kernel drop counters (the convention).** The kernel keeps no count of failed ring-buffer reserves, so
programs count them. Every drain reads them, and each increase becomes a ``lost`` record with ``count``,
``reason: "kernel"``, ``source`` (the counter) and ``ring`` (when known). A counter is

* a global variable (``.bss``/``.data``) named ``drops``, ``dropped`` or ``lost``, or ending in ``_drops``,
  ``_dropped`` or ``_lost``; ``<ring>_drops`` is attributed to ring ``<ring>``;
* an integer field with one of those names (at any depth, in arrays of structs too) in the value of an
  ``ARRAY``/``PERCPU_ARRAY`` map named ``counters``, ``stats``, ``drops`` or ending in ``_counters``,
  ``_stats`` or ``_drops``, summed over entries and CPUs (e.g. ``counters.kind[3].lost``); a map named
  ``drops``/``<ring>_drops`` with an integer value counts as a whole.

Perf event arrays report their own losses (``PERF_RECORD_LOST``) as ``lost`` with ``reason: "perf buffer"``.
User-space losses are recorded too: records a decoder could not handle (``reason: "decode error"``) and
records a full disk kept out of the log (:mod:`rawbpf.logfile`).
"""

from __future__ import annotations

import contextlib
import logging
import operator
import os
import re
import select
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from rawbpf._closing import Closing
from rawbpf.consts import MapType
from rawbpf.errors import ConfigError, RawBPFError
from rawbpf.logfile import (
    DEFAULT_BACKUPS,
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_BYTES,
    LogWriter,
)
from rawbpf.signals import StopSignals
from rawbpf.signals import active as active_signals

if TYPE_CHECKING:  # records and ringbuf are imported when a Daemon starts: not before programs attach
    from rawbpf.btf import BTF
    from rawbpf.collection import Collection
    from rawbpf.maps import Map
    from rawbpf.records import RingDecoder
    from rawbpf.ringbuf import RingBuffer, Run
    from rawbpf.spec import CollectionSpec

__tier__ = "kernel"

log = logging.getLogger("rawbpf")

__all__ = ["Daemon", "DaemonOptions", "DropCounter", "RingPipeline", "consumer", "find_drop_counters",
           "keep_stale_drops", "stale_drop_totals"]

Record = Dict[str, Any]
# A transform may drop a record (None), replace it, or turn it into several (a list, in order)
Transform = Callable[[Record], Union[Record, List[Record], None]]
RunTransform = Callable[[Any, List["Run"], int], List[Record]]

_COUNT = operator.itemgetter(2)  # a run's record count
_DROP_NAME = re.compile(r"^(?:(?P<ring>\w+?)_)?(?:drops|dropped|lost)$")
_COUNTER_MAP = re.compile(r"^(?:counters|stats|drops|\w+_counters|\w+_stats|\w+_drops)$")


@dataclass
class DaemonOptions:
    """Where and how to log. ``record_types`` maps a ring name to its record struct (``--record-type``)."""

    log_dir: str
    max_bytes: int = DEFAULT_MAX_BYTES
    backups: int = DEFAULT_BACKUPS
    max_age: float = DEFAULT_MAX_AGE
    flush_interval: float = DEFAULT_FLUSH_INTERVAL
    #: the timer drain, for programs that submit with BPF_RB_NO_WAKEUP: with the log's flush interval it
    #: bounds the event-to-log latency (about poll_interval + flush_interval)
    poll_interval: float = 0.05
    #: how often the timer drain reads the kernel's drop counters (a bpf(2) call each): a drop is logged at
    #: most this late; reading them at every 50 ms tick would be most of an idle daemon's system calls
    drop_check_interval: float = 1.0
    record_types: Dict[str, str] = field(default_factory=dict)  # "" applies to every ring
    clock: str = "auto"
    header: Dict[str, Any] = field(default_factory=dict)
    #: post-processes each decoded record; returning None drops it (on purpose: not a loss)
    transform: Optional[Transform] = None
    #: per ring, made from its decoder: turns a whole drain ``(buffer, runs, read time)`` into the records to
    #: log, each a dict whose first key is ``seq`` (numbered by the writer); leaving a record out drops it on
    #: purpose. Takes the place of ``transform`` (the monitor's precompiled path).
    run_transform: Optional[Callable[[RingDecoder], RunTransform]] = None
    #: called every ``status_interval`` seconds (and at the end) with :meth:`Daemon.status`
    status: Optional[Callable[[Dict[str, Any]], None]] = None
    status_interval: float = 5.0
    rings: Optional[Sequence[str]] = None  # default: every ringbuf and perf event array
    perf_pages: int = 8
    #: what a dead previous run's pinned drop counters held when this run took its pins over
    #: (``{"pid": N, "totals": {source: total}}``, see :func:`stale_drop_totals`): the ``crash`` record
    #: reports the drops counted while nobody consumed
    stale_drops: Optional[Dict[str, Any]] = None


# -- drop counters

@dataclass
class DropCounter:
    """One counter the program keeps of records it could not queue."""

    source: str  # e.g. "events_drops" or "counters.kind[3].lost"
    ring: Optional[str]
    read: Callable[[], int]
    last: int = 0

    def delta(self) -> int:
        """How much the counter grew since the last call (counters only grow; a reset reads as 0)."""
        now = self.read()
        d = now - self.last if now >= self.last else now
        self.last = now
        return d


def _int_fields(btf: BTF, type_id: int, base: int, path: str, depth: int = 0
                ) -> List[Tuple[str, int, int]]:
    """``(path, offset, size)`` of every drop-named integer field beneath ``type_id``."""
    from rawbpf.btf import Kind

    if depth > 16:
        return []
    t = btf.resolved(type_id)
    out: List[Tuple[str, int, int]] = []
    if t.kind in (Kind.STRUCT, Kind.UNION):
        for m in t.members:
            if m.bitfield_size:
                continue
            mt = btf.resolved(m.type)
            sub = f"{path}.{m.name}" if m.name else path
            off = base + m.bits_offset // 8
            if mt.kind == Kind.INT and m.name and _DROP_NAME.match(m.name) and mt.size in (1, 2, 4, 8):
                out.append((sub, off, mt.size))
            elif mt.kind in (Kind.STRUCT, Kind.UNION, Kind.ARRAY):
                out.extend(_int_fields(btf, m.type, off, sub, depth + 1))
    elif t.kind == Kind.ARRAY and t.array is not None:
        esize = btf.size_of(t.array.type)
        for i in range(min(t.array.nelems, 256)):
            out.extend(_int_fields(btf, t.array.type, base + i * esize, f"{path}[{i}]", depth + 1))
    return out


def _sum_fields(values: Sequence[bytes], fields: Sequence[Tuple[str, int, int]]) -> int:
    total = 0
    for v in values:
        for _, off, size in fields:
            total += int.from_bytes(v[off:off + size], "little")
    return total


def find_drop_counters(coll: Collection, rings: Sequence[str]) -> List[DropCounter]:
    """The program's drop counters by the module's convention (see the module docstring)."""
    out = _drop_counters(coll.spec, coll.maps, coll.variables.raw, rings)
    for c in out:
        c.last = c.read()  # count only what is lost from now on
    return out


def stale_drop_totals(spec: CollectionSpec, pin_dir: str) -> Dict[str, int]:
    """What the drop counters of a dead run's pinned maps in ``pin_dir`` hold (source → total): its
    programs stayed attached after the consumer died, counting what they could not queue meanwhile."""
    from rawbpf.collection import pin_name
    from rawbpf.maps import Map

    maps: Dict[str, Map] = {}
    try:
        for name in spec.maps:
            path = os.path.join(pin_dir, pin_name(name))
            if os.path.exists(path):
                maps[name] = Map.from_pin(path)

        def raw(var_name: str) -> bytes:
            var = spec.variables[var_name]
            value = maps[var.map].lookup(0) or b""
            return bytes(value[var.offset:var.offset + var.size])

        return {c.source: c.read() for c in _drop_counters(spec, maps, raw, [])}
    finally:
        for m in maps.values():
            m.close()


_ARGV_LIKE = re.compile(r"^(?:argv|args|arguments|cmdline|command|cmd|environ|env|envp)(?:_?\d+)?$", re.I)


def argv_like_fields(decoder: RingDecoder) -> List[str]:
    """Fields of a ring's records that look like a command line or an environment (where secrets hide)."""
    decs = [decoder.single] if decoder.single is not None else list(decoder.kinds.values())
    names = set()
    for d in decs:
        if d is None:
            continue
        for f in [*d.fields, d.flex]:
            if f and _ARGV_LIKE.match(f):
                names.add(f)
    return sorted(names)


def argv_redactor(decoder: RingDecoder, ring: str) -> Optional[Transform]:
    """For an object that is not the monitor: a transform replacing secrets in argv-like fields (byte
    arrays split at NUL, strings, lists of strings) with ``[REDACTED]`` and listing the fields it changed in
    ``redacted``; said once on stderr. None when the ring has no such fields (the fast path stays)."""
    from rawbpf.monitor.redact import redact_argv, redact_text

    fields = argv_like_fields(decoder)
    if not fields:
        return None
    log.warning("ring %s: secrets in %s are replaced by [REDACTED] (argv-like fields)", ring,
                ", ".join(fields))

    def one(v: Any) -> Any:
        if isinstance(v, (bytes, bytearray)):
            parts = bytes(v).split(b"\0")
            out, changed = redact_argv([p.decode("utf-8", "surrogateescape") for p in parts])
            return b"\0".join(p.encode("utf-8", "surrogateescape") for p in out) if changed else v
        if isinstance(v, str):
            return redact_text(v)
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return redact_argv(v)[0]
        return v

    def transform(rec: Record) -> Optional[Record]:
        changed = []
        for f in fields:
            if f in rec:
                new = one(rec[f])
                if new != rec[f]:
                    rec[f] = new
                    changed.append(f)
        if changed:
            rec["redacted"] = changed
        return rec

    return transform


def keep_stale_drops(options: DaemonOptions) -> Callable[[CollectionSpec, str, int], None]:
    """An ``on_stale_pins`` hook for :func:`rawbpf.run.load_and_run`: keeps what the dead run's drop counters
    held in ``options.stale_drops`` before its pins are removed."""
    def hook(spec: CollectionSpec, pin_dir: str, pid: int) -> None:
        options.stale_drops = {"pid": pid, "totals": stale_drop_totals(spec, pin_dir)}
    return hook


def _drop_counters(spec: CollectionSpec, maps: Mapping[str, Map], raw: Callable[[str], bytes],
                   rings: Sequence[str]) -> List[DropCounter]:
    btf = spec.btf
    out: List[DropCounter] = []

    def ring_of(prefix: Optional[str]) -> Optional[str]:
        if prefix and prefix in rings:
            return prefix
        return rings[0] if len(rings) == 1 else None

    for name, var in spec.variables.items():
        m = _DROP_NAME.match(name)
        if not m or var.readonly or var.size not in (1, 2, 4, 8) or var.map not in maps:
            continue

        def read_var(n: str = name) -> int:
            return int.from_bytes(raw(n), "little")

        out.append(DropCounter(name, ring_of(m.group("ring")), read_var))
    for name, mspec in spec.maps.items():
        if mspec.is_global_data or not _COUNTER_MAP.match(name) or name not in maps:
            continue
        if mspec.type not in (MapType.ARRAY, MapType.PERCPU_ARRAY):
            continue
        fields: List[Tuple[str, int, int]] = []
        dm = _DROP_NAME.match(name)
        if dm and mspec.value_size in (1, 2, 4, 8):
            fields = [(name, 0, mspec.value_size)]
            prefix = dm.group("ring")
        elif btf is not None and mspec.btf_value_type_id:
            fields = _int_fields(btf, mspec.btf_value_type_id, 0, name)
            prefix = None
        if not fields:
            continue
        entries = min(mspec.max_entries, 1024)
        mp = maps[name]
        percpu = mspec.type == MapType.PERCPU_ARRAY

        def read_map(mp: Map = mp, fields: List[Tuple[str, int, int]] = fields, entries: int = entries,
                     percpu: bool = percpu) -> int:
            total = 0
            for key in range(entries):
                if percpu:
                    total += _sum_fields(mp.lookup_percpu(key) or [], fields)
                else:
                    v = mp.lookup(key)
                    total += _sum_fields([v] if v else [], fields)
            return total

        leaves = sorted({f[0].rsplit(".", 1)[-1] for f in fields})
        label = name if len(fields) == 1 else f"{name}.{'|'.join(leaves)}"
        out.append(DropCounter(label, ring_of(prefix), read_map))
    return out


# -- one ring into the log

class RingPipeline:
    """Decodes the runs of one ring's drain and writes them to the log (the sink of a RingBuffer)."""

    def __init__(self, name: str, decoder: RingDecoder, writer: LogWriter,
                 transform: Optional[Transform] = None, run_transform: Optional[RunTransform] = None) -> None:
        self.name = name
        self.decoder = decoder
        self.writer = writer
        self.transform = transform
        self.run_transform = run_transform
        self.records = 0
        self.dropped_by_transform = 0
        self.decode_errors = 0

    def sink(self, buf: bytes, runs: List[Run]) -> None:
        n = sum(map(_COUNT, runs))
        now = time.time_ns()
        w = self.writer
        try:
            if self.run_transform is not None:
                out = self.run_transform(buf, runs, now)
                self.dropped_by_transform += max(0, n - len(out))  # (a record may also become several)
                w.write_numbered(out)
            elif self.transform is None:
                seq = w.reserve(n, len(buf))
                w.write_packed(self.decoder.pack_runs(buf, runs, seq, now), n)
            else:
                recs = self.decoder.decode_runs(buf, runs, 0, now)
                out = []
                for r in recs:
                    del r["seq"]
                    t = self.transform(r)
                    if t is None:
                        self.dropped_by_transform += 1
                    elif isinstance(t, list):
                        out.extend(t)
                    else:
                        out.append(t)
                w.write_many(out)
        except RawBPFError:
            raise
        except Exception as err:  # a decoder or transform bug must not stop the stream, nor hide the loss
            self.decode_errors += n
            log.warning("ring %s: %d records not decoded: %s", self.name, n, err)
            w.lost(n, "decode error", ring=self.name, error=str(err)[:200])
            return
        self.records += n


# -- the daemon

class Daemon(Closing):
    """Consumes the rings of ``coll`` into a log. Use :meth:`run` (blocks) or :meth:`step` (one iteration)."""

    def __init__(self, coll: Collection, options: DaemonOptions) -> None:
        self.coll = coll
        self.options = options
        self._stop = threading.Event()
        self._reopen = False
        self.started = time.time()
        self.rings: Dict[str, RingBuffer] = {}
        self.perf: Dict[str, Any] = {}
        self.pipelines: Dict[str, RingPipeline] = {}
        self.lost_kernel = 0
        self.lost_perf = 0
        self._epoll: Optional[select.epoll] = None
        from rawbpf.records import ring_decoder
        from rawbpf.ringbuf import RingBuffer

        names = self._ring_names()
        btf = coll.spec.btf
        decoders = {}  # first, so a bad --record-type fails before anything is written
        for name in names:
            rtype = options.record_types.get(name, options.record_types.get(""))
            decoders[name] = ring_decoder(btf, name, rtype, clock=options.clock)
        self.drop_counters = find_drop_counters(coll, names)
        header = {"object": coll.spec.name, "rings": names, **options.header,
                  "drop_totals": {c.source: c.last for c in self.drop_counters}}
        self.writer = LogWriter(options.log_dir, max_bytes=options.max_bytes, backups=options.backups,
                                max_age=options.max_age, flush_interval=options.flush_interval, header=header,
                                crash_fields=self._crash_fields)
        try:
            stale = options.stale_drops
            if stale and self.writer.crashed_writer is None:
                # killed before it opened the log: only its pins tell; its counters started at zero
                info = dict(self.writer.resumed, writer_pid=stale["pid"], header=None, records=[])
                until = time.time_ns()
                self.writer.write({"type": "crash", "writer_pid": stale["pid"],
                                   "since": info["last_ts"] or until, "until": until, "torn_bytes": 0,
                                   **self._crash_fields(info)})
            self._epoll = select.epoll()
            for name in names:
                m = coll.maps[name]
                transform = options.transform
                if transform is None:
                    transform = argv_redactor(decoders[name], name)
                make = options.run_transform
                pipe = RingPipeline(name, decoders[name], self.writer, transform,
                                    make(decoders[name]) if make is not None else None)
                self.pipelines[name] = pipe
                if int(m.type) == MapType.RINGBUF:
                    rb = RingBuffer(m, sink=pipe.sink, name=name)
                    self.rings[name] = rb
                    self._epoll.register(m.fd, select.EPOLLIN)
                else:
                    from rawbpf.perfbuf import PerfBuffer

                    pb = PerfBuffer(m, sink=pipe.sink, lost=self._perf_lost(name), pages=options.perf_pages,
                                    name=name)
                    self.perf[name] = pb
                    for fd in pb.fds():
                        self._epoll.register(fd, select.EPOLLIN)
        except BaseException:
            self.close()
            raise
        self._last_status = self._last_clock = time.monotonic()
        self._next_drop_check = self._last_clock

    def _crash_fields(self, info: Dict[str, Any]) -> Dict[str, Any]:
        """``kernel_drops`` for the crash record: what the dead run's pinned counters grew by after the last
        total it logged (its newest header, then its ``lost`` records)."""
        stale = self.options.stale_drops
        if not stale:
            return {}
        header = info.get("header") or {}
        logged: Dict[str, int] = dict(header.get("drop_totals") or {}) if header.get("pid") == stale["pid"] \
            else {}
        # the pins' dead owner is another run than the log's when one was killed before opening the log:
        # its counters started at zero and it logged nothing
        for rec in info.get("records", ()) if stale.get("pid") == info.get("writer_pid") else ():
            total = rec.get("total")
            if rec.get("type") == "lost" and rec.get("reason") == "kernel" and isinstance(total, int):
                logged[str(rec.get("source"))] = total
        drops = 0
        for source, total in stale.get("totals", {}).items():
            drops += max(0, int(total) - int(logged.get(source, 0)))
        self.lost_kernel += drops
        return {"kernel_drops": drops}

    def _ring_names(self) -> List[str]:
        maps = self.coll.maps
        wanted = self.options.rings
        if wanted is not None:
            for n in wanted:
                if n not in maps:
                    raise ConfigError(f"no map '{n}' to consume").with_context(
                        f"object '{self.coll.spec.name}'")
            names = list(wanted)
        else:
            names = [n for n, m in maps.items()
                     if int(m.type) in (MapType.RINGBUF, MapType.PERF_EVENT_ARRAY)]
        for n in names:
            if int(maps[n].type) not in (MapType.RINGBUF, MapType.PERF_EVENT_ARRAY):
                raise ConfigError(f"map '{n}': not a ring buffer or perf event array")
        for n in self.options.record_types:
            if n and n not in names:
                raise ConfigError(f"--record-type {n}=…: no ring buffer named '{n}'")
        return names

    def _perf_lost(self, name: str) -> Callable[[int, int], None]:
        def lost(cpu: int, count: int) -> None:
            self.lost_perf += count
            self.writer.lost(count, "perf buffer", ring=name, cpu=cpu)
        return lost

    # -- control (signal-safe: only set flags) --

    def request_stop(self) -> None:
        self._stop.set()

    def request_reopen(self) -> None:
        self._reopen = True

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- work --

    def drain(self, check_drops: Optional[bool] = True) -> int:
        """Drain every ring once and report new kernel drops; returns records consumed.

        ``check_drops``: read the drop counters now (True), never (False), or when
        ``options.drop_check_interval`` has passed since they were last read (None, the timer's choice).
        """
        n = 0
        for rb in self.rings.values():
            n += rb.drain()
        for pb in self.perf.values():
            n += pb.drain()
        if check_drops is None:
            now = time.monotonic()
            check_drops = now >= self._next_drop_check
        if check_drops:
            self._check_drops()
        return n

    def _check_drops(self) -> None:
        self._next_drop_check = time.monotonic() + self.options.drop_check_interval
        for c in self.drop_counters:
            d = c.delta()
            if d:
                self.lost_kernel += d
                extra: Dict[str, Any] = {"source": c.source, "total": c.last}
                if c.ring:
                    extra["ring"] = c.ring
                self.writer.lost(d, "kernel", **extra)
                self.writer.set_header(drop_totals={x.source: x.last for x in self.drop_counters})

    def step(self, timeout: Optional[float] = None) -> int:
        """One iteration: drain; sleep until a wakeup or the timer if nothing came; housekeeping."""
        n = self.drain(check_drops=None)
        if not n and self._epoll is not None:
            t = self.options.poll_interval if timeout is None else timeout
            due = self.writer.flush_due()
            if due is not None and due < t:
                t = due  # wake up for the flush, not a timer tick later
            try:
                if self._epoll.poll(t):
                    n = self.drain(check_drops=None)
            except InterruptedError:
                pass
        if self._reopen:
            self._reopen = False
            self.writer.reopen()
        now = time.monotonic()
        if now - self._last_clock >= 10.0:  # NTP steps the wall clock: re-read the kernel clock offsets
            self._last_clock = now
            for p in self.pipelines.values():
                p.decoder.time_base.refresh()
        self.writer.maybe_flush()
        if self.options.status is not None and time.monotonic() - self._last_status >= \
                self.options.status_interval:
            self._last_status = time.monotonic()
            self.options.status(self.status())
        return n

    def run(self, stop: Optional[Callable[[], bool]] = None, *, signals: bool = True) -> Dict[str, Any]:
        """Consume until SIGINT/SIGTERM (or ``stop()``); then drain, flush and return the final status.

        Signals go through :mod:`rawbpf.signals`: inside a foreground run that already handles them
        (:func:`rawbpf.run.load_and_run`) the daemon only registers for SIGHUP (reopen the log); on its own
        it handles SIGINT/SIGTERM/SIGHUP itself while it runs (main thread only). ``signals=False`` leaves
        signals alone.
        """
        with contextlib.ExitStack() as stack:
            owner = active_signals() if signals else None
            if signals and owner is None:
                owner = stack.enter_context(StopSignals(self._stop))
            if owner is not None:
                unregister = owner.on_hangup(self.request_reopen)
                stack.callback(unregister)
            while not self._stop.is_set() and not (stop is not None and stop()):
                self.step()
            # final drain: what the kernel queued before we stopped (bounded: the programs are still attached)
            deadline = time.monotonic() + 2.0
            while self.drain(check_drops=False) and time.monotonic() < deadline:
                pass
            self._check_drops()
            self.writer.flush()
            final = self.status()
            if self.options.status is not None:
                self.options.status(final)
            return final

    def status(self) -> Dict[str, Any]:
        """Counters for status displays: per ring records and losses, log state."""
        w = self.writer
        rings = {}
        for name, p in self.pipelines.items():
            rings[name] = {"records": p.records, "decode_errors": p.decode_errors,
                           "undecoded": p.decoder.undecoded, "dropped_by_transform": p.dropped_by_transform}
        return {
            "pid": os.getpid(), "started": self.started, "uptime": time.time() - self.started,
            "rings": rings, "records": sum(p.records for p in self.pipelines.values()),
            "lost_kernel": self.lost_kernel, "lost_perf": self.lost_perf, "lost_log": w.lost_records,
            "log_file": w.current_file, "log_records": w.records, "rotations": w.rotations, "seq": w.seq,
        }

    def close(self) -> None:
        """Close the rings and the log (not the collection: the caller owns it). Idempotent."""
        for rb in self.rings.values():
            rb.close()
        self.rings.clear()
        for pb in self.perf.values():
            pb.close()
        self.perf.clear()
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        if getattr(self, "writer", None) is not None:
            self.writer.close()


def has_rings(coll: Collection) -> bool:
    """Whether the collection has a ring buffer or perf event array to consume."""
    return any(int(m.type) in (MapType.RINGBUF, MapType.PERF_EVENT_ARRAY) for m in coll.maps.values())


def consumer(options: DaemonOptions, echo: Optional[Callable[[str], None]] = None) -> Consumer:
    """A :class:`Consumer` for ``rawbpf load`` (the runner of :func:`rawbpf.run.load_and_run`)."""
    return Consumer(options, echo)


class Consumer(Closing):
    """What ``rawbpf load`` runs around an object: :meth:`open` before attach, then ``consumer(coll, stop)``
    until the event is set (or SIGINT/SIGTERM), then :meth:`close`.

    The daemon is opened before the programs are attached: a perf event array has no buffer until its
    consumer opens one, and a sample sent before that is refused by the kernel and counted nowhere (a ring
    buffer would keep its records, but the same order serves both). An object without rings just waits.
    """

    def __init__(self, options: DaemonOptions, echo: Optional[Callable[[str], None]] = None) -> None:
        self.options = options
        self.echo = echo
        self.daemon: Optional[Daemon] = None

    def open(self, coll: Collection) -> None:
        """Open the log and every ring's reader (nothing to do for an object without rings)."""
        if has_rings(coll) and self.daemon is None:
            self.daemon = Daemon(coll, self.options)
            if self.echo is not None:
                self.echo(f"logging {', '.join(self.daemon.pipelines)} to {self.options.log_dir}")

    def __call__(self, coll: Collection, stop: threading.Event) -> None:
        self.open(coll)
        d = self.daemon
        if d is None:
            while not stop.wait(0.5):
                pass
            return
        try:
            final = d.run(stop=stop.is_set)
        finally:
            self.close()
        if self.echo is not None:
            self.echo(f"logged {final['records']} records; lost: kernel {final['lost_kernel']}, "
                      f"perf {final['lost_perf']}, log {final['lost_log']}")

    def close(self) -> None:
        """Close the daemon if it was opened (idempotent)."""
        if self.daemon is not None:
            self.daemon.close()
