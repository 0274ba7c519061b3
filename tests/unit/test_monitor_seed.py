"""/proc seeding against a fake /proc tree: the same identification rules as the program, trees, depths."""

from __future__ import annotations

from pathlib import Path
from typing import List

from rawbpf.monitor.config import MonitorConfig
from rawbpf.monitor.seed import TICK_NS, find_trees, read_proc, scan


def _proc(root: Path, pid: int, ppid: int, comm: str, argv: List[str], exe: str = "", start: int = 1000,
          uid: int = 1000) -> None:
    d = root / str(pid)
    d.mkdir()
    (d / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 " + "0 " * 12
                            + f"{start} 1 2 3\n")
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + (b"\0" if argv else b""))
    (d / "status").write_text(f"Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
    if exe:
        (d / "exe").symlink_to(exe)


def test_read_proc_parses_a_comm_with_spaces_and_parens(tmp_path: Path) -> None:
    _proc(tmp_path, 42, 1, "a) (b c", ["/bin/x", "y"], exe="/bin/x", start=777, uid=5)
    p = read_proc(str(tmp_path), 42)
    assert p is not None
    assert (p.pid, p.ppid, p.comm, p.start_ticks, p.uid, p.exe, p.argv) == (
        42, 1, "a) (b c", 777, 5, "/bin/x", ["/bin/x", "y"])


def test_trees_roots_descendants_and_unrelated(tmp_path: Path) -> None:
    _proc(tmp_path, 1, 0, "systemd", ["/sbin/init"])
    _proc(tmp_path, 2, 0, "kthreadd", [])  # kernel thread: no cmdline, skipped
    _proc(tmp_path, 10, 1, "bash", ["bash"])
    _proc(tmp_path, 11, 10, "claude", ["claude", "-p", "hi"],
          exe="/home/u/.local/share/claude/versions/2.0.1")
    _proc(tmp_path, 12, 11, "sh", ["/bin/sh", "-c", "git status"])
    _proc(tmp_path, 13, 12, "git", ["git", "status"])
    _proc(tmp_path, 14, 11, "2.0.1", ["/home/u/.local/share/claude/versions/2.0.1"],
          exe="/home/u/.local/share/claude/versions/2.0.1")  # a Claude under Claude stays in the first tree
    _proc(tmp_path, 20, 1, "node", ["node", "/usr/lib/node_modules/@anthropic-ai/claude-code/cli.js"])
    _proc(tmp_path, 21, 1, "node", ["node", "/srv/app.js"])
    _proc(tmp_path, 22, 1, "claude-not", ["./claude-not"])
    _proc(tmp_path, 23, 1, "x", ["/opt/bin/claude.exe"], exe="/opt/bin/claude.exe")
    procs = scan(str(tmp_path))
    assert 2 not in procs
    entries = {e.proc.pid: e for e in find_trees(MonitorConfig(), procs)}
    assert sorted(entries) == [11, 12, 13, 14, 20, 23]
    assert (entries[11].root_pid, entries[11].depth, entries[11].match) == (11, 0, "comm")
    assert (entries[13].root_pid, entries[13].depth, entries[13].match) == (11, 2, None)
    assert (entries[14].root_pid, entries[14].depth) == (11, 1)
    assert (entries[20].root_pid, entries[20].match) == (20, "script")
    assert entries[23].match == "path"
    assert entries[11].start_ns == 1000 * TICK_NS


def test_exclude_skips_the_monitor_itself(tmp_path: Path) -> None:
    _proc(tmp_path, 30, 1, "claude", ["claude"])
    _proc(tmp_path, 31, 30, "python3", ["rawbpf", "load"])
    entries = find_trees(MonitorConfig(), scan(str(tmp_path)), exclude=[31])
    assert [e.proc.pid for e in entries] == [30]


def test_missing_proc_root_gives_nothing(tmp_path: Path) -> None:
    assert scan(str(tmp_path / "nope")) == {}


def test_environment_allowlist_and_attribution(tmp_path: Path) -> None:
    from rawbpf.monitor.seed import allowlisted_env, attribute_trees

    env = (b"PATH=/bin\0A_TOKEN=sk-secret\0CLAUDE_CODE_SESSION_IDX=x\0CLAUDE_CODE_SESSION_ID=s1\0"
           b"CLAUDE_CODE_CHILD_SESSION=1\0CLAUDE_PROJECT_DIR=/p\0TRACEPARENT=00-t\0")
    got = allowlisted_env(env)
    assert got == {"CLAUDE_CODE_SESSION_ID": "s1", "CLAUDE_CODE_CHILD_SESSION": "1", "CLAUDE_PROJECT_DIR": "",
                   "TRACEPARENT": "00-t"}  # the project dir by name only; nothing else
    cfg = MonitorConfig()
    _proc(tmp_path, 10, 1, "claude", ["claude"])
    _proc(tmp_path, 11, 10, "bash", ["bash", "-c", "x"])
    _proc(tmp_path, 12, 11, "git", ["git", "status"])
    _proc(tmp_path, 13, 10, "rg", ["rg", "--files"])
    (tmp_path / "11" / "environ").write_bytes(b"CLAUDE_CODE_SESSION_ID=s1\0CLAUDE_CODE_CHILD_SESSION=1\0"
                                              b"TRACEPARENT=00-t\0SECRET=x\0")
    (tmp_path / "13" / "environ").write_bytes(b"CLAUDE_CODE_SESSION_ID=s1\0CLAUDE_PROJECT_DIR=/p\0")
    trees = find_trees(cfg, scan(str(tmp_path)))
    attribute_trees(trees)
    by = {e.proc.pid: e for e in trees}
    assert (by[10].attr.origin, by[10].attr.session_id) == ("claude", "s1")  # from its first child
    assert (by[11].attr.origin, by[11].attr.traceparent) == ("tool", "00-t")
    assert (by[12].attr.origin, by[12].attr.session_id, by[12].attr.traceparent) == ("tool", "s1", "00-t")
    assert by[13].attr.origin == "mcp"
    assert {e.root_start_ns for e in trees} == {by[10].start_ns}
