"""The joined report of a scripted session: every tool call with its processes, every unexplained process,
every finding raised and none invented; the session list; rotated logs; the CLI's text and JSON."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))

import audit_fixture

from rawbpf.audit import build_report, load_sessions, read_transcript, select_session
from rawbpf.audit.join import session_summary
from rawbpf.cli import cli
from rawbpf.errors import ConfigError


@pytest.fixture()
def scripted(tmp_path: Path) -> Dict[str, Any]:
    s, facts = audit_fixture.build()
    log_dir = tmp_path / "log"
    s.write_log(str(log_dir))
    tpath = tmp_path / "session.jsonl"
    s.write_transcript(str(tpath))
    log = load_sessions(str(log_dir))
    sess = select_session(log, "latest")
    rep = build_report(sess, log, read_transcript(str(tpath)), transcript_source="given")
    return {
        "script": s,
        "facts": facts,
        "log": log,
        "sess": sess,
        "report": rep,
        "log_dir": log_dir,
        "transcript": tpath,
    }


def _pids(tree: Dict[str, Any]) -> List[int]:
    out = [tree["pid"]]
    for ch in tree["children"]:
        out.extend(_pids(ch))
    return out


def test_every_tool_call_with_its_processes(scripted: Dict[str, Any]) -> None:
    rep, f = scripted["report"], scripted["facts"]
    calls = {c["tool_use_id"]: c for c in rep["calls"]}
    assert list(calls) == f["calls"]
    c1, c2, c3, c4, c5, c6 = f["calls"]
    expect = {
        c1: [f["sh1"], f["ls"]],
        c4: [f["sh4"], f["cat"], f["curl"]],
        c5: [f["sh5"], f["sleep"], f["rm"]],
        c6: [f["sh6"], f["srv"]],
        c2: [],
        c3: [],
    }
    for cid, pids in expect.items():
        got = [p for t in calls[cid]["processes"] for p in _pids(t)]
        assert sorted(got) == sorted(pids), (calls[cid]["tool"], calls[cid]["target"])
    for cid, cmd in f["commands"].items():
        assert calls[cid]["target"] == cmd
        assert calls[cid]["join"] == "command"
    # Write and Edit: Claude's own rename of a temporary file over the target, each in its own call
    for cid in (c2, c3):
        assert calls[cid]["join"] == "file"
        ops = [(x["op"], x["path2"]) for x in calls[cid]["files"]]
        assert ops[-1] == ("rename", f"{audit_fixture.CWD}/notes.txt") and len(ops) == 2
    assert calls[c2]["files"][0]["path"] != calls[c3]["files"][0]["path"]
    # the background job: its window runs to the task notification, and its children are its own
    assert calls[c5]["background"] and calls[c5]["background_exit_code"] == 0
    assert calls[c4]["is_error"] is True
    curl = calls[c4]["processes"][0]["children"][1]
    assert (
        curl["connections"][0]["label"] == "evil.example:80" and curl["connections"][0]["result"] == "refused"
    )
    assert [x["op"] for x in calls[c1]["files"]] == ["create"]


def test_every_unexplained_process_listed(scripted: Dict[str, Any]) -> None:
    rep, f = scripted["report"], scripted["facts"]
    groups = rep["unexplained"]["processes"]
    assert sorted(groups) == ["claude", "hook", "mcp"]
    assert sorted(p for t in groups["claude"] for p in _pids(t)) == sorted([f["rg"], f["git"]])
    assert [p for t in groups["hook"] for p in _pids(t)] == [f["hook"]]
    assert [p for t in groups["mcp"] for p in _pids(t)] == [f["mcp"], f["mcp_child"]]
    explained = {p for c in rep["calls"] for t in c["processes"] for p in _pids(t)}
    unexplained = {p for ts in groups.values() for t in ts for p in _pids(t)}
    every = {p.pid for p in scripted["sess"].procs.values()} - {scripted["sess"].root_pid}
    assert explained | unexplained == every and not explained & unexplained
    labels = sorted(x["label"] for x in rep["unexplained"]["connections"])
    assert labels == ["anthropic-api", "anthropic-api", "statsig.anthropic.com:443"]
    assert [o["pid"] for o in rep["unexplained"]["outlived"]] == [f["srv"]]
    assert rep["unexplained"]["lost_records"] == 3


def test_every_finding_raised_and_none_invented(scripted: Dict[str, Any]) -> None:
    rep, f = scripted["report"], scripted["facts"]
    got = sorted(
        (x["kind"], x.get("path") or x.get("target") or x.get("pid") or x.get("count"))
        for x in rep["findings"]
    )
    assert got == sorted(
        [
            ("sensitive_read", "/home/ada/.ssh/id_rsa"),
            ("unnamed_host", "statsig.anthropic.com:443"),
            ("unnamed_host", "evil.example:80"),
            ("delete_outside_tree", "/tmp/build-cache/objs.bin"),
            ("delete_outside_tree", "/tmp/build-cache"),
            ("failed_command", f["sh4"]),
            ("left_running", f["srv"]),
            ("lost_records", 3),
        ]
    )
    c4 = f["calls"][3]
    assert [x["tool_use_id"] for x in rep["findings"] if x["kind"] == "sensitive_read"] == [c4]
    assert rep["findings"][0]["severity"] == "high"


def test_session_summary(scripted: Dict[str, Any]) -> None:
    s = session_summary(scripted["sess"], scripted["log"])
    script = scripted["script"]
    assert s["session_id"] == script.session_id and s["root_pid"] == script.root.pid
    assert s["claude_version"] == "2.1.197" and s["cwd"] == audit_fixture.CWD and s["uid"] == 1000
    assert s["host"] == "testhost"  # from the log's header (whose pid is the writer's, not a process's)
    assert not s["running"] and s["duration_ns"] > 0
    assert s["transcript"] == script.transcript_path
    c = s["counts"]
    assert (c["commands"], c["failed_commands"], c["sensitive_reads"], c["lost_records"]) == (10, 2, 1, 3)
    # a.txt, notes.txt (its temporary files renamed into place), and the two deletes
    assert c["files_changed"] == 4
    assert c["connections"] == {"anthropic-api": 2, "statsig.anthropic.com:443": 1, "evil.example:80": 1}


def test_without_transcript_still_lists_processes(scripted: Dict[str, Any]) -> None:
    rep = build_report(
        scripted["sess"],
        scripted["log"],
        None,
        transcript_status="unreadable",
        transcript_error="permission denied",
    )
    assert rep["calls"] == [] and rep["transcript"]["status"] == "unreadable"
    tool = rep["unexplained"]["processes"]["tool"]
    assert sorted(t["pid"] for t in tool) == sorted(
        scripted["facts"][k] for k in ("sh1", "sh4", "sh5", "sh6")
    )
    kinds = sorted(x["kind"] for x in rep["findings"])
    assert kinds.count("failed_command") == 1 and "sensitive_read" in kinds


def test_rotated_log_gives_the_same_report(scripted: Dict[str, Any], tmp_path: Path) -> None:
    rot = tmp_path / "rotated"
    scripted["script"].write_log(str(rot), max_bytes=2048, backups=100)
    assert len(os.listdir(rot)) > 3
    log = load_sessions(str(rot))
    rep = build_report(
        select_session(log, "latest"),
        log,
        read_transcript(str(scripted["transcript"])),
        transcript_source="given",
    )
    strip = lambda r: json.dumps({k: r[k] for k in ("calls", "findings", "unexplained")}, sort_keys=True)  # noqa
    assert scripted["report"]["session"]["start_seen"]
    assert strip(rep) == strip(scripted["report"])


def test_select_session(scripted: Dict[str, Any]) -> None:
    log, script = scripted["log"], scripted["script"]
    assert select_session(log, str(script.root.pid)) is scripted["sess"]
    assert select_session(log, str(scripted["facts"]["curl"])) is scripted["sess"]
    assert select_session(log, script.session_id[:8]) is scripted["sess"]
    with pytest.raises(ConfigError, match="no Claude session 'nope'"):
        select_session(log, "nope")


def test_cli_sessions_and_report(scripted: Dict[str, Any], tmp_path: Path) -> None:
    runner = CliRunner()
    log_dir = str(scripted["log_dir"])
    res = runner.invoke(cli, ["sessions", "--log-dir", log_dir])
    assert res.exit_code == 0, res.output
    assert scripted["script"].session_id in res.output and "2.1.197" in res.output
    res = runner.invoke(cli, ["sessions", "--json", "--log-dir", log_dir])
    assert json.loads(res.output.splitlines()[0])["counts"]["commands"] == 10
    html = tmp_path / "r.html"
    res = runner.invoke(
        cli,
        [
            "report",
            "latest",
            "--log-dir",
            log_dir,
            "--transcript",
            str(scripted["transcript"]),
            "--html",
            str(html),
        ],
    )
    assert res.exit_code == 0, res.output
    out = res.output
    for cmd in scripted["facts"]["commands"].values():
        assert cmd in out
    assert "bash -c 'echo hi > a.txt && ls -la'" in out and "ls -la   exit 0" in out
    assert "HIGH    cat read /home/ada/.ssh/id_rsa" in out
    assert html.read_text().startswith("<!DOCTYPE html>")
    res = runner.invoke(
        cli, ["report", "latest", "--json", "--log-dir", log_dir, "--transcript", str(scripted["transcript"])]
    )
    data = json.loads(res.output)
    assert data["format"] == "rawbpf.report/1" and len(data["calls"]) == 6


def test_cli_report_transcript_not_readable(scripted: Dict[str, Any]) -> None:
    # the log names a transcript under /home/ada that does not exist here: said, not fatal
    res = CliRunner().invoke(cli, ["report", "latest", "--log-dir", str(scripted["log_dir"])])
    assert res.exit_code == 0, res.output
    assert "cannot read it: no such file" in res.output
    assert "tool commands with no matching call: " in res.output


def test_cli_errors(tmp_path: Path, scripted: Dict[str, Any], capsys: pytest.CaptureFixture) -> None:
    from rawbpf.cli import main

    (tmp_path / "empty").mkdir()
    for args, msg in (
        (["sessions", "--log-dir", str(tmp_path / "empty")], "holds no rawbpf log"),
        (["report", "latest", "--log-dir", str(tmp_path / "none")], "not found"),
        (["report", "12345678", "--log-dir", str(scripted["log_dir"])], "no Claude session"),
        (
            [
                "report",
                "latest",
                "--log-dir",
                str(scripted["log_dir"]),
                "--transcript",
                str(tmp_path / "missing.jsonl"),
            ],
            "no such file",
        ),
    ):
        with pytest.raises(SystemExit) as ex:
            main(args)
        err = capsys.readouterr().err
        assert ex.value.code == 1 and msg in err and len(err.splitlines()) == 1, (args, err)


def test_terminal_escapes_in_argv_are_shown_not_obeyed(tmp_path: Path) -> None:
    s, _ = audit_fixture.build()
    evil = s.spawn(s.root, "/usr/bin/printf", ["printf", "\x1b]0;owned\x07\x1b[2J"], origin="claude")
    s.exit(evil, 0)
    s.write_log(str(tmp_path / "log"))
    res = CliRunner().invoke(cli, ["report", "latest", "--log-dir", str(tmp_path / "log")])
    assert res.exit_code == 0 and "\x1b" not in res.output and "\\x1b]0;owned" in res.output


def test_session_whose_start_was_rotated_away(scripted: Dict[str, Any], tmp_path: Path) -> None:
    rot = tmp_path / "rotated"
    scripted["script"].write_log(str(rot), max_bytes=2048, backups=100)
    os.unlink(rot / sorted(os.listdir(rot))[0])  # the file with Claude's exec is gone
    res = CliRunner().invoke(cli, ["report", "latest", "--log-dir", str(rot), "--transcript",
                                   str(scripted["transcript"])])
    assert res.exit_code == 0, res.output
    assert "the log begins after this session started" in res.output
    assert "cat read /home/ada/.ssh/id_rsa" in res.output  # what is there is still reported


def test_json_structure_is_the_documented_one(scripted: Dict[str, Any]) -> None:
    """rawbpf.report/1 is a contract (README): a key added or renamed must be a deliberate change here."""
    rep = scripted["report"]
    assert set(rep) == {"format", "session", "transcript", "findings", "prompts", "calls", "unexplained",
                        "root", "log"}
    assert {"session_id", "root_pid", "root_exec_id", "start", "end", "running", "duration_ns", "uid", "cwd",
            "claude_version", "argv", "exe", "host", "transcript", "counts",
            "start_seen"} <= set(rep["session"])
    assert set(rep["session"]["counts"]) == {"commands", "failed_commands", "files_changed",
                                             "sensitive_reads", "connections", "lost_records", "records",
                                             "processes"}
    assert {"path", "status", "error", "join"} <= set(rep["transcript"])
    call = rep["calls"][0]
    assert {"tool_use_id", "tool", "target", "input", "prompt", "ts_use", "ts_result", "ts_end", "background",
            "is_error", "join", "candidates", "processes", "files", "connections", "dns"} <= set(call)
    proc = call["processes"][0]
    assert {"exec_id", "pid", "ppid", "comm", "argv", "filename", "cwd", "origin", "start", "end",
            "duration_ns", "running", "exit_code", "signal", "failed", "files", "connections", "dns",
            "children", "joined_by"} <= set(proc)
    assert {"label", "result", "latency_ns", "host", "endpoint"} <= set(
        rep["calls"][3]["processes"][0]["children"][1]["connections"][0])
    assert set(rep["unexplained"]) == {"processes", "connections", "files", "dns", "outlived", "lost_records"}
    assert all({"kind", "severity", "summary"} <= set(f) for f in rep["findings"])
