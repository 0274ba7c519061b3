"""Kernel cost of the monitor's file, DNS and TLS programs, and whole-workload overhead; kernel.

BPF run time per event (BPF stats) of the programs on sys_exit_openat, sys_exit_write and sys_exit_sendto
for an untracked process, beside an empty program on the same tracepoint in the same run (the floor: what
BPF stats and the call cost for doing nothing); ``*_vs_floor`` is the ratio (the goal is at most 1.3x).
Tracked costs: per file event (a tracked process creates distinct files: a path walk and a record each),
per folded repeat (one file reopened for appending), and per DNS packet (a tracked process sends queries to
port 53: the socket is watched, the message copied into a record).

workload_*: a fixed file-heavy job (unpack a small C project, build it with make and gcc, then git init,
add, commit, status, log) run (a) by an untracked process and (b) under a tracked ``claude`` process, with
and without the monitor, interleaved; the medians and the slowdown in percent, and the records the
monitor lost meanwhile. On a shared, loaded VM wall-clock medians move by more than the effect, so the CPU
the monitor itself spent because of each job is measured too: its programs' BPF run time (stats) and its
daemon's user+system time (/proc) during the job, less what it spends per second while no job runs (other
Claude processes on the host, timers: ``workload_monitor_idle_cpu_pct``), as a percentage of the job's wall
time (``*_cpu_pct``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

from tools.bench.common import (
    MONITOR_OBJ,
    Context,
    Unavailable,
    bpf_stats,
    bpffs_dir,
    last_json,
    median,
    pinned_prog_ids,
    prog_stats,
    rawbpf_load,
    run,
    scratch,
)

TRACEPOINTS = ("sys_exit_openat", "sys_exit_write", "sys_exit_sendto")
# Only the bench's own processes are tracked: other Claude processes on the host (tests, sessions) would add
# their tracked runs to the per-event averages of the untracked loops and to the monitor's CPU.
TRACK_NAME = "claude-bench"
LOAD_ARGS = ("--no-default-rules", "--match-comm", TRACK_NAME, "--no-seed")


def _tracked(ctx: Context, target: Path) -> Path:
    """A symlink named TRACK_NAME to ``target``: exec'd through it, the process is a tracked root."""
    link = ctx.work / f"track-{target.name}" / TRACK_NAME
    if not link.exists():
        link.parent.mkdir(exist_ok=True)
        link.symlink_to(target)
    return link


@contextlib.contextmanager
def _floors() -> Iterator[Dict[str, Any]]:
    """An empty tracepoint program on each measured tracepoint."""
    from rawbpf.asm import R0, Assembler
    from rawbpf.attach import attach_tracepoint
    from rawbpf.consts import ProgType
    from rawbpf.programs import Program

    insns = Assembler("empty").mov(R0, 0).exit().assemble()
    progs: Dict[str, Any] = {}
    try:
        for tp in TRACEPOINTS:
            p = Program.load(ProgType.TRACEPOINT, insns, name="bench_floor")
            progs[tp] = (p, attach_tracepoint(p, "syscalls", tp))
        yield progs
    finally:
        for p, link in progs.values():
            link.close()
            p.close()


def _stats(ids: Dict[str, int], floors: Dict[str, Any]) -> Dict[str, List[int]]:
    out = {n: [s["run_cnt"], s["run_time_ns"]] for n, s in prog_stats(ids).items()}
    for tp, (p, _link) in floors.items():
        info = p.info(with_insns=False)
        out[f"floor:{tp}"] = [info.run_cnt, info.run_time_ns]
    return out


def _measure(ids: Dict[str, int], floors: Dict[str, Any], cmd: List[str]) -> Dict[str, List[int]]:
    before = _stats(ids, floors)
    last_json(run(cmd, timeout=300))
    after = _stats(ids, floors)
    return {n: [after[n][0] - before[n][0], after[n][1] - before[n][1]] for n in after}


