"""Who, where, which session, with what result: every identity and attribution field of claude_monitor's
records against the scripted workload in tests/workload/attrib.py (run as a tracked ``claude`` process)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from typing import Any, Dict, Iterator, List, Optional

import pytest
from monitor_support import ROOT, monitor

from rawbpf.logfile import boot_id
from rawbpf.monitor.cgroups import cgroup2_mount
from rawbpf.monitor.shape import exec_id

sys.path.insert(0, str(ROOT / "tests"))
from patience import patience
from workload import attrib

NET = "10.78.0.1,10.78.0.3,10.78.0.2"  # our address, one whose frames go nowhere, one nobody answers ARP for


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=patience(30))


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    """A network namespace with a veth pair: 10.78.0.3 has a static neighbour entry with a MAC nobody has
    (SYNs vanish: timeout), 10.78.0.2 has none and nobody answers ARP (unreachable after one 100 ms probe)."""
    if shutil.which("ip") is None:
        pytest.skip("iproute2 is not installed")
    name = f"rawbpf-attrib-{uuid.uuid4().hex[:8]}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        _ip("-n", name, "addr", "add", "10.78.0.1/24", "dev", "v0")
        _ip("-n", name, "link", "set", "v0", "up")
        _ip("-n", name, "link", "set", "v1", "up")
        _ip("-n", name, "neigh", "add", "10.78.0.3", "lladdr", "02:00:00:00:00:99", "dev", "v0", "nud",
            "permanent")
        for key, value in (("mcast_solicit", "1"), ("ucast_solicit", "0"), ("app_solicit", "0"),
                           ("retrans_time_ms", "100")):
            _ip("netns", "exec", name, "sysctl", "-q", "-w", f"net.ipv4.neigh.v0.{key}={value}")
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=patience(30))


@pytest.fixture(scope="module")
def cgroup() -> Iterator[Optional[str]]:
    root = cgroup2_mount()
    if not root or not os.access(root, os.W_OK):
        yield None
        return
    path = os.path.join(root, f"rawbpf-attrib-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    try:
        yield path
    finally:
        for _ in range(50):
            try:
                os.rmdir(path)
                break
            except OSError:
                time.sleep(0.1)


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory, netns: str, cgroup: Optional[str]) -> Dict[str, Any]:
    tmp = tmp_path_factory.mktemp("attrib")
    bindir = tmp / "bin"
    bindir.mkdir()
    (bindir / "claude").symlink_to(sys.executable)
    work = tmp / "work"
    work.mkdir()
    report = tmp / "report.json"
    with monitor() as mon:
        proc = subprocess.run([str(bindir / "claude"), str(ROOT / "tests" / "workload" / "attrib.py"),
                               "--report", str(report), "--dir", str(work), "--netns", netns, "--net", NET,
                               "--cgroup", cgroup or ""], capture_output=True, text=True,
                              timeout=patience(120))
        assert proc.returncode == 0, proc.stderr
        man = json.loads(report.read_text())
        mon.wait_for(lambda r: r["type"] == "exit" and r["pid"] == man["pid"])
        time.sleep(0.2)
        mon.drain()
        records = [r for r in mon.records if r["root_pid"] == man["pid"]]
    return {"manifest": man, "records": records, "work": str(work), "cgroup": cgroup}


def _of(records: List[Dict[str, Any]], **kw: Any) -> List[Dict[str, Any]]:
    return [r for r in records if all(r.get(k) == v for k, v in kw.items())]


def _one(records: List[Dict[str, Any]], **kw: Any) -> Dict[str, Any]:
    found = _of(records, **kw)
    assert len(found) == 1, (kw, found)
    return found[0]


def test_no_secret_and_no_value_outside_the_allowlist(observed: Dict[str, Any]) -> None:
    text = json.dumps(observed["records"])
    assert attrib.SECRET not in text and "Sekret" not in text
    assert "look-alike" not in text and "fake-fake" not in text and "/usr/bin/claude" not in text


def test_tool_hook_mcp_and_helper_by_their_environment(observed: Dict[str, Any]) -> None:
    recs, man = observed["records"], observed["manifest"]
    tool = _one(recs, type="exec", pid=man["tool"]["pid"])
    assert (tool["origin"], tool["session_id"], tool["traceparent"]) == ("tool", attrib.SESSION,
                                                                          attrib.TRACEPARENT)
    assert tool["claude_env"] == ["CLAUDE_CODE_SESSION_ID", "CLAUDECODE", "CLAUDE_PID",
                                  "CLAUDE_CODE_CHILD_SESSION", "TRACEPARENT"]
    assert tool["claude_pid"] == man["pid"] and not tool["claude_env_truncated"]
    # the grandchild exec'd with an empty environment: it inherits the tool call's attribution
    kids = [r for r in recs if r["type"] == "exec" and r["ppid"] == man["tool"]["pid"]]
    assert [k["argv"] for k in kids] == [["env", "-i", "/bin/true"], ["/bin/true"]]
    for k in kids:
        assert (k["origin"], k["session_id"]) == ("tool", attrib.SESSION)
        assert k["traceparent"] == attrib.TRACEPARENT
    assert kids[1]["claude_env"] == []
    hook = _one(recs, type="exec", pid=man["hook"]["pid"])
    assert (hook["origin"], hook["session_id"]) == ("hook", attrib.HOOK_SESSION)
    assert "CLAUDE_PROJECT_DIR" in hook["claude_env"] and hook["traceparent"] is None
    mcp = _one(recs, type="exec", pid=man["mcp"]["pid"])
    assert (mcp["origin"], mcp["session_id"]) == ("mcp", attrib.SESSION)
    helper = _one(recs, type="exec", pid=man["helper"]["pid"])
    assert (helper["origin"], helper["session_id"], helper["claude_env"]) == ("claude", attrib.SESSION, [])
    # every record of the tool's process carries it, the exit too
    for r in _of(recs, pid=man["tool"]["pid"]):
        assert (r["origin"], r["session_id"]) == ("tool", attrib.SESSION), r


def test_the_root_gets_the_first_session_seen_in_its_tree(observed: Dict[str, Any]) -> None:
    recs, man = observed["records"], observed["manifest"]
    root = [r for r in recs if r["pid"] == man["pid"]]
    assert root[0]["type"] == "exec" and root[0]["session_id"] is None and root[0]["origin"] == "claude"
    # after the tool call: its connects and its exit carry the session (the hook's came later)
    conns = [r for r in root if r["type"] in ("connect", "connect_result")]
    assert conns and all(r["session_id"] == attrib.SESSION for r in conns)
    assert _one(recs, type="exit", pid=man["pid"])["session_id"] == attrib.SESSION


def test_exec_ids_join_process_parent_and_root(observed: Dict[str, Any]) -> None:
    recs, man = observed["records"], observed["manifest"]
    root = _of(recs, type="exec", pid=man["pid"])[0]
    with open(f"/proc/{os.getpid()}/stat") as f:
        assert f.read()  # the test process is alive: its start is known
    assert root["exec_id"] and root["exec_id"] == root["root_exec_id"]
    assert root["exec_id"].startswith(boot_id().replace("-", "")[:12] + f"-{man['pid']}-")
    ids = {r["exec_id"] for r in recs if r["pid"] == man["pid"]}
    assert ids == {root["exec_id"]}  # one id per process, every record
    for r in recs:
        assert r["root_exec_id"] == root["exec_id"]
        if r["pid"] != man["pid"] and r["type"] == "exec":
            parent = _of(recs, pid=r["ppid"])
            assert parent and r["parent_exec_id"] == parent[0]["exec_id"], r
    # the root's parent is this test: its id from /proc says the same
    with open(f"/proc/{os.getpid()}/stat") as f:
        ticks = int(f.read().rpartition(")")[2].split()[19])
    assert root["parent_exec_id"] == exec_id(boot_id(), os.getpid(), ticks * 10_000_000)


def test_cwd_and_absolute_filename(observed: Dict[str, Any]) -> None:
    recs, man = observed["records"], observed["manifest"]
    root = _of(recs, type="exec", pid=man["pid"])[0]
    assert root["cwd"] == os.getcwd()
    tool = _one(recs, type="exec", pid=man["tool"]["pid"])
    assert tool["cwd"] == observed["work"]
    ch = _one(recs, type="exec", pid=man["chdir"]["pid"], filename="/bin/true")
    assert ch["cwd"] == man["chdir"]["cwd"] and ch["argv"] == ["true", "chdir"]
    rel = _one(recs, type="exec", pid=man["relative"]["pid"], comm="run.sh")
    # a script: its interpreter runs it by the path it was exec'd with
    assert rel["filename"] == man["relative"]["filename"] and rel["argv"] == ["/bin/sh", "./run.sh"]
    assert rel["cwd"] == man["relative"]["cwd"]
    assert _one(recs, type="exec", pid=man["mount"]["pid"])["cwd"] == man["mount"]["cwd"]
    deep = _one(recs, type="exec", pid=man["deep"]["pid"])
    assert deep["cwd_truncated"] and deep["cwd"].startswith("…/")
    assert man["deep"]["cwd"].endswith(deep["cwd"][1:])
    assert not ch["cwd_truncated"]


def test_euid_auid_tty_cgroup(observed: Dict[str, Any]) -> None:
    recs, man = observed["records"], observed["manifest"]
    ex = _one(recs, type="exec", pid=man["euid"]["pid"])
    assert (ex["uid"], ex["euid"]) == (os.getuid(), 65534)
    root = _of(recs, type="exec", pid=man["pid"])[0]
    assert root["euid"] == os.geteuid()
    before = man.get("auid_before")
    assert root["auid"] == (None if before in (None, 0xFFFFFFFF) else before)
    if man["auid"] is not None and man["auid"]["returncode"] == 0:
        assert _one(recs, type="exec", pid=man["auid"]["pid"])["auid"] == 4321
    tty = _one(recs, type="exec", pid=man["tty"]["pid"])
    assert tty["tty"] == man["tty"]["name"] and tty["tty"].startswith("pts/")
    assert root["tty"] is None  # the test runs without a terminal (its stdio are pipes)
    if observed["cgroup"]:
        cg = _one(recs, type="exec", pid=man["cgroup"]["pid"])
        assert cg["cgroup"] == "/" + os.path.basename(observed["cgroup"])
        assert root["cgroup"] != cg["cgroup"]


def _result(recs: List[Dict[str, Any]], want: Dict[str, Any]) -> Dict[str, Any]:
    conn = _one(recs, type="connect", tid=want["tid"], port=want["port"], addr=want["addr"])
    assert conn["ret"] == want["ret"] and conn["conn_id"]
    res = _one(recs, type="connect_result", conn_id=conn["conn_id"])
    assert recs.index(res) > recs.index(conn) and res["tid"] == conn["tid"] and res["pid"] == conn["pid"]
    assert res["exec_id"] == conn["exec_id"] and res["session_id"] == conn["session_id"]
    return res


@pytest.mark.parametrize(("case", "result", "latency"), [
    ("established", "established", (0, 1e9)), ("established_nb", "established", (0, 1e9)),
    ("refused", "refused", (0, 1e9)), ("refused_nb", "refused", (0, 1e9)),
])
def test_connect_outcomes_on_loopback(observed: Dict[str, Any], case: str, result: str,
                                      latency: Any) -> None:
    res = _result(observed["records"], observed["manifest"][case])
    assert res["result"] == result and latency[0] < res["latency_ns"] < latency[1]


@pytest.mark.parametrize(("case", "result", "latency"), [
    ("timeout", "timeout", (2.5e9, 4e9)),  # TCP_SYNCNT=1: the SYN and one retry (1 s, then 2 s)
    ("unreachable", "unreachable", (5e7, 2.5e9)),  # one ARP probe, 100 ms
    ("reset", "reset", (1e8, 1e9)),  # a simultaneous open, then the peer's RST
])
def test_connect_outcomes_in_a_network_namespace(observed: Dict[str, Any], case: str, result: str,
                                                 latency: Any) -> None:
    want = observed["manifest"]["netns"][case]
    assert want["ret"] == -115 and want["final"] != 0  # what the socket said
    res = _result(observed["records"], want)
    assert res["result"] == result, res
    assert latency[0] < res["latency_ns"] < latency[1], res


def test_unix_connects_have_no_outcome(observed: Dict[str, Any]) -> None:
    assert not [r for r in observed["records"] if r["type"] == "connect" and r["family"] == "unix"
                and r["conn_id"] is not None]


def test_thread_rename_and_exit_names(observed: Dict[str, Any]) -> None:
    recs, man = observed["records"], observed["manifest"]
    ren = _one(recs, type="rename", tid=man["thread_rename"]["tid"])
    assert (ren["thread"], ren["pid"], ren["new_comm"]) == (True, man["pid"], "HTTP Client")
    # the process's own renames (none here) would say thread: False
    assert not [r for r in recs if r["type"] == "rename" and not r["thread"]]
    last = man["last_thread"]
    ex = _one(recs, type="exit", pid=last["pid"])
    assert ex["tid"] != last["pid"]  # the process ended with its other thread
    assert ex["comm"] == "claude" and ex["exit_code"] == 4  # the name it exec'd as, not "fs.watch"
    assert _one(recs, type="exit", pid=man["pid"])["comm"] == "claude"
