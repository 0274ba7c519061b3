"""A scripted Claude session written as both a monitor log and a Claude Code transcript.

Tests and benchmarks describe a session step by step (a prompt, a tool call, the processes it ran, the files
and connections they made); :class:`ScriptedSession` turns it into the records the monitor writes (through
:class:`rawbpf.logfile.LogWriter`, with the record fields of the README) and the JSONL entries Claude Code
2.x writes under ``~/.claude/projects/<project>/<session>.jsonl`` (as seen from the real CLI). Time only
moves forward, by ``step_ns`` per event unless told otherwise.
"""

from __future__ import annotations

import datetime as _dt
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from rawbpf.logfile import LogWriter


@dataclass
class P:
    """A process in the script."""

    pid: int
    exec_id: str
    parent: Optional[P]
    comm: str
    origin: Optional[str]
    cwd: str
    start: int
    session_id: Optional[str] = None
    traceparent: Optional[str] = None
    depth: int = 0
    children: List[P] = field(default_factory=list)


def iso(ns: int) -> str:
    d = _dt.datetime.fromtimestamp(ns / 1e9, tz=_dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{(ns // 1_000_000) % 1000:03d}Z"


class ScriptedSession:
    def __init__(
        self,
        *,
        t0: int = 1_764_900_000_000_000_000,
        cwd: str = "/home/ada/proj",
        uid: int = 1000,
        session_id: str = "5d0c7e9a-3f7b-4c7e-9b2a-1d2e3f405162",
        home: str = "/home/ada",
        boot_id: str = "b0b0b0b0-1111-2222-3333-444455556666",
        step_ns: int = 5_000_000,
        version: str = "2.1.197",
        root_pid: int = 4242,
        host_env_traceparent: Optional[str] = None,
    ) -> None:
        self.t = t0
        self.cwd = cwd
        self.uid = uid
        self.session_id = session_id
        self.home = home
        self.boot_id = boot_id
        self.step_ns = step_ns
        self.version = version
        self.records: List[Dict[str, Any]] = []
        self.entries: List[Dict[str, Any]] = []
        self._pid = root_pid
        self._conn = 0
        self._last_uuid: Optional[str] = None
        self._prompt_id = ""
        self.root_traceparent = host_env_traceparent
        self.root = self._new(None, "claude", "claude", cwd)
        self.root.traceparent = host_env_traceparent
        self.transcript_path = f"{home}/.claude/projects/{cwd.replace('/', '-')}/{session_id}.jsonl"
        self.exec(
            self.root,
            f"{home}/.local/share/claude/versions/{version}",
            ["claude", "-p", "do the work", "--allowedTools", "Bash Write Edit"],
            match="comm",
        )

    # -- time

    def tick(self, ns: Optional[int] = None) -> int:
        self.t += self.step_ns if ns is None else ns
        return self.t

    # -- kernel side

    def _new(self, parent: Optional[P], comm: str, origin: Optional[str], cwd: str) -> P:
        pid = self._pid
        self._pid += 1
        p = P(
            pid=pid,
            exec_id=f"{self.boot_id}:{pid}:{self.t}",
            parent=parent,
            comm=comm,
            origin=origin,
            cwd=cwd,
            start=self.t,
            depth=(parent.depth + 1) if parent else 0,
        )
        if parent is not None:
            parent.children.append(p)
            p.traceparent = parent.traceparent
            if origin == "tool":
                p.session_id = self.session_id
        return p

    def record(self, p: P, rtype: str, **fields: Any) -> Dict[str, Any]:
        rec: Dict[str, Any] = {
            "ts": self.tick(),
            "type": rtype,
            "pid": p.pid,
            "tid": p.pid,
            "ppid": p.parent.pid if p.parent else 1,
            "uid": self.uid,
            "euid": self.uid,
            "auid": self.uid,
            "comm": p.comm,
            "root_pid": self.root.pid,
            "depth": p.depth,
            "session_id": p.session_id,
            "traceparent": p.traceparent,
            "origin": p.origin,
            "exec_id": p.exec_id,
            "parent_exec_id": p.parent.exec_id if p.parent else None,
            "root_exec_id": self.root.exec_id,
            "cwd": p.cwd,
            "tty": None,
            "cgroup": "/user.slice/user-1000.slice/session-1.scope",
        }
        rec.update(fields)
        self.records.append(rec)
        return rec

    def exec(self, p: P, filename: str, argv: List[str], **extra: Any) -> Dict[str, Any]:
        p.comm = filename.rsplit("/", 1)[-1][:15]
        return self.record(p, "exec", filename=filename, argv=argv, argv_truncated=False, **extra)

    def spawn(
        self,
        parent: P,
        filename: str,
        argv: List[str],
        *,
        origin: Optional[str] = None,
        cwd: Optional[str] = None,
        traceparent: Optional[str] = None,
    ) -> P:
        """fork + exec of a child of ``parent`` (origin defaults to the parent's, and so does its
        ``TRACEPARENT`` unless given)."""
        self.tick()
        p = self._new(parent, parent.comm, origin if origin is not None else parent.origin, cwd or parent.cwd)
        if traceparent is not None:
            p.traceparent = traceparent
        self.record(parent, "fork", child_pid=p.pid)
        self.exec(p, filename, argv)
        return p

    def bash_tool(self, command: str, **kw: Any) -> P:
        """The shell Claude's Bash tool starts for ``command``."""
        snap = f"{self.home}/.claude/shell-snapshots/snapshot-bash-1.sh"
        return self.spawn(
            self.root,
            "/usr/bin/bash",
            [
                "/bin/bash",
                "-c",
                f"source {snap} 2>/dev/null || true && shopt -u extglob 2>/dev/null "
                f"|| true && eval '{command.replace(chr(39), chr(39) + chr(92) + chr(39) + chr(39))}' "
                f"< /dev/null && pwd -P >| /tmp/claude-{self.uid}/cwd",
            ],
            origin="tool",
            **kw,
        )

    def exit(self, p: P, code: int = 0, signal: int = 0) -> Dict[str, Any]:
        return self.record(
            p,
            "exit",
            exit_code=code,
            signal=signal,
            core_dumped=False,
            duration_ns=self.t + self.step_ns - p.start,
        )

    def file(
        self,
        p: P,
        op: str,
        path: str,
        *,
        path2: Optional[str] = None,
        ret: int = 0,
        sensitive: bool = False,
        count: int = 1,
    ) -> Dict[str, Any]:
        return self.record(
            p, "file", op=op, path=path, path2=path2, ret=ret, count=count, sensitive=sensitive
        )

    def connect(
        self,
        p: P,
        addr: str,
        port: int,
        *,
        result: str = "established",
        endpoint: Optional[str] = None,
        host: Optional[str] = None,
        family: str = "inet",
    ) -> Dict[str, Any]:
        self._conn += 1
        rec = self.record(
            p,
            "connect",
            family=family,
            addr=addr,
            port=port,
            ret=-115,
            endpoint=endpoint,
            conn_id=self._conn,
            host=host,
        )
        self.record(
            p,
            "connect_result",
            conn_id=self._conn,
            result=result,
            latency_ns=3_000_000,
            host=host,
            endpoint=endpoint,
            family=family,
            addr=addr,
            port=port,
        )
        return rec

    def dns(self, p: P, qname: str, answers: List[str], rcode: str = "NOERROR") -> Dict[str, Any]:
        return self.record(p, "dns", qname=qname, qtype="A", rcode=rcode, answers=answers)

    def transcript_opened(self) -> Dict[str, Any]:
        """The monitor recognising the root opening its transcript (root learns its session_id)."""
        self.root.session_id = self.session_id
        return self.record(
            self.root,
            "file",
            op="create",
            path=self.transcript_path,
            path2=None,
            ret=0,
            count=1,
            sensitive=False,
            transcript=True,
        )

    def lost(self, count: int) -> None:
        self.records.append({"ts": self.tick(), "type": "lost", "count": count, "reason": "ring buffer full"})

    # -- transcript side

    def _entry(self, etype: str, message: Dict[str, Any], **extra: Any) -> Dict[str, Any]:
        u = str(uuid.uuid4())
        e: Dict[str, Any] = {
            "parentUuid": self._last_uuid,
            "isSidechain": False,
            "type": etype,
            "message": message,
            "uuid": u,
            "timestamp": iso(self.tick()),
            "userType": "external",
            "entrypoint": "sdk-cli",
            "cwd": self.cwd,
            "sessionId": self.session_id,
            "version": self.version,
            "gitBranch": "main",
        }
        e.update(extra)
        self._last_uuid = u
        self.entries.append(e)
        return e

    def prompt(self, text: str) -> None:
        self._prompt_id = str(uuid.uuid4())
        self.entries.append(
            {
                "type": "queue-operation",
                "operation": "enqueue",
                "timestamp": iso(self.t),
                "sessionId": self.session_id,
                "content": text,
            }
        )
        self._entry("user", {"role": "user", "content": text}, promptId=self._prompt_id, promptSource="sdk")

    def tool_use(self, name: str, inp: Dict[str, Any], tool_use_id: Optional[str] = None) -> str:
        tid = tool_use_id or f"toolu_{uuid.uuid4().hex[:24]}"
        self._entry(
            "assistant",
            {
                "id": f"msg_{uuid.uuid4().hex[:12]}",
                "type": "message",
                "role": "assistant",
                "model": "claude-opus-4-8",
                "content": [{"type": "tool_use", "id": tid, "name": name, "input": inp}],
                "stop_reason": "tool_use",
            },
        )
        return tid

    def tool_result(
        self,
        tool_use_id: str,
        text: str = "",
        *,
        is_error: bool = False,
        background_task: Optional[str] = None,
    ) -> None:
        extra: Dict[str, Any] = {"stdout": text, "stderr": "", "interrupted": False}
        if background_task:
            extra["backgroundTaskId"] = background_task
        self._entry(
            "user",
            {
                "role": "user",
                "content": [
                    {"tool_use_id": tool_use_id, "type": "tool_result", "content": text, "is_error": is_error}
                ],
            },
            promptId=self._prompt_id,
            toolUseResult=extra,
        )

    def task_done(self, tool_use_id: str, task: str, exit_code: int = 0) -> None:
        text = (
            f"<task-notification>\n<task-id>{task}</task-id>\n<tool-use-id>{tool_use_id}</tool-use-id>\n"
            f"<status>completed</status>\n<summary>Background command completed (exit code {exit_code})"
            "</summary>\n</task-notification>"
        )
        self._entry("user", {"role": "user", "content": text}, origin={"kind": "task-notification"})

    def say(self, text: str) -> None:
        self._entry(
            "assistant",
            {
                "id": f"msg_{uuid.uuid4().hex[:12]}",
                "type": "message",
                "role": "assistant",
                "model": "claude-opus-4-8",
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
            },
        )

    # -- output

    def write_log(self, directory: str, **writer_args: Any) -> None:
        header = {"host": "testhost", "boot_id": self.boot_id, "object": "claude_monitor.o", "pid": 99}
        with LogWriter(directory, header=header, **writer_args) as w:
            for rec in self.records:  # one at a time, so a small max_bytes rotates between records
                w.write(rec)

    def write_transcript(self, path: str) -> None:
        with open(path, "w") as f:
            for e in self.entries:
                f.write(json.dumps(e) + "\n")


def busy_session(records: int = 100_000, children: int = 12) -> ScriptedSession:
    """A long session of at least ``records`` log records: Bash calls, each a shell running ``children``
    commands that write files and connect, with Claude's own API traffic in between (benchmarks)."""
    s = ScriptedSession(step_ns=200_000)
    root = s.root
    s.dns(root, "api.anthropic.com", ["160.79.104.10"])
    s.transcript_opened()
    n = 0
    while len(s.records) < records:
        if n % 20 == 0:
            s.prompt(f"step {n // 20}: build and test")
        cmd = f"make -j2 test-{n} && git add -A"
        call = s.tool_use("Bash", {"command": cmd})
        sh = s.bash_tool(cmd)
        for i in range(children):
            p = s.spawn(sh, "/usr/bin/cc", ["cc", "-c", f"src/m{i}.c", "-o", f"build/m{i}.o"])
            s.file(p, "create", f"{s.cwd}/build/m{i}.o")
            s.file(p, "write", f"{s.cwd}/build/m{i}.o", count=4)
            s.exit(p, 0)
        s.connect(sh, "10.1.2.3", 5432, host="db.internal")
        s.exit(sh, 0)
        s.tool_result(call, "ok")
        s.connect(root, "160.79.104.10", 443, endpoint="anthropic-api")
        n += 1
    s.say("Done.")
    s.exit(root, 0)
    return s