def _avg(d: Dict[str, List[int]], name: str) -> float:
    cnt, ns = d.get(name, [0, 0])
    if not cnt:
        raise RuntimeError(f"{name} never ran")
    return ns / cnt


def _tracked_per_event(d: Dict[str, List[int]], name: str, events: int, untracked_ns: float) -> float:
    """Run time of ``name`` during a tracked loop of ``events`` events, less the other (untracked) runs the
    host made meanwhile, per event."""
    cnt, ns = d[name]
    return round((ns - max(0, cnt - events) * untracked_ns) / events, 1)


def kernel_costs(ctx: Context, out: Dict[str, Any]) -> None:
    n = "50000" if ctx.quick else "300000"
    nt = 2000 if ctx.quick else 10000
    loop = str(ctx.helper("file_loop"))
    tracked = str(_tracked(ctx, ctx.helper("file_loop")))
    with bpffs_dir("files") as pins, scratch("files-log") as logs, scratch("files-out") as work, \
            bpf_stats(), rawbpf_load(MONITOR_OBJ, pins, logs, extra=LOAD_ARGS), _floors() as floors:
        ids = pinned_prog_ids(pins)
        if "files_exit_openat" not in ids:
            raise Unavailable("the monitor object has no file programs")
        for mode, tp in (("openat", "sys_exit_openat"), ("write", "sys_exit_write"),
                         ("sendto", "sys_exit_sendto")):
            d = _measure(ids, floors, [loop, mode, n])
            prog = "files_exit_" + tp[len("sys_exit_"):]
            mine, floor = _avg(d, prog), _avg(d, f"floor:{tp}")
            out[f"{mode}_untracked_ns"] = round(mine, 1)
            out[f"{mode}_floor_ns"] = round(floor, 1)
            out[f"{mode}_untracked_vs_floor"] = round(mine / max(1.0, floor), 2)
        untracked_open = out["openat_untracked_ns"]
        d = _measure(ids, floors, [tracked, "create", str(nt), str(work)])
        out["file_event_tracked_ns"] = _tracked_per_event(d, "files_exit_openat", nt, untracked_open)
        d = _measure(ids, floors, [tracked, "rewrite", str(nt), str(work)])
        out["file_repeat_tracked_ns"] = _tracked_per_event(d, "files_exit_openat", nt, untracked_open)
        d = _measure(ids, floors, [tracked, "dns", str(nt)])
        out["dns_packet_tracked_ns"] = _tracked_per_event(d, "files_exit_sendto", nt,
                                                          out["sendto_untracked_ns"])


_C_FILE = """#include <stdio.h>
int f{i}(int x) {{ int s = 0; for (int k = 0; k < x; k++) s += k * {i}; return s; }}
"""
_MAIN = """#include <stdio.h>
{decls}
int main(void) {{ long s = 0; {calls} printf("%ld\\n", s); return 0; }}
"""
_JOB = """set -e
rm -rf w && mkdir w && tar xf {tar} -C w && cd w
make -s -j1
git init -q . && git add -A && git -c user.name=b -c user.email=b@b commit -qm build
echo change >> f0.c && git status --short >/dev/null && git diff --stat >/dev/null
git log --oneline >/dev/null
git -c user.name=b -c user.email=b@b commit -qam change && git gc -q
"""


def _project(work: Path, files: int) -> Path:
    src = work / "proj"
    src.mkdir()
    for i in range(files):
        (src / f"f{i}.c").write_text(_C_FILE.format(i=i))
    (src / "main.c").write_text(_MAIN.format(
        decls="\n".join(f"int f{i}(int);" for i in range(files)),
        calls=" ".join(f"s += f{i}({i});" for i in range(files))))
    objs = " ".join(f"f{i}.o" for i in range(files))
    rules = f"app: main.o {objs}\n\tcc -o app main.o {objs}\n%.o: %.c\n\tcc -O1 -c $<\n"
    (src / "Makefile").write_text(rules)
    tar = work / "proj.tar"
    with tarfile.open(tar, "w") as t:
        for p in sorted(src.iterdir()):
            t.add(p, arcname=p.name)
    shutil.rmtree(src)
    return tar


