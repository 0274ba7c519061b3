#!/usr/bin/env python3
"""A local stand-in for the Anthropic Messages API that drives the real Claude Code CLI through tool calls.

The real ``claude`` CLI (npm ``@anthropic-ai/claude-code``) talks to ``$ANTHROPIC_BASE_URL``; pointed at
:class:`StubAPI` (HTTP on 127.0.0.1, a random free port), it receives a scripted conversation: each turn of
the main conversation is answered with the next :class:`Step` of the script — tool calls (``Bash``,
``Write``, ``Edit``, a ``Bash`` with ``run_in_background``), streamed as server-sent events exactly as the
Messages API streams them — and, once the script is used up, a final text answer. The CLI runs the tools for
real; the stub records every request (method, path, headers, JSON body) so a test can read which session id
the CLI sent (``X-Claude-Code-Session-Id``) and what every tool returned.

Requests that are not the main conversation (the CLI's own side queries: titles, bash command-prefix
checks, quota probes, token counts) are told apart by the absence of the ``Bash`` tool in the request and
get a short, harmless text answer; a command-prefix check is answered with the command itself so the
permission check passes.

Use from a test::

    from workload.claude_stub import Step, bash, write, edit, run_claude

    steps = [Step(bash("git init -q repo")), Step(write("notes.txt", "hello\\n")),
             Step(edit("notes.txt", "hello", "bye"))]
    run = run_claude(tmp_path, steps)          # starts the stub and `claude -p`, waits for it to finish
    run.returncode, run.session_ids, run.tool_results   # exit status, X-Claude-Code-Session-Id values, ...

or start the CLI yourself (``claude_env`` and ``claude_argv`` give the environment and command line) while
the stub runs as a context manager. The CLI runs with an isolated ``HOME`` and working directory under the
given directory, telemetry, error reporting and auto-update off, and ``--allowedTools "Bash Write Edit"``
(it refuses ``--dangerously-skip-permissions`` as root). :func:`find_claude` locates the binary
(``$CLAUDE_BIN`` or ``claude`` on ``PATH``) and returns None when it is not installed.

From a shell, ``python3 tests/workload/claude_stub.py [--dir DIR]`` runs the default script and prints the
run's summary as JSON. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

MODEL = "claude-sonnet-4-5-20250929"
DUMMY_KEY = "sk-ant-api03-stub-" + "0" * 32
SESSION_HEADER = "x-claude-code-session-id"


def bash(command: str, *, background: bool = False, description: str = "") -> Dict[str, Any]:
    """A ``Bash`` tool call; ``background`` sets ``run_in_background`` (the CLI keeps it running as a job)."""
    inp: Dict[str, Any] = {"command": command, "description": description or command[:40]}
    if background:
        inp["run_in_background"] = True
    return {"name": "Bash", "input": inp}


def write(path: str, content: str) -> Dict[str, Any]:
    """A ``Write`` tool call; a relative path is taken relative to the CLI's working directory."""
    return {"name": "Write", "input": {"file_path": path, "content": content}}


def edit(path: str, old: str, new: str) -> Dict[str, Any]:
    """An ``Edit`` tool call (replace ``old`` by ``new`` once)."""
    return {"name": "Edit", "input": {"file_path": path, "old_string": old, "new_string": new}}


@dataclass
class Step:
    """One assistant turn: the tool calls it makes (run in order by the CLI), or a text answer when empty."""

    calls: List[Dict[str, Any]]
    text: str = ""

    def __init__(self, *calls: Dict[str, Any], text: str = "") -> None:
        self.calls = list(calls)
        self.text = text


@dataclass
class Request:
    """One HTTP request the CLI made."""

    method: str
    path: str
    headers: Dict[str, str]
    body: Any
    time: float
    main: bool = False  # part of the scripted conversation (the request offered the Bash tool)


