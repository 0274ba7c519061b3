"""Kernel cost of the monitor's file, DNS and TLS programs, and whole-workload overhead; kernel.

BPF run time per event (BPF stats) of the programs on sys_exit_openat, sys_exit_write, sys_exit_sendto,
sys_exit_read and sys_exit_writev for an untracked process, beside an empty program on the same tracepoint
timed on the same events (the floor: what BPF stats and the call cost for doing nothing; the mean of one
attached before the monitor and one after, as the first program after a syscall meets colder caches);
``*_vs_floor`` is the median ratio over FLOOR_ROUNDS samples taken round-robin over the five calls (the goal
is at most 1.3x), ``*_vs_floor_range`` the least and greatest sample.
Tracked costs: per file event (a tracked process creates distinct files: a path walk and a record each),
per folded repeat (one file reopened for appending), per DNS packet (a tracked process sends queries to
port 53: the socket is watched, the message copied into a record), and per read of a tracked process from
a file that is not a watched socket (``read_tracked_ns``: what every read of a tracked process pays).

workload_*: a fixed file-heavy job (unpack a generated 30-file C project into a fresh directory, build it with
make -j1 and cc -O2, run it, git init/add/commit, edit, status, diff, rebuild, commit, log, gc, remove it) run
(a) by an untracked process and (b) under a tracked root (a shell exec'd as ``claude``), with the monitor as
`make run` starts it and with no monitor at all. The monitor is loaded and unloaded between blocks (outside
the timed jobs), not left loaded with tracking switched off: a loaded monitor's programs run in every
monitored syscall of every process, which is cost (a) itself. Blocks alternate ABBA (on off, off on, ...),
each runs both jobs SLOTS / 2 times in mirrored order, one warm-up round is discarded; every run with the
monitor is paired with its place in the neighbouring block without, and a figure is the median of the
pairs' differences with its 99 % sign-test interval (:mod:`tools.bench.paired`). Wall time, and CPU time: the
job tree's user+system (wait4's rusage; the programs run inside the job's syscalls) plus the daemon's CPU the
job caused (its CPU meanwhile less its idle rate, reported as ``workload_monitor_idle_cpu_pct``).

What makes one run of the same job differ from the next on a shared VM, and what is done about it:
- each virtual CPU has slow spells of its own (the host's other load; no steal time shows them) in which the
  same work takes 20-50 % more CPU time, for seconds at a time. A syscall-free speed probe runs on both CPUs
  before each run: the job runs pinned to the one nearer its normal speed, and is kept only when the probe on
  it just before and just after is within PROBE_TOLERANCE of that CPU's normal speed (the tenth percentile of
  its recent probes), else it is run again (up to TRIES; a slot never kept leaves its pair out). The probe
  sees nothing of the monitor (no syscall in its timed part), the rule is the same with and without it, and
  ``workload_tries`` / ``workload_redone`` show how often each side was rerun; ``*_cpu_overhead_all_*`` is
  the figure over every pair, unfiltered.
- with the scheduler's autogroups, a nice value counts only inside its session, so the job (nice -10) still
  shared its CPU with every other session's work; the section gives its own autogroup NICE (restored after).
- the daemon runs on the other CPU (where a two-CPU host runs it beside a single-threaded job), so its work
  does not preempt the job; its CPU is measured from schedstat and added.
- the job inherits nothing from the caller: no MAKEFLAGS (`make bench` exports its jobserver), compiler
  cache, or git configuration; git's automatic gc and maintenance and its fsyncs are off.
- a short job (about 1 s of CPU) and many of them: fewer runs straddle a slow spell. The paired runs stop at
  BUDGET_S (after a whole pair of blocks).
Lost records are the ``lost`` records of each block's log, ``workload_records`` the tracked job's records. A
separate run with BPF stats on (their timing is a cost of its own, kept out of the pairs) splits the kernel
side by program (``*_bpf_pct``, ``*_bpf_top``); ``*_dispatch_pct`` is the programs' runs on perf tracepoints
times ``openat_dispatch_ns`` (what one empty program on sys_exit_openat costs an openat beyond its run time);
``*_accounted_pct`` adds the three with the daemon's share: the cost the monitor's own counters account for,
unaffected by the host's load. RAWBPF_BENCH_DEBUG=1 prints every timed run on stderr.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

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
#: the whole-job runs use the monitor exactly as `make run` starts it (default rules, seeding, no options but
#: the pin and log dirs): the tracked job is a tree under a process named claude, as the real CLI's is
WORKLOAD_LOAD_ARGS: Tuple[str, ...] = ()
WORKLOAD_TRACK_NAME = "claude"


def _tracked(ctx: Context, target: Path, name: str = TRACK_NAME) -> Path:
    """A symlink called ``name`` to ``target``: exec'd through it, the process is a tracked root."""
    link = ctx.work / f"track-{name}-{target.name}" / name
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


