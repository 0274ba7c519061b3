"""claude_monitor.o in the real kernel against the scripted workload: every expected record, every field,
and nothing from unrelated processes."""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
from monitor_support import monitor, of_tree, run_workload
from patience import patience

from rawbpf.monitor.config import build_config


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """One monitored run of the whole workload: the manifest, the records, the counters."""
    tmp = tmp_path_factory.mktemp("monitor")
    t0 = time.time_ns()
    with monitor() as mon:
        manifest = run_workload(tmp)
        claude = manifest["claude"]["pid"]
        renamer = manifest["renamer"]["pid"]
        mon.wait_for(lambda r: r["type"] == "exit" and r["pid"] == claude)
        mon.wait_for(lambda r: r["type"] == "exit" and r["pid"] == renamer)
        time.sleep(0.1)
        counters = mon.counters()  # before the last drain: every record it counts is then in `records`
        mon.drain()
        records = list(mon.records)
    return {"manifest": manifest, "records": records, "counters": counters, "t0": t0, "t1": time.time_ns()}


def _one(records: List[Dict[str, Any]], **kw: Any) -> Dict[str, Any]:
    found = [r for r in records if all(r.get(k) == v for k, v in kw.items())]
    assert len(found) == 1, (kw, found)
    return found[0]


def test_claude_identified_at_exec_through_its_symlink(observed: Dict[str, Any]) -> None:
    m = observed["manifest"]["claude"]
    tree = of_tree(observed["records"], m["pid"])
    execs = [r for r in tree if r["type"] == "exec" and r["pid"] == m["pid"]]
    assert len(execs) == 2  # the script through env, then env exec'ing the interpreter in place
    first, second = execs
    assert (first["comm"], first["filename"], first["match"], first["depth"]) == ("claude", m["filename"],
                                                                                   "comm", 0)
    assert first["argv"][:3] == ["/usr/bin/env", "python3", m["filename"]]
    assert first["argv"][3:] == [a if a != observed["manifest"]["api_key"] else "[REDACTED]"
                                 for a in m["argv"][1:]]
    assert first["ppid"] == observed["manifest"]["driver_pid"] and first["uid"] == os.getuid()
    assert second["match"] is None and second["argv"][0] == "python3" and second["root_pid"] == m["pid"]
    assert not first["argv_truncated"] and not first["seen_at_start"]


def test_every_connect_recorded_once_with_its_thread_and_result(observed: Dict[str, Any]) -> None:
    m = observed["manifest"]["claude"]
    conns = [r for r in of_tree(observed["records"], m["pid"]) if r["type"] == "connect"]
    assert len(conns) == len(m["connects"]) == 6
    names = {"127.0.0.1": "loopback-test", "::1": "loopback6-test"}
    for want in m["connects"]:
        rec = _one(conns, tid=want["tid"], family=want["family"], addr=want["addr"], port=want["port"])
        assert rec["pid"] == m["pid"] and rec["comm"] == want["comm"] and rec["depth"] == 0
        assert rec["ret"] == want["ret"]
        assert rec["endpoint"] == names.get(want["addr"])
        if want.get("nonblocking"):
            assert rec["ret"] in (0, -errno.EINPROGRESS)
        else:
            assert rec["ret"] == 0
        if rec["family"] == "unix":
            assert rec["conn_id"] is None
        else:  # every TCP handshake's outcome follows its connect record, joined by conn_id
            res = _one(observed["records"], type="connect_result", conn_id=rec["conn_id"])
            assert (res["tid"], res["result"], res["error"]) == (rec["tid"], "established", None)
            assert observed["records"].index(res) > observed["records"].index(rec)
            assert 0 < res["latency_ns"] < 10**9


def test_thread_renames_are_recorded_with_the_thread_id(observed: Dict[str, Any]) -> None:
    m = observed["manifest"]["claude"]
    tree = of_tree(observed["records"], m["pid"])
    tids = {c["comm"]: c["tid"] for c in m["connects"]}
    for name, tid in tids.items():
        rec = _one(tree, type="rename", tid=tid)
        assert (rec["pid"], rec["new_comm"], rec["match"]) == (m["pid"], name, None)


