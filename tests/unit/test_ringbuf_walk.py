"""The pure ring-buffer walker against synthetic ring images (wrap, BUSY, DISCARD, partial, runs)."""

from __future__ import annotations

import struct
from typing import List, Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawbpf.errors import RawBPFError
from rawbpf.ringbuf import iter_records, walk

BUSY = 1 << 31
DISCARD = 1 << 30


class Ring:
    """A ring image the way the kernel fills it; ``image()`` returns the doubly-mapped data area."""

    def __init__(self, size: int, start: int = 0) -> None:
        self.size = size
        self.data = bytearray(size)
        self.cons = start
        self.prod = start

    def put(self, payload: bytes, flags: int = 0) -> int:
        pos = self.prod
        hdr = struct.pack("<II", len(payload) | flags, 0)
        rec = hdr + payload + b"\0" * ((-(len(payload) + 8)) % 8)
        for i, b in enumerate(rec):
            self.data[(pos + i) % self.size] = b
        self.prod += len(rec)
        return pos

    def image(self) -> memoryview:
        return memoryview(bytes(self.data) * 2)


def payloads(ring: Ring, limit: int = 1 << 62) -> Tuple[List[bytes], int, int]:
    image = ring.image()
    runs, new, discarded = walk(image, ring.cons, ring.prod, limit)
    span = image[ring.cons % ring.size: ring.cons % ring.size + (new - ring.cons)].tobytes()
    start = ring.cons % ring.size
    rebased = [(off - start, ln, n, st) for off, ln, n, st in runs]
    # relative=True gives the offsets into the consumed span directly (what RingBuffer hands its sink)
    assert walk(image, ring.cons, ring.prod, limit, relative=True) == (rebased, new, discarded)
    return [bytes(v) for v in iter_records(span, rebased)], new, discarded


def test_empty_ring() -> None:
    r = Ring(64)
    assert walk(r.image(), 0, 0) == ([], 0, 0)


def test_equal_lengths_form_one_run() -> None:
    r = Ring(4096)
    for i in range(10):
        r.put(struct.pack("<Q", i) * 2)
    runs, new, disc = walk(r.image(), 0, r.prod)
    assert runs == [(0, 16, 10, 24)]
    assert new == r.prod == 240 and disc == 0
    got, _, _ = payloads(r)
    assert got == [struct.pack("<Q", i) * 2 for i in range(10)]


def test_length_change_splits_runs_and_padding_is_rounded() -> None:
    r = Ring(4096)
    for p in (b"a" * 5, b"b" * 5, b"c" * 9, b"d" * 5):
        r.put(p)
    runs, new, _ = walk(r.image(), 0, r.prod)
    assert runs == [(0, 5, 2, 16), (32, 9, 1, 24), (56, 5, 1, 16)]
    assert new == 72


def test_stops_at_busy_and_resumes_after_commit() -> None:
    r = Ring(4096)
    r.put(b"x" * 8)
    busy_at = r.put(b"y" * 8, BUSY)
    r.put(b"z" * 8)  # committed, but behind a busy record: must wait
    got, new, _ = payloads(r)
    assert got == [b"x" * 8] and new == busy_at
    struct.pack_into("<I", r.data, busy_at % r.size, 8)  # the producer commits
    r.cons = new
    got, new, _ = payloads(r)
    assert got == [b"y" * 8, b"z" * 8] and new == r.prod


def test_busy_in_the_middle_of_a_long_run() -> None:
    r = Ring(1 << 16)
    for i in range(100):
        r.put(struct.pack("<Q", i), BUSY if i == 77 else 0)
    runs, new, _ = walk(r.image(), 0, r.prod)
    assert runs == [(0, 8, 77, 16)] and new == 77 * 16


def test_discard_is_skipped_and_counted() -> None:
    r = Ring(4096)
    r.put(b"keep1234")
    r.put(b"drop1234", DISCARD)
    r.put(b"keep5678")
    got, new, disc = payloads(r)
    assert got == [b"keep1234", b"keep5678"] and disc == 1 and new == r.prod


def test_discard_inside_an_equal_length_run_breaks_it() -> None:
    r = Ring(4096)
    for i in range(6):
        r.put(bytes([i]) * 8, DISCARD if i == 3 else 0)
    runs, _, disc = walk(r.image(), 0, r.prod)
    assert runs == [(0, 8, 3, 16), (64, 8, 2, 16)] and disc == 1


def test_wrap_uses_the_double_mapping() -> None:
    r = Ring(128, start=1000 * 128 + 96)  # positions are free-running; 96 bytes before the end
    r.put(b"A" * 24)  # 32 bytes: header at 96, ends exactly at the wrap
    r.put(b"B" * 40)  # header at offset 0 after wrap
    r.put(b"C" * 12)
    got, new, _ = payloads(r)
    assert got == [b"A" * 24, b"B" * 40, b"C" * 12] and new == r.prod


def test_record_straddling_the_end_is_contiguous() -> None:
    r = Ring(64, start=48)
    r.put(bytes(range(30)))  # header at 48, payload wraps to offset 14
    got, _, _ = payloads(r)
    assert got == [bytes(range(30))]


def test_limit_bounds_a_drain() -> None:
    r = Ring(4096)
    for i in range(50):
        r.put(struct.pack("<Q", i))
    got, new, _ = payloads(r, limit=20)
    assert len(got) == 20 and new == 20 * 16
    r.cons = new
    got, new, _ = payloads(r)
    assert [struct.unpack("<Q", g)[0] for g in got] == list(range(20, 50))


def test_partial_header_beyond_producer_is_corrupt() -> None:
    r = Ring(256)
    r.put(b"x" * 64)
    with pytest.raises(RawBPFError, match="corrupt record header at position 0"):
        walk(r.image(), 0, 40)  # producer claims less than the record needs


def test_size_must_be_power_of_two() -> None:
    with pytest.raises(RawBPFError, match="power of two"):
        walk(memoryview(bytes(96 * 2)), 0, 0)


def test_zero_length_records() -> None:
    r = Ring(256)
    for _ in range(3):
        r.put(b"")
    runs, new, _ = walk(r.image(), 0, r.prod)
    assert runs == [(0, 0, 3, 8)] and new == 24


record = st.tuples(st.binary(max_size=40), st.sampled_from([0, 0, 0, DISCARD]))


@settings(max_examples=300, deadline=None)
@given(st.lists(record, max_size=40), st.integers(0, 1 << 40), st.integers(-1, 45),
       st.one_of(st.none(), st.integers(1, 50)))
def test_walk_matches_a_naive_model(recs: List[Tuple[bytes, int]], start: int, busy_at: int,
                                    limit: Optional[int]) -> None:
    start &= ~7
    r = Ring(2048, start=start)
    for i, (p, flags) in enumerate(recs):
        r.put(p, flags | (BUSY if i == busy_at else 0))
    want: List[bytes] = []
    discards = 0
    for i, (p, flags) in enumerate(recs):
        if i == busy_at or (limit is not None and len(want) == limit):
            break
        if flags:
            discards += 1
        else:
            want.append(p)
    got, new, disc = payloads(r, limit if limit is not None else 1 << 62)
    assert got == want
    assert disc >= discards - 1 and disc <= discards  # a trailing discard after the limit may be left
    assert new <= r.prod
