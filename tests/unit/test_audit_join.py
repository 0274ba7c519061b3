"""How calls are joined when the command line does not say: time windows (and their ambiguity), the W3C
traceparent, logs of older monitors without exec_id or origin; transcript parsing; incomplete logs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List

from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import audit_fixture
from workload.scripted_session import ScriptedSession

from rawbpf.audit import build_report, find_sessions, load_sessions, parse_transcript, select_session
from rawbpf.cli import cli


def _report(s: ScriptedSession, records: List[Dict[str, Any]] = ()) -> Dict[str, Any]:  # type: ignore[assignment]
    recs = [dict(r, seq=i) for i, r in enumerate(records or s.records)]
    log = find_sessions(recs)
    tr = parse_transcript([json.dumps(e) for e in s.entries])
    return build_report(select_session(log, "latest"), log, tr)


def _pids(tree: Dict[str, Any]) -> List[int]:
    return [tree["pid"], *(p for ch in tree["children"] for p in _pids(ch))]


def test_window_join_and_its_ambiguity() -> None:
    s = ScriptedSession()
    s.prompt("two things at once")
    # parallel calls: both tool_use blocks before either runs; the shells' command lines name neither
    a = s.tool_use("Bash", {"command": "make a"})
    b = s.tool_use("Bash", {"command": "make b"})
    sh = s.spawn(s.root, "/usr/bin/bash", ["bash", "/tmp/runner.sh"], origin="tool")
    s.exit(sh, 0)
    s.tool_result(a, "")
    s.tool_result(b, "")
    s.tick(500_000_000)
    c = s.tool_use("Bash", {"command": "make c"})
    alone = s.spawn(s.root, "/usr/bin/bash", ["bash", "/tmp/other.sh"], origin="tool")
    s.exit(alone, 0)
    s.tool_result(c, "")
    s.exit(s.root, 0)
    calls = {x["tool_use_id"]: x for x in _report(s)["calls"]}
    assert calls[b]["join"] == "window-ambiguous" and sorted(calls[b]["candidates"]) == sorted([a, b])
    assert [t["pid"] for t in calls[b]["processes"]] == [sh.pid]  # the latest call begun by then
    assert calls[a]["join"] == "none" and calls[a]["processes"] == []
    assert calls[c]["join"] == "window" and [t["pid"] for t in calls[c]["processes"]] == [alone.pid]


def test_traceparent_join() -> None:
    s = ScriptedSession(host_env_traceparent="00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01")
    s.prompt("p")
    c1 = s.tool_use("Bash", {"command": "make one"})
    tp = "00-11111111111111111111111111111111-2222222222222222-01"
    sh = s.bash_tool("make one", traceparent=tp)
    s.exit(sh, 0)
    # a detached helper of the same call (same trace context), started outside any window
    s.tool_result(c1, "")
    s.tick(500_000_000)
    late = s.spawn(s.root, "/usr/bin/env", ["env"], origin="tool", traceparent=tp)
    s.exit(late, 0)
    s.exit(s.root, 0)
    rep = _report(s)
    call = rep["calls"][0]
    assert call["join"] == "command"  # the best method that joined any of its processes
    joined = {t["pid"]: t["joined_by"] for t in call["processes"]}
    assert joined == {sh.pid: "command", late.pid: "traceparent"}
    assert rep["unexplained"]["processes"] == {}


def test_log_without_exec_id_or_origin_still_joins_by_command() -> None:
    s, f = audit_fixture.build()
    old = {"exec_id", "parent_exec_id", "root_exec_id", "origin", "session_id", "traceparent", "cwd", "euid",
           "auid", "tty", "cgroup", "conn_id", "transcript"}
    records = [{k: v for k, v in r.items() if k not in old} for r in s.records]
    rep = _report(s, records)
    calls = {c["tool_use_id"]: c for c in rep["calls"]}
    for cid, cmd in f["commands"].items():
        assert calls[cid]["join"] == "command" and calls[cid]["target"] == cmd
    _, c2, c3, c4 = f["calls"][:4]
    got = sorted(p for t in calls[c4]["processes"] for p in _pids(t))
    assert got == sorted([f["sh4"], f["cat"], f["curl"]])
    assert calls[c2]["join"] == calls[c3]["join"] == "file"
    # without origin nothing tells Claude's helpers from hooks or MCP servers: listed, not guessed
    assert sorted(rep["unexplained"]["processes"]) == ["unknown"]
    kinds = sorted(x["kind"] for x in rep["findings"])
    assert kinds.count("sensitive_read") == 1 and kinds.count("failed_command") == 1


def test_transcript_parsing_keeps_what_it_understands() -> None:
    s = ScriptedSession()
    s.prompt("hello")
    c = s.tool_use("Read", {"file_path": "/etc/hosts"})
    s.tool_result(c, "127.0.0.1 localhost")
    lines = [json.dumps(e) for e in s.entries]
    meta = dict(s.entries[1], isMeta=True, uuid="m", message={"role": "user", "content": "<caveat>"})
    side = dict(s.entries[2], isSidechain=True, uuid="x")
    side["message"] = dict(side["message"], content=[{"type": "tool_use", "id": "toolu_side", "name": "Bash",
                                                      "input": {"command": "ls"}}])
    tr = parse_transcript([*lines, "{not json", "", json.dumps(meta), json.dumps(side), "[1, 2]"])
    assert tr.skipped == 2 and [p.text for p in tr.prompts] == ["hello"]
    assert [(x.tool_use_id, x.sidechain) for x in tr.calls] == [(c, False), ("toolu_side", True)]
    assert tr.calls[0].target == "/etc/hosts" and tr.calls[0].result_text == "127.0.0.1 localhost"
    assert tr.session_id == s.session_id and tr.version == "2.1.197"


def test_incomplete_log_is_said(tmp_path: Path) -> None:
    s, _ = audit_fixture.build()
    log_dir = tmp_path / "log"
    s.write_log(str(log_dir))
    newest = sorted(os.listdir(log_dir))[-1]
    with open(log_dir / newest, "ab") as fh:
        fh.write(b"\x85\xa3seq")  # a record cut by a crash
    log = load_sessions(str(log_dir))
    assert log.torn == 1
    s.write_transcript(str(tmp_path / "t.jsonl"))
    with open(tmp_path / "t.jsonl", "a") as fh:
        fh.write("{broken\n")
    res = CliRunner().invoke(cli, ["report", "latest", "--log-dir", str(log_dir), "--transcript",
                                   str(tmp_path / "t.jsonl")])
    assert res.exit_code == 0, res.output
    assert "the log is incomplete: 0 record(s) rotated away before they were read, 1 torn" in res.output
    assert "1 transcript line(s) were not JSON" in res.output


def test_sessions_since_and_two_sessions(tmp_path: Path) -> None:
    first = ScriptedSession(root_pid=100, session_id="aaaa1111-0000-0000-0000-000000000000")
    first.transcript_opened()
    first.exit(first.root, 0)
    second = ScriptedSession(root_pid=200, t0=first.t + 3600 * 10**9,
                             session_id="aaaa2222-0000-0000-0000-000000000000")
    second.transcript_opened()
    recs = [*first.records, *second.records]  # the second is still running
    log = find_sessions(recs)
    assert [x.root_pid for x in log.sessions] == [100, 200]
    assert select_session(log, "latest").root_pid == 200
    assert select_session(log, "aaaa1").root_pid == 100
    import pytest

    from rawbpf.errors import ConfigError

    with pytest.raises(ConfigError, match="ambiguous"):
        select_session(log, "aaaa")
    d = tmp_path / "log"
    second.records[:0] = first.records
    second.write_log(str(d))
    res = CliRunner().invoke(cli, ["sessions", "--json", "--log-dir", str(d), "--since",
                                   f"@{(first.t + 60 * 10**9) / 1e9:.0f}"])
    rows = [json.loads(x) for x in res.output.splitlines()]
    assert [(r["root_pid"], r["running"]) for r in rows] == [(200, True)]


def test_records_after_exit_device_files_and_claude_temp_files() -> None:
    s = ScriptedSession()
    s.prompt("p")
    c = s.tool_use("Bash", {"command": "make"})
    sh = s.bash_tool("make")
    s.file(sh, "truncate", "/dev/null")
    s.file(sh, "create", "/work/tmp/claude-30e1-cwd")  # the Bash tool's cwd file under $TMPDIR
    s.exit(sh, 0)
    s.file(sh, "write", f"{s.cwd}/out.o", count=7)  # folded writes the monitor sweeps out after the exit
    s.tool_result(c, "")
    s.file(s.root, "delete", "/work/tmp/claude-30e1-cwd")
    s.file(s.root, "delete", f"/work/tmp/claude-0/-home-ada-proj/{s.session_id}/tasks/b1.output")
    s.exit(s.root, 0)
    stripped = [{k: v for k, v in r.items() if k not in ("exec_id", "parent_exec_id", "root_exec_id")}
                for r in s.records]
    for records in (s.records, stripped):
        rep = _report(s, records)
        assert rep["findings"] == [], rep["findings"]
        (tree,) = rep["calls"][0]["processes"]
        assert [(f["op"], f["path"]) for f in tree["files"]] == [
            ("create", "/work/tmp/claude-30e1-cwd"), ("write", f"{s.cwd}/out.o")]
        assert rep["session"]["counts"]["files_changed"] == 1


def test_monitor_down_and_records_missing_are_findings(tmp_path: Path) -> None:
    s, _ = audit_fixture.build()
    mid = s.records[len(s.records) // 2]["ts"]
    # the monitor restarted after a kill -9 in the middle of the session: its crash record names the window
    s.records.insert(len(s.records) // 2 + 1, {"ts": mid + 1, "type": "crash", "writer_pid": 999,
                                                "since": mid - 50_000_000, "until": mid, "torn_bytes": 0})
    d = tmp_path / "log"
    s.write_log(str(d), max_bytes=2048, backups=100)
    files = sorted(os.listdir(d))
    os.unlink(d / files[len(files) // 2])  # and a file in the middle is gone
    log = load_sessions(str(d))
    rep = build_report(select_session(log, "latest"), log, None)
    kinds = [x["kind"] for x in rep["findings"]]
    assert "monitor_down" in kinds and "records_missing" in kinds, kinds
    (down,) = [x for x in rep["findings"] if x["kind"] == "monitor_down"]
    assert (down["since"], down["until"]) == (mid - 50_000_000, mid) and down["severity"] == "high"
    assert rep["log"]["missing_in_session"] > 0


def test_a_refused_sensitive_read_is_still_a_finding() -> None:
    s = ScriptedSession(uid=1000)
    s.prompt("p")
    c = s.tool_use("Bash", {"command": "cat /etc/shadow"})
    sh = s.bash_tool("cat /etc/shadow")
    cat = s.spawn(sh, "/usr/bin/cat", ["cat", "/etc/shadow"])
    s.file(cat, "read", "/etc/shadow", sensitive=True, ret=-13)
    s.exit(cat, 1)
    s.exit(sh, 1)
    s.tool_result(c, "Permission denied", is_error=True)
    s.exit(s.root, 0)
    rep = _report(s)
    (f,) = [x for x in rep["findings"] if x["kind"] == "sensitive_read"]
    assert f["summary"] == "cat tried to read /etc/shadow (EACCES)"
    assert f["ret"] == -13 and f["tool_use_id"] == c
