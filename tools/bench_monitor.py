#!/usr/bin/env python3
"""Kernel cost of the Claude monitor's programs, from BPF run-time stats (root; a benchmark, not a test).

Phases, each measured as the change in ``run_time_ns / run_cnt`` of the programs involved:

* untracked connect: UDP connect(2) from this (untracked) process: every connect program of the object (today
  one, at sys_exit_connect; older objects also ran one at sys_enter_connect);
* tracked connect: the same after this process is made a tracked Claude process (records are consumed);
* exec untracked / tracked: /bin/true spawned from an untracked / tracked parent (handle_exec; the untracked
  case runs the identification rules);
* fork, exit and rename costs seen along the way;
* TCP connect untracked / tracked: a loopback TCP connection made, accepted and closed, per connection: the
  connect program plus every TCP state change (``handle_sock_state`` runs for each, host-wide: entering
  SYN_SENT is a byte test for an untracked process; the handshake's end needs a lookup only while a tracked
  handshake is pending), net of the floor for each run.

BPF stats time each run with two clock reads, which cost real time on a VM: an empty program attached to the
same tracepoints measures that floor, and ``net`` is the measured average minus the floor (the programs' own
cost). Other activity on the host runs the same programs while we measure; the numbers are averages, so run
it on a quiet machine. Prints a table, or JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rawbpf.asm import R0, Assembler  # noqa: E402
from rawbpf.attach import attach_tracepoint  # noqa: E402
from rawbpf.collection import Collection  # noqa: E402
from rawbpf.consts import ProgType  # noqa: E402
from rawbpf.elf import load_spec  # noqa: E402
from rawbpf.monitor.config import MonitorConfig  # noqa: E402
from rawbpf.monitor.run import enum_value, prepare, track  # noqa: E402
from rawbpf.programs import Program, enable_stats  # noqa: E402
from rawbpf.ringbuf import RingBuffer  # noqa: E402


def _stats(coll: Collection) -> Dict[str, Any]:
    out = {}
    for name, p in coll.programs.items():
        info = p.info(with_insns=False)
        out[name] = (info.run_cnt, info.run_time_ns)
    return out


def _floor_stats(floor: Dict[str, Program]) -> Dict[str, Any]:
    out = {}
    for name, p in floor.items():
        info = p.info(with_insns=False)
        out[name] = (info.run_cnt, info.run_time_ns)
    return out


def _measure(coll: Collection, fn: Callable[[], None], progs: tuple,
             floor: Dict[str, Program]) -> Dict[str, Any]:
    before, fbefore = _stats(coll), _floor_stats(floor)
    t0 = time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    after, fafter = _stats(coll), _floor_stats(floor)
    res: Dict[str, Any] = {"wall_s": round(wall, 3)}
    fl = [(fafter[n][1] - fbefore[n][1]) / max(1, fafter[n][0] - fbefore[n][0]) for n in floor]
    floor_ns = sum(fl) / len(fl) if fl else 0.0
    total = net = 0.0
    for name in progs:
        runs = after[name][0] - before[name][0]
        ns = after[name][1] - before[name][1]
        avg = ns / runs if runs else 0.0
        res[name] = {"runs": runs, "avg_ns": round(avg, 1), "net_ns": round(max(0.0, avg - floor_ns), 1)}
        total += avg
        net += max(0.0, avg - floor_ns)
    res["floor_ns"] = round(floor_ns, 1)
    res["sum_avg_ns"] = round(total, 1)
    res["sum_net_ns"] = round(net, 1)
    return res


def _measure_per_op(coll: Collection, fn: Callable[[], None], progs: tuple, floor: Dict[str, Program],
                    ops: int) -> Dict[str, Any]:
    """Like _measure, but totals per operation (``ops`` of them) for programs that run several times each."""
    before, fbefore = _stats(coll), _floor_stats(floor)
    fn()
    after, fafter = _stats(coll), _floor_stats(floor)
    fl = [(fafter[n][1] - fbefore[n][1]) / max(1, fafter[n][0] - fbefore[n][0]) for n in floor]
    floor_ns = sum(fl) / len(fl) if fl else 0.0
    res: Dict[str, Any] = {"ops": ops, "floor_ns": round(floor_ns, 1)}
    total = net = 0.0
    for name in progs:
        runs = after[name][0] - before[name][0]
        ns = after[name][1] - before[name][1]
        res[name] = {"runs_per_op": round(runs / ops, 2), "avg_ns": round(ns / runs if runs else 0.0, 1)}
        total += ns / ops
        net += max(0.0, ns - floor_ns * runs) / ops
    res["sum_avg_ns"] = round(total, 1)
    res["sum_net_ns"] = round(net, 1)
    return res


def _empty_programs() -> Dict[str, Any]:
    """An empty program on each connect tracepoint, on sched_process_exec and on inet_sock_set_state: the
    stats floor."""
    progs: Dict[str, Any] = {}
    insns = Assembler("empty").mov(R0, 0).exit().assemble()
    for cat, tp in (("syscalls", "sys_enter_connect"), ("syscalls", "sys_exit_connect"),
                    ("sched", "sched_process_exec"), ("sock", "inet_sock_set_state")):
        p = Program.load(ProgType.TRACEPOINT, insns, name="bench_floor")
        progs[tp] = (p, attach_tracepoint(p, cat, tp))
    return progs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=50000, help="connects per phase")
    ap.add_argument("--execs", type=int, default=300, help="execs per phase")
    ap.add_argument("--tcp", type=int, default=3000, help="TCP connections per phase")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--object", default=str(ROOT / "programs" / "claude_monitor.o"), help=argparse.SUPPRESS)
    ns = ap.parse_args()

    cfg = MonitorConfig()
    spec = load_spec(ns.object)
    results: Dict[str, Any] = {}
    empties = _empty_programs()
    conn_floor = {k: empties[k][0] for k in ("sys_enter_connect", "sys_exit_connect")}
    exec_floor = {"sched_process_exec": empties["sched_process_exec"][0]}
    tcp_floor = {k: empties[k][0] for k in ("sys_exit_connect", "inet_sock_set_state")}
    with Collection.load(spec, constants=cfg.constants()) as coll, enable_stats():
        prepare(coll, cfg)
        coll.attach_all()
        records = [0]

        def count(_b: Any) -> None:
            records[0] += 1

        rb = RingBuffer(coll.maps["events"], callback=count)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

        def connects() -> None:
            for i in range(ns.n):
                sock.connect(("127.0.0.1", 9))
                if i % 256 == 0:
                    rb.drain()
            rb.drain()

        def execs() -> None:
            for _ in range(ns.execs):
                subprocess.run(["/bin/true"], check=True)
            rb.drain()

        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(64)

        def tcp() -> None:
            for i in range(ns.tcp):
                c = socket.create_connection(srv.getsockname())
                a, _ = srv.accept()
                c.close()
                a.close()
                if i % 64 == 0:
                    rb.drain()
            rb.drain()

        connects()  # warm up
        pair = tuple(n for n in ("handle_connect_enter", "handle_connect_exit") if n in coll.programs)
        four = ("handle_exec", "handle_fork", "handle_exit", "handle_rename")
        results["untracked_connect"] = _measure(coll, connects, pair, conn_floor)
        results["untracked_exec"] = _measure(coll, execs, four, exec_floor)
        tcp_progs = ("handle_connect_exit", "handle_sock_state")
        results["untracked_tcp_connect"] = _measure_per_op(coll, tcp, tcp_progs, tcp_floor, ns.tcp)

        # become a tracked Claude process
        btf = coll.spec.btf
        with open(f"/proc/{os.getpid()}/stat") as f:
            ticks = int(f.read().rpartition(")")[2].split()[19])
        flags = enum_value(btf, "proc_flags", "PI_COARSE_START")
        track(coll, os.getpid(), start_ns=ticks * 10_000_000, root_pid=os.getpid(), flags=flags)
        results["tracked_connect"] = _measure(coll, connects, pair, conn_floor)
        results["tracked_exec"] = _measure(coll, execs, four, exec_floor)
        results["tracked_tcp_connect"] = _measure_per_op(coll, tcp, tcp_progs, tcp_floor, ns.tcp)
        srv.close()
        coll.maps["tracked"].delete(os.getpid())
        with coll.maps["tracked_pids"].mmap() as mm:
            mm[os.getpid()] = 0
        rb.drain()
        results["records_consumed"] = records[0]
        sock.close()
        rb.close()
    for p, link in empties.values():
        link.close()
        p.close()
    # the goals: per connect (all connect programs), and per exec for handle_exec alone
    results["goals_ns"] = {"untracked_connect": 60, "tracked_connect": 300, "tracked_exec/handle_exec": 3000}
    if ns.json:
        print(json.dumps(results, indent=2))
        return 0
    goals = results["goals_ns"]
    print("phase                      measured      net  (net = measured - empty-program floor per run)")
    for phase in ("untracked_connect", "tracked_connect", "untracked_exec", "tracked_exec"):
        r = results[phase]
        goal = goals.get(phase)
        print(f"{phase:<25} {r['sum_avg_ns']:>7.0f} ns {r['sum_net_ns']:>6.0f} ns"
              + (f"  goal <= {goal}" if goal else "") + f"  (floor {r['floor_ns']:.0f} ns/run)")
        for k, v in r.items():
            if isinstance(v, dict):
                g = goals.get(f"{phase}/{k}")
                print(f"    {k:<21} {v['avg_ns']:>7.0f} ns {v['net_ns']:>6.0f} ns  {v['runs']} runs"
                      + (f"  goal <= {g}" if g else ""))
    print("per TCP connection (connect, accept, close on loopback; all program runs, net of the floor)")
    for phase in ("untracked_tcp_connect", "tracked_tcp_connect"):
        r = results[phase]
        print(f"{phase:<25} {r['sum_avg_ns']:>7.0f} ns {r['sum_net_ns']:>6.0f} ns"
              f"  (floor {r['floor_ns']:.0f} ns/run)")
        for k, v in r.items():
            if isinstance(v, dict):
                print(f"    {k:<21} {v['avg_ns']:>7.0f} ns/run  {v['runs_per_op']} runs per connection")
    print(f"records consumed: {results['records_consumed']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
