"""Capture the monitor's raw ring bytes under a workload; replay them through the daemon's user-space path.

``capture`` (root; touches the kernel) loads programs/claude_monitor.o with the default configuration, runs a
workload in a tracked tree and saves every drained span of the ring as it was mapped (length-prefixed blobs).
``replay`` (pure user space, no root) feeds the saved spans through what the daemon does with a drain -- the
ring walker, the monitor's precompiled shaper (generic path for other kinds), redaction and the log writer --
into a scratch log directory, and reports the CPU time (user + system of this process) per record, so one
change to that path can be measured without the kernel, the scheduler or the other load of a shared host.
``--profile`` prints cProfile's top functions instead.

    python -m tools.ring_replay capture exec  /tmp/exec.ring  [--rate 5000 --secs 2]
    python -m tools.ring_replay capture files /tmp/files.ring [--count 3000]
    python -m tools.ring_replay replay /tmp/exec.ring [--repeat 5] [--profile] [--only file]
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, List

ROOT = Path(__file__).resolve().parents[1]
OBJ = ROOT / "programs" / "claude_monitor.o"
_LEN = struct.Struct("=I")


def _spans(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        (n,) = _LEN.unpack_from(data, pos)
        yield data[pos + 4:pos + 4 + n]
        pos += 4 + n


def _workload(kind: str, work: Path, args: argparse.Namespace) -> List[str]:
    """The command a tracked root (a ``claude`` symlink to a helper) runs."""
    helpers = ROOT / "tools" / "bench" / "helpers"
    bin_dir = work / "bin"
    bin_dir.mkdir()
    if kind == "exec":
        subprocess.run(["gcc", "-O2", "-static", "-nostdlib", "-o", str(bin_dir / "tiny_true"),
                        str(helpers / "tiny_true.c")], check=True)
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(bin_dir / "claude"), str(helpers / "exec_storm.c")],
                       check=True)
        return [str(bin_dir / "claude"), str(args.rate), str(args.secs), "2", str(bin_dir / "tiny_true")]
    # files: a tracked shell creating, writing, renaming and deleting files under a scratch directory
    (bin_dir / "claude").symlink_to(shutil.which("bash") or "/bin/bash")
    d = work / "files"
    d.mkdir()
    script = (f"cd {d} && for i in $(seq {args.count}); do echo x > f$i; echo y >> f$i; mv f$i g$i; done; "
              f"mkdir sub; rm -f g*; rmdir sub")
    return [str(bin_dir / "claude"), "-c", script]


def capture(kind: str, out: Path, args: argparse.Namespace) -> int:
    from rawbpf.collection import Collection
    from rawbpf.elf import load_spec
    from rawbpf.monitor.config import build_config
    from rawbpf.monitor.run import prepare, skip_missing_syscalls
    from rawbpf.ringbuf import RingBuffer

    cfg = build_config()
    spec = load_spec(str(OBJ))
    skip_missing_syscalls(spec, lambda line: None)
    if cfg.ring_bytes:
        spec.maps["events"].max_entries = cfg.ring_bytes
    spans: List[bytes] = []

    def keep(buf: Any, runs: List[Any]) -> None:
        spans.append(bytes(buf))

    with tempfile.TemporaryDirectory(prefix="ring-replay-") as tmp, \
            Collection.load(spec, constants=cfg.constants()) as coll:
        prepare(coll, cfg)
        with RingBuffer(coll.maps["events"], sink=keep) as rb:
            coll.attach_all()
            proc = subprocess.Popen(_workload(kind, Path(tmp), args), stdout=subprocess.DEVNULL)
            while proc.poll() is None:
                rb.poll(20)
            time.sleep(0.2)
            while rb.drain():
                pass
    with open(out, "wb") as f:
        for s in spans:
            f.write(_LEN.pack(len(s)) + s)
    print(f"{len(spans)} drains, {sum(map(len, spans))} bytes -> {out}")
    return 0


class _Replay:
    """One replay of saved spans through a fresh daemon pipeline (shaper state and log directory)."""

    def __init__(self, spans: List[bytes], spec: Any, log_dir: str) -> None:
        from rawbpf.daemon import RingPipeline
        from rawbpf.logfile import LogWriter, boot_id
        from rawbpf.monitor.cgroups import CgroupPaths
        from rawbpf.monitor.config import build_config
        from rawbpf.monitor.run import file_shaping
        from rawbpf.monitor.shape import Catalog, Shaper
        from rawbpf.monitor.shape_runs import RunShaper
        from rawbpf.records import ring_decoder

        self.spans = spans
        biggest = max(map(len, spans), default=8)
        self.area = bytearray(2 << max(12, (biggest - 1).bit_length()))
        dec = ring_decoder(spec.btf, "events")
        shaper = Shaper(Catalog.from_btf(spec.btf), 0, boot_id=boot_id(), cgroup_path=CgroupPaths(),
                        files=file_shaping(build_config()))
        self.writer = LogWriter(log_dir, header={"object": "claude_monitor"})
        self.pipe = RingPipeline("events", dec, self.writer, shaper, RunShaper(shaper, dec))

    def run(self) -> None:
        from rawbpf.ringbuf import walk

        area, sink = self.area, self.pipe.sink
        data: Any = memoryview(area)  # as the ring buffer hands it over: a view of the mapping
        for s in self.spans:
            n = len(s)
            area[:n] = s
            runs, new, _ = walk(data, 0, n, relative=True)
            sink(data[:new], runs)
        self.writer.flush()


def _only(spans: List[bytes], kinds: List[int]) -> List[bytes]:
    """The spans with only the records of the given kind values (re-laid out as the ring would hold them)."""
    from rawbpf.ringbuf import HDR_SIZE, walk

    out = []
    for s in spans:
        area = bytearray(2 << max(12, (len(s) - 1).bit_length()))
        area[:len(s)] = s
        runs, _, _ = walk(memoryview(area), 0, len(s), relative=True)
        kept = bytearray()
        for off, length, count, stride in runs:
            for i in range(count):
                p = off + i * stride + HDR_SIZE
                if length >= 4 and _LEN.unpack_from(area, p)[0] in kinds:
                    pad = bytes(stride - HDR_SIZE - length)
                    kept += struct.pack("=II", length, 0) + area[p:p + length] + pad
        if kept:
            out.append(bytes(kept))
    return out


def replay(path: Path, repeat: int, profile: bool, only: List[str]) -> int:
    from rawbpf.elf import load_spec
    from rawbpf.monitor.shape import Catalog

    spans = list(_spans(path))
    spec = load_spec(str(OBJ))
    if only:
        values = {v for v, k in Catalog.from_btf(spec.btf).kinds.items() if k in only}
        spans = _only(spans, sorted(values))
    results = []
    records = 0
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="ring-replay-") as tmp:
            r = _Replay(spans, spec, tmp)
            try:
                if profile:
                    import cProfile
                    import pstats

                    pr = cProfile.Profile()
                    pr.runcall(r.run)
                    pstats.Stats(pr).sort_stats("tottime").print_stats(25)
                    return 0
                t0 = time.process_time()
                r.run()
                t1 = time.process_time()
            finally:
                r.writer.close()
            records = r.pipe.records
            results.append((t1 - t0) * 1e6 / max(1, records))
    results.sort()
    print(f"{records} records, {len(spans)} drains; CPU µs per ring record: best {results[0]:.2f}, "
          f"median {results[len(results) // 2]:.2f} (load {os.getloadavg()[0]:.2f})")
    return 0


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.ring_replay", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("capture")
    c.add_argument("kind", choices=["exec", "files"])
    c.add_argument("out", type=Path)
    c.add_argument("--rate", type=int, default=5000)
    c.add_argument("--secs", type=float, default=2.0)
    c.add_argument("--count", type=int, default=2000)
    r = sub.add_parser("replay")
    r.add_argument("path", type=Path)
    r.add_argument("--repeat", type=int, default=5)
    r.add_argument("--profile", action="store_true")
    r.add_argument("--only", action="append", default=[], metavar="KIND",
                   help="replay only the records of this kind (exec, file, ...); repeatable")
    args = ap.parse_args(argv)
    if args.cmd == "capture":
        return capture(args.kind, args.out, args)
    return replay(args.path, args.repeat, args.profile, args.only)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