def test_children_grandchildren_renames_exits(observed: Dict[str, Any]) -> None:
    m = observed["manifest"]["claude"]
    tree = of_tree(observed["records"], m["pid"])
    kids = m["children"]
    forks = [r for r in tree if r["type"] == "fork" and r["pid"] == m["pid"]]
    assert sorted(r["child_pid"] for r in forks) == sorted(k["pid"] for k in kids.values())

    shell = kids["shell"]
    ren = _one(tree, type="rename", pid=shell["pid"])
    assert (ren["old_comm"], ren["new_comm"], ren["depth"], ren["ppid"]) == ("python3", "claude-shell", 1,
                                                                              m["pid"])
    ex = _one(tree, type="exec", pid=shell["pid"])
    assert (ex["filename"], ex["argv"], ex["depth"], ex["comm"]) == ("/bin/sh", shell["argv"], 1, "sh")
    grand_pids = {r["child_pid"] for r in tree if r["type"] == "fork" and r["pid"] == shell["pid"]}
    grand_execs = [r for r in tree if r["type"] == "exec" and r["pid"] in grand_pids]
    assert sorted(r["filename"] for r in grand_execs) == ["/bin/cat", "/bin/echo", "/bin/true"]
    for r in grand_execs:
        assert (r["depth"], r["ppid"], r["root_pid"]) == (2, shell["pid"], m["pid"])
        assert _one(tree, type="exit", pid=r["pid"])["exit_code"] == 0

    secret = kids["secret"]
    ex = _one(tree, type="exec", pid=secret["pid"])
    assert ex["argv"] == ["/bin/sh", "-c", "exit 7", "sh", "--api-key", "[REDACTED]", "token=[REDACTED]",
                          "Authorization: [REDACTED]"]
    assert _one(tree, type="exit", pid=secret["pid"])["exit_code"] == 7

    killed = kids["killed"]
    assert _one(tree, type="exec", pid=killed["pid"])["argv"] == killed["argv"]
    ex = _one(tree, type="exit", pid=killed["pid"])
    assert (ex["signal"], ex["exit_code"], ex["core_dumped"]) == (9, 0, False)


def test_one_exit_per_process_not_per_thread(observed: Dict[str, Any]) -> None:
    m = observed["manifest"]["claude"]
    tree = of_tree(observed["records"], m["pid"])
    ex = _one(tree, type="exit", pid=m["pid"])
    assert (ex["exit_code"], ex["signal"], ex["tid"]) == (3, 0, m["pid"])
    assert 0 < ex["duration_ns"] < observed["t1"] - observed["t0"]
    procs = {m["pid"]} | {r["child_pid"] for r in tree if r["type"] == "fork"}
    exits = [r["pid"] for r in tree if r["type"] == "exit"]
    assert sorted(exits) == sorted(procs)


def test_self_renamer_is_tracked_from_its_rename(observed: Dict[str, Any]) -> None:
    rn = observed["manifest"]["renamer"]
    tree = [r for r in of_tree(observed["records"], rn["pid"]) if r["type"] != "file"]  # its report file
    kinds = [(r["type"], r["pid"]) for r in tree]
    assert kinds == [("rename", rn["pid"]), ("connect", rn["pid"]), ("connect_result", rn["pid"]),
                     ("fork", rn["pid"]), ("exec", rn["child"]), ("exit", rn["child"]), ("exit", rn["pid"])]
    ren = tree[0]
    assert (ren["old_comm"], ren["new_comm"], ren["match"], ren["depth"]) == (
        "python3", "claude", "rename", 0)
    assert tree[1]["comm"] == "claude" and tree[1]["addr"] == "127.0.0.1"
    assert tree[2]["conn_id"] == tree[1]["conn_id"] and tree[2]["result"] == "established"
    assert tree[4]["depth"] == 1 and tree[4]["filename"] == "/bin/true"
    assert tree[6]["exit_code"] == 5


def test_unrelated_processes_are_not_recorded(observed: Dict[str, Any]) -> None:
    man = observed["manifest"]
    ours = {man["claude"]["pid"], man["renamer"]["pid"]}
    unrelated = {man["claude_not"]["pid"], man["busy"]["pid"], man["driver_pid"]}
    for r in observed["records"]:
        assert r["pid"] not in unrelated and r["root_pid"] not in unrelated, r
    # the workload's trees hold exactly the processes it started
    for r in observed["records"]:
        if r["root_pid"] in ours:
            assert r["ts"] >= observed["t0"] and r["ts"] <= observed["t1"]
    text = json.dumps(observed["records"])
    assert man["api_key"] not in text


