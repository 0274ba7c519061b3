"""Ring-buffer reader against the real kernel: floods, exact loss accounting, wrap, NO_WAKEUP, pinned maps."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from patience import patience

from rawbpf.collection import Collection, load
from rawbpf.errors import RawBPFError
from rawbpf.records import ring_decoder
from rawbpf.ringbuf import RingBuffer, Run

FLOOD = Path(__file__).resolve().parents[1] / "data" / "ringbuf" / "flood.o"
BPF_RB_NO_WAKEUP = 1


@pytest.fixture()
def flood() -> Iterator[Collection]:
    with load(str(FLOOD), programs=["flood"]) as coll:
        yield coll


def collector(coll: Collection) -> tuple:
    dec = ring_decoder(coll.spec.btf, "events")
    out: List[Dict[str, Any]] = []

    def sink(buf: Any, runs: List[Run]) -> None:
        out.extend(dec.decode_runs(buf, runs, len(out)))

    return out, sink


def test_flood_delivered_plus_dropped_equals_attempts(flood: Collection) -> None:
    out, sink = collector(flood)
    with RingBuffer(flood.maps["events"], sink=sink) as rb:
        prog = flood.programs["flood"]
        for _ in range(30):
            prog.test_run(data_in=bytes(64), repeat=333)  # far more than the 4 KiB ring holds
            rb.drain()
        assert rb.drain() == 0
        attempts = flood.variables["attempts"]
        drops = flood.variables["events_drops"]
    assert attempts == 30 * 333
    assert drops > 0 and len(out) > 0
    assert len(out) + drops == attempts
    # the ring wrapped many times and every delivered record is intact and in order
    ns = [r["n"] for r in out]
    assert ns == sorted(ns) and len(set(ns)) == len(ns)
    for r in out:
        assert r["type"] == ("note" if r["n"] & 1 else "tick")
        if r["type"] == "note":
            assert r["text"] == "hello" and r["comm"]


def test_concurrent_consumer_sees_busy_records_and_wraps(flood: Collection) -> None:
    out, sink = collector(flood)
    stop = threading.Event()
    rb = RingBuffer(flood.maps["events"], sink=sink)

    def consume() -> None:
        while not stop.is_set():
            rb.poll(5)
        while rb.drain():
            pass

    t = threading.Thread(target=consume)
    t.start()
    try:
        prog = flood.programs["flood"]
        for _ in range(200):
            prog.test_run(data_in=bytes(64), repeat=50)
            deadline = time.monotonic() + patience(2)
            while rb.available() and time.monotonic() < deadline:  # let the consumer catch up (busy hosts)
                time.sleep(0.001)
    finally:
        stop.set()
        t.join()
        rb.close()
    attempts = flood.variables["attempts"]
    drops = flood.variables["events_drops"]
    assert attempts == 200 * 50
    assert len(out) + drops == attempts
    assert rb.records == len(out) and rb.drains > 1
    assert len(out) > 4096 // 48  # more than one ring's worth: positions wrapped


def test_callback_mode_and_pinned_map_by_path(flood: Collection, pin_dir: Path) -> None:
    pin_dir.mkdir()
    path = pin_dir / "events"
    flood.maps["events"].pin(str(path))
    try:
        got: List[bytes] = []
        with RingBuffer(str(path), callback=lambda mv: got.append(bytes(mv))) as rb:
            assert rb.name == "events" and rb.size == 4096
            flood.programs["flood"].test_run(data_in=bytes(64), repeat=3)
            assert rb.drain() == 3
        assert [len(g) for g in got] == [32, 72, 32]  # tick, note, tick
        assert rb.closed
    finally:
        os.unlink(path)


def test_not_a_ring_buffer_is_a_clear_error(flood: Collection) -> None:
    with pytest.raises(RawBPFError, match=r"ring buffer 'flood\.bss': map type is array, not ringbuf"):
        RingBuffer(flood.maps["flood.bss"], callback=print)
    with pytest.raises(RawBPFError, match="exactly one of sink or callback"):
        RingBuffer(flood.maps["events"])


def test_no_wakeup_records_are_served_by_the_timer_drain() -> None:
    consts = {"target_tgid": os.getpid(), "per_call": 4, "submit_flags": BPF_RB_NO_WAKEUP}
    with load(str(FLOOD), programs=["on_getppid"], constants=consts) as coll:
        coll.attach_all()
        out, sink = collector(coll)
        with RingBuffer(coll.maps["events"], sink=sink) as rb:
            for _ in range(10):
                os.getppid()
            # nothing woke the consumer: epoll stays quiet, yet the timer-driven drain finds every record
            assert rb.wait(50) is False
            assert rb.poll(50) == 40
            assert coll.variables["events_drops"] == 0
            for _ in range(2000):
                os.getppid()
            while rb.poll(20):
                pass
        assert len(out) + coll.variables["events_drops"] == coll.variables["attempts"] == 4 * 2010


def test_adaptive_wakeup_wakes_the_waiter() -> None:
    consts = {"target_tgid": os.getpid(), "per_call": 1, "submit_flags": 0}
    with load(str(FLOOD), programs=["on_getppid"], constants=consts) as coll:
        coll.attach_all()
        with RingBuffer(coll.maps["events"], callback=lambda mv: None) as rb:
            os.getppid()
            assert rb.wait(1000) is True
            assert rb.drain() == 1


def test_a_sink_that_raises_gets_the_same_records_again(flood: Collection) -> None:
    calls: List[int] = []

    def sink(buf: Any, runs: List[Run]) -> None:
        calls.append(sum(r[2] for r in runs))
        if len(calls) == 1:
            raise ValueError("not now")

    with RingBuffer(flood.maps["events"], sink=sink) as rb:
        flood.programs["flood"].test_run(data_in=bytes(64), repeat=5)
        with pytest.raises(ValueError):
            rb.drain()
        assert rb.available() > 0
        assert rb.drain() == 5 and rb.available() == 0
    assert calls == [5, 5]
