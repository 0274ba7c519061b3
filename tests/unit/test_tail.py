"""``rawbpf tail``: formats, filters, -n, --since, follow across rotation, and reading as a non-root user."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import List

import msgpack
import pytest
from click.testing import CliRunner

from rawbpf.cli import cli
from rawbpf.cli.tail import parse_since
from rawbpf.cli.tail_format import TextFormat
from rawbpf.errors import ConfigError
from rawbpf.logfile import LogWriter

ROOT = Path(__file__).resolve().parents[2]


def format_record(rec: dict) -> str:
    return TextFormat().line(rec)


def make_log(d: Path) -> None:
    with LogWriter(str(d), header={"object": "t.o"}) as w:
        w.write({"type": "exec", "pid": 10, "comm": "claude", "tid": 10, "filename": "/bin/sh",
                 "argv": ["sh", "-c", "echo hi"], "ts": 1_700_000_000_000_000_000})
        w.write({"type": "connect", "pid": 11, "root_pid": 10, "comm": "HTTP Client", "addr": "160.79.104.10",
                 "port": 443, "raw": b"\x01\x02"})
        w.write({"type": "exit", "pid": 12, "comm": "sh", "exit_code": 0})
        w.lost(4, "kernel", source="events_drops")


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, ["tail", *args], catch_exceptions=False)
    return r.exit_code, r.stdout, ""


def test_json_lines_have_the_record_keys(tmp_path: Path) -> None:
    make_log(tmp_path)
    code, out, _ = run("--log-dir", str(tmp_path), "--json")
    assert code == 0
    recs = [json.loads(line) for line in out.splitlines()]
    assert [r["type"] for r in recs] == ["exec", "connect", "exit", "lost"]  # no file header by default
    assert recs[1]["raw"] == "0102" and recs[0]["argv"] == ["sh", "-c", "echo hi"]
    assert [r["seq"] for r in recs] == [1, 2, 3, 4]
    assert list(recs[0])[:3] == ["seq", "ts", "type"]


def test_readable_format(tmp_path: Path) -> None:
    make_log(tmp_path)
    code, out, _ = run("--log-dir", str(tmp_path))
    lines = out.splitlines()
    assert code == 0 and len(lines) == 4
    assert "  10  " in lines[0] and " claude " in lines[0] and "exec    sh -c 'echo hi'" in lines[0]
    assert "11          HTTP Client      connect 160.79.104.10:443" in lines[1]
    assert lines[2].endswith("exit    exit 0")
    assert lines[3].endswith("lost    4 records (kernel, events_drops)")
    rec = {"type": "x", "ts": 1_700_000_000_123_456_789, "v": {"a": 1}, "e": ""}
    assert format_record(rec).endswith("x       v={a=1}")  # an unknown type: its fields, without empty ones
    assert ".123  " in format_record(rec)


def test_filters_and_last_n(tmp_path: Path) -> None:
    make_log(tmp_path)
    _, out, _ = run("--log-dir", str(tmp_path), "--json", "--type", "exec", "--type", "exit")
    assert [json.loads(x)["type"] for x in out.splitlines()] == ["exec", "exit"]
    _, out, _ = run("--log-dir", str(tmp_path), "--json", "--pid", "10")
    assert [json.loads(x)["pid"] for x in out.splitlines()] == [10, 11]  # pid, or root_pid of the tree
    _, out, _ = run("--log-dir", str(tmp_path), "--json", "-n", "2")
    assert [json.loads(x)["type"] for x in out.splitlines()] == ["exit", "lost"]
    _, out, _ = run("--log-dir", str(tmp_path), "--json", "--type", "header")
    assert json.loads(out)["object"] == "t.o"
    _, out, _ = run("--log-dir", str(tmp_path), "--json", "--since", "1h")
    # the exec record is from 2023
    assert [json.loads(x)["type"] for x in out.splitlines()] == ["connect", "exit", "lost"]


def test_since_formats() -> None:
    now = 1_800_000_000.0
    assert parse_since("10m", now) == int((now - 600) * 1e9)
    assert parse_since("@1700000000", now) == 1_700_000_000 * 10**9
    assert parse_since("2026-11-21T08:30") > 0
    import datetime as dt

    day = dt.datetime.fromtimestamp(now).date()
    at = dt.datetime(day.year, day.month, day.day, 8, 30)
    assert parse_since("08:30", now) == int(at.timestamp() * 1e9)
    with pytest.raises(ConfigError, match="--since 'soon'"):
        parse_since("soon")


def test_missing_dir_is_one_line_error(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "rawbpf", "tail", "--log-dir", str(tmp_path / "nope")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1
    want = f"rawbpf: log dir {tmp_path / 'nope'}: no such file or directory"
    assert r.stderr.strip().splitlines() == [want]


def test_follow_across_rotation(tmp_path: Path) -> None:
    total = 2000
    ready = threading.Event()

    def produce() -> None:
        with LogWriter(str(tmp_path), max_bytes=4096, backups=100, flush_interval=0) as w:
            ready.set()
            for i in range(total):
                w.write({"type": "t", "i": i})
                if i % 100 == 0:
                    w.flush()
                    time.sleep(0.002)

    t = threading.Thread(target=produce)
    t.start()
    ready.wait()
    p = subprocess.Popen([sys.executable, "-m", "rawbpf", "tail", "-f", "--from-start", "--json", "--log-dir",
                          str(tmp_path),
                          "--poll-interval", "0.01"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    got: List[int] = []
    try:
        assert p.stdout is not None
        for line in p.stdout:
            got.append(json.loads(line)["i"])
            if len(got) == total:
                break
    finally:
        p.terminate()
        p.wait(10)
        t.join()
    assert got == list(range(total))
    assert len(os.listdir(tmp_path)) > 5


def _tail_as_nobody(log_dir: Path) -> tuple[int, str]:
    """Run the tail command in a forked child that dropped root (modules already imported: the Python
    install itself may not be readable by nobody)."""
    import rawbpf.cli.tail  # noqa: F401  (imported before dropping privileges)
    from rawbpf.cli import main

    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 99
        try:
            os.close(rfd)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            os.dup2(wfd, 1)
            os.dup2(wfd, 2)
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 (the test runner replaced them)
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
            main(["tail", "--json", "--log-dir", str(log_dir)])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd) as f:
        out = f.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out


def test_a_non_root_user_reads_a_readable_log(tmp_path: Path) -> None:
    if os.geteuid() != 0:  # already unprivileged: just read it
        make_log(tmp_path)
        code, out, _ = run("--log-dir", str(tmp_path), "--json")
        assert code == 0 and len(out.splitlines()) == 4
        return
    base = Path(tempfile.mkdtemp(prefix="rawbpf-tail-"))
    try:
        d = base / "log"
        make_log(d)
        for p in [base, d]:
            os.chmod(p, 0o755)
        code, out = _tail_as_nobody(d)
        assert code == 1 and "permission denied" in out  # the writer's files are 0600
        for p in d.iterdir():
            os.chmod(p, 0o644)  # a log handed to an unprivileged reader
        code, out = _tail_as_nobody(d)
        assert code == 0, out
        assert [json.loads(x)["type"] for x in out.splitlines()] == ["exec", "connect", "exit", "lost"]
    finally:
        shutil.rmtree(base)


def test_follow_waits_for_the_log_to_appear(tmp_path: Path) -> None:
    d = tmp_path / "later"
    p = subprocess.Popen([sys.executable, "-m", "rawbpf", "tail", "-f", "--json", "--log-dir", str(d),
                          "--poll-interval", "0.01"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        time.sleep(0.3)
        assert p.poll() is None
        make_log(d)
        assert p.stdout is not None
        assert json.loads(p.stdout.readline())["type"] == "exec"
    finally:
        p.terminate()
        p.wait(10)


def _follow(log_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rawbpf", "tail", "-f", "--json", "--log-dir",
                             str(log_dir), "--poll-interval", "0.01"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)


def test_follow_skips_damage_with_a_notice_and_keeps_following(tmp_path: Path) -> None:
    """Garbage written into the file being followed used to end tail -f with an error for good."""
    with LogWriter(str(tmp_path), flush_interval=0) as w:
        w.write({"type": "t", "i": 0})
        w.flush()
        p = _follow(tmp_path)
        try:
            assert p.stdout is not None and p.stderr is not None
            assert json.loads(p.stdout.readline())["i"] == 0
            offset = os.path.getsize(w.current_file)
            with open(w.current_file, "ab") as f:
                f.write(b"\xc1\x00\x00garbage")  # the writer appends after it (O_APPEND)
            for i in range(1, 4):
                w.write({"type": "t", "i": i})
                w.flush()
            got = [json.loads(p.stdout.readline())["i"] for _ in range(3)]
            assert got == [1, 2, 3]
            assert p.poll() is None  # still following
            w.rotate()
            w.write({"type": "t", "i": 4})
            w.flush()
            assert json.loads(p.stdout.readline())["i"] == 4
        finally:
            p.terminate()
            _, err = p.communicate(timeout=10)
    assert f"{w.current_file.rsplit('-', 2)[0]}" in err or "skipped 10 damaged bytes" in err
    lines = [ln for ln in err.splitlines() if "damaged" in ln]
    assert len(lines) == 1 and f"skipped 10 damaged bytes at offset {offset}" in lines[0], err


def test_records_rotated_away_are_reported_inline(tmp_path: Path) -> None:
    """tail -f used to skip records whose files were pruned before it read them without a word."""
    with LogWriter(str(tmp_path), max_bytes=1024, backups=1, flush_interval=0) as w:
        w.write({"type": "t", "i": 0})
        w.flush()
        p = _follow(tmp_path)
        try:
            assert p.stdout is not None
            assert json.loads(p.stdout.readline())["i"] == 0
            p.send_signal(signal.SIGSTOP)  # a slow reader: the writer rotates past it meanwhile
            for i in range(1, 200):
                w.write({"type": "t", "i": i, "pad": "x" * 40})
                w.flush()
            p.send_signal(signal.SIGCONT)
            lines = []
            while True:
                rec = json.loads(p.stdout.readline())
                lines.append(rec)
                if rec.get("i") == 199:
                    break
        finally:
            p.terminate()
            p.communicate(timeout=10)
    marks = [r for r in lines if r["type"] == "missing"]
    assert marks and all(m["reason"] == "rotated away" for m in marks)
    shown = [r["i"] for r in lines if r["type"] == "t"]
    assert shown == sorted(shown) and len(shown) < 199
    for k, m in enumerate(lines):
        if m["type"] == "missing":  # in place: right before the first record after the hole
            assert m["count"] == m["next_seq"] - m["after_seq"] - 1 > 0
            assert lines[k + 1]["seq"] in (m["next_seq"], m["next_seq"] + 1)  # (+1: after a file header)


def test_tail_allocates_nothing_a_damaged_length_field_declares(tmp_path: Path) -> None:
    """A 5-byte array header claiming 64 million entries made the reader reserve 512 MB up front; under a
    256 MiB address-space limit tail now skips it as damage and prints every record."""
    with LogWriter(str(tmp_path)) as w:
        w.write({"type": "t", "i": 0})
    f = next(p for p in tmp_path.iterdir() if p.name.endswith(".mlog"))
    with open(f, "ab") as out:
        out.write(b"\xdd\x03\xd0\x00\x00" + msgpack.packb({"seq": 2, "ts": 1, "type": "t", "i": 1}))
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (256 << 20, 256 << 20))\n"
            "from rawbpf.cli import main\n"
            "main(['tail', '--json', '--log-dir', sys.argv[1]])\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["i"] for x in r.stdout.splitlines()] == [0, 1]
    assert "skipped 5 damaged bytes" in r.stderr
