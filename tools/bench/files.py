"""Kernel cost of the monitor's file, DNS and TLS programs, and whole-workload overhead; kernel.

BPF run time per event (BPF stats) of the programs on sys_exit_openat, sys_exit_write, sys_exit_sendto,
sys_exit_read and sys_exit_writev for an untracked process, beside an empty program on the same tracepoint
in the same run (the floor: what BPF stats and the call cost for doing nothing); ``*_vs_floor`` is the
ratio (the goal is at most 1.3x).
Tracked costs: per file event (a tracked process creates distinct files: a path walk and a record each),
per folded repeat (one file reopened for appending), per DNS packet (a tracked process sends queries to
port 53: the socket is watched, the message copied into a record), and per read of a tracked process from
a file that is not a watched socket (``read_tracked_ns``: what every read of a tracked process pays).

workload_*: a fixed file-heavy job (unpack a generated 60-file C project into a fresh directory, build it with
make -j1 and cc -O2, run it, git init/add/commit, edit, status, diff, rebuild, commit, log, gc, remove it) run
(a) by an untracked process and (b) under a tracked root, with the monitor attached and with no monitor at
all. The monitor is loaded and unloaded between blocks (outside the timed jobs), not left loaded with
tracking switched off: a loaded monitor's programs run in every monitored syscall of every process, which is
cost (a) itself. Blocks alternate ABBA (on off, off on, ...), each runs both jobs twice in mirrored order, one
warm-up round is discarded; every run with the monitor is paired with its place in the neighbouring block
without, and a figure is the median of the pairs' differences with its sign-test interval
(:mod:`tools.bench.paired`). Wall time, and CPU time: the job tree's user+system (wait4's rusage; the
programs run inside the job's syscalls) plus the daemon's CPU the job caused (its CPU meanwhile less its idle
rate, measured in each block before the jobs and reported as ``workload_monitor_idle_cpu_pct``). The job and
the daemon run at nice -10 so that bursts of other work on a shared host disturb them less. Lost records are
the ``lost`` records of each block's log, ``workload_records`` the tracked job's records. A separate run with
BPF stats on (their timing is a cost of its own, kept out of the pairs) splits the kernel side by program
(``*_bpf_pct``, ``*_bpf_top``); ``*_dispatch_pct`` is the programs' runs on perf tracepoints times
``openat_dispatch_ns`` (what one empty program on sys_exit_openat costs an openat beyond its run time);
``*_accounted_pct`` adds the three with the daemon's share: the cost the monitor's own counters account for,
unaffected by the host's load.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

from tools.bench import paired
from tools.bench.common import (
    MONITOR_OBJ,
    Context,
    Unavailable,
    bpf_stats,
    bpffs_dir,
    last_json,
    median,
    pinned_prog_ids,
    prog_info,
    prog_stats,
    rawbpf_load,
    run,
    scratch,
)
from tools.bench.logs import records as log_records

TRACEPOINTS = ("sys_exit_openat", "sys_exit_write", "sys_exit_sendto", "sys_exit_read", "sys_exit_writev")
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
                         ("sendto", "sys_exit_sendto"), ("read", "sys_exit_read"),
                         ("writev", "sys_exit_writev")):
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
        d = _measure(ids, floors, [tracked, "read", str(nt)])
        out["read_tracked_ns"] = _tracked_per_event(d, "files_exit_read", nt, out["read_untracked_ns"])


# The job's project: a small C program of PROJECT_FILES translation units sharing a header, built with cc
# -O2 one file at a time, so the job is thousands of opens, reads, writes, creates, renames and deletes and
# many short processes (cc1, as, ld, git) — what an agent's build-and-commit step does to a machine.
_HEADER = """#include <stddef.h>
struct item {{ int id; char name[32]; double weight; }};
{decls}
"""
_UNIT = """#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util.h"
static int by_weight{i}(const void *a, const void *b) {{
    const struct item *x = a, *y = b;
    return (x->weight > y->weight) - (x->weight < y->weight);
}}
int f{i}(struct item *v, size_t n) {{
    int s = 0;
    qsort(v, n, sizeof *v, by_weight{i});
    for (size_t k = 0; k < n; k++) {{
        snprintf(v[k].name, sizeof v[k].name, "f{i}-%zu", k);
        s += (int)strlen(v[k].name) * {i};
    }}
    return s;
}}
"""
_MAIN = """#include <stdio.h>
#include "util.h"
int main(void) {{ struct item v[8] = {{{{0}}}}; long s = 0;
{calls}
printf("%ld\\n", s); return 0; }}
"""
# Everything in a fresh directory, removed at the end: no run sees another's files or objects.
_JOB = """set -e
d=$(mktemp -d {base}/run-XXXXXX)
cd "$d"
tar xf {tar}
make -s -j1
./app >/dev/null
git init -q . && git add -A && git commit -qm build
sed -i 's/return s;/return s + 1;/' f0.c
git status --short >/dev/null && git diff --stat >/dev/null
make -s -j1
git commit -qam change && git log --oneline >/dev/null && git gc -q
cd / && rm -rf "$d"
"""
PROJECT_FILES = 60


def _project(work: Path, files: int) -> Path:
    """The project as a tarball (fixed content and mtimes: every run unpacks the same bytes)."""
    src = work / "proj"
    src.mkdir()
    (src / "util.h").write_text(_HEADER.format(
        decls="\n".join(f"int f{i}(struct item *v, size_t n);" for i in range(files))))
    for i in range(files):
        (src / f"f{i}.c").write_text(_UNIT.format(i=i))
    (src / "main.c").write_text(_MAIN.format(calls="\n".join(f"s += f{i}(v, 8);" for i in range(files))))
    objs = " ".join(f"f{i}.o" for i in range(files))
    (src / "Makefile").write_text(f"app: main.o {objs}\n\tcc -o app main.o {objs}\n"
                                  "%.o: %.c util.h\n\tcc -O2 -c $<\n")
    tar = work / "proj.tar"
    with tarfile.open(tar, "w") as t:
        for p in sorted(src.iterdir()):
            info = t.gettarinfo(str(p), arcname=p.name)
            info.mtime = 1_700_000_000
            with p.open("rb") as f:
                t.addfile(info, f)
    shutil.rmtree(src)
    return tar


def _job_env(work: Path) -> Dict[str, str]:
    """No user or system git configuration, a fixed identity and locale: the same job on every host."""
    home = work / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", LC_ALL="C",
               GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="b@example.org",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="b@example.org")
    return env


#: the job and the monitor's daemon run at this nice value: on a host shared with busy (mostly niced) work,
#: a job at the default priority waits for CPU in bursts, which buries a 1 % effect in noise
NICE = -10


def _boost(pid: int = 0) -> None:
    """Set NICE on ``pid`` (0: the calling process) and on every thread it already has."""
    tasks = [pid] if pid == 0 else [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    for tid in tasks:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid, NICE)


def _run_job(cmd: List[str], env: Dict[str, str]) -> Tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system of the job's whole tree, from wait4's rusage: the BPF programs
    run in the job's own syscalls, so their cost is in its system time) and the job's pid."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, preexec_fn=_boost)
    _pid, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode != 0:
        tail = (err.strip().splitlines() or ["(no stderr)"])[-1]
        raise RuntimeError(f"workload job exited {proc.returncode}: {tail}")
    return wall, ru.ru_utime + ru.ru_stime, proc.pid


def _log_counts(log_dir: Path, roots: List[int], kinds: Dict[str, int]) -> Tuple[List[int], int]:
    """Records of each tracked job's tree (by its root pid; added up by type into ``kinds``) and the records
    the monitor reported lost."""
    per_root = dict.fromkeys(roots, 0)
    lost = 0
    for rec in log_records(log_dir):
        if rec.get("type") == "lost":
            lost += int(rec.get("count", 0))
        elif rec.get("root_pid") in per_root:
            per_root[rec["root_pid"]] += 1
            kinds[str(rec.get("type"))] = kinds.get(str(rec.get("type")), 0) + 1
    return [per_root[r] for r in roots], lost


def _cpu_s(pid: int) -> float:
    """CPU seconds of every thread of ``pid`` so far, from schedstat (nanoseconds: /proc's stat counts in
    10 ms ticks, coarser than what a daemon spends during one job)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            total += int(f.read().split()[0])
    return total / 1e9


