"""Pure parts of the perf buffer reader: splitting perf records and framing samples like ring records."""

from __future__ import annotations

import struct

from rawbpf.perfbuf import frame, parse_records


def test_parse_and_frame_are_pure() -> None:
    sample = struct.pack("<IHHI", 9, 0, 20, 8) + b"abcdefgh"
    lost = struct.pack("<IHHQQ", 2, 0, 24, 1, 7)
    samples, n, used = parse_records(sample + lost + sample[:10])
    assert samples == [b"abcdefgh"] and n == 7 and used == 44
    buf, runs = frame([b"abc", b"xyz", b"longer!!!"])
    assert runs == [(0, 3, 2, 16), (32, 9, 1, 24)] and len(buf) == 56
