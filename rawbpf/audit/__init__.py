"""What a Claude Code session did: sessions found in the monitor's log, joined with Claude's transcripts.

Pure except for reading files: :mod:`.sessions` groups log records into sessions and process trees,
:mod:`.transcript` reads a Claude Code transcript (``~/.claude/projects/<project>/<session>.jsonl``),
:mod:`.join` ties each tool call to the processes, files and connections it caused and raises findings,
:mod:`.html` renders the joined report as one self-contained page. Works on a log copied to another machine:
nothing here looks at /proc or the live maps.
"""

from __future__ import annotations

from rawbpf.audit.join import REPORT_FORMAT, build_report
from rawbpf.audit.sessions import Session, find_sessions, load_sessions, select_session
from rawbpf.audit.transcript import Transcript, parse_transcript, read_transcript

__tier__ = "files"

__all__ = ["REPORT_FORMAT", "Session", "Transcript", "build_report", "find_sessions", "load_sessions",
           "parse_transcript", "read_transcript", "select_session"]