def _sse(event: str, data: Dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _abs_paths(call: Dict[str, Any], cwd: Optional[Path]) -> Dict[str, Any]:
    """File tools want absolute paths: resolve a relative ``file_path`` against the CLI's directory."""
    inp = dict(call["input"])
    fp = inp.get("file_path")
    if fp is not None and cwd is not None and not os.path.isabs(fp):
        inp["file_path"] = str(cwd / fp)
    return {"name": call["name"], "input": inp}


class StubAPI:
    """The Messages API stub: a threaded HTTP server on 127.0.0.1 with a random port, as a context manager.

    ``steps`` is the script of the main conversation; ``cwd`` resolves relative file paths of file tools.
    ``requests`` holds every request made, in order.
    """

    def __init__(self, steps: Sequence[Step], *, cwd: Optional[Path] = None,
                 final_text: str = "Done.") -> None:
        self.steps = list(steps)
        self.cwd = cwd
        self.final_text = final_text
        self.requests: List[Request] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _body(self) -> Any:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                try:
                    return json.loads(raw) if raw else None
                except ValueError:
                    return raw.decode("utf-8", "replace")

            def _record(self, body: Any) -> Request:
                req = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                              time.time())
                with stub._lock:
                    stub.requests.append(req)
                return req

            def _json(self, code: int, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._record(None)
                self._json(200, {})

            def do_HEAD(self) -> None:
                self._record(None)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                body = self._body()
                req = self._record(body)
                path = self.path.split("?")[0]
                if path.endswith("/v1/messages/count_tokens"):
                    self._json(200, {"input_tokens": 100})
                    return
                if not path.endswith("/v1/messages") or not isinstance(body, dict):
                    self._json(200, {})
                    return
                content = stub._answer(req, body)
                if body.get("stream"):
                    self._stream(body, content)
                else:
                    self._json(200, stub._message(body, content))

            def _stream(self, body: Dict[str, Any], content: List[Dict[str, Any]]) -> None:
                msg = stub._message(body, [])
                stop = msg.pop("stop_reason")
                msg["stop_reason"] = None
                out = [_sse("message_start", {"type": "message_start", "message": msg})]
                for i, block in enumerate(content):
                    if block["type"] == "text":
                        empty = {"type": "text", "text": ""}
                        out.append(_sse("content_block_start", {"type": "content_block_start", "index": i,
                                                                "content_block": empty}))
                        out.append(_sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                                                "delta": {"type": "text_delta",
                                                                          "text": block["text"]}}))
                    else:
                        start = dict(block, input={})
                        out.append(_sse("content_block_start", {"type": "content_block_start", "index": i,
                                                                "content_block": start}))
                        out.append(_sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                                                "delta": {"type": "input_json_delta",
                                                                          "partial_json":
                                                                          json.dumps(block["input"])}}))
                    out.append(_sse("content_block_stop", {"type": "content_block_stop", "index": i}))
                stop = "tool_use" if any(b["type"] == "tool_use" for b in content) else "end_turn"
                out.append(_sse("message_delta", {"type": "message_delta",
                                                  "delta": {"stop_reason": stop, "stop_sequence": None},
                                                  "usage": {"output_tokens": 20}}))
                out.append(_sse("message_stop", {"type": "message_stop"}))
                data = b"".join(out)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="claude-stub", daemon=True)

    # -- the conversation ---------------------------------------------------------------------------------

    def _answer(self, req: Request, body: Dict[str, Any]) -> List[Dict[str, Any]]:
        tools = [t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)]
        if "Bash" not in tools:
            return [{"type": "text", "text": self._side_answer(body)}]
        req.main = True
        turn = sum(1 for m in body.get("messages") or [] if m.get("role") == "assistant")
        if turn >= len(self.steps):
            return [{"type": "text", "text": self.final_text}]
        step = self.steps[turn]
        blocks: List[Dict[str, Any]] = []
        if step.text:
            blocks.append({"type": "text", "text": step.text})
        for n, call in enumerate(step.calls):
            call = _abs_paths(call, self.cwd)
            blocks.append({"type": "tool_use", "id": f"toolu_{turn:02d}{n:02d}{uuid.uuid4().hex[:18]}",
                           "name": call["name"], "input": call["input"]})
        if not blocks:
            blocks.append({"type": "text", "text": self.final_text})
        return blocks

    @staticmethod
    def _side_answer(body: Dict[str, Any]) -> str:
        """A plausible answer to one of the CLI's own queries (the command-prefix check wants the prefix)."""
        text = json.dumps(body.get("system", "")) + json.dumps(body.get("messages", ""))
        if "<policy_spec>" in text or "command prefix" in text.lower():
            return "none"
        return '{"title": "Scripted session", "isNewTopic": false}' if "title" in text.lower() else "OK"

    @staticmethod
    def _message(body: Dict[str, Any], content: List[Dict[str, Any]]) -> Dict[str, Any]:
        stop = "tool_use" if any(b["type"] == "tool_use" for b in content) else "end_turn"
        return {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
                "model": body.get("model") or MODEL, "content": content, "stop_reason": stop,
                "stop_sequence": None,
                "usage": {"input_tokens": 100, "output_tokens": 20, "cache_creation_input_tokens": 0,
                          "cache_read_input_tokens": 0}}

    # -- results ------------------------------------------------------------------------------------------

    @property
    def session_ids(self) -> List[str]:
        """The distinct ``X-Claude-Code-Session-Id`` values sent, in order of first use."""
        seen: List[str] = []
        for r in list(self.requests):
            sid = r.headers.get(SESSION_HEADER)
            if sid and sid not in seen:
                seen.append(sid)
        return seen

    @property
    def main_requests(self) -> List[Request]:
        return [r for r in list(self.requests) if r.main]

    def tool_results(self) -> List[Dict[str, Any]]:
        """Every ``tool_result`` block the CLI sent back (the last main request holds them all)."""
        reqs = self.main_requests
        if not reqs:
            return []
        out: List[Dict[str, Any]] = []
        for m in reqs[-1].body.get("messages") or []:
            if m.get("role") != "user" or not isinstance(m.get("content"), list):
                continue
            for block in m["content"]:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    out.append(block)
        return out

    def __enter__(self) -> StubAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()


