"""`rawbpf load programs/claude_monitor.o` as users run it: the scripted workload end to end through the
log, `rawbpf status`, seeding of Claude processes already running, and a clean shutdown."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from monitor_support import OBJ, ROOT, monitor_program_names, monitor_programs, of_tree, run_workload
from patience import patience

from rawbpf.logfile import LogReader


class Daemon:
    """``python -m rawbpf load claude_monitor.o`` in the background, stopped with SIGINT."""

    def __init__(self, log_dir: Path, pin_root: Path, *extra: str) -> None:
        self.log_dir = log_dir
        self.pin_root = pin_root
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rawbpf", "load", str(OBJ), "--log-dir", str(log_dir), "--pin-dir",
             str(pin_root), *extra],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: List[str] = []
        assert self.proc.stdout is not None
        deadline = time.monotonic() + patience(60)
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.out.append(line)
            if line.startswith("logging to "):
                return
        self.proc.kill()
        raise AssertionError(f"monitor did not start: {''.join(self.out)}{self.proc.stderr.read()}")

    def status(self) -> Dict[str, Any]:
        res = subprocess.run([sys.executable, "-m", "rawbpf", "status", "--json", "--log-dir",
                              str(self.log_dir)], cwd=ROOT, capture_output=True, text=True,
                             timeout=patience(60))
        assert res.returncode == 0, res.stderr
        data: Dict[str, Any] = json.loads(res.stdout)
        return data

    def stop(self) -> subprocess.CompletedProcess:
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=patience(60))
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, "".join(self.out) + out, err)

    def records(self) -> List[Dict[str, Any]]:
        with LogReader(str(self.log_dir)) as r:
            return list(r.records())


@pytest.fixture()
def daemon(tmp_path: Path, pin_dir: Path) -> Iterator[Daemon]:
    # --no-seed: when the tests themselves run under Claude Code, seeding would make the workload part of
    # that Claude's tree; the seeding test below starts its process outside the test's tree
    d = Daemon(tmp_path / "logs", pin_dir, "--no-seed")
    yield d
    if d.proc.poll() is None:
        d.stop()


def _wait_records(d: Daemon, pred: Any, timeout: float = patience(30.0)) -> List[Dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        recs = d.records()
        if any(pred(r) for r in recs) or time.monotonic() > deadline:
            return recs
        time.sleep(0.2)


def test_workload_through_the_log_status_and_clean_stop(daemon: Daemon, tmp_path: Path) -> None:
    man = run_workload(tmp_path)
    claude = man["claude"]["pid"]
    recs = _wait_records(daemon, lambda r: r.get("type") == "exit" and r.get("pid") == claude)
    st = daemon.status()
    res = daemon.stop()
    assert res.returncode == 0, res.stderr
    assert f"stopped: detached {monitor_programs()} programs" in res.stdout
    assert not list(daemon.pin_root.rglob("*"))  # everything unpinned
    assert not (daemon.log_dir / "claude_monitor.status.json").exists()
    recs = daemon.records()

    # the log: a header, then seq +1 per record, every monitor record with the schema's fields
    assert recs[0]["type"] == "header" and recs[0]["object"] == "claude_monitor"
    assert recs[0]["monitor"]["endpoints"]["160.79.104.0/23"] == "anthropic-api"
    assert [r["seq"] for r in recs] == list(range(recs[0]["seq"], recs[0]["seq"] + len(recs)))
    tree = of_tree(recs, claude)
    common = {"seq", "ts", "type", "pid", "tid", "ppid", "uid", "euid", "auid", "comm", "root_pid", "depth",
              "seen_at_start", "exec_id", "parent_exec_id", "root_exec_id", "tty", "cgroup", "origin",
              "session_id", "traceparent"}
    per_type = {"exec": {"filename", "argv", "argv_truncated", "match", "cwd", "cwd_truncated", "claude_env",
                         "claude_env_truncated", "claude_pid"},
                "connect": {"family", "addr", "port", "ret", "endpoint", "conn_id", "host"},
                "connect_result": {"conn_id", "result", "error", "latency_ns", "host"},
                "exit": {"exit_code", "signal", "core_dumped", "duration_ns"},
                "fork": {"child_pid"}, "rename": {"old_comm", "new_comm", "match", "thread"}}
    for r in tree:
        if r["type"] == "file":  # the fields beyond these depend on the op (mode, path2, owner_uid, ...)
            assert set(r) >= common | {"op", "path", "ret", "count"}, r
            continue
        assert set(r) == common | per_type[r["type"]], r
    kinds = sorted({r["type"] for r in tree} - {"file"})
    assert kinds == ["connect", "connect_result", "exec", "exit", "fork", "rename"]
    assert len([r for r in tree if r["type"] == "connect"]) == 6
    assert man["api_key"] not in json.dumps(recs)
    unrelated = {man["claude_not"]["pid"], man["busy"]["pid"]}
    assert not [r for r in recs if r.get("pid") in unrelated or r.get("root_pid") in unrelated]
    assert not [r for r in recs if r.get("type") == "lost"]

    # status while running: programs with run counts (BPF stats on), counters, the log
    assert st["object"] == "claude_monitor" and st["pid"] == daemon.proc.pid and st["stats_enabled"]
    assert set(st["programs"]) == monitor_program_names()  # all but a syscall's this kernel lacks
    assert all(p["attached"] for p in st["programs"].values())
    for name in ("handle_exec", "handle_fork", "handle_exit", "handle_rename", "handle_connect_exit",
                 "handle_sock_state", "files_exit_openat", "files_exit_write"):  # (others: no such syscall)
        p = st["programs"][name]
        assert p["run_cnt"] > 0 and p["avg_ns"] > 0, name
    kinds = st["counters"]["kinds"]
    assert kinds["connect"]["emitted"] >= 6 and kinds["exec"]["seen"] >= kinds["exec"]["emitted"] > 0
    assert st["lost_total"] == 0 and st["ring"]["size"] == 4 << 20
    assert st["log"]["files"] and st["log"]["records"] >= 1


def test_status_text_and_no_monitor(daemon: Daemon, tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "rawbpf", "status", "--log-dir", str(daemon.log_dir)],
                         cwd=ROOT, capture_output=True, text=True, timeout=patience(60))
    assert res.returncode == 0 and "claude_monitor: running" in res.stdout and "handle_exec" in res.stdout
    assert daemon.stop().returncode == 0
    res = subprocess.run([sys.executable, "-m", "rawbpf", "status", "--log-dir", str(daemon.log_dir)],
                         cwd=ROOT, capture_output=True, text=True, timeout=patience(60))
    assert res.returncode == 1 and res.stderr.startswith("rawbpf: status: no monitor is running")
    assert len(res.stderr.strip().splitlines()) == 1


def test_tail_json_keeps_every_field(daemon: Daemon, tmp_path: Path) -> None:
    """``rawbpf tail --json`` prints each monitor record with all its fields and values, as logged."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "claude").symlink_to(sys.executable)
    code = ("import os, socket, subprocess; os.chdir('/tmp'); subprocess.run(['/bin/true'], env={"
            "'CLAUDE_CODE_SESSION_ID': 'tail-session', 'CLAUDE_CODE_CHILD_SESSION': '1',"
            " 'A_SECRET': 'nope'})\ns = socket.socket(); s.connect_ex(('127.0.0.1', 9)); s.close()")
    proc = subprocess.Popen([str(bindir / "claude"), "-c", code])
    proc.wait(timeout=patience(60))
    deadline = time.monotonic() + patience(30)
    while True:
        recs = [r for r in daemon.records() if r.get("type") != "header"]
        root = [r for r in recs if r.get("type") == "exec" and r.get("pid") == proc.pid]
        if root and any(r.get("type") == "exit" and r.get("pid") == proc.pid for r in recs):
            break
        assert time.monotonic() < deadline, "records never arrived"
        time.sleep(0.2)
    res = subprocess.run([sys.executable, "-m", "rawbpf", "tail", "--json", "--log-dir", str(daemon.log_dir)],
                         cwd=ROOT, capture_output=True, text=True, timeout=patience(60))
    assert res.returncode == 0, res.stderr
    printed = {(r["seq"]): r for r in map(json.loads, res.stdout.splitlines())}
    tree = [r for r in recs if r.get("root_pid") == root[0]["pid"]]
    kinds = {r["type"] for r in tree}
    assert {"exec", "connect", "connect_result", "exit"} <= kinds
    for r in tree:
        assert printed[r["seq"]] == json.loads(json.dumps(r)), r
    child = [r for r in tree if r["type"] == "exec" and r["argv"] == ["/bin/true"]]
    assert child and (child[0]["cwd"], child[0]["session_id"], child[0]["origin"]) == ("/tmp", "tail-session",
                                                                                        "tool")
    assert "nope" not in json.dumps(child)  # (the root's argv holds the text of the script, with it)


