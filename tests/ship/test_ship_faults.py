"""Faults, each with exact accounting: what the server received covers every record, and a record arrives
twice only if it was sent after the last acknowledgement before the failure (inside the unacked window)."""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

from tests.ship.servers import (
    Blackhole,
    Fluent,
    ShipProcess,
    all_seqs,
    cursor_seq,
    free_port,
    ship_status,
    wait_for,
    write_log,
)

WINDOW = 400
BATCH = 100


def _url(port: int, **opts: object) -> str:
    q = "&".join(f"{k}={v}" for k, v in {"batch": BATCH, "window": WINDOW, **opts}.items())
    return f"forward://127.0.0.1:{port}?{q}"


def _counts(fluent: Fluent) -> Dict[int, int]:
    return collections.Counter(e["record"]["seq"] for e in fluent.entries() if "seq" in e["record"])


def _check(counts: Dict[int, int], expected: List[int], dup_after: Optional[int] = None) -> None:
    """Every expected seq arrived; duplicates only in (dup_after, dup_after + WINDOW]."""
    missing = sorted(set(expected) - set(counts))
    assert not missing, f"{len(missing)} records never arrived, e.g. {missing[:5]}"
    dups = sorted(s for s, c in counts.items() if c > 1)
    if dup_after is None:
        assert not dups, f"unexpected duplicates {dups[:10]}"
    else:
        assert all(dup_after < s <= dup_after + WINDOW for s in dups), (dup_after, dups[:10], dups[-10:])


class _Writer(threading.Thread):
    """Keeps appending records (in rotating files) until stopped."""

    def __init__(self, log_dir: Path) -> None:
        super().__init__(daemon=True)
        self.log_dir = log_dir
        self.halt = threading.Event()
        self.n = 0

    def run(self) -> None:
        while not self.halt.is_set():
            write_log(self.log_dir, 200, max_bytes=50_000, backups=100, start=self.n)
            self.n += 200
            time.sleep(0.02)

    def stop(self) -> None:
        self.halt.set()
        self.join(10)


