"""``rawbpf tail`` as a command people use: ``tail -f`` start and stop conventions with a real process and
real pipes, colour only on a real terminal, usage errors, filters, ``-v`` after the subcommand."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Tuple

import pytest

from rawbpf.logfile import LogWriter

ROOT = Path(__file__).resolve().parents[2]
RAWBPF = [sys.executable, "-m", "rawbpf"]


def make_log(d: Path, n: int = 30) -> None:
    with LogWriter(str(d), header={"object": "claude_monitor.o"}) as w:
        for i in range(n):
            root = 100 if i % 2 == 0 else 200
            w.write({"type": "exec" if i % 3 else "exit", "pid": root + i, "tid": root + i, "comm": f"c{i}",
                     "root_pid": root, "root_exec_id": f"b-{root}-1", "depth": 1, "argv": ["echo", str(i)],
                     "exit_code": 0, "signal": 0, "session_id": "sess-a" if root == 100 and i > 10 else None,
                     "ts": 1_700_000_000_000_000_000 + i})


def tail(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*RAWBPF, "tail", *args], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env=env)


def _read_lines(p: subprocess.Popen, n: int, timeout: float = 20) -> List[str]:
    """Exactly the lines the process wrote within ``timeout`` (or the first ``n``), read from the fd without
    buffering, so that "nothing more" can be checked with select."""
    assert p.stdout is not None
    fd = p.stdout.fileno()
    data = b""
    end = time.monotonic() + timeout
    while data.count(b"\n") < n and time.monotonic() < end:
        if select.select([fd], [], [], 0.2)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
    assert data.count(b"\n") <= n, data
    return data.decode().splitlines()


def _wait_until_reading(p: subprocess.Popen, log_dir: Path, timeout: float = 20) -> None:
    """Wait until ``p`` holds a file of ``log_dir`` open: it is past start-up (a slow import on a busy host
    would otherwise take the test's Ctrl-C for one during start-up)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if any(os.readlink(f"/proc/{p.pid}/fd/{fd}").startswith(str(log_dir))
                   for fd in os.listdir(f"/proc/{p.pid}/fd")):
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"tail -f did not open a file of {log_dir} within {timeout} s")