def _timed(cmd: List[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


_LOST = re.compile(r"lost: kernel (\d+), perf (\d+), log (\d+)")


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _bpf_ns(ids: Dict[str, int]) -> int:
    return sum(s["run_time_ns"] for s in prog_stats(ids).values())


def workload(ctx: Context, out: Dict[str, Any]) -> None:
    if shutil.which("git") is None or shutil.which("cc") is None or shutil.which("make") is None:
        raise Unavailable("git, cc and make are needed for the workload")
    reps = 2 if ctx.quick else 7
    with scratch("files-job") as work:
        tar = _project(work, 12 if ctx.quick else 24)
        job = work / "job.sh"
        job.write_text(_JOB.format(tar=tar))
        claude = _tracked(ctx, Path(shutil.which("bash") or "/bin/bash"))  # the job's whole tree is tracked
        cmds = {"untracked": ["bash", str(job)], "tracked": [str(claude), str(job)]}
        times: Dict[str, List[float]] = {f"{w}_{m}": [] for w in cmds for m in ("off", "on")}
        cpu: Dict[str, List[float]] = {w: [] for w in cmds}  # the monitor's CPU (BPF + daemon) / job time
        background: List[float] = []
        lost = 0
        for cmd in cmds.values():  # warm the page cache and the compiler once
            _timed(cmd, work)
        for rep in range(reps):
            order = ("on", "off") if rep % 2 == 0 else ("off", "on")
            for mode in order:
                if mode == "on":
                    with bpffs_dir("files-job") as pins, scratch("files-job-log") as logs, bpf_stats(), \
                            rawbpf_load(MONITOR_OBJ, pins, logs, extra=LOAD_ARGS) as daemon:
                        ids = pinned_prog_ids(pins)
                        time.sleep(0.5)  # past the daemon's start-up work

                        def spent(ids: Dict[str, int] = ids, pid: int = daemon.proc.pid) -> float:
                            return _bpf_ns(ids) / 1e9 + _cpu_s(pid)

                        # the monitor's CPU while the job does not run: other Claude processes on this
                        # host are recorded too, and the daemon's timers tick; the job's share is the rest
                        s0, t0 = spent(), time.perf_counter()
                        time.sleep(2.0)
                        idle = (spent() - s0) / (time.perf_counter() - t0)
                        for name, cmd in cmds.items():
                            s0 = spent()
                            t = _timed(cmd, work)
                            time.sleep(0.3)  # the records of the job's end are consumed
                            used = spent() - s0
                            times[f"{name}_on"].append(t)
                            cpu[name].append(max(0.0, used - idle * (t + 0.3)) / t * 100)
                            background.append(idle * 100)
                    for line in daemon.output:
                        m = _LOST.search(line)
                        if m:
                            lost += sum(int(x) for x in m.groups())
                else:
                    for name, cmd in cmds.items():
                        times[f"{name}_off"].append(_timed(cmd, work))
        for name in cmds:
            off, on = median(times[f"{name}_off"]), median(times[f"{name}_on"])
            out[f"workload_{name}_off_s"] = round(off, 3)
            out[f"workload_{name}_on_s"] = round(on, 3)
            out[f"workload_{name}_overhead_pct"] = round((on / off - 1) * 100, 2)
            out[f"workload_{name}_cpu_pct"] = round(median(cpu[name]), 2)
        out["workload_monitor_idle_cpu_pct"] = round(median(background), 2)
        out["workload_lost"] = lost
        out["workload_runs"] = reps


def run_section(ctx: Context) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    kernel_costs(ctx, out)
    workload(ctx, out)
    os.sync()
    return out