def test_counters_account_for_every_record(observed: Dict[str, Any]) -> None:
    kinds = observed["counters"]["kinds"]
    for name, k in kinds.items():
        n = sum(1 for r in observed["records"] if r["type"] == name)
        assert k["lost"] == 0
        if name in ("file", "dns", "tls"):  # not counted when untracked (that would cost every write); no DNS
            assert k["seen"] == 0 and k["emitted"] <= n and k["tracked"] >= k["emitted"], name
            continue
        # equal on a quiet host; processes named claude started by anything else are tracked too
        assert 0 < k["emitted"] <= n, name
        assert k["seen"] >= k["tracked"] >= k["emitted"], name
    ours = {observed["manifest"]["claude"]["pid"], observed["manifest"]["renamer"]["pid"]}
    if all(r["root_pid"] in ours for r in observed["records"]):
        for name, k in kinds.items():
            assert k["emitted"] == sum(1 for r in observed["records"] if r["type"] == name), name
    assert kinds["connect"]["seen"] >= 50  # the busy process's connects were seen and ignored
    assert observed["counters"]["tracked_full"] == 0


def test_only_endpoints_and_argv_limits(tmp_path: Path) -> None:
    cfg = build_config(only_endpoints=True, argv_max_args=4)
    with monitor(cfg, endpoints={"127.0.0.0/8": "loopback-test"}) as mon:
        man = run_workload(tmp_path, busy_rounds=5)
        pid = man["claude"]["pid"]
        mon.wait_for(lambda r: r["type"] == "exit" and r["pid"] == pid)
        mon.drain()
        tree = of_tree(mon.records, pid)
        filtered = mon.counters()["filtered"]
    conns = [r for r in tree if r["type"] == "connect"]
    assert conns and all(r["endpoint"] == "loopback-test" and r["addr"] == "127.0.0.1" for r in conns)
    assert len(conns) == sum(1 for c in man["claude"]["connects"] if c["addr"] == "127.0.0.1")
    assert filtered >= 3  # ::1, the unix path and the abstract socket
    first = next(r for r in tree if r["type"] == "exec")
    assert first["argv_truncated"] and len(first["argv"]) == 4
    assert first["argv"][:2] == ["/usr/bin/env", "python3"]
    sh = [r for r in tree if r["type"] == "exec" and r["filename"] == "/bin/echo"]
    assert sh and not sh[0]["argv_truncated"]


def test_custom_rules_and_interpreter_script(tmp_path: Path) -> None:
    """A comm rule added from user space, `node …/@anthropic-ai/claude-code/cli.js` via an interpreter, and
    the argv byte limit."""
    pkg = tmp_path / "lib" / "node_modules" / "@anthropic-ai" / "claude-code"
    pkg.mkdir(parents=True)
    (pkg / "cli.js").write_text("")
    node = tmp_path / "node"  # an interpreter whose comm is "node" (a shell runs the empty cli.js)
    node.symlink_to("/bin/sh")
    (tmp_path / "my-agent").symlink_to("/bin/true")
    cfg = build_config(match_comm=["my-agent"], argv_max_bytes=16)
    with monitor(cfg) as mon:
        import subprocess

        script = subprocess.run([str(node), str(pkg / "cli.js")], check=True)
        agent = subprocess.Popen([str(tmp_path / "my-agent")])
        agent.wait()
        other = subprocess.Popen([str(node), "-c", "exit 0"])
        other.wait()
        assert script.returncode == 0
        mon.wait_for(lambda r: r["type"] == "exit" and r["pid"] == agent.pid)
        mon.drain()
        recs = list(mon.records)
    ex = _one(recs, type="exec", pid=agent.pid)
    assert ex["match"] == "comm" and ex["argv_truncated"] and ex["argv"] == [str(tmp_path / "my-agent")[:15]]
    js = [r for r in recs if r["type"] == "exec" and r["filename"] == str(node)]
    assert len(js) == 1 and js[0]["match"] == "script" and js[0]["argv_truncated"]
    assert not [r for r in recs if r["pid"] == other.pid]