def test_tail_text_reads_like_a_tool(daemon: Daemon, tmp_path: Path) -> None:
    """The readable ``rawbpf tail`` of a real workload: one aligned line per record, names not numbers (exit
    codes, SIGKILL, a refused connect), the cwd, the tree indented by depth, no Python values."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "claude").symlink_to(sys.executable)
    code = ("import os, signal, socket, subprocess; os.chdir('/tmp')\n"
            "subprocess.run(['/bin/sh', '-c', 'exit 3'])\n"
            "p = subprocess.Popen(['sleep', '30']); p.send_signal(signal.SIGKILL); p.wait()\n"
            "s = socket.socket(); s.connect_ex(('127.0.0.1', 9)); s.close()")
    proc = subprocess.Popen([str(bindir / "claude"), "-c", code])
    proc.wait(timeout=patience(60))
    deadline = time.monotonic() + patience(30)
    while not any(r.get("type") == "exit" and r.get("pid") == proc.pid for r in daemon.records()):
        assert time.monotonic() < deadline, "records never arrived"
        time.sleep(0.2)
    res = subprocess.run([sys.executable, "-m", "rawbpf", "tail", "--root", str(proc.pid), "--tree", "--utc",
                          "--log-dir", str(daemon.log_dir)], cwd=ROOT, capture_output=True, text=True,
                         timeout=patience(60))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    text = res.stdout
    assert "\x1b" not in text  # not a terminal: no colour
    rest = "\n".join(ln for ln in lines if f"  {proc.pid}  " not in ln or " exec " not in ln)
    for noise in ("None", "False", "True", "-111", "-115", "=", "_ns"):
        assert noise not in rest, (noise, text)
    assert any(f"  {proc.pid}  " in ln and "claude" in ln and " exec " in ln for ln in lines), text
    assert any("└ exec    /bin/sh -c 'exit 3'  (cwd /tmp)" in ln for ln in lines), text
    assert any("└ exit    exit 3  after " in ln for ln in lines), text
    assert any("└ exit    killed by SIGKILL  after " in ln for ln in lines), text
    # a loopback refusal can come back at once (ECONNREFUSED) or after the SYN (in progress, then refused)
    assert any(ln.endswith(("connect 127.0.0.1:9", "connect 127.0.0.1:9 ECONNREFUSED")) for ln in lines), text
    assert any("connect_result refused " in ln and ln.endswith(" 127.0.0.1:9") for ln in lines), text
    starts = {ln.index(" exec ") for ln in lines if " exec " in ln and "└" not in ln}
    assert len({ln[:13].endswith("Z") for ln in lines}) == 1 and starts  # one column layout, UTC times


def test_status_finds_the_monitor_from_its_pins(daemon: Daemon, tmp_path: Path) -> None:
    """No --log-dir: the pin directory's owner leads to the log directory; counters are live, the daemon's
    record count says its age; a user who may not read the pins is told so in one line."""
    status = [sys.executable, "-m", "rawbpf", "status", "--pin-dir", str(daemon.pin_root)]
    res = subprocess.run([*status, "--json"], cwd=ROOT, capture_output=True, text=True, timeout=patience(60))
    assert res.returncode == 0, res.stderr
    st = json.loads(res.stdout)
    assert st["pid"] == daemon.proc.pid and st["log_dir"] == str(daemon.log_dir)
    before = st["counters"]["kinds"]["exec"]["seen"]
    subprocess.run(["/bin/true"], check=True)
    res = subprocess.run(status, cwd=ROOT, capture_output=True, text=True, timeout=patience(60))
    assert res.returncode == 0, res.stderr
    assert "claude_monitor: running" in res.stdout and " s ago)" in res.stdout and "(live)" in res.stdout
    st = json.loads(subprocess.run([*status, "--json"], cwd=ROOT, capture_output=True, text=True,
                                   timeout=patience(60)).stdout)
    assert st["counters"]["kinds"]["exec"]["seen"] > before  # read from the map, not the status file
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    for extra in ([], ["--log-dir", str(daemon.log_dir)]):
        res = subprocess.run([*nobody, *status, *extra], cwd="/", capture_output=True, text=True,
                             timeout=patience(60),
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert res.returncode == 1, res
        assert len(res.stderr.strip().splitlines()) == 1 and "permission denied" in res.stderr, res.stderr
        assert "missing" not in res.stderr and "no monitor" not in res.stderr


def test_claude_already_running_is_seeded(tmp_path: Path, pin_dir: Path) -> None:
    """A Claude process (and its child) started before the monitor: seeded, flagged, and followed to exit.

    The process is started through a shell that exits at once, so it is reparented away from this test's
    process tree (which may itself belong to a Claude Code session)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    script = bindir / "claude"
    # its child runs as a tool call would (Claude's variables), the late child as Claude's own helper; the
    # child must outlive the monitor's start (it is killed once the monitor runs), ~70 s under emulation
    sleep = str(int(patience(30)))
    script.write_text("#!/bin/sh\nCLAUDE_CODE_SESSION_ID=seeded-session CLAUDE_CODE_CHILD_SESSION=1 "
                      f"A_SECRET=nope /bin/sleep {sleep} &\nread line < {fifo}\nkill $!\nwait\n/bin/true\n"
                      "exit 4\n")
    script.chmod(0o755)
    pid = int(subprocess.run(["/bin/sh", "-c", f"{script} </dev/null >/dev/null 2>&1 & echo $!"],
                             capture_output=True, text=True, check=True).stdout)
    children: List[int] = []
    deadline = time.monotonic() + patience(10)
    while not children and time.monotonic() < deadline:
        children = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        time.sleep(0.05)
    try:
        d = Daemon(tmp_path / "logs", pin_dir)
    finally:
        with open(fifo, "w") as f:
            f.write("stop\n")
    _wait_records(d, lambda r: r.get("type") == "exit" and r.get("pid") == pid)
    assert d.stop().returncode == 0
    assert any(line.startswith("seeded ") for line in d.out)
    tree = of_tree(d.records(), pid)
    root = next(r for r in tree if r["type"] == "exec" and r["pid"] == pid)
    assert root["seen_at_start"] and root["match"] == "comm" and root["depth"] == 0
    assert root["argv"] == ["/bin/sh", str(script)] and root["filename"] == os.path.realpath("/bin/sh")
    child = next(r for r in tree if r["type"] == "exec" and r["pid"] == children[0])
    assert child["seen_at_start"] and child["depth"] == 1 and child["argv"] == ["/bin/sleep", sleep]
    ex = next(r for r in tree if r["type"] == "exit" and r["pid"] == pid)
    assert ex["exit_code"] == 4 and ex["seen_at_start"] and ex["duration_ns"] > 0
    kid_exit = next(r for r in tree if r["type"] == "exit" and r["pid"] == children[0])
    assert kid_exit["signal"] == 15 and kid_exit["depth"] == 1
    # a child forked after the start is seen from its birth, not flagged
    late = next(r for r in tree if r["type"] == "exec" and r["filename"] == "/bin/true")
    assert not late["seen_at_start"] and late["depth"] == 1 and late["ppid"] == pid
    fork = next(r for r in tree if r["type"] == "fork" and r["child_pid"] == late["pid"])
    assert fork["seen_at_start"] and fork["pid"] == pid  # the fork record is the seeded parent's
    # attribution read from /proc the way the program reads it at exec (allowlist only), and handed to the
    # kernel so the late child inherits it; ids join the seeded records with the kernel's
    assert (child["origin"], child["session_id"]) == ("tool", "seeded-session")
    assert (root["origin"], root["session_id"]) == ("claude", "seeded-session")
    assert (late["origin"], late["session_id"]) == ("claude", "seeded-session")
    assert child["root_exec_id"] == root["exec_id"] == late["root_exec_id"] == ex["exec_id"]
    assert late["parent_exec_id"] == root["exec_id"] and child["parent_exec_id"] == root["exec_id"]
    assert (kid_exit["origin"], kid_exit["exec_id"]) == ("tool", child["exec_id"])
    assert child["cwd"] == root["cwd"] == os.getcwd() and late["cwd"] == os.getcwd()
    assert "nope" not in json.dumps(tree)


