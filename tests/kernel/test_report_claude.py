"""``rawbpf report`` on a real Claude Code session: the monitor records the real CLI driven by the Messages
API stub through Bash, Write and Edit calls and a background job; the report names each tool call's command
and the processes it ran, lists Claude's own helpers apart, and raises the failed command."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from monitor_support import OBJ, ROOT
from test_monitor_e2e import Daemon

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from patience import patience
from workload.claude_stub import Step, bash, edit, run_claude, write

from rawbpf.elf import load_spec
from rawbpf.monitor.shape import Catalog

COMMANDS = [
    "git init -q repo",
    "cd repo && echo one > a.txt && git add a.txt && git -c user.email=t@example.com -c user.name=t "
    "commit -qm first && cd ..",
    "sleep 1 && echo background-done > bg.txt",
    "ls -la && sleep 2 && cat bg.txt",
    "ls no-such-file",
]


@pytest.fixture()
def daemon(tmp_path: Path, pin_dir: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path / "logs", pin_dir, "--no-seed", "--endpoint", "127.0.0.0/8=stub-api")
    yield d
    if d.proc.poll() is None:
        d.stop()


def _argvs(tree: Dict[str, Any]) -> List[List[str]]:
    out = [tree["argv"]]
    for ch in tree["children"]:
        out.extend(_argvs(ch))
    return out


def _report(log_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rawbpf", *args, "--log-dir", str(log_dir)], cwd=ROOT,
                          capture_output=True, text=True, timeout=patience(120))


def test_report_of_a_real_claude_session(claude_cli: str, daemon: Daemon, tmp_path: Path) -> None:
    steps = [Step(bash(COMMANDS[0])), Step(bash(COMMANDS[1])), Step(write("notes.txt", "hello\n")),
             Step(edit("notes.txt", "hello", "goodbye")), Step(bash(COMMANDS[2], background=True)),
             Step(bash(COMMANDS[3])), Step(bash(COMMANDS[4]))]
    run = run_claude(tmp_path, steps, claude=claude_cli)
    assert run.returncode == 0, run.summary()
    deadline = time.monotonic() + patience(30)
    while not any(r.get("type") == "exit" and r.get("pid") == run.pid for r in daemon.records()):
        assert time.monotonic() < deadline, "no exit record of the claude process"
        time.sleep(0.2)
    assert daemon.stop().returncode == 0
    log_dir = daemon.log_dir
    # what the committed monitor records: attribution (cwd, session_id, origin, connect outcomes) and files
    # (file changes, the transcript Claude opens) turn on the checks that need them
    kinds = set(Catalog.from_btf(load_spec(str(OBJ)).btf).kinds.values())
    attributed, files = "connect_result" in kinds, "file" in kinds

    res = _report(log_dir, "sessions", "--json")
    assert res.returncode == 0, res.stderr
    mine = [json.loads(line) for line in res.stdout.splitlines() if json.loads(line)["root_pid"] == run.pid]
    assert len(mine) == 1 and not mine[0]["running"], mine
    assert mine[0]["counts"]["commands"] >= len(COMMANDS)
    if attributed:
        assert mine[0]["cwd"] == str(run.cwd) and mine[0]["session_id"] == run.session_ids[0]

    transcript = [] if files else ["--transcript", str(next((run.home / ".claude" / "projects").glob(
        f"*/{run.session_ids[0]}.jsonl")))]
    page = tmp_path / "report.html"
    res = _report(log_dir, "report", str(run.pid), "--json", "--html", str(page), *transcript)
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["transcript"]["status"] == "read", rep["transcript"]
    if files:  # found through the log: Claude's writes to it, joined by the session id the records carry
        assert rep["transcript"]["join"] == ("session_id" if attributed else "transcript"), rep["transcript"]
    calls = rep["calls"]
    assert [c["tool"] for c in calls] == ["Bash", "Bash", "Write", "Edit", "Bash", "Bash", "Bash"]
    bash_calls = [c for c in calls if c["tool"] == "Bash"]
    for call, cmd in zip(bash_calls, COMMANDS):
        assert call["target"] == cmd
        assert call["join"] == "command", call
        assert len(call["processes"]) == 1, call
        argvs = _argvs(call["processes"][0])
        assert cmd in " ".join(argvs[0]), argvs  # the shell Claude started for the command
    assert ["git", "init", "-q", "repo"] in _argvs(bash_calls[0]["processes"][0])
    commit = _argvs(bash_calls[1]["processes"][0])
    assert ["git", "add", "a.txt"] in commit and any(a[:1] == ["git"] and "commit" in a for a in commit)
    assert bash_calls[2]["background"] and ["sleep", "1"] in _argvs(bash_calls[2]["processes"][0])
    assert ["cat", "bg.txt"] in _argvs(bash_calls[3]["processes"][0])
    failed = [f for f in rep["findings"] if f["kind"] == "failed_command"]
    assert [f["tool_use_id"] for f in failed] == [bash_calls[4]["tool_use_id"]], rep["findings"]
    assert bash_calls[4]["processes"][0]["exit_code"] == 2
    # Claude's own helpers (its rg re-exec, git queries, the shell snapshot) are not any call's
    own = [a for trees in rep["unexplained"]["processes"].values() for t in trees for a in _argvs(t)]
    assert own and not any(cmd in " ".join(a) for a in own for cmd in COMMANDS)
    # Write and Edit: Claude writes the file itself, when the monitor records file changes
    if files:
        for call in calls[2:4]:
            assert call["join"] == "file", call
            notes = str(run.cwd / "notes.txt")
            assert any(f["op"] == "rename" and f["path2"] == notes for f in call["files"]), call

    # `latest`: the last Claude Code session started (other tests on this host may run Claude meanwhile)
    with_id = [r for r in (json.loads(x) for x in _report(log_dir, "sessions", "--json").stdout.splitlines())
               if r["session_id"]]
    latest = json.loads(_report(log_dir, "report", "latest", "--json", *transcript).stdout)
    if attributed:
        assert latest["session"]["root_pid"] == max(with_id, key=lambda r: r["start"])["root_pid"]
    text = _report(log_dir, "report", "latest" if latest["session"]["root_pid"] == run.pid else str(run.pid),
                   *transcript)
    assert text.returncode == 0, text.stderr
    for cmd in COMMANDS:
        assert cmd in text.stdout
    assert "git init -q repo   exit 0" in text.stdout
    assert page.stat().st_size > 1000
