#!/usr/bin/env python3
"""Print every exec() on the machine, from a tracepoint program written in BPF assembly text; touches the
kernel (root).

The program below is plain llvm-objdump syntax assembled by :func:`rawbpf.asm.assemble_text`: on
tp/sched/sched_process_exec it reserves a 24-byte record in a ring buffer, fills in the pid, uid and comm
(the command name after the exec) and submits it; user space reads the ring with
:class:`rawbpf.ringbuf.RingBuffer`. ``python programs/exec_snoop.py`` prints one line per exec until Ctrl-C;
``--listing`` shows the assembled instructions.
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from pathlib import Path
from typing import Callable, List, NamedTuple, Optional

if __package__ in (None, ""):  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rawbpf.asm import assemble_text, parse
from rawbpf.attach import Link, attach_tracepoint
from rawbpf.consts import MapType, ProgType
from rawbpf.errors import RawBPFError
from rawbpf.maps import Map
from rawbpf.programs import Program
from rawbpf.ringbuf import RingBuffer

SOURCE = """
    ; struct event { u32 pid; u32 uid; char comm[16]; }
    r1 = map(events) ll
    r2 = 24
    r3 = 0
    call bpf_ringbuf_reserve
    if r0 == 0 goto out              ; ring full: drop this one
    r6 = r0
    call bpf_get_current_pid_tgid
    r0 >>= 32                        ; tgid is the upper half
    *(u32 *)(r6 + 0) = r0
    call bpf_get_current_uid_gid
    *(u32 *)(r6 + 4) = r0            ; uid is the lower half
    r1 = r6
    r1 += 8
    r2 = 16
    call bpf_get_current_comm
    r1 = r6
    r2 = 0
    call bpf_ringbuf_submit
out:
    r0 = 0
    exit
"""

RING_BYTES = 1 << 18
_EVENT = struct.Struct("<II16s")


class Exec(NamedTuple):
    """One exec: the process id, its user id and its command name after the exec."""

    pid: int
    uid: int
    comm: str


class ExecSnoop:
    """The loaded and attached program with its ring buffer. Closing it detaches and frees everything."""

    def __init__(self, on_exec: Callable[[Exec], object], *, name: str = "exec_snoop") -> None:
        self.ring_map = Map.create(MapType.RINGBUF, 0, 0, RING_BYTES, name="exec_events")
        self.prog: Optional[Program] = None
        self.link: Optional[Link] = None
        self.ring: Optional[RingBuffer] = None
        try:
            insns = assemble_text(SOURCE, maps={"events": self.ring_map})
            self.prog = Program.load(ProgType.TRACEPOINT, insns, name=name)
            self.link = attach_tracepoint(self.prog, "sched", "sched_process_exec")
            self.ring = RingBuffer(self.ring_map, callback=lambda raw: on_exec(_decode(raw)))
        except BaseException:
            self.close()
            raise

    def poll(self, timeout_ms: int) -> int:
        """Wait up to ``timeout_ms`` for events and deliver them; returns how many were delivered."""
        assert self.ring is not None
        return self.ring.poll(timeout_ms)

    def close(self) -> None:
        for obj in (self.ring, self.link, self.prog, self.ring_map):
            if obj is not None:
                obj.close()

    def __enter__(self) -> ExecSnoop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _decode(raw: memoryview) -> Exec:
    pid, uid, comm = _EVENT.unpack_from(raw)
    return Exec(pid, uid, comm.split(b"\0", 1)[0].decode(errors="replace"))


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="print every exec() (root)")
    ap.add_argument("-d", "--duration", type=float, default=0.0, help="stop after this many seconds")
    ap.add_argument("--listing", action="store_true", help="print the program's instructions and exit")
    args = ap.parse_args(argv)
    if args.listing:
        print("\n".join(parse(SOURCE).disassemble()))
        return 0

    def show(e: Exec) -> None:
        print(f"{time.strftime('%H:%M:%S')} pid {e.pid:>7} uid {e.uid:>6} {e.comm}", flush=True)

    try:
        snoop = ExecSnoop(show)
    except RawBPFError as err:
        print(f"exec_snoop: {err}", file=sys.stderr)
        return 1
    start = time.monotonic()
    with snoop:
        try:
            while not args.duration or time.monotonic() - start < args.duration:
                snoop.poll(200)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
