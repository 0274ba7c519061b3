"""Every subcommand ends as coreutils commands do when stopped: a reader that leaves kills it with SIGPIPE
(141), Ctrl-C with SIGINT (130), with nothing on stderr; real processes and real bash pipelines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import audit_fixture

ROOT = Path(__file__).resolve().parents[2]
RAW = f"{sys.executable} -m rawbpf"


@pytest.fixture()
def logs(tmp_path: Path) -> Path:
    s, _ = audit_fixture.build()
    s.write_log(str(tmp_path / "log"))
    s.write_transcript(str(tmp_path / "session.jsonl"))
    return tmp_path


def _pipeline(cmd: str) -> tuple:
    """(PIPESTATUS, stderr) of a real shell pipeline."""
    r = subprocess.run(["bash", "-c", f"{cmd}; echo \"${{PIPESTATUS[@]}}\" >&2"], capture_output=True,
                       text=True, cwd=ROOT, timeout=60)
    lines = r.stderr.strip().splitlines()
    return [int(x) for x in lines[-1].split()], "\n".join(lines[:-1])


def _commands(d: Path) -> List[str]:
    log = f"--log-dir {d / 'log'}"
    return [f"{RAW} sessions {log}", f"{RAW} sessions --json {log}",
            f"{RAW} report latest {log} --transcript {d / 'session.jsonl'}",
            f"{RAW} report latest --json {log} --transcript {d / 'session.jsonl'}"]


def test_a_reader_that_leaves_ends_every_command_with_sigpipe(logs: Path) -> None:
    for cmd in _commands(logs):
        # the reader is gone before the first line is written, like `seq 100000 | true`
        assert _pipeline(f"{cmd} | true") == ([141, 0], ""), cmd
        # head leaves after the first line: 0 if that was all or the rest was already written, else 141;
        # quiet either way
        status, err = _pipeline(f"{cmd} | head -1 >/dev/null")
        assert status[0] in (0, 141) and status[1] == 0 and err == "", (cmd, status, err)
    assert _pipeline("seq 100000 | true")[0] == [141, 0]  # the convention itself, as this bash sees it


def test_ctrl_c_ends_a_command_quietly_with_sigint(logs: Path) -> None:
    """The report waits on a transcript that is a FIFO nobody writes, so Ctrl-C lands while it runs."""
    fifo = logs / "transcript.fifo"
    os.mkfifo(fifo)
    cmd = [sys.executable, "-m", "rawbpf", "report", "latest", "--log-dir", str(logs / "log"), "--transcript",
           str(fifo)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until it is blocked opening the FIFO
            with open(f"/proc/{p.pid}/wchan") as f:
                if f.read() == "wait_for_partner":
                    break
            time.sleep(0.05)
        else:
            pytest.fail("rawbpf report never opened the transcript")
        p.send_signal(signal.SIGINT)
        _out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == -signal.SIGINT, (p.returncode, err)  # 130 in the shell, and a script stops
    assert err == b""