def _stats(ids: Dict[str, int], floors: Dict[str, Dict[str, Any]]) -> Dict[str, List[int]]:
    out = {n: [s["run_cnt"], s["run_time_ns"]] for n, s in prog_stats(ids).items()}
    for tag, progs in floors.items():
        for tp, (p, _link) in progs.items():
            info = p.info(with_insns=False)
            out[f"floor_{tag}:{tp}"] = [info.run_cnt, info.run_time_ns]
    return out


def _measure(ids: Dict[str, int], floors: Dict[str, Dict[str, Any]], cmd: List[str]) -> Dict[str, List[int]]:
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


UNTRACKED_MODES = (("openat", "sys_exit_openat"), ("write", "sys_exit_write"), ("sendto", "sys_exit_sendto"),
                   ("read", "sys_exit_read"), ("writev", "sys_exit_writev"))
#: samples of each untracked loop, taken round-robin over the five calls, and events per sample
FLOOR_ROUNDS = 9
FLOOR_EVENTS = 60000


def kernel_costs(ctx: Context, out: Dict[str, Any]) -> None:
    """Untracked run time per event against the floor, and the tracked costs.

    The floor is an empty program on the same tracepoint, timed on the same events as the monitor's program
    (both run in every call), so the host's speed at that moment is the same for both. Programs on one
    tracepoint run in the order they were attached, and the first after the syscall body meets colder caches,
    so there is a floor attached before the monitor and one after it, and the floor is their mean. One long
    loop per call gave a single ratio that a burst of other work could move by 0.1; now each call is sampled
    FLOOR_ROUNDS times, round-robin with the others, and the figures are the medians of the samples."""
    rounds, events = (3, 20000) if ctx.quick else (FLOOR_ROUNDS, FLOOR_EVENTS)
    nt = 2000 if ctx.quick else 10000
    loop = str(ctx.helper("file_loop"))
    tracked = str(_tracked(ctx, ctx.helper("file_loop")))
    with bpffs_dir("files") as pins, scratch("files-log") as logs, scratch("files-out") as work, \
            bpf_stats(), _floors() as first, rawbpf_load(MONITOR_OBJ, pins, logs, extra=LOAD_ARGS), \
            _floors() as last:
        ids = pinned_prog_ids(pins)
        if "files_exit_openat" not in ids:
            raise Unavailable("the monitor object has no file programs")
        floors = {"first": first, "last": last}
        samples: Dict[str, List[Tuple[float, float, float]]] = {m: [] for m, _tp in UNTRACKED_MODES}
        for _ in range(rounds):
            for mode, tp in UNTRACKED_MODES:
                prog = "files_exit_" + mode
                d = _measure({prog: ids[prog]}, {k: {tp: v[tp]} for k, v in floors.items()},
                             [loop, mode, str(events)])
                samples[mode].append((_avg(d, prog), _avg(d, f"floor_first:{tp}"),
                                      _avg(d, f"floor_last:{tp}")))
        for mode, rows in samples.items():
            ratios = [mine / max(1.0, (a + b) / 2) for mine, a, b in rows]
            out[f"{mode}_untracked_ns"] = round(median([r[0] for r in rows]), 1)
            out[f"{mode}_floor_ns"] = round(median([(a + b) / 2 for _m, a, b in rows]), 1)
            out[f"{mode}_floor_first_ns"] = round(median([a for _m, a, _b in rows]), 1)
            out[f"{mode}_floor_last_ns"] = round(median([b for _m, _a, b in rows]), 1)
            out[f"{mode}_untracked_vs_floor"] = round(median(ratios), 2)
            out[f"{mode}_untracked_vs_floor_range"] = [round(min(ratios), 2), round(max(ratios), 2)]
        out["untracked_vs_floor_samples"] = rounds
        out["untracked_vs_floor_events_per_sample"] = events
        untracked_open = out["openat_untracked_ns"]
        no_floors: Dict[str, Dict[str, Any]] = {}
        d = _measure(ids, no_floors, [tracked, "create", str(nt), str(work)])
        out["file_event_tracked_ns"] = _tracked_per_event(d, "files_exit_openat", nt, untracked_open)
        d = _measure(ids, no_floors, [tracked, "rewrite", str(nt), str(work)])
        out["file_repeat_tracked_ns"] = _tracked_per_event(d, "files_exit_openat", nt, untracked_open)
        d = _measure(ids, no_floors, [tracked, "dns", str(nt)])
        out["dns_packet_tracked_ns"] = _tracked_per_event(d, "files_exit_sendto", nt,
                                                          out["sendto_untracked_ns"])
        d = _measure(ids, no_floors, [tracked, "read", str(nt)])
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
PROJECT_FILES = 30


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


