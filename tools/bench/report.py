"""Bench section ``report``: ``rawbpf report`` and ``rawbpf sessions`` on a session of 100 k records, and how
long its HTML page takes to open in headless chromium; files only, no kernel.

The session is scripted (tests/workload/scripted_session.py: Bash calls whose shells run compilers that write
files and connect), written through the log writer with its transcript, then reported as a user would run it
(a fresh ``python -m rawbpf`` process each time; medians). ``rawbpf tail --json`` over the same log is the
floor: reading and printing every record without joining anything.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List

from tools.bench.common import ROOT, Context, Unavailable

RECORDS = 100_000


def _time(cmd: List[str], runs: int, cpu: Dict[str, float], name: str) -> float:
    """Median wall time of ``cmd`` (what a user waits); its median CPU time (user + system, which other load
    on the machine does not inflate) goes to ``cpu[name]``."""
    times, cpus = [], []
    for _ in range(runs):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        cp = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            timeout=600)
        times.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        if cp.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[3:5])}: {cp.stderr.strip()[-200:]}")
    cpu[name.replace("_s", "_cpu_s")] = round(statistics.median(cpus), 3)
    return round(statistics.median(times), 3)


def run_section(ctx: Context) -> Dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    from workload.scripted_session import busy_session

    from tools.report_browser import check_page, find_chromium

    records = 20_000 if ctx.quick else RECORDS
    runs = 1 if ctx.quick else 3
    s = busy_session(records)
    log_dir, transcript = ctx.work / "report-log", ctx.work / "report-session.jsonl"
    s.write_log(str(log_dir))
    s.write_transcript(str(transcript))
    py = [sys.executable, "-m", "rawbpf"]
    common = ["--log-dir", str(log_dir)]
    page = ctx.work / "report.html"
    cpu: Dict[str, float] = {}
    out: Dict[str, Any] = {
        "records": len(s.records),
        "processes": sum(1 for r in s.records if r["type"] == "exec"),
        "tool_calls": sum(1 for e in s.entries if e.get("type") == "assistant"
                          and e["message"]["content"][0].get("type") == "tool_use"),
        "report_100k_s": _time([*py, "report", "latest", "--transcript", str(transcript), *common], runs, cpu,
                               "report_100k_s"),
        "report_json_100k_s": _time([*py, "report", "latest", "--json", "--transcript", str(transcript),
                                     *common], runs, cpu, "report_json_100k_s"),
        "html_100k_s": _time([*py, "report", "latest", "--html", str(page), "--transcript", str(transcript),
                              *common], runs, cpu, "html_100k_s"),
        "sessions_100k_s": _time([*py, "sessions", *common], runs, cpu, "sessions_100k_s"),
        "tail_json_100k_s": _time([*py, "tail", "--json", *common], runs, cpu, "tail_json_100k_s"),
        "page_bytes": page.stat().st_size,
    }
    out.update(cpu)
    out["load_avg_1m"] = os.getloadavg()[0]
    if find_chromium() is None:
        raise Unavailable("chromium is not installed (make deps)")
    opens, busy, errors = [], [], []
    for _ in range(runs):
        res = check_page(str(page))
        opens.append(res["open_s"])
        busy.append(res["main_thread_s"])
        errors += res["errors"]
    out["page_open_s"] = round(statistics.median(opens), 3)
    out["page_main_thread_s"] = round(statistics.median(busy), 3)
    out["page_errors"] = len(errors)
    return out
