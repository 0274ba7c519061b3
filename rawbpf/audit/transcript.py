"""Claude Code transcripts (``~/.claude/projects/<project>/<session>.jsonl``): prompts, tool calls; files.

A transcript is one JSON object per line. The entries this module reads (as written by Claude Code 2.x):

- ``type: user`` with ``message.content`` a string (or text blocks): a prompt. ``origin.kind:
  task-notification`` marks the notice Claude Code sends itself when a background command ends; its text names
  the ``<tool-use-id>``, ``<status>`` and exit code.
- ``type: assistant`` with ``tool_use`` blocks in ``message.content``: ``id`` (the ``tool_use_id``), ``name``
  and ``input`` (``command`` for Bash, ``file_path`` for Write/Edit/Read, ...).
- ``type: user`` with ``tool_result`` blocks: ``tool_use_id``, ``is_error``, ``content``; the entry's
  ``toolUseResult.backgroundTaskId`` says the command went on running in the background.

Every entry carries ``timestamp`` (ISO 8601, UTC, ms), ``sessionId``, ``cwd`` and ``version``. Lines that are
not JSON, and entries of other types, are skipped and counted: the format is Claude Code's, not ours.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional

__tier__ = "files"

__all__ = [
    "Prompt",
    "ToolCall",
    "Transcript",
    "parse_transcript",
    "read_transcript",
    "project_dir_name",
    "parse_timestamp",
]

_TASK_TOOL = re.compile(r"<tool-use-id>([^<]+)</tool-use-id>")
_TASK_STATUS = re.compile(r"<status>([^<]+)</status>")
_TASK_EXIT = re.compile(r"exit code (-?\d+)")
_MAX_TEXT = 2000


def parse_timestamp(text: Any) -> Optional[int]:
    """An ISO 8601 time (``2026-12-05T01:18:05.846Z``) as ns since the epoch, or None."""
    if not isinstance(text, str) or not text:
        return None
    t = text.strip()
    if t.endswith("Z") or t.endswith("z"):
        t = t[:-1] + "+00:00"
    try:
        when = _dt.datetime.fromisoformat(t)
    except ValueError:
        # Python < 3.11 accepts only 3 or 6 fractional digits
        m = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)", t)
        if not m:
            return None
        try:
            when = _dt.datetime.fromisoformat(f"{m.group(1)}.{(m.group(2) + '000000')[:6]}{m.group(3)}")
        except ValueError:
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    delta = when - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def project_dir_name(cwd: str) -> str:
    """The directory under ``~/.claude/projects`` that Claude Code uses for a working directory: every
    character other than a letter, digit or ``-`` becomes ``-`` (``/tmp/a_b.c`` → ``-tmp-a-b-c``)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", cwd)


@dataclass
class Prompt:
    """A user prompt (or a task notification Claude Code sent itself)."""

    index: int
    ts: Optional[int]
    text: str
    kind: str = "user"  # "user" or "task-notification"


@dataclass
class ToolCall:
    """One ``tool_use`` and what the transcript says about its result."""

    tool_use_id: str
    name: str
    input: Dict[str, Any]
    ts_use: Optional[int]
    prompt_index: Optional[int]
    sidechain: bool = False
    ts_result: Optional[int] = None
    is_error: Optional[bool] = None
    result_text: str = ""
    background_task: Optional[str] = None
    ts_done: Optional[int] = None
    done_status: Optional[str] = None
    done_exit_code: Optional[int] = None

    @property
    def target(self) -> str:
        """What Claude asked for, in one line: the command, the file, the pattern or the URL."""
        for key in (
            "command",
            "file_path",
            "notebook_path",
            "path",
            "pattern",
            "url",
            "query",
            "description",
        ):
            v = self.input.get(key)
            if isinstance(v, str) and v:
                return v
        return ""

    @property
    def ts_end(self) -> Optional[int]:
        """When the call's work ended: its background task's end, else its result."""
        if self.background_task is not None:
            return self.ts_done
        return self.ts_result


