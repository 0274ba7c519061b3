"""The text ``rawbpf tail`` prints, against golden files: every record type, plain and coloured, flat and as a
tree. ``RAWBPF_UPDATE_GOLDEN=1`` rewrites the files (then read the diff)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from rawbpf.cli.tail import _by_root
from rawbpf.cli.tail_format import KNOWN_TYPES, TextFormat, command_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from audit_fixture import build

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "tail"
HOMES = {1000: "/home/ada", 0: "/root"}
T0 = 1_764_900_000_000_000_000  # 2025-12-05T02:00:00Z
ID = {"uid": 1000, "euid": 1000, "auid": 1000, "ppid": 1, "root_pid": 100, "depth": 1, "origin": "tool",
      "session_id": "5d0c7e9a", "traceparent": None, "exec_id": "b00t-101-1", "parent_exec_id": "b00t-100-1",
      "root_exec_id": "b00t-100-1", "cwd": "/home/ada/repo", "tty": None, "cgroup": "/user.slice",
      "seen_at_start": False}


def _rec(i: int, rtype: str, pid: Optional[int] = 101, comm: Optional[str] = "sh",
         **fields: Any) -> Dict[str, Any]:
    rec: Dict[str, Any] = {"seq": i, "ts": T0 + i * 1_234_567, "type": rtype}
    if pid is not None:
        rec.update(pid=pid, tid=fields.pop("tid", pid), comm=comm, **ID)
    rec.update(fields)
    return rec


def every_kind() -> List[Dict[str, Any]]:
    """One record of each type and the variants a summary depends on."""
    r = _rec
    return [
        r(1, "header", None, None, format=1, host="h1", boot_id="b00t", object="claude_monitor.o"),
        r(2, "exec", 100, "claude", depth=0, origin="claude", filename="/usr/local/bin/claude",
          argv=["claude", "-p", "hi"], argv_truncated=False, match="comm", claude_env=[], claude_pid=None,
          seen_at_start=True),
        r(3, "exec", filename="/usr/bin/git", argv=["git", "commit", "-qm", "first"], argv_truncated=False,
          match=None, claude_env=["CLAUDE_CODE_SESSION_ID"], claude_pid=None, cwd_truncated=False),
        r(4, "exec", filename="/usr/bin/bash", argv=[
            "/bin/bash", "-c", "source /home/ada/.claude/shell-snapshots/s.sh 2>/dev/null || true && "
            "eval 'echo '\\''it'\\''s'\\'' > a.txt' < /dev/null && pwd -P >| /tmp/claude-1000/cwd"],
          argv_truncated=True, cwd="/home/ada"),
        r(5, "exec", comm="x", filename="/tmp/x", argv=[], cwd="/"),
        r(6, "fork", child_pid=102),
        r(7, "exit", exit_code=0, signal=0, core_dumped=False, duration_ns=850_000_000),
        r(8, "exit", exit_code=1, signal=0, core_dumped=False, duration_ns=4_200_000_000),
        r(9, "exit", exit_code=0, signal=9, core_dumped=False, duration_ns=0),
        r(10, "exit", exit_code=0, signal=11, core_dumped=True, duration_ns=250_000),
        r(11, "connect", 100, "claude.exe", tid=107, origin="claude", family="inet", addr="160.79.104.10",
          port=443, ret=-115, endpoint="anthropic-api", conn_id=77, host="api.anthropic.com"),
        r(12, "connect_result", 100, "claude.exe", tid=107, origin="claude", conn_id=77, result="established",
          error=None, latency_ns=23_400_000, host="api.anthropic.com"),
        r(13, "connect", family="inet", addr="127.0.0.1", port=9, ret=-111, endpoint=None, conn_id=None),
        r(14, "connect", family="inet6", addr="::1", port=53, ret=0, endpoint=None, conn_id=None),
        r(15, "connect", family="unix", addr="/run/dbus/system_bus_socket", port=0, ret=0, endpoint=None),
        r(16, "connect_result", conn_id=78, result="timeout", error=110, latency_ns=1_000_000_000),
        r(45, "connect_result", conn_id=79, result="refused", error=111, latency_ns=41_500),
        r(46, "exit", 100, "claude", tid=131, origin="claude", depth=0, exit_code=0, signal=0,
          core_dumped=False, duration_ns=61_000_000_000),
        r(17, "rename", 100, "HTTP Client", tid=108, old_comm="claude.exe", new_comm="HTTP Client",
          thread=True, match=None),
        r(18, "rename", old_comm="node", new_comm="claude", thread=False, match="rename"),
        r(19, "file", op="write", path="/home/ada/repo/a.txt", path2=None, ret=0, count=12, sensitive=False),
        r(20, "file", op="rename", path="/home/ada/repo/n.tmp", path2="/home/ada/repo/notes.txt", ret=0,
          count=1),
        r(21, "file", op="read", path="/home/ada/.ssh/id_rsa", ret=0, count=1, sensitive=True),
        r(22, "file", op="delete", path="/etc/hosts", ret=-13, count=1),
        r(23, "file", op="chmod", path="/home/ada/repo/run.sh", ret=0, count=1, mode=0o755),
        r(24, "file", op="chown", path="/srv/x", ret=0, count=1, owner_uid=0, owner_gid=None),
        r(25, "file", 100, "claude", op="create",
          path="/home/ada/.claude/projects/-home-ada-repo/5d0c7e9a.jsonl",
          ret=0, count=1, transcript=True),
        r(26, "file", note="no op or path: shown field by field"),
        r(27, "dns", family="inet", addr="127.0.0.53", port=53, sent=True, qname="example.com", qtype="AAAA",
          rcode="NOERROR", answers=[], response=False, id=7, proto="udp"),
        r(28, "dns", qname="example.com", qtype="A", rcode="NOERROR", response=True, answers=[
            {"name": "example.com", "type": "CNAME", "ttl": 60, "data": "web.example.com"},
            {"name": "web.example.com", "type": "A", "ttl": 60, "data": "192.0.2.1"}]),
        r(29, "dns", qname="nope.example", qtype="A", rcode="NXDOMAIN", response=True, answers=[]),
        r(30, "dns", qname="a.test", qtype="A", answers=[f"192.0.2.{i}" for i in range(6)]),
        r(31, "dns", rcode="SERVFAIL"),
        r(32, "tls", family="inet", addr="160.79.104.10", port=443, sni="api.anthropic.com",
          alpn=["h2", "http/1.1"]),
        r(33, "lost", None, None, count=4, reason="kernel", source="events_drops", ring="events", total=9),
        r(34, "lost", None, None, count=1, reason="log", error="ENOSPC"),
        r(35, "crash", None, None, writer_pid=4321, since=T0, until=T0 + 61_000_000_000, kernel_drops=3,
          torn_bytes=17),
        r(36, "gap", None, None, file="claude_monitor-00000003.mlog", offset=4096, bytes=512, last_seq=35),
        {"type": "missing", "count": 5, "after_seq": 36, "next_seq": 42, "reason": "rotated away"},
        r(43, "tick", None, None, n=3, ok=True, off=False, none=None, raw=b"\x01\xff", name="a b",
          d={"k": [1, "x"]}),
        r(44, "exec", 103, "ev\x1bil", filename="/tmp/\x9b2J",
          argv=["sh", "-c", "echo \x1b]0;t\x07 \u202eok"], cwd="/tmp/\x1b[2J"),
    ]


def home_of(uid: int) -> Optional[str]:
    return HOMES.get(uid)


def render(records: List[Dict[str, Any]], **opts: Any) -> str:
    fmt = TextFormat(utc=True, home_of=home_of, **opts)
    return "".join(fmt.line(r) + "\n" for r in records)


def check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("RAWBPF_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs (RAWBPF_UPDATE_GOLDEN=1 rewrites it)"


def _session() -> List[Dict[str, Any]]:
    s, _ = build()
    return [dict(r, seq=i) for i, r in enumerate(s.records, 1)]


@pytest.mark.parametrize("color", [False, True], ids=["plain", "tty"])
def test_every_record_type(color: bool) -> None:
    check(f"every_kind{'_color' if color else ''}.txt", render(every_kind(), color=color))


@pytest.mark.parametrize("color", [False, True], ids=["plain", "tty"])
def test_a_claude_session(color: bool) -> None:
    check(f"session{'_color' if color else ''}.txt", render(_session(), color=color))


def test_a_claude_session_as_a_tree() -> None:
    recs = _session()
    check("session_tree.txt", render(_by_root(recs), tree=True))


def test_no_python_noise_and_no_raw_numbers() -> None:
    text = render(every_kind() + _session())
    for noise in ("None", "False", "True", "=null", "=false", "seen_at_start", "match=", "-111", "-115",
                  "signal=", "_ns"):
        assert noise not in text, noise
    assert "ECONNREFUSED" in text and "killed by SIGKILL" in text and "killed by SIGSEGV (core)" in text
    assert "after 850 ms" in text and "established 23 ms" in text


def test_plain_text_has_no_escape_codes_and_is_aligned() -> None:
    lines = render(every_kind()).splitlines()
    assert not any("\x1b" in ln for ln in lines)
    for ln in lines:  # time (13 with Z), pid[/tid] (11), comm (15): the type starts at the same place
        assert ln[13:15] == "  " and ln[15] != " " and ln[26] == " " and ln[42:44] == "  ", ln
        assert ln[44] != " " and ln[43] == " ", ln


def test_coloured_text_is_the_plain_text_plus_sgr_codes() -> None:
    plain = render(every_kind()).splitlines()
    coloured = render(every_kind(), color=True).splitlines()
    sgr = re.compile(r"\x1b\[[0-9;]*m")
    assert [sgr.sub("", ln) for ln in coloured] == plain
    # nothing else reaches the terminal: the hostile record's ESC bytes are escaped
    assert all("\x1b" not in sgr.sub("", ln) for ln in coloured)


def test_local_time_and_utc() -> None:
    rec = _rec(1, "fork", child_pid=2)
    utc = TextFormat(utc=True).line(rec)
    assert utc.startswith("02:00:00.001Z  101 ")
    local = TextFormat().line(rec)
    import datetime as dt

    want = dt.datetime.fromtimestamp(rec["ts"] / 1e9).strftime("%H:%M:%S.001  101 ")
    assert local.startswith(want)


def test_command_text_quotes_like_a_shell() -> None:
    assert command_text(["git", "commit", "-qm", "first"]) == "git commit -qm first"
    assert command_text(["echo", "a b", ""]) == "echo 'a b' ''"
    assert command_text([], "/bin/true") == "/bin/true"
    assert command_text(["a\x1bb"]) == "'a\\x1bb'"


def test_every_known_type_has_its_own_summary() -> None:
    fmt = TextFormat()
    for t in KNOWN_TYPES:
        if t != "header":
            assert hasattr(fmt, f"_s_{t}"), t
