"""``python -m tools.bench [--quick] [--only a,b] [--out bench/results.json]``: run the benchmark sections.

Prints one table and writes the JSON results. A section that fails records ``"error: …"`` strings in place of
its figures and the run goes on; the exit status is 1 if any figure of a section run could not be measured.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

from tools.bench import (
    exec_storm,
    files,
    kernel_ns,
    latency,
    load,
    report,
    ringbuf,
    ship,
    syscall_overhead,
    watch_cost,
)
from tools.bench.common import ROOT, Context, Unavailable

SECTIONS: Dict[str, Callable[[Context], Dict[str, Any]]] = {
    "ringbuf": ringbuf.run_section,
    "kernel_ns": kernel_ns.run_section,
    "syscall_overhead": syscall_overhead.run_section,
    "load": load.run_section,
    "exec_storm": exec_storm.run_section,
    "latency": latency.run_section,
    "report": report.run_section,
    "ship": ship.run_section,
    "files": files.run_section,
    "watch_cost": watch_cost.run_section,
}

# section -> [(key, unit, goal, "min" when bigger is better else "max")]; the keys issue 6 requires
GOALS: Dict[str, List[Tuple[str, str, Any, str]]] = {
    "ringbuf": [("rawbpf_raw", "ev/s", "go-cilium", "min"), ("rawbpf_decode_log", "ev/s", 1_000_000, "min"),
                ("libbpf-c", "ev/s", None, ""), ("go-cilium", "ev/s", None, "")],
    "kernel_ns": [("connect_untracked", "ns", 60, "max"), ("connect_tracked", "ns", 300, "max"),
                  ("exec_tracked", "ns", 3000, "max"), ("floor_ns", "ns", None, ""),
                  ("connect_untracked_vs_floor", "x", 1.3, "max"), ("tcp_connect_untracked", "ns", None, ""),
                  ("tcp_connect_untracked_vs_floor", "x", 1.3, "max"),
                  ("tcp_connect_tracked", "ns", None, "")],
    "syscall_overhead": [("connect_baseline_ns", "ns", None, ""),
                         ("connect_with_monitor_ns", "ns", None, "")],
    "load": [("rawbpf_s", "s", None, ""), ("bpftool_s", "s", None, ""), ("ratio_vs_bpftool", "x", 1.2, "max"),
             ("rawbpf_nocache_s", "s", None, ""), ("ratio_nocache_vs_bpftool", "x", 1.2, "max"),
             ("zipapp_s", "s", None, ""), ("ratio_zipapp_vs_bpftool", "x", 1.2, "max"),
             ("wheel_s", "s", None, ""), ("ratio_wheel_vs_bpftool", "x", 1.2, "max"),
             ("rawbpf_rss_mb", "MB", 40, "max"), ("tracepoints5_rawbpf_s", "s", 0.25, "max"),
             ("tracepoints5_bpftool_s", "s", None, ""), ("load_avg_1m", "", None, "")],
    "exec_storm": [("execs_per_s", "/s", 10_000, "min"), ("dropped", "", 0, "max"),
                   ("user_us_per_record", "µs", 25, "max"), ("sys_us_per_record", "µs", None, ""),
                   ("file_user_us_per_record", "µs", None, ""), ("file_sys_us_per_record", "µs", None, ""),
                   ("load_avg_1m", "", None, "")],
    "latency": [("event_to_log_p99_ms", "ms", 250, "max")],
    "report": [("records", "", None, ""), ("report_100k_s", "s", 5, "max"),
               ("report_json_100k_s", "s", 5, "max"), ("html_100k_s", "s", 5, "max"),
               ("page_open_s", "s", 2, "max"),
               ("sessions_100k_s", "s", 5, "max"),
               ("tail_json_100k_s", "s", None, ""), ("report_100k_cpu_s", "s", None, ""),
               ("page_main_thread_s", "s", None, ""),
               ("load_avg_1m", "", None, "")],
    "files": [("openat_untracked_vs_floor", "x", 1.3, "max"), ("write_untracked_vs_floor", "x", 1.3, "max"),
              ("sendto_untracked_vs_floor", "x", 1.3, "max"), ("read_untracked_vs_floor", "x", 1.3, "max"),
              ("writev_untracked_vs_floor", "x", 1.3, "max"), ("openat_untracked_ns", "ns", None, ""),
              ("openat_floor_ns", "ns", None, ""), ("write_untracked_ns", "ns", None, ""),
              ("write_floor_ns", "ns", None, ""), ("sendto_untracked_ns", "ns", None, ""),
              ("sendto_floor_ns", "ns", None, ""), ("read_untracked_ns", "ns", None, ""),
              ("read_floor_ns", "ns", None, ""), ("writev_untracked_ns", "ns", None, ""),
              ("writev_floor_ns", "ns", None, ""), ("file_event_tracked_ns", "ns", None, ""),
              ("file_repeat_tracked_ns", "ns", None, ""), ("dns_packet_tracked_ns", "ns", None, ""),
              ("read_tracked_ns", "ns", None, ""),
              ("workload_untracked_overhead_pct", "%", 1, "max"),
              ("workload_untracked_overhead_ci_lo", "%", None, ""),
              ("workload_untracked_overhead_ci_hi", "%", None, ""),
              ("workload_untracked_cpu_overhead_pct", "%", 1, "max"),
              ("workload_untracked_cpu_overhead_ci_lo", "%", None, ""),
              ("workload_untracked_cpu_overhead_ci_hi", "%", None, ""),
              ("workload_tracked_overhead_pct", "%", 5, "max"),
              ("workload_tracked_overhead_ci_lo", "%", None, ""),
              ("workload_tracked_overhead_ci_hi", "%", None, ""),
              ("workload_tracked_cpu_overhead_pct", "%", 5, "max"),
              ("workload_tracked_cpu_overhead_ci_lo", "%", None, ""),
              ("workload_tracked_cpu_overhead_ci_hi", "%", None, ""),
              ("workload_untracked_pairs", "", None, ""), ("workload_tracked_pairs", "", None, ""),
              ("workload_untracked_cpu_overhead_ci_width", "%", None, ""),
              ("workload_tracked_cpu_overhead_ci_width", "%", None, ""),
              ("workload_untracked_cpu_overhead_all_pct", "%", None, ""),
              ("workload_tracked_cpu_overhead_all_pct", "%", None, ""),
              ("workload_untracked_off_cpu_mad_pct", "%", None, ""),
              ("workload_tracked_off_cpu_mad_pct", "%", None, ""),
              ("workload_untracked_accounted_pct", "%", 1, "max"),
              ("workload_tracked_accounted_pct", "%", 5, "max"),
              ("workload_untracked_bpf_pct", "%", None, ""), ("workload_tracked_bpf_pct", "%", None, ""),
              ("openat_dispatch_ns", "ns", None, ""),
              ("workload_untracked_dispatch_pct", "%", None, ""),
              ("workload_tracked_dispatch_pct", "%", None, ""),
              ("workload_untracked_daemon_cpu_pct", "%", None, ""),
              ("workload_tracked_daemon_cpu_pct", "%", None, ""),
              ("workload_monitor_idle_cpu_pct", "%", None, ""),
              ("workload_daemon_us_per_record", "µs", None, ""),
              ("workload_lost", "", 0, "max"),
              ("workload_records", "", None, ""), ("workload_runs", "", None, ""),
              ("workload_ci_confidence", "", None, ""), ("workload_load_avg_1m", "", None, ""),
              ("workload_untracked_off_s", "s", None, ""), ("workload_untracked_off_cpu_s", "s", None, "")],
    "ship": [("forward_per_core", "rec/s", 200_000, "min"), ("forward_end_to_end", "rec/s", None, ""),
             ("forward_rss_mb", "MB", None, ""), ("forward_gzip_per_core", "rec/s", None, ""),
             ("syslog_per_core", "rec/s", 50_000, "min"), ("syslog_end_to_end", "rec/s", None, ""),
             ("syslog_rss_mb", "MB", None, ""), ("relp_per_core", "rec/s", None, ""),
             ("relp_end_to_end", "rec/s", None, ""), ("relp_rss_mb", "MB", None, ""),
             ("load_avg_1m", "", None, "")],
    "watch_cost": [("idle_cpu_pct", "%", None, ""), ("idle_cpu_s_per_hour", "s/h", None, ""),
                   ("busy_cpu_pct", "%", None, ""), ("busy_cpu_s_per_hour", "s/h", None, ""),
                   ("rss_mb_after_1m", "MB", None, ""), ("load_avg_1m", "", None, "")],
}


def _verdict(section: Dict[str, Any], value: Any, goal: Any, sense: str) -> str:
    if isinstance(goal, str):
        goal = section.get(goal)
    if not sense or not isinstance(value, (int, float)) or not isinstance(goal, (int, float)):
        return ""
    ok = value >= goal if sense == "min" else value <= goal
    return f"{'ok' if ok else 'MISS'} ({'≥' if sense == 'min' else '≤'} {_fmt(goal)})"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(results: Dict[str, Any]) -> str:
    lines = [f"{'section':18s} {'figure':32s} {'value':>16s}  goal"]
    for name, keys in GOALS.items():
        section = results.get(name, {})
        for key, unit, goal, sense in keys:
            value = section.get(key, "not run")
            text = _fmt(value) if not isinstance(value, str) else value[:60]
            lines.append(f"{name:18s} {key + (' (' + unit + ')' if unit else ''):32s} {text:>16s}  "
                         f"{_verdict(section, value, goal, sense)}")
    return "\n".join(lines)


def _meta() -> Dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = ""
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "kernel": platform.release(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "commit": commit}


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer and shorter runs (smoke test of the harness)")
    ap.add_argument("--only", default="", help="comma-separated sections: " + ",".join(SECTIONS))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    args = ap.parse_args(argv)
    chosen = [s for s in args.only.split(",") if s] or list(SECTIONS)
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown section(s): {', '.join(unknown)}")
    if os.geteuid() != 0:
        print("bench: needs root (BPF, bpffs pins, BPF stats)", file=sys.stderr)
        return 1
    results: Dict[str, Any] = {"meta": _meta()}
    if args.out.exists():  # keep figures of sections not run this time
        try:
            old = json.loads(args.out.read_text())
            results.update({k: v for k, v in old.items() if k in SECTIONS and k not in chosen})
        except (OSError, ValueError):
            pass
    with tempfile.TemporaryDirectory(prefix="rawbpf-bench-") as work:
        ctx = Context(work=Path(work), quick=args.quick)
        for name in chosen:
            t0 = time.monotonic()
            print(f"bench: {name} …", file=sys.stderr, flush=True)
            try:
                results[name] = SECTIONS[name](ctx)
            except Unavailable as err:
                results[name] = _errors(name, f"unavailable: {err}")
            except Exception as err:
                detail = traceback.format_exc(limit=3).strip().splitlines()[-1]
                results[name] = _errors(name, f"error: {err or detail}")
            results[name]["section_s"] = round(time.monotonic() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(table(results))
    print(f"\nwritten: {os.path.relpath(args.out)}")
    missing = unmeasured(results, chosen)
    for key, why in missing:
        print(f"bench: {key} was not measured: {why}", file=sys.stderr)
    return 1 if missing else 0


def unmeasured(results: Dict[str, Any], sections: List[str]) -> List[Tuple[str, str]]:
    """(section.key, why) for every figure of ``sections`` in the table that is not a number."""
    out = []
    for name in sections:
        for key, _unit, _goal, _sense in GOALS[name]:
            value = results.get(name, {}).get(key, "not run")
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                out.append((f"{name}.{key}", str(value)[:200]))
    return out


def _errors(name: str, message: str) -> Dict[str, Any]:
    """A failed section: every required key carries the reason instead of a number."""
    return {key: message for key, _u, _g, _s in GOALS[name]} | {"error": message}


if __name__ == "__main__":
    sys.exit(main())