SETTLE_S = 2.0
IDLE_S = 3.0
#: blocks with the monitor and as many without, alternating; each runs both jobs twice (U T T U or T U U T)
BLOCKS = 4
#: past this many seconds of paired runs, the next whole ABBA round is not started
BUDGET_S = 150.0
WARMUP = 1


@contextlib.contextmanager
def _monitor(prefix: str, logs: Path) -> Iterator[Any]:
    """The monitor tracking only TRACK_NAME trees, logging to ``logs`` (the caller's: read after the stop)."""
    with bpffs_dir(prefix) as pins, rawbpf_load(MONITOR_OBJ, pins, logs, extra=LOAD_ARGS) as daemon:
        _boost(daemon.proc.pid)  # as the job: the daemon keeps up with it as it would on a quiet host
        time.sleep(SETTLE_S)  # past the daemon's start-up work
        yield daemon


def workload(ctx: Context, out: Dict[str, Any]) -> None:
    """Paired, interleaved runs of the job with the monitor attached and with no monitor at all."""
    if shutil.which("git") is None or shutil.which("cc") is None or shutil.which("make") is None:
        raise Unavailable("git, cc and make are needed for the workload")
    blocks = 2 if ctx.quick else BLOCKS
    with scratch("files-job") as work:
        tar = _project(work, 12 if ctx.quick else PROJECT_FILES)
        job = work / "job.sh"
        job.write_text(_JOB.format(base=work, tar=tar))
        env = _job_env(work)
        claude = _tracked(ctx, Path(shutil.which("bash") or "/bin/bash"))  # the job's whole tree is tracked
        cmds = {"untracked": ["bash", str(job)], "tracked": [str(claude), str(job)]}
        wall: Dict[str, List[float]] = {f"{w}_{m}": [] for w in cmds for m in ("off", "on")}
        cpu: Dict[str, List[float]] = {f"{w}_{m}": [] for w in cmds for m in ("off", "on")}
        daemon_cpu: Dict[str, List[float]] = {w: [] for w in cmds}
        records: List[int] = []
        kinds: Dict[str, int] = {}
        idle: List[Tuple[float, float]] = []  # the daemon's (CPU, wall) seconds before each block's jobs
        daemon_wall: Dict[str, List[float]] = {w: [] for w in cmds}
        lost = 0
        for _ in range(WARMUP):  # page cache, compiler, git: discarded
            for cmd in cmds.values():
                _run_job(cmd, env)
        loads = [os.getloadavg()[0]]
        started = time.monotonic()
        for i in range(blocks * 2):
            # ABBA twice over: the monitor's half of a pair comes first in every other pair, and the jobs'
            # order inside a block mirrors itself, so drift in the host's load cancels out of the pairs
            u, t = "untracked", "tracked"
            seq = [u, t, t, u] if (i // 2) % 2 == 0 else [t, u, u, t]
            mode = "on" if (i + i // 2) % 2 == 0 else "off"
            if mode == "off":
                for name in seq:
                    secs, cpus, _pid = _run_job(cmds[name], env)
                    wall[f"{name}_off"].append(secs)
                    cpu[f"{name}_off"].append(cpus)
            else:
                roots = []
                with scratch("files-job-log") as logs:
                    with _monitor("files-job", logs) as daemon:
                        d0, t0 = _cpu_s(daemon.proc.pid), time.perf_counter()
                        time.sleep(IDLE_S)
                        idle.append((_cpu_s(daemon.proc.pid) - d0, time.perf_counter() - t0))
                        for name in seq:
                            d0 = _cpu_s(daemon.proc.pid)
                            secs, cpus, pid = _run_job(cmds[name], env)
                            d1 = _cpu_s(daemon.proc.pid)
                            wall[f"{name}_on"].append(secs)
                            cpu[f"{name}_on"].append(cpus)
                            daemon_cpu[name].append(d1 - d0)
                            daemon_wall[name].append(secs)
                            if name == t:
                                roots.append(pid)
                    counts, gone = _log_counts(logs, roots, kinds)  # the daemon has stopped: all is logged
                records.extend(counts)
                lost += gone
                loads.append(os.getloadavg()[0])
            if i % 4 == 3 and time.monotonic() - started > BUDGET_S:
                break  # a busy host makes every run slow: fewer pairs (a wider interval), not a longer bench
        if min(records) == 0:
            raise RuntimeError("a tracked job left no records: it was not tracked")
        # what a job made the daemon do: its CPU meanwhile less its idle rate. An untracked job gives it
        # nothing to do, so its CPU during those runs is idle work too (under the same load as the tracked
        # runs beside them): pooled with the windows before the jobs and over the blocks, since timers of a
        # few seconds make one short window a poor sample
        idle += list(zip(daemon_cpu["untracked"], daemon_wall["untracked"]))
        idle_rate = sum(c for c, _ in idle) / sum(w for _, w in idle)
        for name in cmds:
            daemon_cpu[name] = [max(0.0, d - idle_rate * w)
                                for d, w in zip(daemon_cpu[name], daemon_wall[name])]
        for name in cmds:
            w = paired.relative(wall[f"{name}_on"], wall[f"{name}_off"])
            # the CPU the machine spent on the job with the monitor: the job's own (BPF included) and what
            # it made the daemon do (the daemon's idle work is reported on its own)
            total_on = [c + d for c, d in zip(cpu[f"{name}_on"], daemon_cpu[name])]
            c = paired.relative(total_on, cpu[f"{name}_off"])
            j = paired.relative(cpu[f"{name}_on"], cpu[f"{name}_off"])
            out[f"workload_{name}_overhead_pct"] = w.median_pct
            out[f"workload_{name}_overhead_ci_lo"], out[f"workload_{name}_overhead_ci_hi"] = w.ci_pct
            out[f"workload_{name}_cpu_overhead_pct"] = c.median_pct
            out[f"workload_{name}_cpu_overhead_ci_lo"], out[f"workload_{name}_cpu_overhead_ci_hi"] = c.ci_pct
            out[f"workload_{name}_job_cpu_overhead_pct"] = j.median_pct
            out[f"workload_{name}_daemon_cpu_pct"] = round(
                median([d / off * 100 for d, off in zip(daemon_cpu[name], cpu[f"{name}_off"])]), 2)
            out[f"workload_{name}_off_s"] = round(median(wall[f"{name}_off"]), 3)
            out[f"workload_{name}_off_cpu_s"] = round(median(cpu[f"{name}_off"]), 3)
            out["workload_ci_confidence"] = w.confidence
            out["workload_runs"] = w.pairs
        out["workload_monitor_idle_cpu_pct"] = round(idle_rate * 100, 2)
        out["workload_daemon_us_per_record"] = round(sum(daemon_cpu["tracked"]) / sum(records) * 1e6, 1)
        out["workload_lost"] = lost
        out["workload_records"] = round(median(records))
        out["workload_records_by_type"] = {k: round(v / len(records)) for k, v in sorted(kinds.items())}
        out["workload_load_avg_1m"] = round(median(loads), 2)
        out["workload_samples"] = {k: [round(x, 3) for x in v] for k, v in (wall | {
            f"{k}_cpu": v for k, v in cpu.items()}).items()}
        bpf_breakdown(env, cmds, out)
        for name in cmds:
            # the cost the monitor's own counters account for, immune to the host's load: its programs' run
            # time, their runs times the dispatch cost measured above, and the daemon's work for the job
            out[f"workload_{name}_accounted_pct"] = round(
                out[f"workload_{name}_bpf_pct"] + out[f"workload_{name}_dispatch_pct"]
                + out[f"workload_{name}_daemon_cpu_pct"], 2)


def bpf_breakdown(env: Dict[str, str], cmds: Dict[str, List[str]], out: Dict[str, Any]) -> None:
    """Where the kernel-side cost goes: BPF run time per job (BPF stats on, in a separate run: timing every
    program run has a cost of its own, kept out of the paired figures) net of what the programs spend per
    second meanwhile on the rest of the host, in percent of the job's CPU, and the costliest programs."""
    with scratch("files-bpf-log") as logs, _monitor("files-bpf", logs) as daemon, bpf_stats():
        ids = pinned_prog_ids(daemon.pin_dir)
        perf_tps = {p for p, i in ids.items() if prog_info(i).get("type") == "tracepoint"}
        for name, cmd in cmds.items():
            # the rest of the host runs the programs too, in bursts: its rate from a window either side
            s0, t0 = prog_stats(ids), time.perf_counter()
            time.sleep(1.5)
            s1, t1 = prog_stats(ids), time.perf_counter()
            _wall, job_cpu, _pid = _run_job(cmd, env)
            s2, t2 = prog_stats(ids), time.perf_counter()
            time.sleep(1.5)
            s3, t3 = prog_stats(ids), time.perf_counter()
            idle = {p: (s1[p]["run_time_ns"] - s0[p]["run_time_ns"] + s3[p]["run_time_ns"]
                        - s2[p]["run_time_ns"]) / (t1 - t0 + t3 - t2) for p in ids}
            net = {p: s2[p]["run_time_ns"] - s1[p]["run_time_ns"] - idle[p] * (t2 - t1) for p in ids}
            runs = {p: s2[p]["run_cnt"] - s1[p]["run_cnt"] for p in ids}
            idle_runs = {p: (s1[p]["run_cnt"] - s0[p]["run_cnt"] + s3[p]["run_cnt"] - s2[p]["run_cnt"])
                        / (t1 - t0 + t3 - t2) for p in ids}
            # the tracepoint dispatch around each run of a program on a perf tracepoint, not in its run time
            dispatched = sum(max(0.0, runs[p] - idle_runs[p] * (t2 - t1)) for p in ids if p in perf_tps)
            out[f"workload_{name}_dispatch_pct"] = round(
                dispatched * out.get("openat_dispatch_ns", 0.0) / 1e9 / job_cpu * 100, 3)
            out[f"workload_{name}_bpf_pct"] = round(max(0.0, sum(net.values())) / 1e9 / job_cpu * 100, 3)
            top = sorted(ids, key=lambda p: -net[p])[:5]
            out[f"workload_{name}_bpf_top"] = {p: {"runs": runs[p], "ms": round(net[p] / 1e6, 2)}
                                               for p in top}


def dispatch_cost(ctx: Context, out: Dict[str, Any]) -> None:
    """What one program on sys_exit_openat costs an untracked openat beyond its run time: the loop's CPU ns
    per call with an empty program attached less without any of ours (no monitor loaded), the median of
    interleaved pairs, less the empty program's own run time: the tracepoint's dispatch (perf buffer, BPF
    call) and the syscall slow path that BPF stats do not see. When other programs are on syscall tracepoints
    of this host already, part of that is paid without ours and the figure is only the rest. The floor, taken
    under BPF stats, is a little dearer than a run without them; the monitor's run times carry the same
    excess, so the two cancel in the accounted cost."""
    loop = str(ctx.helper("file_loop"))
    n = "50000" if ctx.quick else "200000"
    diffs: List[float] = []
    for i in range(3 if ctx.quick else 7):
        pair: Dict[bool, float] = {}
        for attached in ((False, True) if i % 2 == 0 else (True, False)):
            if attached:
                with _floors():
                    pair[attached] = float(last_json(run([loop, "openat", n]))["cpu_ns_per_op"])
            else:
                pair[attached] = float(last_json(run([loop, "openat", n]))["cpu_ns_per_op"])
        diffs.append(pair[True] - pair[False])
    out["openat_dispatch_ns"] = round(max(0.0, median(diffs) - float(out.get("openat_floor_ns", 0.0))), 1)


def run_section(ctx: Context) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    kernel_costs(ctx, out)
    dispatch_cost(ctx, out)
    workload(ctx, out)
    os.sync()
    return out