def test_destination_down_at_start(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    write_log(log_dir, 2000)
    port = free_port()
    with ShipProcess(log_dir, [_url(port)], extra=["--drain"]) as ship:
        st = wait_for(lambda: [d for d in ship_status(log_dir)
                               if d.get("counters", {}).get("failures", 0) >= 2], 20, "failed connections")
        assert "connection refused" in st[0]["last_error"] and not st[0]["connected"]
        assert cursor_seq(log_dir) == {}  # nothing acknowledged, nothing claimed
        with Fluent(tmp_path, port=port) as fluent:
            assert ship.wait(60) == 0, ship.text()
            _check(_counts(fluent), all_seqs(log_dir))


def test_destination_killed_and_restarted_mid_stream(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    write_log(log_dir, 500)
    port = free_port()
    fluent = Fluent(tmp_path, port=port)
    writer = _Writer(log_dir)
    writer.start()
    received: Dict[int, int] = collections.Counter()
    try:
        with ShipProcess(log_dir, [_url(port)]) as ship:
            wait_for(lambda: len(fluent.entries()) > 3000, 30, "records flowing")
            fluent.kill()
            acked_before = cursor_seq(log_dir)[_url(port)]
            received.update(_counts(fluent))
            time.sleep(1.5)  # records keep coming while the destination is down
            fluent = Fluent(tmp_path, port=port)
            time.sleep(1.0)
            writer.stop()
            expected = all_seqs(log_dir)
            wait_for(lambda: len(fluent.entries()) and max(e["record"]["seq"] for e in fluent.entries()
                                                           if "seq" in e["record"]) >= expected[-1],
                     60, "the rest after the restart")
            st = ship_status(log_dir)[0]
            assert st["counters"]["failures"] >= 1 and st["counters"]["resent"] <= WINDOW, st
            ship.stop()
        received.update(_counts(fluent))
    finally:
        writer.stop()
        fluent.stop()
    assert acked_before is not None
    _check(received, expected, dup_after=acked_before)


def test_ship_sigkilled_and_restarted(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    write_log(log_dir, 500)
    writer = _Writer(log_dir)
    writer.start()
    try:
        with Fluent(tmp_path) as fluent:
            url = _url(fluent.port)
            with ShipProcess(log_dir, [url]) as ship:
                wait_for(lambda: len(fluent.entries()) > 3000, 30, "records flowing")
                ship.kill()
            acked_before = cursor_seq(log_dir)[url]
            assert acked_before is not None
            with ShipProcess(log_dir, [url]) as ship:  # the killed one's lock is free again
                time.sleep(1.0)
                writer.stop()
                expected = all_seqs(log_dir)
                wait_for(lambda: cursor_seq(log_dir)[url] == expected[-1], 60, "the cursor at the end")
                ship.stop()
            counts = _counts(fluent)
    finally:
        writer.stop()
    _check(counts, expected, dup_after=acked_before)


def test_destination_accepts_but_never_acks(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    write_log(log_dir, 1500)
    hole = Blackhole()
    port = hole.port
    try:
        with ShipProcess(log_dir, [_url(port, ack_timeout=1)], extra=["--drain"]) as ship:
            st = wait_for(lambda: [d for d in ship_status(log_dir)
                                   if "no acknowledgement" in (d.get("last_error") or "")],
                          20, "an ack timeout")
            assert st[0]["inflight"] <= WINDOW  # it stopped reading: memory stays bounded
            assert st[0]["counters"]["read"] <= WINDOW + BATCH + 10
            assert cursor_seq(log_dir) == {}  # nothing acknowledged, nothing claimed
            assert hole.received > 0
            hole.close()
            with Fluent(tmp_path, port=port) as fluent:
                assert ship.wait(60) == 0, ship.text()
                _check(_counts(fluent), all_seqs(log_dir))
    finally:
        hole.close()


def test_rotation_faster_than_a_stalled_destination(tmp_path: Path) -> None:
    """The log rotates away records a stalled destination never read: they are counted and announced as
    a lost record with reason unshipped and their seq range; everything else arrives."""
    log_dir = tmp_path / "log"
    write_log(log_dir, 300, max_bytes=20_000, backups=2)
    hole = Blackhole()
    port = hole.port
    try:
        with ShipProcess(log_dir, [_url(port, ack_timeout=60)]) as ship:
            wait_for(lambda: hole.received > 0, 20, "the stalled destination to get data")
            written = 300 + 0
            for _ in range(10):
                write_log(log_dir, 500, max_bytes=20_000, backups=2, start=written)
                written += 500
            on_disk = all_seqs(log_dir)
            hole.close()  # the stalled destination goes away; a working one takes its port
            with Fluent(tmp_path, port=port) as fluent:
                last = on_disk[-1]
                wait_for(lambda: cursor_seq(log_dir).get(_url(port, ack_timeout=60)) == last, 60,
                         "the cursor at the end")
                entries = fluent.entries()
                announced = sum(e["record"]["count"] for e in entries if e["record"]["type"] == "lost")
                wait_for(lambda: ship_status(log_dir)[0]["counters"]["unshipped"] == announced, 10,
                         "the status to count the unshipped records")
                ship.stop()
    finally:
        hole.close()
    got = collections.Counter(e["record"]["seq"] for e in entries if "seq" in e["record"])
    lost = [e for e in entries if e["record"]["type"] == "lost"]
    assert lost and all(e["tag"] == "rawbpf.lost" for e in lost)
    covered = collections.Counter(got)
    for e in lost:
        r = e["record"]
        assert r["reason"] == "unshipped" and r["count"] == r["last_seq"] - r["first_seq"] + 1
        for s in range(r["first_seq"], r["last_seq"] + 1):
            covered[s] += 1
    # exact accounting: every seq of the stream is either received or inside an announced range, once
    assert sorted(covered) == list(range(0, on_disk[-1] + 1)), "gaps or overlaps in the accounting"
    assert max(covered.values()) == 1
    assert set(on_disk) <= set(got)


def test_a_stalled_destination_does_not_hold_back_another(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    write_log(log_dir, 3000)
    with Blackhole() as hole, Fluent(tmp_path) as fluent:
        with ShipProcess(log_dir, [_url(hole.port), _url(fluent.port)]) as ship:
            expected = all_seqs(log_dir)
            wait_for(lambda: len(fluent.entries()) >= len(expected), 30, "the working destination")
            stalled = _url(hole.port)
            wait_for(lambda: {d["url"]: d for d in ship_status(log_dir)}[stalled]["inflight"] == WINDOW,
                     10, "the stalled destination's window to be full")
            ship.stop()
        _check(_counts(fluent), expected)


def test_relp_destination_restarted_mid_stream(tmp_path: Path) -> None:
    """rsyslogd (imrelp) stopped mid-stream and started again on the same port: every record arrives,
    duplicates only after the cursor at the stop. (rsyslogd acknowledges a RELP message once it is queued
    in memory, so it is stopped with SIGTERM, which writes its queue out; SIGKILL would lose what rsyslogd
    itself had queued, which no client can see.)"""
    import json as _json

    from tests.ship.servers import Rsyslog

    log_dir = tmp_path / "log"
    write_log(log_dir, 500)
    rs = Rsyslog(tmp_path)
    port = rs.relp_port
    url = f"relp://127.0.0.1:{port}?batch={BATCH}&window={WINDOW}"
    writer = _Writer(log_dir)
    writer.start()
    got: Dict[int, int] = collections.Counter()
    try:
        with ShipProcess(log_dir, [url]) as ship:
            wait_for(lambda: len(rs.messages()) > 2000, 30, "records flowing")
            rs.stop()
            acked_before = cursor_seq(log_dir)[url]
            got.update(_json.loads(m["msg"])["seq"] for m in rs.messages())
            time.sleep(1.0)
            rs = Rsyslog(tmp_path, tcp_port=free_port(), relp_port=port)
            time.sleep(0.5)
            writer.stop()
            expected = all_seqs(log_dir)
            wait_for(lambda: cursor_seq(log_dir)[url] == expected[-1], 60, "the cursor at the end")
            ship.stop()
        wait_for(lambda: len(rs.messages()) + sum(got.values()) >= len(expected), 20, "rsyslog's file")
        got.update(_json.loads(m["msg"])["seq"] for m in rs.messages())
    finally:
        writer.stop()
        rs.stop()
    assert acked_before is not None
    _check(got, expected, dup_after=acked_before)


def test_damaged_log_region_is_announced(tmp_path: Path) -> None:
    """Records in a damaged part of a log file cannot be shipped: the destination is told which (a lost
    record with reason damaged and their seq range), and every other record arrives."""
    log_dir = tmp_path / "log"
    write_log(log_dir, 2000)
    files = sorted(log_dir.glob("*.mlog"))
    assert len(files) == 1
    data = bytearray(files[0].read_bytes())
    mid = len(data) // 2
    data[mid:mid + 600] = b"\xc1" * 600  # 0xc1 is never used by msgpack
    files[0].write_bytes(bytes(data))
    with Fluent(tmp_path) as fluent:
        with ShipProcess(log_dir, [_url(fluent.port)], extra=["--drain"]) as ship:
            assert ship.wait(60) == 0, ship.text()
        entries = fluent.entries()
    got = collections.Counter(e["record"]["seq"] for e in entries if "seq" in e["record"])
    damaged = [e["record"] for e in entries if e["record"]["type"] == "lost"]
    assert damaged and all(r["reason"] == "damaged" for r in damaged), damaged
    covered = collections.Counter(got)
    for r in damaged:
        for s in range(r["first_seq"], r["last_seq"] + 1):
            covered[s] += 1
    assert sorted(covered) == list(range(0, 2001)) and max(covered.values()) == 1
