"""The benchmark harness's pure parts: result schema, goal verdicts, the table, error recording."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tools.bench import __main__ as bench  # noqa: E402

# the keys issue 6 requires in bench/results.json
REQUIRED = {
    "ringbuf": {"rawbpf_raw", "rawbpf_decode_log", "libbpf-c", "go-cilium"},
    "kernel_ns": {"connect_untracked", "connect_tracked", "exec_tracked"},
    "syscall_overhead": {"connect_baseline_ns", "connect_with_monitor_ns"},
    "load": {"rawbpf_s", "rawbpf_rss_mb", "bpftool_s", "ratio_vs_bpftool", "zipapp_s"},
    "exec_storm": {"execs_per_s", "dropped", "user_us_per_record"},
    "latency": {"event_to_log_p99_ms"},
    "report": {"report_100k_s", "page_open_s"},
    "ship": {"forward_per_core", "forward_rss_mb", "syslog_per_core", "syslog_rss_mb", "relp_per_core"},
    "files": {"openat_untracked_vs_floor", "write_untracked_vs_floor", "sendto_untracked_vs_floor",
              "read_untracked_vs_floor", "writev_untracked_vs_floor", "read_tracked_ns",
              "file_event_tracked_ns", "dns_packet_tracked_ns", "workload_untracked_overhead_pct",
              "workload_tracked_overhead_pct", "workload_lost"},
    "watch_cost": {"idle_cpu_pct", "rss_mb_after_1m"},
}


def test_every_required_key_has_a_goal_row_and_a_section() -> None:
    assert set(bench.SECTIONS) == set(REQUIRED)
    for name, keys in REQUIRED.items():
        assert keys <= {k for k, _u, _g, _s in bench.GOALS[name]}, name


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_a_failed_section_records_strings_for_every_key(name: str) -> None:
    out = bench._errors(name, "unavailable: x is not built")
    assert REQUIRED[name] <= set(out)
    assert all(isinstance(v, str) and "not built" in v for v in out.values())
    json.dumps(out)


def test_verdicts() -> None:
    assert bench._verdict({}, 50.0, 60, "max").startswith("ok")
    assert bench._verdict({}, 61.0, 60, "max").startswith("MISS")
    assert bench._verdict({}, 12_000, 10_000, "min").startswith("ok")
    assert bench._verdict({"go-cilium": 4e6}, 3e6, "go-cilium", "min").startswith("MISS")
    assert bench._verdict({}, "error: x", 60, "max") == ""
    assert bench._verdict({"go-cilium": "error: y"}, 3e6, "go-cilium", "min") == ""


def test_table_lists_every_figure_and_marks_misses() -> None:
    results = {"kernel_ns": {"connect_untracked": 75.0, "connect_tracked": 250.0, "exec_tracked": "error: z"},
               "latency": {"event_to_log_p99_ms": 12.5}}
    text = bench.table(results)
    for keys in REQUIRED.values():
        for key in keys:
            assert key in text
    row = next(line for line in text.splitlines() if "connect_untracked" in line)
    assert "MISS" in row
    assert "ok" in next(line for line in text.splitlines() if "event_to_log_p99_ms" in line)
    assert "not run" in next(line for line in text.splitlines() if "rawbpf_raw" in line)


def test_a_figure_that_was_not_measured_fails_the_run() -> None:
    """`make bench` exits non-zero when any figure of a section it ran is an error string (or absent)."""
    measured = {key: 1.0 for key, _u, _g, _s in bench.GOALS["latency"]}
    assert bench.unmeasured({"latency": measured}, ["latency"]) == []
    ring = {"rawbpf_raw": 9e6, "rawbpf_decode_log": 2e6, "libbpf-c": 5e6,
            "go-cilium": "unavailable: peer kit does not build"}
    assert bench.unmeasured({"ringbuf": ring}, ["ringbuf"]) == [
        ("ringbuf.go-cilium", "unavailable: peer kit does not build")]
    assert [k for k, _ in bench.unmeasured({}, ["load"])] == [f"load.{k}" for k, *_ in bench.GOALS["load"]]


def test_the_workload_job_gets_no_make_flags_compiler_cache_or_git_config_from_the_caller(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tools.bench import files

    for key, value in (("MAKEFLAGS", " -j8 --jobserver-auth=3,4"), ("MAKELEVEL", "1"), ("CCACHE_DIR", "/c"),
                       ("GIT_DIR", "/elsewhere"), ("CFLAGS", "-O0")):
        monkeypatch.setenv(key, value)
    env = files._job_env(tmp_path)
    assert not {"MAKEFLAGS", "MAKELEVEL", "CCACHE_DIR", "GIT_DIR", "CFLAGS"} & set(env)
    assert env["CCACHE_DISABLE"] == "1" and env["GIT_CONFIG_NOSYSTEM"] == "1"
    count = int(env["GIT_CONFIG_COUNT"])
    config = {env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"] for i in range(count)}
    assert config == {"gc.auto": "0", "maintenance.auto": "false", "core.fsync": "none"}
