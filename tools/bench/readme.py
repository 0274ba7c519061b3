# ruff: noqa: E501, RUF001
"""``python -m tools.bench.readme [results.json]``: rewrite README.md's performance table from bench results.

The table sits between the ``<!-- bench-table -->`` and ``<!-- /bench-table -->`` markers. A figure missing from
the results (a section not run, or not measured) stops the rewrite with its key: the table shows only what one
``make bench`` run measured.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[2]
START, END = "<!-- bench-table -->", "<!-- /bench-table -->"


class Figures:
    def __init__(self, results: Dict[str, Any]) -> None:
        self.results = results

    def __call__(self, path: str) -> Any:
        section, _, key = path.partition(".")
        value = self.results.get(section, {}).get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise SystemExit(f"readme: {path} was not measured ({value!r})")
        return value


def _m(v: float) -> str:
    return f"{v / 1e6:.1f} M"


def _k(v: float) -> str:
    return f"{v / 1e3:.0f} k" if v >= 10_000 else f"{v / 1e3:.1f} k"


def rows(f: Figures) -> List[str]:
    out = ["| what | rawbpf | peers |", "|---|---|---|"]
    add = out.append
    add(f"| ring-buffer drain, 64-byte records (header walk + decode to tuples) | {_m(f('ringbuf.rawbpf_raw'))} "
        f"ev/s | libbpf C {_m(f('ringbuf.libbpf-c'))}, cilium/ebpf (Go) {_m(f('ringbuf.go-cilium'))} |")
    add(f"| ring buffer → BTF decode → msgpack → rotating log | {_m(f('ringbuf.rawbpf_decode_log'))} ev/s | |")
    add(f"| `rawbpf load` of the monitor until every program is attached, from process start, peers interleaved "
        f"(load average {f('load.load_avg_1m'):.1f}): cached bytecode / none (`PYTHONDONTWRITEBYTECODE=1`, "
        f"editable) / zipapp / installed wheel | {f('load.rawbpf_s'):.2f} / {f('load.rawbpf_nocache_s'):.2f} / "
        f"{f('load.zipapp_s'):.2f} / {f('load.wheel_s'):.2f} s ({f('load.ratio_vs_bpftool'):.2f} / "
        f"{f('load.ratio_nocache_vs_bpftool'):.2f} / {f('load.ratio_zipapp_vs_bpftool'):.2f} / "
        f"{f('load.ratio_wheel_vs_bpftool'):.2f}× bpftool), {f('load.rawbpf_rss_mb'):.0f} MB; CPU until attached "
        f"{f('load.rawbpf_cpu_s'):.2f} s ({f('load.cpu_ratio_vs_bpftool'):.2f}×) | "
        f"`bpftool prog loadall` {f('load.bpftool_s'):.2f} s, CPU {f('load.bpftool_cpu_s'):.2f} s |")
    add(f"| `rawbpf load` of a 5-tracepoint CO-RE object until attached | {f('load.tracepoints5_rawbpf_s'):.2f} s "
        f"| `bpftool prog loadall` {f('load.tracepoints5_bpftool_s'):.2f} s |")
    add(f"| event to log (p99) | {f('latency.event_to_log_p99_ms'):.0f} ms | |")
    add(f"| connect(2) latency, no monitor / monitor loaded (untracked) | "
        f"{f('syscall_overhead.connect_baseline_ns'):.0f} ns / {f('syscall_overhead.connect_with_monitor_ns'):.0f} "
        f"ns | |")
    add(f"| tracked exec storm with 0 dropped records; the daemon's user / system CPU per exec; the same per file "
        f"record of a tracked root creating {f('exec_storm.file_records') / 1e3:.0f} k files (load average "
        f"{f('exec_storm.load_avg_1m'):.1f}) | "
        f"{_k(f('exec_storm.execs_per_s'))} execs/s; {f('exec_storm.user_us_per_record'):.0f} / "
        f"{f('exec_storm.sys_us_per_record'):.0f} µs; {f('exec_storm.file_user_us_per_record'):.0f} / "
        f"{f('exec_storm.file_sys_us_per_record'):.0f} µs | |")
    add(f"| what watching costs (daemon user + system + BPF run time): idle host / tracked session exec'ing "
        f"1000 programs/s; RSS after {f('watch_cost.records') / 1e6:.1f} M records (peak) | "
        f"{f('watch_cost.idle_cpu_pct'):.2f} % of a CPU ({f('watch_cost.idle_cpu_s_per_hour'):.0f} s/hour) / "
        f"{f('watch_cost.busy_cpu_pct'):.1f} % ({f('watch_cost.busy_cpu_s_per_hour'):.0f} s/hour); "
        f"{f('watch_cost.rss_mb_after_1m'):.0f} MB ({f('watch_cost.peak_rss_mb'):.0f} MB) | |")
    add(f"| file/DNS programs per untracked event vs an empty program on the same tracepoint, median of "
        f"{f('files.untracked_vs_floor_samples'):.0f} interleaved samples (openat / write / sendto / read / writev) | "
        f"{f('files.openat_untracked_vs_floor'):.2f} / {f('files.write_untracked_vs_floor'):.2f} / "
        f"{f('files.sendto_untracked_vs_floor'):.2f} / {f('files.read_untracked_vs_floor'):.2f} / "
        f"{f('files.writev_untracked_vs_floor'):.2f}× | |")
    def pct(key: str) -> str:
        return (f"{f(f'files.{key}_pct'):+.1f} % [{f(f'files.{key}_ci_lo'):+.1f}, "
                f"{f(f'files.{key}_ci_hi'):+.1f}]")

    add(f"| build-and-git job with the monitor attached vs none, {f('files.workload_untracked_pairs'):.0f} / "
        f"{f('files.workload_tracked_pairs'):.0f} interleaved pairs run at the CPU's normal speed "
        f"(median, {f('files.workload_ci_confidence') * 100:.0f} % interval; load average "
        f"{f('files.workload_load_avg_1m'):.0f}): (a) untracked, (b) tracked; wall / CPU (job + daemon) | "
        f"(a) {pct('workload_untracked_overhead')} / {pct('workload_untracked_cpu_overhead')}; "
        f"(b) {pct('workload_tracked_overhead')} / {pct('workload_tracked_cpu_overhead')}; "
        f"{f('files.workload_lost'):.0f} records lost | |")
    add(f"| the same job's cost by the monitor's own counters, % of the job's CPU: BPF run time + tracepoint "
        f"dispatch ({f('files.openat_dispatch_ns'):.0f} ns a run) + the daemon's work for the job; untracked / "
        f"tracked ({f('files.workload_records'):.0f} records, {f('files.workload_daemon_us_per_record'):.0f} µs "
        f"each in the daemon) | {f('files.workload_untracked_accounted_pct'):.2f} / "
        f"{f('files.workload_tracked_accounted_pct'):.2f} % (BPF {f('files.workload_untracked_bpf_pct'):.2f} / "
        f"{f('files.workload_tracked_bpf_pct'):.2f}, dispatch {f('files.workload_untracked_dispatch_pct'):.2f} / "
        f"{f('files.workload_tracked_dispatch_pct'):.2f}, daemon {f('files.workload_untracked_daemon_cpu_pct'):.2f}"
        f" / {f('files.workload_tracked_daemon_cpu_pct'):.2f}) | |")
    add(f"| `rawbpf ship` from a full log ({f('ship.records') / 1e3:.0f} k records), per CPU second of the shipper "
        f"on one core: Forward (gzip) / syslog / RELP | {_k(f('ship.forward_per_core'))} "
        f"({_k(f('ship.forward_gzip_per_core'))}) / {_k(f('ship.syslog_per_core'))} / "
        f"{_k(f('ship.relp_per_core'))} rec/s, RSS {f('ship.forward_rss_mb'):.0f}-{f('ship.relp_rss_mb'):.0f} MB "
        f"| |")
    add(f"| the same end to end, into FluentServer (node) / rsyslogd over loopback (load average "
        f"{f('ship.load_avg_1m'):.1f}) | {_k(f('ship.forward_end_to_end'))} / {_k(f('ship.syslog_end_to_end'))} / "
        f"{_k(f('ship.relp_end_to_end'))} rec/s | |")
    add(f"| `rawbpf report` of a {f('report.records') / 1e3:.0f} k-record session, text / `--json` / `--html`, "
        f"from process start: CPU time; wall time (load average {f('report.load_avg_1m'):.1f}) | "
        f"{f('report.report_100k_cpu_s'):.1f} / {f('report.report_json_100k_cpu_s'):.1f} / "
        f"{f('report.html_100k_cpu_s'):.1f} s CPU; {f('report.report_100k_s'):.1f} / "
        f"{f('report.report_json_100k_s'):.1f} / {f('report.html_100k_s'):.1f} s wall | `rawbpf tail --json` of "
        f"the same log: {f('report.tail_json_100k_cpu_s'):.1f} s CPU, {f('report.tail_json_100k_s'):.1f} s wall |")
    add(f"| `rawbpf sessions` on the same log | {f('report.sessions_100k_cpu_s'):.1f} s CPU, "
        f"{f('report.sessions_100k_s'):.1f} s wall | |")
    add(f"| its {f('report.page_bytes') / 1e6:.1f} MB page in headless chromium: navigation to drawn / "
        f"main-thread time | {f('report.page_open_s'):.1f} s / {f('report.page_main_thread_s'):.1f} s | |")
    return out


def rewrite(readme: str, results: Dict[str, Any]) -> str:
    start, end = readme.index(START) + len(START), readme.index(END)
    return readme[:start] + "\n" + "\n".join(rows(Figures(results))) + "\n" + readme[end:]


def main(argv: List[str]) -> int:
    results = json.loads(Path(argv[0] if argv else ROOT / "bench" / "results.json").read_text())
    readme = ROOT / "README.md"
    readme.write_text(rewrite(readme.read_text(), results))
    print(f"readme: table rewritten from {results.get('meta', {}).get('date', '?')}'s results")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
