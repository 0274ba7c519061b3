"""Kernel cost of the monitor's handlers: BPF stats (run time / count) under connect and exec loops; kernel.

connect_untracked: a process the monitor does not track calls connect() in a loop; the figure is the summed
handler time of the connect handlers per connect() call. connect_tracked: the same loop run as "claude" (a
tracked root). exec_tracked: a tracked root spawns a static no-op program repeatedly; summed exec-handler time
per exec. Per-program figures are kept under "handlers" so a regression points at its handler.

floor_ns: an empty program attached beside the monitor's (on sys_exit_connect and inet_sock_set_state) costs
what BPF stats themselves cost per run; it is measured in the same loops, so ``*_vs_floor`` says how far an
untracked path is above doing nothing (the goal is at most 1.3x). tcp_connect_untracked / _tracked: a TCP
connect to a closed port from an untracked / tracked process (SYN, then the RST: the handshake outcome path),
the connect handler plus every TCP state-change run, per connect.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Dict, Iterator, List

from tools.bench.common import (
    MONITOR_OBJ,
    Context,
    Unavailable,
    bpf_stats,
    bpffs_dir,
    last_json,
    pinned_prog_ids,
    prog_stats,
    rawbpf_load,
    run,
    scratch,
)


def _delta(before: Dict[str, Dict[str, int]], after: Dict[str, Dict[str, int]]) -> Dict[str, Dict[str, int]]:
    return {n: {k: after[n][k] - before[n][k] for k in ("run_cnt", "run_time_ns")} for n in after}


def _per_event(delta: Dict[str, Dict[str, int]], match: Callable[[str], bool]) -> float:
    """Summed run time of the matching handlers divided by the events (the busiest handler's run count)."""
    chosen = {n: d for n, d in delta.items() if match(n) and not n.startswith("floor:")}
    if not chosen:
        raise Unavailable(f"no matching handler among {sorted(delta)}")
    events = max(d["run_cnt"] for d in chosen.values())
    if events == 0:
        raise RuntimeError(f"handlers {sorted(chosen)} never ran")
    return round(sum(d["run_time_ns"] for d in chosen.values()) / events, 1)


def _measure(ids: Dict[str, int], cmd: List[str], floor: Any = None) -> Dict[str, Dict[str, int]]:
    before = prog_stats(ids)
    fbefore = _floor_stats(floor)
    last_json(run(cmd, timeout=300))
    out = _delta(before, prog_stats(ids))
    for name, (cnt, ns) in _floor_stats(floor).items():
        out[f"floor:{name}"] = {"run_cnt": cnt - fbefore[name][0], "run_time_ns": ns - fbefore[name][1]}
    return out


def _floor_stats(floor: Any) -> Dict[str, Any]:
    out = {}
    for name, (prog, _link) in (floor or {}).items():
        info = prog.info(with_insns=False)
        out[name] = (info.run_cnt, info.run_time_ns)
    return out


@contextlib.contextmanager
def _empty_programs() -> Iterator[Dict[str, Any]]:
    """Empty programs of the monitor's kinds beside them: a tracepoint on sys_exit_connect and a tp_btf on
    inet_sock_set_state (the stats floor of each)."""
    from rawbpf import externs
    from rawbpf.asm import R0, Assembler
    from rawbpf.attach import attach_tracepoint, attach_tracing
    from rawbpf.consts import AttachType, ProgType
    from rawbpf.programs import Program

    insns = Assembler("empty").mov(R0, 0).exit().assemble()
    progs: Dict[str, Any] = {}
    try:
        p = Program.load(ProgType.TRACEPOINT, insns, name="bench_floor")
        progs["sys_exit_connect"] = (p, attach_tracepoint(p, "syscalls", "sys_exit_connect"))
        tid = externs.vmlinux_type_id("btf_trace_inet_sock_set_state", "TYPEDEF")
        p = Program.load(ProgType.TRACING, insns, name="bench_floor", attach_btf_id=tid,
                         expected_attach_type=AttachType.TRACE_RAW_TP)
        progs["inet_sock_set_state"] = (p, attach_tracing(p))
        yield progs
    finally:
        for p, link in progs.values():
            link.close()
            p.close()


def _floor_ns(d: Dict[str, Dict[str, int]], name: str) -> float:
    f = d.get(f"floor:{name}", {})
    return f["run_time_ns"] / f["run_cnt"] if f.get("run_cnt") else 0.0


def _per_op(d: Dict[str, Dict[str, int]], names: Any, ops: int) -> float:
    return round(sum(d[n]["run_time_ns"] for n in names if n in d) / ops, 1)


def run_section(ctx: Context) -> Dict[str, Any]:
    n = "50000" if ctx.quick else "300000"
    loop = str(ctx.helper("connect_loop"))
    tracked_loop = str(ctx.tracked("connect_loop"))
    storm = str(ctx.tracked("exec_storm"))
    tiny = str(ctx.helper("tiny_true"))
    out: Dict[str, Any] = {"handlers": {}}
    with bpffs_dir("kns") as pins, scratch("kns-log") as logs, bpf_stats(), \
            rawbpf_load(MONITOR_OBJ, pins, logs), _empty_programs() as floor:
        ids = pinned_prog_ids(pins)
        if not ids:
            raise Unavailable("rawbpf load pinned no programs or links under --pin-dir")

        def is_connect(name: str) -> bool:
            return "connect" in name

        def is_exec(name: str) -> bool:
            return "exec" in name

        d = _measure(ids, [loop, n], floor)
        out["connect_untracked"] = _per_event(d, is_connect)
        out["handlers"]["connect_untracked"] = d
        out["floor_ns"] = round(_floor_ns(d, "sys_exit_connect"), 1)
        out["connect_untracked_vs_floor"] = round(out["connect_untracked"] / max(1.0, out["floor_ns"]), 2)
        ntcp = "5000" if ctx.quick else "20000"
        tcp = ("handle_connect_exit", "handle_sock_state")
        d = _measure(ids, [loop, ntcp, "tcp"], floor)
        out["handlers"]["tcp_connect_untracked"] = d
        out["tcp_connect_untracked"] = _per_op(d, tcp, int(ntcp))
        floor_tcp = (_floor_ns(d, "sys_exit_connect") * d["handle_connect_exit"]["run_cnt"]
                     + _floor_ns(d, "inet_sock_set_state") * d["handle_sock_state"]["run_cnt"]) / int(ntcp)
        out["tcp_connect_untracked_vs_floor"] = round(out["tcp_connect_untracked"] / max(1.0, floor_tcp), 2)
        d = _measure(ids, [tracked_loop, ntcp, "tcp"], floor)
        out["handlers"]["tcp_connect_tracked"] = d
        out["tcp_connect_tracked"] = _per_op(d, tcp, int(ntcp))
        d = _measure(ids, [tracked_loop, n])
        out["connect_tracked"] = _per_event(d, is_connect)
        out["handlers"]["connect_tracked"] = d
        d = _measure(ids, [storm, "2000", "1" if ctx.quick else "3", "2", tiny])
        out["exec_tracked"] = _per_event(d, is_exec)
        out["handlers"]["exec_tracked"] = d
        out["exec_tracked_all_handlers_per_exec"] = _per_event(d, lambda name: True)
    return out