def test_empty_arguments_are_kept(tmp_path: Path) -> None:
    """An empty argument is one of argv, and the ones after it are read too (Linux 6.1's
    bpf_probe_read_user_str returns 0 for an empty string, not 1; read as a fault, it cut argv there)."""
    import subprocess

    (tmp_path / "claude").symlink_to("/bin/true")
    argv = [str(tmp_path / "claude"), "a", "", "b", ""]
    with monitor() as mon:
        proc = subprocess.run(argv, check=True)
        assert proc.returncode == 0
        ex = mon.wait_for(lambda r: r["type"] == "exec" and r["filename"] == argv[0])
        mon.drain()
        errors = mon.counters()["read_errors"]
    assert ex["argv"] == argv and not ex["argv_truncated"]
    assert errors == 0


def test_reused_pid_is_not_confused_with_a_tracked_process(tmp_path: Path) -> None:
    """A stale tracked entry (wrong start time) for a live pid must not make that process tracked."""
    import subprocess

    from rawbpf.monitor.run import enum_value, track

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    code = ("import socket,sys,time; sys.stdin.readline(); "
            f"socket.create_connection(('127.0.0.1', {port})).close(); sys.stdin.readline()")
    with monitor() as mon:
        btf = mon.coll.spec.btf
        procs = [subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, text=True)
                 for _ in range(2)]
        stale, seeded = procs
        tracked = mon.coll.maps["tracked"]
        coarse = enum_value(btf, "proc_flags", "PI_COARSE_START") | enum_value(btf, "proc_flags",
                                                                                  "PI_SEEN_AT_START")
        track(mon.coll, stale.pid, start_ns=12345, root_pid=1)
        with open(f"/proc/{seeded.pid}/stat") as f:
            ticks = int(f.read().rpartition(")")[2].split()[19])
        track(mon.coll, seeded.pid, start_ns=ticks * 10_000_000, root_pid=seeded.pid, flags=coarse)
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        rec = mon.wait_for(lambda r: r["type"] == "connect" and r["pid"] == seeded.pid)
        for p in procs:
            p.communicate("done\n", timeout=patience(10))
        mon.wait_for(lambda r: r["type"] == "exit" and r["pid"] == seeded.pid)
        mon.drain()
        recs = list(mon.records)
        assert tracked.lookup(stale.pid) is None  # the stale entry was dropped on first sight
        with mon.coll.maps["tracked_pids"].mmap(writable=False) as mm:
            assert mm[stale.pid] == 0 and mm[seeded.pid] == 0  # both cleared (the seeded one at exit)
    srv.close()
    assert rec["seen_at_start"] is True and rec["root_pid"] == seeded.pid
    assert not [r for r in recs if r["pid"] == stale.pid]


def test_ring_full_every_record_is_emitted_or_counted_lost(tmp_path: Path) -> None:
    """With a one-page ring nobody drains, most records cannot be queued: each is counted per kind."""
    from monitor_support import OBJ, Monitor

    from rawbpf.collection import Collection
    from rawbpf.elf import load_spec
    from rawbpf.monitor.config import MonitorConfig
    from rawbpf.monitor.run import prepare, skip_missing_syscalls
    from rawbpf.ringbuf import RingBuffer

    spec = load_spec(str(OBJ))
    skip_missing_syscalls(spec, lambda line: None)
    spec.maps["events"].max_entries = 4096
    cfg = MonitorConfig()
    with Collection.load(spec, constants=cfg.constants()) as coll:
        prepare(coll, cfg)
        coll.attach_all()
        man = run_workload(tmp_path, busy_rounds=2)
        for _ in range(3):  # both processes have exited: let pending exits land
            time.sleep(0.1)
        got: List[bytes] = []
        with RingBuffer(coll.maps["events"], callback=lambda b: got.append(bytes(b))) as rb:
            rb.drain()
            counters = Monitor(coll, rb, []).counters()
    assert man["claude"]["exit_code"] == 3
    kinds = counters["kinds"]
    lost = sum(k["lost"] for k in kinds.values())
    emitted = sum(k["emitted"] for k in kinds.values())
    assert lost > 0 and emitted == len(got)
    for name, k in kinds.items():
        assert k["tracked"] == k["emitted"] + k["lost"], name