#: git settings of the job: no automatic gc or maintenance (a run that crosses a threshold would do work the
#: others do not), no fsync (waits on a shared disk: wall time only, but noise in it)
_GIT_CONFIG = (("gc.auto", "0"), ("maintenance.auto", "false"), ("core.fsync", "none"))


def _job_env(work: Path) -> Dict[str, str]:
    """No user or system git configuration, a fixed identity and locale, no make flags or compiler cache from
    the caller (`make bench` exports MAKEFLAGS with its jobserver): the same job on every host and run."""
    home = work / "home"
    home.mkdir(exist_ok=True)
    drop = ("GIT_", "MAKE", "MFLAGS", "CCACHE", "CFLAGS", "CPPFLAGS", "LDFLAGS", "GCC_", "CC")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", LC_ALL="C", CCACHE_DISABLE="1",
               GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="b@example.org",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="b@example.org",
               GIT_CONFIG_COUNT=str(len(_GIT_CONFIG)))
    for i, (key, value) in enumerate(_GIT_CONFIG):
        env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
    return env


#: the job and the monitor's daemon run at this nice value: on a host shared with busy (mostly niced) work,
#: a job at the default priority waits for CPU in bursts, which buries a 1 % effect in noise
NICE = -10
AUTOGROUP = Path("/proc/self/autogroup")


@contextlib.contextmanager
def _priority() -> Iterator[Dict[str, Any]]:
    """Give this session's autogroup NICE for the duration, and restore it after.

    With the scheduler's autogroups on (the default on a desktop or VM kernel), CPU is shared between
    sessions first and a process's nice value only counts inside its own session: a job at nice -10 still
    got only its session's share of a host where every other engineer's session (qemu at nice 19 included)
    weighs as much, so it waited for CPU in bursts and came back to caches others had filled. The job and the
    daemon are in this process's session, so its autogroup is the one that needs the priority."""
    info: Dict[str, Any] = {"nice": NICE, "autogroup_nice": None}
    try:
        enabled = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
        old = int(AUTOGROUP.read_text().split("nice")[1])
    except (OSError, ValueError, IndexError):
        enabled, old = False, 0
    if enabled:
        try:
            AUTOGROUP.write_text(str(NICE))
            info["autogroup_nice"] = NICE
        except OSError:
            enabled = False
    try:
        yield info
    finally:
        if enabled:
            with contextlib.suppress(OSError):
                AUTOGROUP.write_text(str(old))


