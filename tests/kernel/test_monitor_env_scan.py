"""The exec handler's environment scan at its edges: the one-copy scan of an environment up to 16 KiB and the
per-variable reader it falls back to must give the same answer. Each case execs /bin/true with a raw
environment (strings without '=', empty strings, repeats, variables around the 192-byte read chunk, the
512-step and 64 KiB bounds, sizes around 16 KiB) from a tracked ``claude`` process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

import pytest
from monitor_support import Monitor, monitor
from patience import patience

SESSION = b"0f3c2a1e-1111-2222-3333-444455556666"
SID = b"CLAUDE_CODE_SESSION_ID=" + SESSION
TP_VALUE = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TP = b"TRACEPARENT=" + TP_VALUE


def _var(n: int, name: bytes = b"X") -> bytes:
    """A variable of strlen n."""
    return name + b"=" + b"a" * (n - len(name) - 1)


def _many(count: int) -> List[bytes]:
    return [_var(10, b"V%d" % i) for i in range(count)]


ALL = {"CLAUDE_CODE_SESSION_ID", "CLAUDECODE", "CLAUDE_PID", "CLAUDE_CODE_CHILD_SESSION", "TRACEPARENT",
       "CLAUDE_PROJECT_DIR"}
S, T = SESSION.decode(), TP_VALUE.decode()
SID_ONLY = {"CLAUDE_CODE_SESSION_ID"}
SID_TP = {"CLAUDE_CODE_SESSION_ID", "TRACEPARENT"}

# name: (environment, expected claude_env names, truncated, claude_pid, session_id, traceparent)
Case = Tuple[List[bytes], Set[str], bool, Optional[int], Optional[str], Optional[str]]
CASES: Dict[str, Case] = {
    "all_names": ([b"PATH=/usr/bin:/bin", SID, b"CLAUDECODE=1", b"CLAUDE_PID=4242",
                   b"CLAUDE_CODE_CHILD_SESSION=1", TP, b"CLAUDE_PROJECT_DIR=/tmp/p", b"HOME=/root"],
                  ALL, False, 4242, S, T),
    "empty": ([], set(), False, None, None, None),
    "empty_strings": ([b"", SID, b"", b""], SID_ONLY, False, None, S, None),
    "repeats_last_wins": ([b"CLAUDE_CODE_SESSION_ID=" + b"z" * 60, b"CLAUDE_CODE_SESSION_ID=short",
                           b"TRACEPARENT=" + b"q" * 80, b"TRACEPARENT=x"], SID_TP, False, None, "short", "x"),
    "around_the_chunk": ([_var(190), SID, _var(191), TP, _var(192), b"CLAUDECODE=1", _var(381), _var(382),
                          _var(383), b"CLAUDE_PID=7"], SID_TP | {"CLAUDECODE", "CLAUDE_PID"}, False, 7, S, T),
    "names_cut_short": ([b"TRACEPAR", b"CLAUDE_C", b"CLAUDECODE", b"CLAUDE_PID", b"CLAUDE_PID=",
                         b"CLAUDE_PID=12x9", b"CLAUDE_PID=123456789012345", b"CLAUDE_CODE_CHILD_SESSIO=1",
                         b"=", b"\x80\xff=1"], {"CLAUDE_PID"}, False, 1234567890, None, None),
    "long_value": ([b"CLAUDE_CODE_SESSION_ID=" + b"v" * 300, b"CLAUDE_PROJECT_DIR", b"TRACEPARENT"],
                   SID_ONLY, False, None, "v" * 39, None),
    "512_steps": ([*_many(510), SID, TP], SID_TP, False, None, S, T),
    "513_steps": ([*_many(512), SID], set(), True, None, None, None),
    "600_variables": ([*_many(600), SID], set(), True, None, None, None),
    "16_KiB": ([_var(16384 - len(SID) - 2), SID], SID_ONLY, False, None, S, None),
    "over_16_KiB": ([_var(16385 - len(SID) - 2), SID, TP], SID_TP, False, None, S, T),
    "over_64_KiB": ([_var(70000), SID, TP], set(), True, None, None, None),
}

CHILD = """
import ctypes, sys
env = [bytes.fromhex(h) for h in sys.stdin.read().split()]
libc = ctypes.CDLL(None, use_errno=True)
envp = (ctypes.c_char_p * (len(env) + 1))(*env, None)
argv = (ctypes.c_char_p * 2)(b"/bin/true", None)
libc.execve(b"/bin/true", argv, envp)
sys.exit("execve: errno %d" % ctypes.get_errno())
"""


@pytest.fixture(scope="module")
def mon() -> Iterator[Monitor]:
    with monitor() as m:
        yield m


@pytest.fixture(scope="module")
def claude(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Python under the name ``claude``: a tracked root whose exec of /bin/true is an inherited exec."""
    link = tmp_path_factory.mktemp("envscan") / "claude"
    link.symlink_to(sys.executable)
    return link


@pytest.mark.parametrize("name", list(CASES))
def test_environment_scan(name: str, mon: Monitor, claude: Path) -> None:
    env, names, truncated, claude_pid, session, traceparent = CASES[name]
    proc = subprocess.Popen([str(claude), "-c", CHILD], stdin=subprocess.PIPE, stderr=subprocess.PIPE, env={})
    _, err = proc.communicate(" ".join(v.hex() for v in env).encode() + b"\n", timeout=patience(30))
    assert proc.returncode == 0, err
    rec = mon.wait_for(lambda r: r.get("type") == "exec" and r.get("pid") == proc.pid
                       and r.get("filename") == "/bin/true")
    assert set(rec["claude_env"]) == names
    assert rec["claude_env_truncated"] == truncated
    assert rec["claude_pid"] == claude_pid
    assert rec["session_id"] == session
    assert rec["traceparent"] == traceparent
    assert mon.counters()["read_errors"] == 0



def test_the_environment_copy_cannot_be_read(mon: Monitor) -> None:
    """The per-CPU copy of the environment (every value, while a scan runs) is write-only to syscalls."""
    from rawbpf.errors import RawBPFError

    with pytest.raises(RawBPFError, match=r"(?i)operation not permitted|EPERM"):
        mon.coll.maps["env_bulk"].lookup_percpu(0)