def find_claude() -> Optional[str]:
    """The real CLI: ``$CLAUDE_BIN`` or ``claude`` on PATH (None when not installed)."""
    path = os.environ.get("CLAUDE_BIN") or shutil.which("claude")
    return path if path and os.access(path, os.X_OK) else None


def claude_env(stub_url: str, home: Path, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The CLI's environment: the stub as API, an isolated HOME, and no telemetry, error reports or updates.

    Variables of an enclosing Claude Code session (when the tests themselves run under one) are removed so
    the CLI under test starts a session of its own.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLAUDE", "ANTHROPIC", "OTEL_")) and k not in ("TRACEPARENT", "TRACESTATE")}
    env.update({
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": stub_url,
        "ANTHROPIC_API_KEY": DUMMY_KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_BUG_COMMAND": "1",
        "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1",
        "NO_COLOR": "1",
        "TERM": "dumb",
    })
    if extra:
        env.update(extra)
    return env


def claude_argv(claude: str, prompt: str = "Run the scripted steps.", *extra: str) -> List[str]:
    """``claude -p PROMPT --allowedTools "Bash Write Edit"`` (the form the CLI accepts as root)."""
    return [claude, "-p", prompt, "--allowedTools", "Bash Write Edit", "--model", MODEL, *extra]


@dataclass
class ClaudeRun:
    """What one run of the CLI against the stub did."""

    returncode: int
    stdout: str
    stderr: str
    pid: int
    cwd: Path
    home: Path
    requests: List[Request] = field(default_factory=list)
    session_ids: List[str] = field(default_factory=list)
    tool_results: List[Dict[str, Any]] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0

    def summary(self) -> Dict[str, Any]:
        return {"returncode": self.returncode, "pid": self.pid, "cwd": str(self.cwd),
                "session_ids": self.session_ids,
                "requests": [{"method": r.method, "path": r.path, "main": r.main,
                              "headers": sorted(r.headers)} for r in self.requests],
                "tool_results": [{"is_error": bool(t.get("is_error")), "content": t.get("content")}
                                 for t in self.tool_results],
                "stdout": self.stdout[-2000:], "stderr": self.stderr[-2000:]}


def default_steps() -> List[Step]:
    """The standard script: shell commands in a repo, a file written and edited, a background job."""
    return [
        Step(bash("git init -q repo")),
        Step(bash("cd repo && git config user.email t@example.com && git config user.name t && "
                  "echo one > a.txt && git add a.txt && git commit -qm first && cd ..")),
        Step(write("notes.txt", "hello from the stub\n")),
        Step(edit("notes.txt", "hello", "goodbye")),
        Step(bash("sleep 1 && echo background-done > bg.txt", background=True)),
        Step(bash("ls -la && wc -c notes.txt && sleep 2 && cat bg.txt")),
    ]


def run_claude(workdir: Path, steps: Optional[Sequence[Step]] = None, *,
               prompt: str = "Run the scripted steps.", timeout: float = 180.0,
               env_extra: Optional[Dict[str, str]] = None,
               argv_prefix: Sequence[str] = (), extra_args: Sequence[str] = (),
               settings: Optional[Dict[str, Any]] = None, claude: Optional[str] = None) -> ClaudeRun:
    """Run ``claude -p`` in ``workdir/project`` (HOME ``workdir/home``) against a fresh stub until it exits.

    ``argv_prefix`` wraps the command line (e.g. ``strace -f``); ``extra_args`` are added to the CLI's
    arguments (e.g. ``--mcp-config``); ``env_extra`` adds variables; ``settings`` is written as the project's
    ``.claude/settings.json`` (e.g. hooks).
    Raises FileNotFoundError when the CLI is not installed.
    """
    claude = claude or find_claude()
    if claude is None:
        raise FileNotFoundError("the claude CLI is not installed (npm install -g @anthropic-ai/claude-code)")
    cwd = workdir / "project"
    home = workdir / "home"
    tmp = workdir / "tmp"
    for d in (cwd, home, tmp):
        d.mkdir(parents=True, exist_ok=True)
    if settings is not None:
        (cwd / ".claude").mkdir(exist_ok=True)
        (cwd / ".claude" / "settings.json").write_text(json.dumps(settings))
    steps = default_steps() if steps is None else steps
    with StubAPI(steps, cwd=cwd) as stub:
        started = time.time()
        env = claude_env(stub.url, home, {"TMPDIR": str(tmp), **(env_extra or {})})
        proc = subprocess.Popen([*argv_prefix, *claude_argv(claude, prompt, *extra_args)], cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            err += f"\n[claude_stub] killed after {timeout} s"
        return ClaudeRun(proc.returncode, out, err, proc.pid, cwd, home, list(stub.requests),
                         stub.session_ids, stub.tool_results(), started, time.time())


def iter_sse(data: str) -> Iterator[Dict[str, Any]]:
    """Parse a server-sent event stream into its JSON payloads (for the stub's own tests)."""
    for chunk in data.split("\n\n"):
        for line in chunk.splitlines():
            if line.startswith("data: "):
                yield json.loads(line[6:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", type=Path, help="work directory (default: a new temporary one)")
    ap.add_argument("--timeout", type=float, default=180.0)
    args = ap.parse_args()
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="rawbpf-claude-"))
    run = run_claude(workdir, timeout=args.timeout)
    print(json.dumps(run.summary(), indent=2))
    return 0 if run.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