def test_rename_of_another_thread_through_proc(tmp_path: Path) -> None:
    """A thread renamed by its sibling through /proc/self/task/TID/comm: the record names the renamed thread
    (not the writer), so the untyped task pointer of the raw tracepoint is read correctly."""
    import subprocess
    import sys

    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "claude").symlink_to(sys.executable)
    code = ("import threading, time, os\n"
            "ev = threading.Event(); ids = []\n"
            "def run():\n    ids.append(threading.get_native_id()); ev.wait()\n"
            "t = threading.Thread(target=run); t.start()\n"
            "while not ids: time.sleep(0.01)\n"
            "open(f'/proc/self/task/{ids[0]}/comm', 'w').write('peer-named')\n"
            "ev.set(); t.join(); print(ids[0])\n")
    with monitor() as mon:
        res = subprocess.run([str(bindir / "claude"), "-c", code], capture_output=True, text=True, check=True)
        tid = int(res.stdout)
        rec = mon.wait_for(lambda r: r["type"] == "rename" and r["tid"] == tid
                           and r["new_comm"] == "peer-named")
        root = next(r for r in mon.records if r["type"] == "exec" and r["match"] == "comm"
                    and r["filename"] == str(bindir / "claude"))
    assert rec["pid"] == root["pid"] and rec["root_pid"] == root["pid"] and rec["pid"] != tid
    assert rec["old_comm"] == "claude" and rec["comm"] == "claude" and rec["uid"] == os.getuid()


def test_exit_by_a_core_dumping_signal(tmp_path: Path) -> None:
    """signal and core flag as the parent's wait status reports them."""
    import resource
    import signal
    import subprocess

    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "claude").symlink_to("/bin/sleep")

    def allow_core() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    with monitor() as mon:
        proc = subprocess.Popen([str(bindir / "claude"), "30"], cwd=tmp_path, preexec_fn=allow_core)
        mon.wait_for(lambda r: r["type"] == "exec" and r["pid"] == proc.pid)
        os.kill(proc.pid, signal.SIGQUIT)
        _, status = os.waitpid(proc.pid, 0)
        proc.returncode = 0  # reaped here
        rec = mon.wait_for(lambda r: r["type"] == "exit" and r["pid"] == proc.pid)
    assert os.WIFSIGNALED(status) and rec["signal"] == os.WTERMSIG(status) == signal.SIGQUIT
    assert rec["core_dumped"] == os.WCOREDUMP(status) and rec["exit_code"] == 0
    if Path("/proc/sys/kernel/core_pattern").read_text().strip() == "core":
        assert rec["core_dumped"] is True


def test_concurrent_connects_from_many_threads(tmp_path: Path) -> None:
    """Every connect of 8 threads x 200 is recorded exactly once, with its own thread, port and result."""
    import subprocess
    import sys

    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "claude").symlink_to(sys.executable)
    code = ("import socket, threading, json\n"
            "out = {}\n"
            "def run(k):\n"
            "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); tids = []\n"
            "    for i in range(200): s.connect(('127.0.0.1', 1000 + k))\n"
            "    out[threading.get_native_id()] = 1000 + k\n"
            "ts = [threading.Thread(target=run, args=(k,)) for k in range(8)]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]\n"
            "print(json.dumps(out))\n")
    with monitor() as mon:
        res = subprocess.run([str(bindir / "claude"), "-c", code], capture_output=True, text=True, check=True)
        ports = {int(k): v for k, v in json.loads(res.stdout).items()}
        mon.wait_for(lambda r: r["type"] == "exit" and r["comm"] == "claude" and r["depth"] == 0)
        mon.drain()
        recs = [r for r in mon.records if r["type"] == "connect" and r["tid"] in ports]
        lost = sum(k["lost"] for k in mon.counters()["kinds"].values())
    assert lost == 0
    assert len(recs) == 8 * 200
    for tid, port in ports.items():
        mine = [r for r in recs if r["tid"] == tid]
        assert len(mine) == 200
        assert {(r["port"], r["ret"], r["addr"]) for r in mine} == {(port, 0, "127.0.0.1")}
