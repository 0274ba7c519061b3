"""The real Claude Code CLI under the monitor, driven by a stub of the Messages API through Write and Edit
tool calls: both appear as file records of the Claude process itself with their absolute paths, a shell
command's redirection appears as the shell's file record, and the session transcript is recognised."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
from monitor_support import monitor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from patience import patience
from workload.claude_stub import Step, bash, edit, run_claude, write


@pytest.fixture(scope="module")
def session(claude_cli: str, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    tmp = tmp_path_factory.mktemp("claude-files")
    steps = [Step(write("notes.txt", "hello\n")), Step(edit("notes.txt", "hello", "goodbye")),
             Step(bash("echo hi > shell.txt && mkdir -p out && mv shell.txt out/moved.txt"))]
    with monitor(endpoints={"127.0.0.0/8": "stub-api"}) as mon:
        run = run_claude(tmp, steps, claude=claude_cli)
        assert run.returncode == 0, run.summary()
        mon.wait_for(lambda r: r["type"] == "exit" and r["pid"] == run.pid, timeout=patience(30))
        time.sleep(0.3)
        mon.drain()
        records = [r for r in mon.records if r["root_pid"] == run.pid]
        return {"run": run, "records": records, "sessions": mon.files.status(), "counters": mon.counters()}


def _files(recs: List[Dict[str, Any]], **kw: Any) -> List[Dict[str, Any]]:
    return [r for r in recs if r["type"] == "file" and all(r.get(k) == v for k, v in kw.items())]


def test_write_and_edit_are_file_records_of_claude_itself(session: Dict[str, Any]) -> None:
    run, recs = session["run"], session["records"]
    assert all(not r.get("is_error") for r in run.tool_results), run.summary()
    notes = str(run.cwd / "notes.txt")
    # Write and Edit each write a temporary file next to the target and rename it over the target
    renamed = _files(recs, pid=run.pid, op="rename", path2=notes)
    assert len(renamed) == 2, [(r["op"], r["path"], r.get("path2")) for r in _files(recs, pid=run.pid)]
    for rn in renamed:
        assert rn["path"].startswith(notes + ".tmp.") and rn["ret"] == 0 and rn["depth"] == 0
        created = _files(recs, pid=run.pid, op="create", path=rn["path"])
        assert len(created) == 1 and created[0]["ts"] < rn["ts"]
    assert (run.cwd / "notes.txt").read_text() == "goodbye\n"


def test_shell_redirection_and_rename_by_the_tool_command(session: Dict[str, Any]) -> None:
    run, recs = session["run"], session["records"]
    shell = str(run.cwd / "shell.txt")
    created = _files(recs, op="create", path=shell)
    assert len(created) == 1 and created[0]["pid"] != run.pid and created[0]["origin"] == "tool"
    moved = _files(recs, op="rename", path=shell, path2=str(run.cwd / "out" / "moved.txt"))
    assert len(moved) == 1 and moved[0]["origin"] == "tool"
    assert _files(recs, op="mkdir", path=str(run.cwd / "out"))


def test_the_transcript_names_the_session(session: Dict[str, Any]) -> None:
    run, recs = session["run"], session["records"]
    sid = run.session_ids[0]
    transcripts = [r for r in _files(recs, pid=run.pid) if r.get("transcript")]
    assert transcripts, [r["path"] for r in _files(recs, pid=run.pid)]
    t = transcripts[0]
    assert t["path"].startswith(str(run.home / ".claude" / "projects") + "/")
    assert t["path"].endswith(f"/{sid}.jsonl") and t["session_id"] == sid
    assert {"root_pid": run.pid, "session_id": sid, "transcript": t["path"]} in session["sessions"]


def test_no_file_event_lost(session: Dict[str, Any]) -> None:
    k = session["counters"]["kinds"]["file"]
    assert k["lost"] == 0 and k["tracked"] == k["emitted"] + session["counters"]["file_summarised"]