def test_follow_starts_at_the_last_ten_then_follows_and_ctrl_c_ends_it_quietly(tmp_path: Path) -> None:
    make_log(tmp_path)
    p = subprocess.Popen([*RAWBPF, "tail", "-f", "--json", "--log-dir", str(tmp_path), "--poll-interval",
                          "0.01"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        first = _read_lines(p, 10)
        assert [json.loads(x)["comm"] for x in first] == [f"c{i}" for i in range(20, 30)]
        with LogWriter(str(tmp_path)) as w:
            w.write({"type": "exec", "pid": 9, "comm": "late"})
        assert json.loads(_read_lines(p, 1)[0])["comm"] == "late"
        time.sleep(0.2)
        assert select.select([p.stdout.fileno()], [], [], 0.3)[0] == []  # no history again
    finally:
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
    assert p.returncode == 0 and err == b"" and out == b""  # no "aborted", no traceback, status 0


@pytest.mark.parametrize("args,want", [(("-n", "3"), [27, 28, 29]), (("--from-start",), list(range(30))),
                                       (("-n", "0"), [])])
def test_follow_start_options(tmp_path: Path, args: Tuple[str, ...], want: List[int]) -> None:
    make_log(tmp_path)
    p = subprocess.Popen([*RAWBPF, "tail", "-f", "--json", *args, "--log-dir", str(tmp_path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        got = _read_lines(p, len(want)) if want else []
        _wait_until_reading(p, tmp_path)
        assert select.select([p.stdout.fileno()], [], [], 1.0)[0] == []
    finally:
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=20)
    assert [int(json.loads(x)["comm"][1:]) for x in got] == want
    assert p.returncode == 0


def _pipeline(cmd: str) -> List[int]:
    """Exit statuses of a real shell pipeline (PIPESTATUS)."""
    r = subprocess.run(["bash", "-c", f"{cmd}; echo \"${{PIPESTATUS[@]}}\" >&2"], capture_output=True,
                       text=True, cwd=ROOT, timeout=60)
    return [int(x) for x in r.stderr.strip().splitlines()[-1].split()]


def test_a_closed_pipe_ends_it_like_coreutils(tmp_path: Path) -> None:
    make_log(tmp_path, 3000)
    raw = " ".join(RAWBPF)
    # the reader leaves while tail still has lines to write: killed by SIGPIPE, like `seq 100000 | head -1`
    assert _pipeline("seq 100000 | head -1 >/dev/null") == [141, 0]
    assert _pipeline(f"{raw} tail --log-dir {tmp_path} 2>/dev/null | head -1 >/dev/null") == [141, 0]
    # tail -f with nothing new to write notices the reader left, like GNU `tail -f FILE | head -1` (141)
    follow = f"{raw} tail -f --poll-interval 0.05 --log-dir {tmp_path}"
    assert _pipeline(f"{follow} | head -1 >/dev/null") == [141, 0]
    # everything written before the reader left: 0, like `cat small | head`
    assert _pipeline(f"{raw} tail -n 1 --log-dir {tmp_path} | head -5 >/dev/null") == [0, 0]
    r = subprocess.run(["bash", "-c", f"{raw} tail -f --log-dir {tmp_path} | head -1"], capture_output=True,
                       text=True, cwd=ROOT, timeout=60)
    assert r.stderr == "" and len(r.stdout.splitlines()) == 1  # quietly


def test_type_is_checked_and_takes_comma_lists(tmp_path: Path) -> None:
    make_log(tmp_path)
    r = tail("--log-dir", str(tmp_path), "--type", "bogus")
    assert r.returncode == 2 and "--type bogus: no such record type" in r.stderr and r.stdout == ""
    r = tail("--log-dir", str(tmp_path), "--json", "--type", "exec,exit")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 30
    r = tail("--log-dir", str(tmp_path), "--json", "--type", "exit")
    assert {json.loads(x)["type"] for x in r.stdout.splitlines()} == {"exit"}
    r = tail("--log-dir", str(tmp_path), "--type", "dns")  # a known type with no record: not an error
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "-- no records --\n"


def test_empty_results_and_wrong_dirs_say_so(tmp_path: Path) -> None:
    make_log(tmp_path / "log")
    r = tail("--log-dir", str(tmp_path / "log"), "--pid", "1")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "-- no records --\n")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    r = tail("--log-dir", str(tmp_path / "other"))
    assert r.returncode == 1 and r.stderr.strip() == (
        f"rawbpf: log dir {tmp_path / 'other'}: holds no rawbpf log (give the monitor's --log-dir)")
    r = tail("--log-dir", str(tmp_path / "nope"))
    assert r.returncode == 1 and "no such file or directory" in r.stderr


def test_session_and_root_filters(tmp_path: Path) -> None:
    make_log(tmp_path)
    r = tail("--log-dir", str(tmp_path), "--json", "--root", "200")
    assert {json.loads(x)["root_pid"] for x in r.stdout.splitlines()} == {200}
    r = tail("--log-dir", str(tmp_path), "--json", "--session", "sess")
    got = [json.loads(x) for x in r.stdout.splitlines()]
    # the whole tree of the session's root, also its records from before the id was known
    assert {x["root_pid"] for x in got} == {100} and len(got) == 15
    assert any(x["session_id"] is None for x in got)


def test_verbose_after_the_subcommand(tmp_path: Path) -> None:
    make_log(tmp_path)
    for cmd in (["tail", "-v", "-n", "1"], ["tail", "--verbose", "-n", "1"], ["sessions", "-v"],
                ["doctor", "--help"]):
        r = subprocess.run([*RAWBPF, *cmd, "--log-dir", str(tmp_path)] if cmd[0] != "doctor" else
                           [*RAWBPF, *cmd], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert "No such option" not in r.stderr, (cmd, r.stderr)
        assert r.returncode == 0, (cmd, r.stderr)
    assert "-v, --verbose" in r.stdout


def _on_a_terminal(args: List[str], env: dict) -> str:
    """Run with stdout on a real pseudo-terminal; what it printed."""
    master, slave = pty.openpty()
    p = subprocess.Popen([*RAWBPF, *args], stdout=slave, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not data:
            break
        chunks.append(data)
    p.wait(60)
    os.close(master)
    return b"".join(chunks).decode()


def test_color_auto_only_on_a_terminal(tmp_path: Path) -> None:
    make_log(tmp_path, 3)
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    env["TERM"] = "xterm"
    on_tty = _on_a_terminal(["tail", "--log-dir", str(tmp_path)], env)
    assert "\x1b[" in on_tty and on_tty.count("\n") == 3
    piped = tail("--log-dir", str(tmp_path), env=env).stdout
    assert "\x1b" not in piped and piped.count("\n") == 3
    assert "\x1b" not in _on_a_terminal(["tail", "--log-dir", str(tmp_path)], {**env, "NO_COLOR": "1"})
    assert "\x1b" not in _on_a_terminal(["tail", "--color", "never", "--log-dir", str(tmp_path)], env)
    assert "\x1b[" in tail("--color", "always", "--log-dir", str(tmp_path), env=env).stdout


def test_tree_puts_each_roots_records_together(tmp_path: Path) -> None:
    make_log(tmp_path, 6)  # roots 100 and 200 alternate in the log
    r = tail("--log-dir", str(tmp_path), "--tree", "--color", "never")
    pids = [int(ln.split()[1]) for ln in r.stdout.splitlines()]
    assert pids == [100, 102, 104, 201, 203, 205] and r.returncode == 0
    assert all("└ " in ln for ln in r.stdout.splitlines())  # depth 1 under its root
    r = tail("--log-dir", str(tmp_path), "--tree", "-n", "2")
    assert [int(ln.split()[1]) for ln in r.stdout.splitlines()] == [104, 205]
    assert tail("--log-dir", str(tmp_path), "--tree", "--json").returncode == 2
