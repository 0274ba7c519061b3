#!/usr/bin/env python3
"""Count exec() calls per user id with a hand-assembled tracepoint program; touches the kernel (root).

The program runs on tp/sched/sched_process_exec, takes the uid from bpf_get_current_uid_gid() and adds one
to its entry in a hash map (uid → u64), creating the entry when it is the user's first exec. It is written
with rawbpf's assembler DSL, so no compiler is involved: ``python programs/exec_count.py`` loads it, prints
the counts every interval and cleans up on Ctrl-C (closing the link detaches the program).
"""

from __future__ import annotations

import argparse
import pwd
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

if __package__ in (None, ""):  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rawbpf.asm import R0, R1, R2, R3, R4, R10, Assembler
from rawbpf.attach import Link, attach_tracepoint
from rawbpf.consts import MapType, ProgType
from rawbpf.errors import RawBPFError
from rawbpf.maps import Map
from rawbpf.programs import Program

BPF_NOEXIST = 1
MAP = "exec_counts"


def build() -> Assembler:
    """The tracepoint program; map ``exec_counts`` is resolved when assembled."""
    p = Assembler("exec_count")
    p.call("bpf_get_current_uid_gid")
    p.stx_w(R10, -4, R0)                               # key = uid (low half)
    p.ld_map_fd(R1, MAP).mov(R2, R10).add(R2, -4)
    p.call("bpf_map_lookup_elem")
    p.jne(R0, 0, "add")
    p.st_dw(R10, -16, 1)                               # first exec of this uid: insert 1
    p.ld_map_fd(R1, MAP).mov(R2, R10).add(R2, -4).mov(R3, R10).add(R3, -16).mov(R4, BPF_NOEXIST)
    p.call("bpf_map_update_elem")
    p.jeq(R0, 0, "out")
    p.ld_map_fd(R1, MAP).mov(R2, R10).add(R2, -4)     # another CPU inserted it first: add to theirs
    p.call("bpf_map_lookup_elem")
    p.jeq(R0, 0, "out")
    p.label("add")
    p.mov(R1, 1).atomic_add(R0, 0, R1)
    p.label("out")
    p.mov(R0, 0).exit()
    return p


class ExecCounter:
    """The loaded and attached counter. Closing it detaches the program and frees the map."""

    def __init__(self, *, max_users: int = 4096, name: str = "exec_count") -> None:
        self.map = Map.create(MapType.HASH, 4, 8, max_users, name=MAP)
        self.prog: Optional[Program] = None
        self.link: Optional[Link] = None
        try:
            self.prog = Program.load(ProgType.TRACEPOINT, build().assemble(maps={MAP: self.map}), name=name)
            self.link = attach_tracepoint(self.prog, "sched", "sched_process_exec")
        except BaseException:
            self.close()
            raise

    def counts(self) -> Dict[int, int]:
        """uid → number of execs seen since loading."""
        return {int.from_bytes(k, "little"): int.from_bytes(v, "little") for k, v in self.map.items()}

    def close(self) -> None:
        for obj in (self.link, self.prog, self.map):
            if obj is not None:
                obj.close()

    def __enter__(self) -> ExecCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="count exec() calls per user (root)")
    ap.add_argument("-i", "--interval", type=float, default=2.0, help="seconds between reports")
    ap.add_argument("-d", "--duration", type=float, default=0.0, help="stop after this many seconds")
    ap.add_argument("--listing", action="store_true", help="print the program's instructions and exit")
    args = ap.parse_args(argv)
    if args.listing:
        print("\n".join(build().disassemble()))
        return 0
    try:
        counter = ExecCounter()
    except RawBPFError as err:
        print(f"exec_count: {err}", file=sys.stderr)
        return 1
    start = time.monotonic()
    with counter:
        try:
            while not args.duration or time.monotonic() - start < args.duration:
                time.sleep(args.interval if not args.duration else
                           max(0.0, min(args.interval, args.duration - (time.monotonic() - start))))
                rows = sorted(counter.counts().items(), key=lambda kv: -kv[1])
                print(f"--- {time.strftime('%H:%M:%S')}  execs per user")
                for uid, count in rows:
                    print(f"{_user(uid):>16} {uid:>7} {count:>10}")
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
