"""Reconnect backoff: 0.5 s doubling to 30 s, each delay jittered by ±25 %, reset by an acknowledgement."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

from rawbpf.ship.cursor import read_cursor
from rawbpf.ship.engine import BACKOFF_MAX, BACKOFF_MIN, Worker, backoff_delay
from rawbpf.ship.protocols import Batch
from rawbpf.ship.url import parse_destination


def test_jitter_stays_within_a_quarter() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(4.0, rng) for _ in range(2000)]
    assert 3.0 <= min(delays) < 3.1 and 4.9 < max(delays) <= 5.0
    assert len({round(d, 3) for d in delays}) > 1000  # spread out, not in step


def test_backoff_doubles_to_the_cap_and_an_ack_resets_it(tmp_path: Path) -> None:
    w = Worker(parse_destination("forward://127.0.0.1:9"), str(tmp_path), stop=threading.Event())
    bases = []
    for _ in range(12):
        bases.append(w.backoff)
        before = time.monotonic()
        w._fail("connect: connection refused")
        wait = w.next_attempt - before
        assert 0.75 * bases[-1] - 0.01 <= wait <= 1.25 * bases[-1] + 0.01
    assert bases[:6] == [BACKOFF_MIN * 2 ** i for i in range(6)] and bases[6:] == [BACKOFF_MAX] * 6
    assert w.last_error == "connect: connection refused" and w.counters["failures"] == 12
    w._advance()  # nothing acknowledged: unchanged
    assert w.backoff == BACKOFF_MAX
    w.cursor_file.lock()
    w.inflight.append(Batch(units=[b""], count=3, last_seq=41, file="rawbpf-x.mlog", sent_at=1.0))
    w.inflight_records = 3
    w._advance()  # an acknowledged batch: the cursor moves, the backoff starts over
    assert w.backoff == BACKOFF_MIN and w.cursor.seq == 41 and w.counters["acked"] == 3
    assert read_cursor(w.cursor_file.path).seq == 41
    w.close()
