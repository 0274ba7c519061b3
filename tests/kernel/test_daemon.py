"""The daemon against the real kernel: every ring of a loaded object into the log, losses accounted exactly,
and ``rawbpf load`` + ``rawbpf tail --json`` end to end with SIGHUP and SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from load_support import wait_attached
from patience import patience

from rawbpf.collection import load
from rawbpf.daemon import Daemon, DaemonOptions, find_drop_counters
from rawbpf.logfile import LogReader

ROOT = Path(__file__).resolve().parents[2]
FLOOD = ROOT / "tests" / "data" / "ringbuf" / "flood.o"


def read_log(d: Path) -> List[Dict[str, Any]]:
    with LogReader(str(d)) as r:
        recs = list(r.records())
        assert r.torn == 0 and r.gaps == 0
    return recs


def test_daemon_logs_every_record_or_its_loss(tmp_path: Path) -> None:
    consts = {"target_tgid": os.getpid(), "per_call": 64}
    statuses: List[Dict[str, Any]] = []
    with load(str(FLOOD), programs=["on_getppid"], constants=consts) as coll:
        coll.attach_all()
        counters = find_drop_counters(coll, ["events", "samples"])
        assert [(c.source, c.ring) for c in counters] == [("events_drops", "events")]
        opts = DaemonOptions(log_dir=str(tmp_path), flush_interval=0.05, poll_interval=0.02,
                             status=statuses.append, status_interval=0.1, perf_pages=1,
                             header={"test": "daemon"})
        with Daemon(coll, opts) as d:
            assert set(d.rings) == {"events"} and set(d.perf) == {"samples"}
            t = threading.Thread(target=d.run, kwargs={"signals": False})
            t.start()
            # a CPU's perf losses are reported before that CPU's next sample: produce from one CPU
            affinity = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {min(affinity)})
            try:
                for i in range(3000):  # 64 records per call into a 4 KiB ring: most are dropped
                    os.getppid()
                    if i % 500 == 0:
                        time.sleep(0.05)
                # the kernel reports a perf buffer's losses just before its next sample that fits: nudge it
                for _ in range(100):
                    time.sleep(0.05)
                    perf = d.status()["rings"]["samples"]["records"] + d.lost_perf
                    if perf == coll.variables["sample_attempts"]:
                        break
                    os.getppid()
                time.sleep(0.2)
            finally:
                os.sched_setaffinity(0, affinity)
                d.request_stop()
                t.join(30)
            final = d.status()
        attempts = coll.variables["attempts"]
        drops = coll.variables["events_drops"]
        sample_attempts = coll.variables["sample_attempts"]
    recs = read_log(tmp_path)
    header = recs[0]
    assert header["type"] == "header" and header["object"] == "flood" and header["test"] == "daemon"
    assert sorted(header["rings"]) == ["events", "samples"]
    seqs = [r["seq"] for r in recs]
    assert seqs == list(range(len(recs)))
    events = [r for r in recs if r["type"] in ("tick", "note")]
    lost = [r for r in recs if r["type"] == "lost"]
    kernel_lost = sum(r["count"] for r in lost if r["reason"] == "kernel")
    perf_lost = sum(r["count"] for r in lost if r["reason"] == "perf buffer")
    assert kernel_lost == drops > 0
    for r in lost:
        if r["reason"] == "kernel":
            assert r["source"] == "events_drops" and r["ring"] == "events"
    # ring records + their counted loss == attempts; perf samples + their loss == sample attempts
    assert final["rings"]["events"]["records"] + kernel_lost == attempts == sample_attempts * 64
    assert final["rings"]["samples"]["records"] + perf_lost == sample_attempts >= 3000
    assert len(events) == final["records"]
    assert statuses and statuses[-1]["records"] == final["records"]
    assert any(r["type"] == "note" and r["text"] == "hello" for r in events)
    assert all(abs(r["ts"] - time.time_ns()) < 120 * 10**9 for r in events[:50])


def _tail_json(log_dir: Path, *extra: str) -> List[Dict[str, Any]]:
    cmd = [sys.executable, "-m", "rawbpf", "tail", "--json", "--log-dir", str(log_dir), *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def accounted(recs: List[Dict[str, Any]]) -> int:
    """Records logged plus records the log says were lost."""
    return sum(1 for r in recs if r["type"] in ("tick", "note")) + sum(
        r["count"] for r in recs if r["type"] == "lost")


def _wait_for(pred: Any, timeout: float = patience(20.0), seen: Any = None) -> None:
    """Until ``pred()``; a timeout fails naming what ``seen()`` says was there."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time" + (f": {seen()}" if seen is not None else ""))


def _by_type(recs: List[Dict[str, Any]]) -> Dict[str, int]:
    """How many records of each type (lost records by reason, with their counts summed)."""
    out: Dict[str, int] = {}
    for r in recs:
        key = f"lost/{r.get('reason')}" if r["type"] == "lost" else r["type"]
        out[key] = out.get(key, 0) + (r["count"] if r["type"] == "lost" else 1)
    return out


