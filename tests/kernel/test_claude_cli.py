"""The Messages API stub drives the real Claude Code CLI, and which of Claude's children get which variables.

The second test is the experiment behind the monitor's ``origin`` rule (README, "Which Claude process ran
it"): it runs the CLI under ``strace -f`` with a hook and an MCP server configured and reads every
``execve``'s environment.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from workload.claude_stub import SESSION_HEADER, Step, bash, run_claude

MCP_SERVER = r'''
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if "id" not in m:
        continue
    if m["method"] == "initialize":
        r = {"protocolVersion": m["params"]["protocolVersion"], "capabilities": {"tools": {}},
             "serverInfo": {"name": "probe", "version": "1"}}
    else:
        r = {"tools": []} if m["method"] == "tools/list" else {}
    print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": r}), flush=True)
'''


def test_stub_drives_the_real_cli(claude_cli: str, tmp_path: Path) -> None:
    run = run_claude(tmp_path, claude=claude_cli)
    assert run.returncode == 0, run.summary()
    results = run.tool_results
    assert len(results) == 6 and not any(r.get("is_error") for r in results), run.summary()
    assert len(run.session_ids) == 1
    sid = run.session_ids[0]
    main = [r for r in run.requests if r.main]
    assert main and all(r.headers.get(SESSION_HEADER) == sid for r in main)
    assert (run.cwd / "notes.txt").read_text() == "goodbye from the stub\n"
    assert (run.cwd / "bg.txt").read_text() == "background-done\n"
    assert (run.cwd / "repo" / ".git").is_dir()
    # the transcript is named by the same session id
    assert list((run.home / ".claude" / "projects").glob(f"*/{sid}.jsonl"))


_EXECVE = re.compile(r'^(\d+)\s+execve\("([^"]*)", \[(.*?)\], \[(.*)\]\) = 0')


def _execs(trace: str) -> List[Tuple[str, str, Dict[str, str]]]:
    """(filename, argv text, environment) of every successful execve in an ``strace -f -v`` log."""
    out = []
    for line in trace.splitlines():
        m = _EXECVE.match(line)
        if m:
            env = dict(e.split("=", 1) for e in re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(4)) if "=" in e)
            out.append((m.group(2), m.group(3), env))
    return out


def test_which_children_get_which_variables(claude_cli: str, tmp_path: Path) -> None:
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    (tmp_path / "mcp.py").write_text(MCP_SERVER)
    hook = {"type": "command", "command": "sh -c 'true hook-probe'"}
    settings = {"hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [hook]}]}}
    mcp = {"mcpServers": {"probe": {"command": sys.executable, "args": [str(tmp_path / "mcp.py")]}}}
    log = tmp_path / "strace.log"
    run = run_claude(tmp_path, [Step(bash("echo tool-probe"))], settings=settings,
                     extra_args=["--mcp-config", json.dumps(mcp), "--strict-mcp-config"],
                     env_extra={"RAWBPF_TEST_SECRET": "s3cret"},
                     argv_prefix=["strace", "-f", "-qq", "-v", "-s", "4096", "-e", "trace=execve",
                                  "-e", "signal=none", "-o", str(log)], claude=claude_cli)
    assert run.returncode == 0, run.summary()
    sid = run.session_ids[0]
    execs = _execs(log.read_text())
    assert len(execs) > 5

    def pick(pred: str) -> List[Dict[str, str]]:
        found = [env for _, argv, env in execs[1:] if pred in argv]
        assert found, f"no exec with {pred!r}"
        return found

    marks = ("CLAUDE_CODE_SESSION_ID", "CLAUDE_CODE_CHILD_SESSION", "CLAUDE_PROJECT_DIR", "CLAUDECODE")

    def kind(env: Dict[str, str]) -> Tuple[bool, ...]:
        return tuple(m in env for m in marks)

    # the model's command: session id and the child-session mark, no project dir
    for env in pick("echo tool-probe"):
        assert env["CLAUDE_CODE_SESSION_ID"] == sid and kind(env) == (True, True, False, True)
    # a hook: the same two plus CLAUDE_PROJECT_DIR
    for env in pick("true hook-probe"):
        assert env["CLAUDE_CODE_SESSION_ID"] == sid and kind(env) == (True, True, True, True)
    # an MCP server: session id and project dir, no child-session mark
    for env in pick("mcp.py"):
        assert env["CLAUDE_CODE_SESSION_ID"] == sid and kind(env) == (True, False, True, True)
    # Claude's own helpers (file listing, git queries, IDE detection; the last two not in every run): none
    helpers = [env for _, argv, env in execs[1:]
               if any(p in argv for p in ('"rg", "--', '"git", "-c", "core.hooksPath', '"ps", "aux"'))]
    assert len(helpers) >= 2 and pick('"rg", "--')
    assert all(kind(env) == (False, False, False, False) for env in helpers)
    # the shell snapshot: CLAUDECODE only
    for env in pick("SNAPSHOT_FILE="):
        assert kind(env) == (False, False, False, True)
    # CLAUDE_PID is not set by this CLI version; every child inherits unrelated variables (secrets included),
    # which is why the monitor reads only its allowlist
    assert not any("CLAUDE_PID" in env for _, _, env in execs)
    assert all(env.get("RAWBPF_TEST_SECRET") == "s3cret" for _, _, env in execs)