def test_log_options_reach_the_monitor(tmp_path: Path, pin_dir: Path) -> None:
    """--max-bytes/--backups/--flush-interval apply to the monitor's log too (small files rotate), and
    --ring-bytes sizes its ring."""
    d = Daemon(tmp_path / "logs", pin_dir, "--no-seed", "--max-bytes", "4096", "--backups", "50",
               "--flush-interval", "0", "--ring-bytes", "65536")
    man = run_workload(tmp_path, busy_rounds=2)
    _wait_records(d, lambda r: r.get("type") == "exit" and r.get("pid") == man["claude"]["pid"])
    st = d.status()
    nice = int((Path("/proc") / str(d.proc.pid) / "stat").read_text().rsplit(")", 1)[1].split()[16])
    assert d.stop().returncode == 0
    assert st["ring"]["size"] == 65536 and st["config"]["ring_bytes"] == 65536
    # the draining thread (the main one) runs boosted by the default 4, as auditd's priority_boost
    assert st["config"]["priority_boost"] == 4
    assert nice == st["nice"] == max(-20, os.getpriority(os.PRIO_PROCESS, 0) - 4)
    files = sorted(p for p in (tmp_path / "logs").iterdir() if p.suffix == ".mlog")
    assert len(files) >= 2  # how many depends on how the drains batch the records
    recs = d.records()
    assert sum(1 for r in recs if r["type"] == "header") == len(files)
    assert all(r["object_path"] == str(OBJ) for r in recs if r["type"] == "header")
    assert any(r.get("type") == "exit" and r.get("pid") == man["claude"]["pid"] for r in recs)