def test_rawbpf_load_and_tail_end_to_end(tmp_path: Path, pin_dir: Path) -> None:
    log_dir = tmp_path / "log"
    cmd = [sys.executable, "-m", "rawbpf", "load", str(FLOOD), "--pin-dir", str(pin_dir), "--log-dir",
           str(log_dir), "--set", f"target_tgid={os.getpid()}", "--set", "per_call=2",
           "--flush-interval", "0.05", "--max-bytes", "4096", "--backups", "50"]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: Optional[str] = None
    try:
        # Calls start at the line saying the programs are attached (the pin and log directories exist, as
        # locks, before that): the daemon's readers, the perf event array's buffers among them, are open by
        # then, so each of the calls' records is logged or counted as lost.
        ready = wait_attached(p)
        for _ in range(100):
            os.getppid()
        _wait_for(lambda: accounted(_tail_json(log_dir)) >= 300, seen=lambda: _by_type(_tail_json(log_dir)))
        files_before = len(list(log_dir.iterdir()))
        p.send_signal(signal.SIGHUP)  # logrotate: a new file, nothing lost
        _wait_for(lambda: len(list(log_dir.iterdir())) > files_before)
        for _ in range(50):
            os.getppid()
        time.sleep(0.3)
        p.send_signal(signal.SIGTERM)
        rest, err = p.communicate(timeout=patience(30))
        out = "\n".join(ready) + "\n" + rest
        assert p.returncode == 0, err
    finally:
        if p.poll() is None:  # stopped as a user would first: a kill leaves its pins behind
            p.send_signal(signal.SIGTERM)
            try:
                p.communicate(timeout=patience(30))
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
    assert "logging samples, events" in out or "logging events, samples" in out
    m = re.search(r"logged (\d+) records; lost: kernel (\d+), perf (\d+), log (\d+)", out)
    assert m is not None
    logged, k_lost, p_lost, l_lost = map(int, m.groups())
    assert logged + k_lost + p_lost == 150 * 3 and l_lost == 0  # 2 ring records + 1 perf sample per call
    assert not (pin_dir / "flood").exists()  # detached and unpinned on the way out
    recs = _tail_json(log_dir)
    assert accounted(recs) == 150 * 3
    ring_lost = sum(r["count"] for r in recs if r["type"] == "lost" and r["reason"] == "kernel")
    notes = [r for r in recs if r["type"] == "note"]
    assert len(notes) * 2 <= 300 - ring_lost + 2 and notes and notes[0]["text"] == "hello"
    seqs = [r["seq"] for r in _tail_json(log_dir, "--type", "header", "--type", "tick", "--type", "note",
                                         "--type", "lost")]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    headers = _tail_json(log_dir, "--type", "header")
    assert len(headers) >= 2 and all(h["object"] == "flood" for h in headers)
    for f in log_dir.iterdir():
        assert (f.stat().st_mode & 0o777) == 0o600


def test_bad_record_type_fails_cleanly(tmp_path: Path, pin_dir: Path) -> None:
    log_dir = tmp_path / "log"
    for bad, msg in (("nope", "rawbpf: record type 'nope': no such struct in the object's BTF"),
                     ("bogus=rec", "rawbpf: --record-type bogus=…: no ring buffer named 'bogus'")):
        r = subprocess.run([sys.executable, "-m", "rawbpf", "load", str(FLOOD), "--pin-dir", str(pin_dir),
                            "--log-dir", str(log_dir), "--record-type", bad],
                           capture_output=True, text=True, cwd=ROOT, timeout=patience(60))
        assert r.returncode == 1 and r.stderr.strip().splitlines() == [msg]
        assert not log_dir.exists()
        assert not (pin_dir / "flood").exists()


def test_record_type_option_decodes_a_ring_as_another_struct(tmp_path: Path) -> None:
    consts = {"target_tgid": os.getpid(), "per_call": 1}
    with load(str(FLOOD), programs=["on_getppid"], constants=consts) as coll:
        coll.attach_all()
        opts = DaemonOptions(log_dir=str(tmp_path), rings=["events"], record_types={"events": "ev_tick"})
        with Daemon(coll, opts) as d:
            os.getppid()
            os.getppid()
            d.step(0.1)
            d.writer.flush()
    recs = [r for r in read_log(tmp_path) if r["type"] != "header"]
    assert [r["type"] for r in recs] == ["ev_tick", "ev_tick"]
    assert [r["n"] for r in recs] == [0, 1]


def test_drop_counter_convention_on_the_monitor_object() -> None:
    """claude_monitor keeps `lost` per record kind in a per-CPU `counters` map: found, summed, reported."""
    from rawbpf.btf import Kind

    with load(str(ROOT / "programs" / "claude_monitor.o")) as coll:
        counters = find_drop_counters(coll, ["events"])
        assert [(c.source, c.ring) for c in counters] == [("counters.lost", "events")]
        c = counters[0]
        assert c.delta() == 0
        btf = coll.spec.btf
        assert btf is not None
        m = coll.maps["counters"]
        kc = btf.find("kind_counters", Kind.STRUCT)
        assert kc is not None
        lost_off = next(x.bits_offset // 8 for x in kc.members if x.name == "lost")
        value = bytearray(m.value_size)
        for kind in (1, 4):  # exec and connect lost 3 each, on every CPU
            off = kind * kc.size + lost_off
            value[off:off + 8] = (3).to_bytes(8, "little")
        m.update(0, [bytes(value)] * m.ncpus)
        assert c.delta() == 6 * m.ncpus
        assert c.delta() == 0