def _cpus() -> List[int]:
    """The CPUs a job may run on: the first and the last this process may use (one, on a one-CPU host).

    A job is pinned to one of them for a run, so it never migrates mid-run onto cold caches and is timed on
    the CPU its speed probes ran on: the one of the two nearer its normal speed just then (on a shared VM each
    virtual CPU has slow spells of its own, independently of the other). The daemon gets the other CPU, which
    is where the scheduler puts it on a two-CPU host when a single-threaded job keeps one busy, and where its
    work for the job cannot preempt the job and refill the job's caches (its CPU is counted into the CPU
    figure from schedstat). With one CPU, both share it."""
    allowed = sorted(os.sched_getaffinity(0))
    return sorted({allowed[0], allowed[-1]})


def _other(cpus: List[int], cpu: int) -> int:
    """The daemon's CPU when the job runs on ``cpu``."""
    return next((c for c in cpus if c != cpu), cpu)


def _pin(pid: int, cpu: int) -> None:
    """Pin every thread ``pid`` already has (new threads inherit it) to ``cpu``, at NICE."""
    for tid in [int(t) for t in os.listdir(f"/proc/{pid}/task")]:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, {cpu})
            os.setpriority(os.PRIO_PROCESS, tid, NICE)


def _on_cpu(cpu: int) -> Callable[[], None]:
    """A preexec_fn: the child runs pinned to ``cpu`` at NICE."""
    def pre() -> None:
        os.sched_setaffinity(0, {cpu})
        os.setpriority(os.PRIO_PROCESS, 0, NICE)
    return pre


def _run_job(cmd: List[str], env: Dict[str, str], cpu: int) -> Tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system of the job's whole tree, from wait4's rusage: the BPF programs
    run in the job's own syscalls, so their cost is in its system time) and the job's pid."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, preexec_fn=_on_cpu(cpu))
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


SETTLE_S = 1.5
IDLE_S = 1.0
#: blocks with the monitor and as many without, alternating ABBA; each runs both jobs SLOTS / 2 times in
#: mirrored order (U T T U or T U U T, SLOTS / 4 times over), so neighbouring blocks pair position by position
MAX_BLOCKS = 24
SLOTS = 4
#: past this many seconds of paired runs, the next pair of blocks is not started
BUDGET_S = 180.0
WARMUP = 1
#: a run counts when the speed probes either side of it are within this fraction of its CPU's normal speed;
#: one that does not is run again, up to TRIES times (then its pair is left out)
PROBE_TOLERANCE = 0.10
PROBE_ROUNDS = 4
TRIES = 3
CALIBRATION_PROBES = 8


#: a CPU's normal speed is taken over its last this many probes (about half a minute of runs): the host's
#: speed shifts for minutes at a time, and runs are compared with their neighbours, not with the start
NORMAL_WINDOW = 40


