"""The monitor's status file and its text rendering, and the load option group (no kernel)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from rawbpf.cli.monitor_options import OPTION_NAMES, maybe_run_monitor, monitor_options
from rawbpf.errors import ConfigError
from rawbpf.monitor.status import (
    STATUS_NAME,
    _sum,
    format_text,
    lost_total,
    read_status,
    remove_status,
    write_status,
)

ROOT = Path(__file__).resolve().parents[2]


def test_status_file_round_trip_and_stale(tmp_path: Path) -> None:
    write_status(str(tmp_path), {"pid": os.getpid(), "object": "claude_monitor"})
    assert oct((tmp_path / STATUS_NAME).stat().st_mode & 0o777) == "0o644"
    assert read_status(str(tmp_path))["object"] == "claude_monitor"
    assert [p.name for p in tmp_path.iterdir()] == [STATUS_NAME]  # no temporary files left
    write_status(str(tmp_path), {"pid": 2**22 + 7})  # above PID_MAX_LIMIT: cannot be running
    with pytest.raises(ConfigError, match=r"is not running; .* is stale"):
        read_status(str(tmp_path))
    remove_status(str(tmp_path), os.getpid())  # not ours: another monitor's status file stays
    assert (tmp_path / STATUS_NAME).exists()
    remove_status(str(tmp_path), 2**22 + 7)
    with pytest.raises(ConfigError, match="no monitor is running"):
        read_status(str(tmp_path))
    (tmp_path / STATUS_NAME).write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read"):
        read_status(str(tmp_path))


def test_per_cpu_sums() -> None:
    cpus = [{"kind": [{"seen": 1, "lost": 0}, {"seen": 2, "lost": 1}], "filtered": 3},
            {"kind": [{"seen": 10, "lost": 0}, {"seen": 20, "lost": 2}], "filtered": 4}]
    assert _sum(cpus) == {"kind": [{"seen": 11, "lost": 0}, {"seen": 22, "lost": 3}], "filtered": 7}


def test_format_text() -> None:
    d = {
        "pid": 42, "object": "claude_monitor", "started": 0, "now": 3725 * 10**9, "log_dir": "/l",
        "pin_dir": "/p", "seeded": 2, "tracked_now": 5, "ring": {"size": 4 << 20, "used": 1 << 20},
        "log": {"records": 99, "files": ["a.mlog"], "current": "/l/a.mlog"},
        "programs": {"handle_exec": {"attached": True, "run_cnt": 10, "avg_ns": 1234.4},
                     "handle_fork": {"attached": False, "run_cnt": 0, "avg_ns": None}},
        "counters": {"kinds": {"exec": {"seen": 10, "tracked": 3, "emitted": 3, "lost": 1}},
                     "filtered": 1, "tracked_full": 0, "wakeups": 2, "read_errors": 0},
    }
    d["lost_total"] = lost_total(d["counters"])
    text = format_text(d)
    assert "claude_monitor: running (pid 42, up 1h02m05s)" in text
    assert "records written: 99, lost: 1" in text and "(current a.mlog)" in text
    assert "1.0 MiB of 4.0 MiB in use (25.0%)" in text
    assert "tracked processes now: 5 (seeded at start: 2)" in text
    assert "handle_exec" in text and "1234" in text and "handle_fork" in text
    lines = text.splitlines()
    assert any(line.split()[:5] == ["exec", "10", "3", "3", "1"] for line in lines)
    json.dumps(d)


def _cmd() -> click.Command:
    @click.command()
    @click.argument("obj")
    @monitor_options
    def cmd(obj: str, **values: object) -> None:
        click.echo(json.dumps(sorted(k for k, v in values.items() if v not in (None, False, ()))))
        assert set(values) == set(OPTION_NAMES)

    return cmd


def test_option_group_parses() -> None:
    res = CliRunner().invoke(_cmd(), ["x.o", "--match-comm", "a", "--match-comm", "b", "--only-endpoints",
                                      "--endpoint", "10.0.0.0/8=corp", "--argv-max-args", "4", "--no-seed"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == ["argv_max_args", "endpoints", "match_comm", "no_seed", "only_endpoints"]


def test_monitor_options_only_for_the_monitor_object() -> None:
    other = str(ROOT / "tests" / "data" / "globals.o")
    assert maybe_run_monitor(other, {}) is False
    with pytest.raises(ConfigError, match="--only-endpoints only apply to the claude_monitor object"):
        maybe_run_monitor(other, {"only_endpoints": True})
