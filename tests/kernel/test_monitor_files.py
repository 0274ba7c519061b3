"""claude_monitor's file records in the real kernel: every change of a scripted workload with its absolute
path (relative names, dirfds, '..', a changed cwd, a symlinked dir), sensitive reads kept and ordinary ones
not, repeated writes folded into a count, and a 10 k-file storm accounted for exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
from monitor_support import ROOT, monitor
from patience import patience

from rawbpf.monitor.config import MonitorConfig
from rawbpf.monitor.run import sweep_file_summaries

WORK = ROOT / "tests" / "workload" / "files_work.py"


def run_claude(tmp: Path, *args: str) -> Dict[str, Any]:
    """Run files_work.py through a symlink named ``claude`` (tracked by the default rules)."""
    bindir = tmp / "bin"
    bindir.mkdir(exist_ok=True)
    if not (bindir / "claude").is_symlink():
        (bindir / "claude").symlink_to(WORK)
        (bindir / "python3").symlink_to(os.path.realpath(sys.executable))
    env = dict(os.environ, PATH=f"{bindir}:{os.environ.get('PATH', '')}")
    out = subprocess.run([str(bindir / "claude"), *args], env=env, capture_output=True, text=True,
                         timeout=patience(300))
    assert out.returncode == 0, f"files_work.py {args[0]} exited {out.returncode}: {out.stderr.strip()}"
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def files_of(records: List[Dict[str, Any]], pid: int) -> List[Dict[str, Any]]:
    return [r for r in records if r["type"] == "file" and r["pid"] == pid]


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    tmp = tmp_path_factory.mktemp("files")
    work = tmp / "work"
    work.mkdir()
    with monitor() as mon:
        manifest = run_claude(tmp, "scripted", str(work))
        mon.wait_for(lambda r: r["type"] == "exit" and r["pid"] == manifest["pid"])
        time.sleep(0.1)
        mon.drain()
        return {"manifest": manifest, "records": list(mon.records), "counters": mon.counters()}


def test_every_change_with_its_absolute_path(scripted: Dict[str, Any]) -> None:
    m = scripted["manifest"]
    got: List[Tuple[Any, ...]] = [(r["op"], r["path"], r.get("path2"), r["ret"])
                                  for r in files_of(scripted["records"], m["pid"]) if r["op"] != "read"]
    want = [tuple(op) for op in m["ops"]]
    assert [g for g in got if g in want] == want  # in order, none missing
    extra = [g for g in got if g not in want]
    assert extra == []


def test_file_records_carry_identity_and_details(scripted: Dict[str, Any]) -> None:
    m = scripted["manifest"]
    recs = files_of(scripted["records"], m["pid"])
    assert all(r["root_pid"] == r["pid"] and r["comm"] == "python3" and r["count"] == 1 for r in recs)
    mk = [r for r in recs if r["op"] == "mkdir" and r["path"].endswith("/sub")]
    assert mk[0]["mode"] == 0o750
    ch = [r for r in recs if r["op"] == "chmod"]
    assert ch[0]["mode"] == 0o600
    own = [r for r in recs if r["op"] == "chown"]
    assert (own[0]["owner_uid"], own[0]["owner_gid"]) == (os.getuid(), os.getgid())


def test_sensitive_reads_only(scripted: Dict[str, Any]) -> None:
    m = scripted["manifest"]
    reads = [r for r in files_of(scripted["records"], m["pid"]) if r["op"] == "read"]
    paths = [r["path"] for r in reads]
    for p in m["sensitive"]:
        assert paths.count(p) == 1, (p, paths)
    for p in m["ordinary"]:
        assert p not in paths
    assert all(r["sensitive"] is True and r["ret"] == 0 for r in reads)
    assert set(paths) == set(m["sensitive"])  # nothing Python read while starting up, either
    for pid, path, ret in m["denied"]:  # refused for lack of permission: recorded with the error
        got = [r for r in files_of(scripted["records"], pid) if r["op"] == "read"]
        assert [(r["path"], r["ret"], r["sensitive"], r["uid"]) for r in got] == [(path, ret, True, 65534)]


def test_counters_account_for_every_file_event(scripted: Dict[str, Any]) -> None:
    k = scripted["counters"]["kinds"]["file"]
    assert k["lost"] == 0
    assert k["tracked"] == k["emitted"] + scripted["counters"]["file_summarised"]


def test_untracked_process_changes_nothing_in_the_log(tmp_path: Path) -> None:
    with monitor() as mon:
        code = f"open({str(tmp_path / 'x')!r}, 'w').write('x')"
        p = subprocess.run([sys.executable, "-c", code], check=True)
        assert p.returncode == 0
        time.sleep(0.1)
        mon.drain()
        assert [r for r in mon.records if r["type"] == "file"] == []
        assert mon.counters()["kinds"]["file"]["tracked"] == 0


def test_repeated_writes_are_folded_and_swept(tmp_path: Path) -> None:
    cfg = MonitorConfig(file_summary_ns=60_000_000_000)  # one window for the whole run
    (tmp_path / "w").mkdir()
    with monitor(cfg) as mon:
        man = run_claude(tmp_path, "repeat", str(tmp_path / "w"), "200")
        mon.wait_for(lambda r: r["type"] == "exit" and r["pid"] == man["pid"])
        mon.drain()
        recs = [r for r in files_of(mon.records, man["pid"]) if r["path"] == man["path"]]
        assert [(r["op"], r["count"]) for r in recs] == [("create", 1), ("write", 1)]
        c = mon.counters()
        assert c["file_summarised"] == 198
        # the sweep reports what was folded once the key is quiet (here: a window of 0 from now)
        rest = sweep_file_summaries(mon.coll, mon.files, 0)
        mine = [r for r in rest if r["pid"] == man["pid"]]
        assert [(r["op"], r["path"], r["count"]) for r in mine] == [("write", man["path"], 198)]
        assert sum(r["count"] for r in recs + mine) == man["made"]
        assert list(mon.coll.maps["file_recent"].keys()) == []


def test_write_storm_exact_accounting(tmp_path: Path) -> None:
    """10 k files into a ring too small to hold them while nothing drains: recorded + summarised + lost
    == made, from the records received and the kernel's counters."""
    n = 10_000
    cfg = MonitorConfig(ring_bytes=1 << 20)
    with monitor(cfg) as mon:
        man = run_claude(tmp_path, "storm", str(tmp_path / "out"), str(n))
        time.sleep(0.1)  # it has exited (its exit record may itself be lost: the ring is full)
        mon.drain()
        c = mon.counters()
        out_dir = str(tmp_path / "out") + "/"
        mine = [r for r in files_of(mon.records, man["pid"])
                if r["path"].startswith(out_dir) and r["op"] == "create"]
        k = c["kinds"]["file"]
        assert k["tracked"] == k["emitted"] + c["file_summarised"] + k["lost"]
        assert len(files_of(mon.records, man["pid"])) == k["emitted"]  # every emitted record arrived
        # the storm's own creates: the received ones and the lost ones make up all n
        others = k["tracked"] - n
        assert 0 <= others < 20  # the interpreter's own few (e.g. the output dir)
        assert len(mine) + k["lost"] + c["file_summarised"] >= n
        assert len(mine) <= n and len(set(r["path"] for r in mine)) == len(mine)
        assert k["lost"] > 0  # the small ring did overflow: the accounting was put to the test