class _Speed:
    """Speed probes (tools/bench/helpers/speed_probe.c) on each CPU a job may use. A CPU's normal speed is the
    tenth percentile of its last NORMAL_WINDOW probes (not the least: one lucky probe would make every later
    run look slow; not of all of them: a slower phase of the host would then leave no run kept); a run between
    two probes near it was not slowed by the host."""

    def __init__(self, ctx: Context, cpus: List[int]) -> None:
        self.cmd = [str(ctx.helper("speed_probe")), str(PROBE_ROUNDS)]
        self.cpus = cpus
        self.seen: Dict[int, List[float]] = {cpu: [] for cpu in cpus}
        self.samples: List[float] = []  # relative to the CPU's normal speed at the time

    def normal(self, cpu: int) -> float:
        """The probe time of ``cpu`` at its normal speed, in ms."""
        seen = sorted(self.seen[cpu][-NORMAL_WINDOW:])
        return seen[len(seen) // 10]

    def probe(self, cpu: int) -> float:
        """The least of two probes on ``cpu``, in ms (one probe can be unlucky with an interrupt)."""
        best = float("inf")
        for _ in range(2):
            cp = subprocess.run(self.cmd, capture_output=True, text=True, timeout=30,
                                preexec_fn=_on_cpu(cpu), check=True)
            best = min(best, float(last_json(cp.stdout)["probe_ms"]))
        self.seen[cpu].append(best)
        self.samples.append(best / self.normal(cpu))
        return best

    def pick(self) -> Tuple[int, float]:
        """Probe every CPU: (the one nearest its normal speed, its probe)."""
        probes = {cpu: self.probe(cpu) for cpu in self.cpus}
        cpu = min(self.cpus, key=lambda c: probes[c] / self.normal(c))
        return cpu, probes[cpu]

    def steady(self, cpu: int, before: float, after: float) -> bool:
        return paired.steady(before, after, self.normal(cpu), PROBE_TOLERANCE)


@contextlib.contextmanager
def _monitor(prefix: str, logs: Path, cpu: int) -> Iterator[Any]:
    """The monitor as `make run` starts it (the committed object, its default options), logging to ``logs``
    (the caller's: read after the stop), its threads on ``cpu``."""
    with bpffs_dir(prefix) as pins, rawbpf_load(MONITOR_OBJ, pins, logs, extra=WORKLOAD_LOAD_ARGS) as daemon:
        _pin(daemon.proc.pid, cpu)
        time.sleep(SETTLE_S)  # past the daemon's start-up work
        _pin(daemon.proc.pid, cpu)  # threads it started meanwhile
        yield daemon


Slot = Dict[str, Any]


def workload(ctx: Context, out: Dict[str, Any]) -> None:
    """Paired, interleaved runs of the job with the monitor attached and with no monitor at all."""
    if shutil.which("git") is None or shutil.which("cc") is None or shutil.which("make") is None:
        raise Unavailable("git, cc and make are needed for the workload")
    max_blocks, slots = (4, 4) if ctx.quick else (MAX_BLOCKS, SLOTS)
    cpus = _cpus()
    with scratch("files-job") as work, _priority() as prio:
        tar = _project(work, 12 if ctx.quick else PROJECT_FILES)
        job = work / "job.sh"
        job.write_text(_JOB.format(base=work, tar=tar))
        env = _job_env(work)
        # the job's whole tree is tracked: its root is a process named claude
        claude = _tracked(ctx, Path(shutil.which("bash") or "/bin/bash"), WORKLOAD_TRACK_NAME)
        cmds = {"untracked": ["bash", str(job)], "tracked": [str(claude), str(job)]}
        speed = _Speed(ctx, cpus)
        on_cpu = dict.fromkeys(cpus, 0)
        runs: Dict[str, List[Slot]] = {f"{w}_{m}": [] for w in cmds for m in ("off", "on")}
        tries = {"on": 0, "off": 0}
        redone = {"on": 0, "off": 0}
        records: List[int] = []
        kinds: Dict[str, int] = {}
        idle: List[Tuple[float, float]] = []  # the daemon's (CPU, wall) seconds while no tracked job ran
        tracked_daemon: List[Tuple[float, float]] = []  # the daemon's (CPU, wall) seconds in each tracked run
        roots: List[int] = []
        lost = 0
        loads = [os.getloadavg()]
        for _ in range(WARMUP):  # page cache, compiler, git: discarded
            for cmd in cmds.values():
                for cpu in cpus:
                    _run_job(cmd, env, cpu)
        for _ in range(CALIBRATION_PROBES):
            speed.pick()

        def timed(name: str, mode: str, daemon: Any = None) -> Slot:
            """One slot: the job run until the probes either side say the CPU ran at its normal speed."""
            for attempt in range(TRIES):
                cpu, before = speed.pick()
                if daemon:
                    _pin(daemon.proc.pid, _other(cpus, cpu))
                d0 = _cpu_s(daemon.proc.pid) if daemon else 0.0
                secs, used, pid = _run_job(cmds[name], env, cpu)
                d1 = _cpu_s(daemon.proc.pid) if daemon else 0.0
                after = speed.probe(cpu)
                tries[mode] += 1
                on_cpu[cpu] += 1
                slot = {"wall": secs, "cpu": used, "pid": pid, "daemon": d1 - d0,
                        "ok": speed.steady(cpu, before, after), "probes": (before, after)}
                if os.environ.get("RAWBPF_BENCH_DEBUG"):
                    print(f"{name}_{mode} cpu {used:.3f} wall {secs:.3f} probes {before:.2f} {after:.2f} "
                          f"on {cpu} normal {speed.normal(cpu):.2f} ok {slot['ok']}", file=sys.stderr,
                          flush=True)
                if daemon and name == "tracked":
                    roots.append(pid)  # every tracked run counts for records and loss, kept or not
                    tracked_daemon.append((d1 - d0, secs))
                elif daemon:
                    idle.append((d1 - d0, secs))  # nothing to record: the daemon's idle work, under load
                if slot["ok"]:
                    break
                redone[mode] += attempt + 1 < TRIES
            return slot

        started = time.monotonic()
        blocks = 0
        for i in range(max_blocks):
            # ABBA twice over: the monitor's half of a pair comes first in every other pair, and the jobs'
            # order inside a block mirrors itself, so drift in the host's load cancels out of the pairs
            u, t = "untracked", "tracked"
            seq = ([u, t, t, u] if (i // 2) % 2 == 0 else [t, u, u, t]) * (slots // 4)
            mode = "on" if (i + i // 2) % 2 == 0 else "off"
            roots.clear()
            if mode == "off":
                for name in seq:
                    runs[f"{name}_off"].append(timed(name, mode))
            else:
                with scratch("files-job-log") as logs:
                    with _monitor("files-job", logs, cpus[0]) as daemon:
                        d0, t0 = _cpu_s(daemon.proc.pid), time.perf_counter()
                        time.sleep(IDLE_S)
                        idle.append((_cpu_s(daemon.proc.pid) - d0, time.perf_counter() - t0))
                        for name in seq:
                            runs[f"{name}_on"].append(timed(name, mode, daemon))
                    counts, gone = _log_counts(logs, roots, kinds)  # the daemon has stopped: all is logged
                records.extend(counts)
                lost += gone
            loads.append(os.getloadavg())
            blocks += 1
            if i % 2 == 1 and time.monotonic() - started > BUDGET_S:
                break  # a busy host makes every run slow: fewer pairs (a wider interval), not a longer bench
        if min(records) == 0:
            raise RuntimeError("a tracked job left no records: it was not tracked")
        # what a job made the daemon do: its CPU meanwhile less its idle rate, pooled over the windows before
        # the jobs and the untracked runs (timers of a few seconds make one short window a poor sample)
        idle_rate = sum(c for c, _ in idle) / sum(w for _, w in idle)
        for name in cmds:
            for s in runs[f"{name}_on"]:
                s["daemon_net"] = max(0.0, s["daemon"] - idle_rate * s["wall"])
        for name in cmds:
            on, off = runs[f"{name}_on"], runs[f"{name}_off"]

            def kept(key: str, slots_: List[Slot]) -> List[Tuple[float, bool]]:
                return [(s[key] if key != "total" else s["cpu"] + s["daemon_net"], s["ok"]) for s in slots_]

            wall_on, wall_off = paired.kept_pairs(kept("wall", on), kept("wall", off))
            if not wall_on:
                raise RuntimeError(f"no {name} pair ran at the CPU's normal speed on both sides")
            # the CPU the machine spent on the job with the monitor: the job's own (BPF included) and what
            # it made the daemon do (the daemon's idle work is reported on its own)
            w = paired.relative(wall_on, wall_off, LEVEL)
            c = paired.relative(*paired.kept_pairs(kept("total", on), kept("cpu", off)), LEVEL)
            j = paired.relative(*paired.kept_pairs(kept("cpu", on), kept("cpu", off)), LEVEL)
            every = paired.relative([s["cpu"] + s["daemon_net"] for s in on][:len(off)],
                                    [s["cpu"] for s in off][:len(on)], LEVEL)
            out[f"workload_{name}_overhead_pct"] = w.median_pct
            out[f"workload_{name}_overhead_ci_lo"], out[f"workload_{name}_overhead_ci_hi"] = w.ci_pct
            out[f"workload_{name}_cpu_overhead_pct"] = c.median_pct
            out[f"workload_{name}_cpu_overhead_ci_lo"], out[f"workload_{name}_cpu_overhead_ci_hi"] = c.ci_pct
            out[f"workload_{name}_cpu_overhead_ci_width"] = round(c.ci_pct[1] - c.ci_pct[0], 2)
            out[f"workload_{name}_job_cpu_overhead_pct"] = j.median_pct
            # every pair, the ones with a slow spell on either side included: what the probes filtered out
            out[f"workload_{name}_cpu_overhead_all_pct"] = every.median_pct
            out[f"workload_{name}_cpu_overhead_all_ci_lo"], out[f"workload_{name}_cpu_overhead_all_ci_hi"] = \
                every.ci_pct
            out[f"workload_{name}_pairs"] = c.pairs
            kept_off = [s for s in off if s["ok"]]
            out[f"workload_{name}_daemon_cpu_pct"] = round(median(
                [s["daemon_net"] / p["cpu"] * 100 for s, p in zip(on, off) if s["ok"] and p["ok"]]), 2)
            out[f"workload_{name}_off_s"] = round(median([s["wall"] for s in kept_off]), 3)
            out[f"workload_{name}_off_cpu_s"] = round(median([s["cpu"] for s in kept_off]), 3)
            out[f"workload_{name}_off_cpu_mad_pct"] = round(paired.mad_pct([s["cpu"] for s in kept_off]), 2)
            out["workload_ci_confidence"] = min(c.confidence, out.get("workload_ci_confidence", 1.0))
            out["workload_runs"] = min(c.pairs, out.get("workload_runs", c.pairs))
        out["workload_monitor_idle_cpu_pct"] = round(idle_rate * 100, 2)
        out["workload_daemon_us_per_record"] = round(
            sum(max(0.0, d - idle_rate * w) for d, w in tracked_daemon) / sum(records) * 1e6, 1)
        out["workload_lost"] = lost
        out["workload_records"] = round(median(records))
        out["workload_records_by_type"] = {k: round(v / len(records)) for k, v in sorted(kinds.items())}
        out["workload_load_avg_1m"] = round(median([la[0] for la in loads]), 2)
        out["workload_load_avg"] = {"min_1m": round(min(la[0] for la in loads), 2),
                                    "max_1m": round(max(la[0] for la in loads), 2),
                                    "start": [round(x, 2) for x in loads[0]]}
        out["workload_blocks"] = blocks
        out["workload_tries"] = tries
        out["workload_redone"] = redone
        out["workload_probe_normal_ms"] = {str(c): round(speed.normal(c), 3) for c in cpus}
        rel = sorted(speed.samples)
        # how often the CPUs ran slow: quartiles of the probes relative to their CPU's normal speed
        out["workload_probe_rel_quartiles"] = [round(rel[len(rel) * q // 4], 3) for q in (1, 2, 3)]
        out["workload_job_cpu_runs"] = {str(c): n for c, n in on_cpu.items()}
        out["workload_probe_tolerance_pct"] = PROBE_TOLERANCE * 100
        out["workload_setup"] = {
            "cpus": cpus, "nice": prio["nice"], "autogroup_nice": prio["autogroup_nice"],
            "project_files": 12 if ctx.quick else PROJECT_FILES,
            "why": "each run pinned to one CPU, the one nearer its normal speed by the probes just before "
                   "(no migration mid-run, timed where its probes ran), the daemon on the other (where a "
                   "two-CPU host runs it beside a busy single-threaded job; its CPU is added from "
                   f"schedstat); this session's autogroup and both at nice {NICE}, so the host's other "
                   "sessions do not take the job's CPU in bursts"}
        out["workload_samples"] = {
            k: [[round(s["cpu"], 3), round(s["wall"], 3), int(s["ok"])] for s in v] for k, v in runs.items()}
        cpu, _probe = speed.pick()
        bpf_breakdown(env, cmds, out, cpu, _other(cpus, cpu))
        for name in cmds:
            # the cost the monitor's own counters account for, immune to the host's load: its programs' run
            # time, their runs times the dispatch cost measured above, and the daemon's work for the job
            out[f"workload_{name}_accounted_pct"] = round(
                out[f"workload_{name}_bpf_pct"] + out[f"workload_{name}_dispatch_pct"]
                + out[f"workload_{name}_daemon_cpu_pct"], 2)


#: the confidence of the paired figures' intervals
LEVEL = 0.99


def bpf_breakdown(env: Dict[str, str], cmds: Dict[str, List[str]], out: Dict[str, Any], job_cpu: int,
                  daemon_cpu: int) -> None:
    """Where the kernel-side cost goes: BPF run time per job (BPF stats on, in a separate run: timing every
    program run has a cost of its own, kept out of the paired figures) net of what the programs spend per
    second meanwhile on the rest of the host, in percent of the job's CPU, and the costliest programs."""
    with scratch("files-bpf-log") as logs, _monitor("files-bpf", logs, daemon_cpu) as daemon, bpf_stats():
        ids = pinned_prog_ids(daemon.pin_dir)
        perf_tps = {p for p, i in ids.items() if prog_info(i).get("type") == "tracepoint"}
        for name, cmd in cmds.items():
            # the rest of the host runs the programs too, in bursts: its rate from a window either side
            s0, t0 = prog_stats(ids), time.perf_counter()
            time.sleep(1.5)
            s1, t1 = prog_stats(ids), time.perf_counter()
            _wall, job_cpu_s, _pid = _run_job(cmd, env, job_cpu)
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
                dispatched * out.get("openat_dispatch_ns", 0.0) / 1e9 / job_cpu_s * 100, 3)
            out[f"workload_{name}_bpf_pct"] = round(max(0.0, sum(net.values())) / 1e9 / job_cpu_s * 100, 3)
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
    n = "20000" if ctx.quick else "60000"
    # short loops, many pairs, pinned to one CPU at the section's priority: the two halves of a pair run a
    # tenth of a second apart, inside one of the host's speed levels rather than across a change of it
    cpu = _cpus()[-1]
    allowed = os.sched_getaffinity(0)
    diffs: List[float] = []
    with _priority():
        try:
            os.sched_setaffinity(0, {cpu})  # the loops inherit it
            for i in range(5 if ctx.quick else DISPATCH_PAIRS):
                pair: Dict[bool, float] = {}
                for attached in ((False, True) if i % 2 == 0 else (True, False)):
                    if attached:
                        with _floors():
                            pair[attached] = float(last_json(run([loop, "openat", n]))["cpu_ns_per_op"])
                    else:
                        pair[attached] = float(last_json(run([loop, "openat", n]))["cpu_ns_per_op"])
                diffs.append(pair[True] - pair[False])
        finally:
            os.sched_setaffinity(0, allowed)
    out["openat_dispatch_raw_ns"] = round(median(diffs), 1)  # before the floor's run time is taken off
    out["openat_dispatch_pairs"] = len(diffs)
    out["openat_dispatch_ns"] = round(max(0.0, median(diffs) - float(out.get("openat_floor_ns", 0.0))), 1)


#: with-and-without pairs of the dispatch loop
DISPATCH_PAIRS = 15


def run_section(ctx: Context) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    kernel_costs(ctx, out)
    dispatch_cost(ctx, out)
    workload(ctx, out)
    os.sync()
    return out
