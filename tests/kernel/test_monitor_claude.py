"""The real Claude Code CLI under the monitor: every command a Bash tool call ran carries the session id the
CLI sent as ``X-Claude-Code-Session-Id`` and ``origin: tool``; Claude's own helpers are ``origin: claude``;
each command's working directory is the one the session was in; Claude's API connects have their outcomes."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
from monitor_support import monitor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from patience import patience
from workload.claude_stub import Step, bash, edit, run_claude, write

COMMANDS = ["git init -q repo", "cd repo && echo one > a.txt && git add a.txt && cd ..",
            "cd repo && ls -la", "sleep 1 && echo background-done > bg.txt",
            "sleep 2 && cat bg.txt && env | grep -c CLAUDE_CODE_SESSION_ID"]


@pytest.fixture(scope="module")
def session(claude_cli: str, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    tmp = tmp_path_factory.mktemp("claude")
    steps = [Step(bash(COMMANDS[0])), Step(bash(COMMANDS[1])), Step(write("notes.txt", "hello\n")),
             Step(edit("notes.txt", "hello", "goodbye")), Step(bash(COMMANDS[2])),
             Step(bash(COMMANDS[3], background=True)), Step(bash(COMMANDS[4]))]
    with monitor(endpoints={"127.0.0.0/8": "stub-api"}) as mon:
        run = run_claude(tmp, steps, claude=claude_cli, env_extra={"RAWBPF_SECRET_TOKEN": "s3cret-value"})
        assert run.returncode == 0, run.summary()
        mon.wait_for(lambda r: r["type"] == "exit" and r["pid"] == run.pid, timeout=patience(30))
        time.sleep(0.3)
        mon.drain()
        records = [r for r in mon.records if r["root_pid"] == run.pid]
    return {"run": run, "records": records}


def _execs(records: List[Dict[str, Any]], text: str) -> List[Dict[str, Any]]:
    return [r for r in records if r["type"] == "exec" and text in " ".join(r["argv"])]


def test_tool_commands_carry_the_session_and_origin(session: Dict[str, Any]) -> None:
    run, recs = session["run"], session["records"]
    sid = run.session_ids[0]
    assert all(not r.get("is_error") for r in run.tool_results), run.summary()
    for cmd in COMMANDS:
        shells = _execs(recs, cmd)
        assert shells, cmd
        for sh in shells:
            assert (sh["origin"], sh["session_id"]) == ("tool", sid), sh
            # and so does everything the command ran
            for r in recs:
                if r["ppid"] == sh["pid"] and r["type"] == "exec":
                    assert (r["origin"], r["session_id"]) == ("tool", sid), r
    git_init = [r for r in recs if r["type"] == "exec" and r["argv"] == ["git", "init", "-q", "repo"]]
    assert len(git_init) == 1 and git_init[0]["origin"] == "tool"


def test_claude_and_its_helpers_are_origin_claude(session: Dict[str, Any]) -> None:
    run, recs = session["run"], session["records"]
    root = [r for r in recs if r["pid"] == run.pid]
    assert root[0]["type"] == "exec" and root[0]["origin"] == "claude" and root[0]["depth"] == 0
    helpers = [r for r in recs if r["type"] == "exec" and (
        r["argv"][:1] == ["rg"] or r["argv"][:3] == ["git", "-c", "core.hooksPath=/dev/null"]
        or any("SNAPSHOT_FILE=" in a for a in r["argv"]))]
    assert len(helpers) >= 2
    for r in helpers:
        assert r["origin"] == "claude", r
    tools = {r["pid"] for r in recs if r["origin"] == "tool"}
    assert tools and not {r["pid"] for r in helpers} & tools
    # the root learns its session from its first tool call: its exit and later connects carry it
    exit_rec = [r for r in root if r["type"] == "exit"]
    assert len(exit_rec) == 1 and exit_rec[0]["session_id"] == run.session_ids[0]
    assert exit_rec[0]["comm"] == "claude"  # the process's name, whichever thread ended it


def test_cwd_follows_the_session(session: Dict[str, Any]) -> None:
    run, recs = session["run"], session["records"]
    assert [r["cwd"] for r in recs if r["type"] == "exec" and r["argv"] == ["git", "init", "-q", "repo"]] == [
        str(run.cwd)]
    add = [r for r in recs if r["type"] == "exec" and r["argv"] == ["git", "add", "a.txt"]]
    assert [r["cwd"] for r in add] == [str(run.cwd / "repo")]
    ls = [r for r in recs if r["type"] == "exec" and r["argv"] == ["ls", "-la"]]
    assert [r["cwd"] for r in ls] == [str(run.cwd / "repo")]
    for r in recs:
        if r["type"] == "exec":
            assert r["filename"].startswith("/"), r


def test_api_connects_have_outcomes_and_no_secret_leaks(session: Dict[str, Any]) -> None:
    run, recs = session["run"], session["records"]
    conns = [r for r in recs
             if r["type"] == "connect" and r["pid"] == run.pid and r["endpoint"] == "stub-api"]
    assert conns
    results = {r["conn_id"]: r for r in recs if r["type"] == "connect_result"}
    for c in conns:
        assert c["conn_id"] in results and results[c["conn_id"]]["result"] == "established", c
    text = json.dumps(recs)
    assert "s3cret-value" not in text and "sk-ant-api03-stub" not in text