@dataclass
class Transcript:
    """Prompts and tool calls of one session, in transcript order."""

    path: str = ""
    session_id: Optional[str] = None
    cwd: Optional[str] = None
    version: Optional[str] = None
    prompts: List[Prompt] = field(default_factory=list)
    calls: List[ToolCall] = field(default_factory=list)
    entries: int = 0
    skipped: int = 0

    def call(self, tool_use_id: str) -> Optional[ToolCall]:
        for c in self.calls:
            if c.tool_use_id == tool_use_id:
                return c
        return None


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "…"


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
                parts.append(block["text"])
            elif isinstance(block, str):
                parts.append(block)
        return "\n".join(parts)
    return ""


def parse_transcript(lines: Iterable[str], path: str = "") -> Transcript:
    """Read transcript lines (pure: no file access)."""
    tr = Transcript(path=path)
    calls: Dict[str, ToolCall] = {}
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            tr.skipped += 1
            continue
        if not isinstance(entry, dict):
            tr.skipped += 1
            continue
        tr.entries += 1
        for key, attr in (("sessionId", "session_id"), ("cwd", "cwd"), ("version", "version")):
            v = entry.get(key)
            if isinstance(v, str) and v and getattr(tr, attr) is None:
                setattr(tr, attr, v)
        etype = entry.get("type")
        msg = entry.get("message")
        ts = parse_timestamp(entry.get("timestamp"))
        if etype not in ("user", "assistant") or not isinstance(msg, dict):
            continue
        content = msg.get("content")
        sidechain = bool(entry.get("isSidechain"))
        if etype == "assistant":
            for block in content if isinstance(content, list) else ():
                if (
                    isinstance(block, dict)
                    and block.get("type") == "tool_use"
                    and isinstance(block.get("id"), str)
                ):
                    inp = block.get("input")
                    call = ToolCall(
                        tool_use_id=block["id"],
                        name=str(block.get("name") or "?"),
                        input=inp if isinstance(inp, dict) else {},
                        ts_use=ts,
                        prompt_index=len(tr.prompts) - 1 if tr.prompts else None,
                        sidechain=sidechain,
                    )
                    if call.tool_use_id not in calls:
                        calls[call.tool_use_id] = call
                        tr.calls.append(call)
            continue
        results = (
            [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
            if isinstance(content, list)
            else []
        )
        if results:
            extra = entry.get("toolUseResult")
            for block in results:
                done = calls.get(str(block.get("tool_use_id")))
                if done is None:
                    continue
                call = done
                call.ts_result = ts
                call.is_error = bool(block.get("is_error"))
                call.result_text = _clip(_text_of(block.get("content")))
                if isinstance(extra, dict) and isinstance(extra.get("backgroundTaskId"), str):
                    call.background_task = extra["backgroundTaskId"]
            continue
        if entry.get("isMeta") or sidechain:
            continue
        text = _text_of(content)
        origin = entry.get("origin")
        kind = (
            "task-notification"
            if (isinstance(origin, dict) and origin.get("kind") == "task-notification")
            or text.lstrip().startswith("<task-notification>")
            else "user"
        )
        if kind == "task-notification":
            m = _TASK_TOOL.search(text)
            ended = calls.get(m.group(1).strip()) if m else None
            if ended is not None:
                call = ended
                call.ts_done = ts
                st = _TASK_STATUS.search(text)
                call.done_status = st.group(1).strip() if st else None
                ex = _TASK_EXIT.search(text)
                call.done_exit_code = int(ex.group(1)) if ex else None
        tr.prompts.append(Prompt(index=len(tr.prompts), ts=ts, text=_clip(text), kind=kind))
    return tr


class TranscriptUnreadable(Exception):
    """The transcript exists (or was recorded) but cannot be read; ``reason`` says why in a few words."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def read_transcript(path: str) -> Transcript:
    """Read and parse a transcript file; raises :class:`TranscriptUnreadable` naming the cause."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_transcript(f, path)
    except OSError as err:
        if err.errno in (errno.EACCES, errno.EPERM):
            reason = "permission denied (readable by its owner or root)"
        elif err.errno == errno.ENOENT:
            reason = "no such file (removed, or the log was copied from another machine: use --transcript)"
        else:
            reason = os.strerror(err.errno or 0).lower() if err.errno else str(err)
        raise TranscriptUnreadable(path, reason) from err
