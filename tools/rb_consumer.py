#!/usr/bin/env python3
"""Ring-buffer benchmark consumer for the peer kit (../shared/peers/ringbuf); touches the kernel (root).

Opens the kit's pinned ring (``/sys/fs/bpf/rbbench/events``) and the producer's ``.bss``
(``/sys/fs/bpf/rbbench/stats``), prints READY, consumes until 300 ms pass without a new record after the first
one (or ``max_secs``), then prints the kit's JSON summary line. Modes:

* ``raw``: the header walk plus a decode of every record to a tuple of its fields (one ``struct.iter_unpack``
  per run of equal-length records), summing ``seq`` like the C and Go peers do;
* ``decode-log``: the daemon's path: BTF-driven dicts with ``seq``/``ts``/``type``, msgpack, rotating log.

The record layout comes from BTF, never from a format written here: the kit's producer object carries no BTF
for its record, so the same ``struct rec`` is declared in tests/data/ringbuf/flood.c and read from flood.o.
The stats layout (``attempts``, ``drops``) is read from the kernel's BTF of the pinned ``.bss`` map.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
from operator import itemgetter
from pathlib import Path
from typing import Any, Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rawbpf.btf import BTF, Kind  # noqa: E402
from rawbpf.elf import load_spec  # noqa: E402
from rawbpf.kbtf import KernelBTF  # noqa: E402
from rawbpf.maps import Map  # noqa: E402
from rawbpf.records import RecordDecoder, RingDecoder, find_record_layout  # noqa: E402
from rawbpf.ringbuf import RingBuffer, Run  # noqa: E402


class Stats:
    """The producer's ``attempts`` and ``drops``, located through the kernel BTF of its ``.bss`` map."""

    def __init__(self, path: str) -> None:
        self.map = Map.from_pin(path)
        info = self.map.info()
        with KernelBTF.from_id(info.btf_id) as kb:
            btf = BTF.parse(kb.data())
        sec = btf[btf.resolve(info.btf_value_type_id)]
        self.offsets: Dict[str, Tuple[int, int]] = {}
        for v in sec.vars:
            var = btf[v.type]
            if var.kind == Kind.VAR:
                self.offsets[var.name] = (v.offset, v.size)
        for need in ("attempts", "drops"):
            if need not in self.offsets:
                raise SystemExit(f"rb_consumer: stats map {path} has no variable '{need}'")

    def read(self) -> Tuple[int, int]:
        value = self.map.lookup(0) or b""
        out = []
        for name in ("attempts", "drops"):
            off, size = self.offsets[name]
            out.append(int.from_bytes(value[off:off + size], "little"))
        return out[0], out[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("max_secs", nargs="?", type=float, default=40.0)
    ap.add_argument("--mode", choices=("raw", "decode-log"), default="raw")
    ap.add_argument("--log-dir", help="log directory (decode-log)")
    ap.add_argument("--ring", default="/sys/fs/bpf/rbbench/events")
    ap.add_argument("--stats", default="/sys/fs/bpf/rbbench/stats")
    ap.add_argument("--object", default=str(ROOT / "tests" / "data" / "ringbuf" / "flood.o"),
                    help="object whose BTF describes the records")
    ap.add_argument("--record-type", default="rec")
    ap.add_argument("--chunk", type=int, default=0, help="records per sink call and commit (0: the default)")
    ap.add_argument("--copy", action="store_true",
                    help="copy each drain out of the ring and commit before decoding")
    a = ap.parse_args()

    btf = load_spec(a.object).btf
    assert btf is not None
    layout = find_record_layout(btf, "events", a.record_type)
    stats = Stats(a.stats)
    count = [0]
    acc = [0]
    seq_of = itemgetter(0)

    if a.mode == "raw":
        dec = RecordDecoder.from_btf(btf, a.record_type)
        size = dec.size

        def sink(buf: bytes, runs: List[Run]) -> Any:
            mv = memoryview(buf)
            for off, length, n, stride in runs:
                if length == size:
                    tuples = list(dec.run_struct(length, stride).iter_unpack(mv[off:off + n * stride]))
                else:
                    starts = [off + i * stride + 8 for i in range(n)]
                    tuples = [dec.struct.unpack(dec._padded(mv[p:p + length])) for p in starts]
                count[0] += len(tuples)
                acc[0] += sum(map(seq_of, tuples))
        writer = None
    else:
        from rawbpf.daemon import RingPipeline
        from rawbpf.logfile import LogWriter

        if not a.log_dir:
            ap.error("--mode decode-log needs --log-dir")
        writer = LogWriter(a.log_dir, header={"object": os.path.basename(a.object), "bench": "rb_consumer"})
        pipe = RingPipeline("events", RingDecoder(btf, layout, map_name="events"), writer)

        def sink(buf: bytes, runs: List[Run]) -> Any:
            pipe.sink(buf, runs)
            count[0] = pipe.records

    rb = RingBuffer(a.ring, sink=sink, copy=a.copy)
    if a.chunk:
        rb.chunk = a.chunk
    gc.freeze()  # startup objects never need collecting again
    while rb.drain():  # leftovers of an earlier run
        pass
    base = count[0]
    a0, d0 = stats.read()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = ru0.ru_utime + ru0.ru_stime
    print("READY", flush=True)
    start = time.monotonic()
    first = last = 0.0
    prev = base
    while time.monotonic() - start < a.max_secs:
        rb.poll(50)
        if writer is not None:
            writer.maybe_flush()
        t = time.monotonic()
        if count[0] != prev:
            if not first:
                first = t
            last, prev = t, count[0]
        elif first and t - last > 0.3:
            break
    while rb.drain():
        pass
    if writer is not None:
        writer.close()
    a1, d1 = stats.read()
    rb.close()
    stats.map.close()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu = ru.ru_utime + ru.ru_stime - cpu0
    print(json.dumps({"consumer": f"rawbpf-{a.mode}", "events": count[0] - base,
                      "secs": round(last - first, 4), "attempts": a1 - a0, "drops": d1 - d0,
                      "cpu_secs": round(cpu, 4)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
