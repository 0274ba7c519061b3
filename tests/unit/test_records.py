"""BTF-driven record decoding against the BTF of committed objects (tests/data/ringbuf, the monitor)."""

from __future__ import annotations

import functools
import io
import struct
import time
from pathlib import Path
from typing import Any, Dict, List

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawbpf.btf import BTF
from rawbpf.elf import load_spec
from rawbpf.errors import BTFError, RawBPFError
from rawbpf.records import (
    RecordDecoder,
    TimeBase,
    common_prefix,
    cstr,
    errno_name,
    find_record_layout,
    format_addr,
    ring_decoder,
    signal_name,
)

DATA = Path(__file__).resolve().parents[1] / "data"
ROOT = DATA.parents[1]


@functools.cache
def btf_of(path: Path) -> BTF:
    spec = load_spec(str(path))
    assert spec.btf is not None
    return spec.btf


@pytest.fixture(scope="module")
def layouts() -> BTF:
    return btf_of(DATA / "ringbuf" / "layouts.o")


@pytest.fixture(scope="module")
def flood() -> BTF:
    return btf_of(DATA / "ringbuf" / "flood.o")


def slot(payload: bytes) -> bytes:
    """One ring slot: header + payload + padding to 8."""
    return struct.pack("<II", len(payload), 0) + payload + bytes(-len(payload) % 8)


def sample_bytes(**kw: Any) -> bytes:
    """struct sample from layouts.c, laid out by hand (the decoder must agree with C's layout)."""
    b = bytearray(160)
    struct.pack_into("<QbBhH2xi4xq", b, 0, kw.get("ts", 5), -3, 250, -300, 60000, -70000, -(1 << 40))
    struct.pack_into("<?", b, 32, True)
    struct.pack_into("<I", b, 36, 7)  # COLOR_BLUE
    b[40:48] = b"abc\0zzzz"
    b[48:52] = b"\x01\x02\x03\x04"
    struct.pack_into("<iiii", b, 52, 1, -2, 3, -4)
    struct.pack_into("<6H", b, 68, 1, 2, 3, 4, 5, 6)
    struct.pack_into("<f", b, 80, 1.5)
    struct.pack_into("<d", b, 88, -2.25)
    struct.pack_into("<II", b, 96, 11, 12)  # seq, type
    word = 9 | (300 << 4) | (0x7FFFF << 13)
    struct.pack_into("<I", b, 104, word)
    struct.pack_into("<I", b, 108, 0b10110)  # neg: 5 bits, -10
    struct.pack_into("<I", b, 112, 6)  # path_len
    b[116:128] = b"\0abstract\0\0\0"
    struct.pack_into("<II", b, 128, 21, 22)
    struct.pack_into("<I", b, 136, 0x04030201)
    return bytes(b)


def test_single_struct_named_after_the_ring(layouts: BTF) -> None:
    dec = ring_decoder(layouts, "samples", clock="monotonic")
    assert dec.single is not None and dec.single.size == 144
    rec = dec.decode(sample_bytes()[:144])
    off = dec.time_base.offset
    assert list(rec)[:2] == ["type", "ts"]
    assert rec == {
        "type": "sample", "ts": 5 + off, "s8": -3, "u8": 250, "s16": -300, "u16": 60000, "s32": -70000,
        "s64": -(1 << 40), "flag": True, "color": "blue", "name": "abc", "raw": b"\x01\x02\x03\x04",
        "pts": [{"x": 1, "y": -2}, {"x": 3, "y": -4}], "grid": [[1, 2, 3], [4, 5, 6]], "f": 1.5, "d": -2.25,
        "seq_": 11, "type_": 12, "lo": 9, "mid": 300, "hi": 0x7FFFF, "neg": -10, "path_len": 6,
        "path": "\0abstr", "inner_a": 21, "inner_b": 22,
        "either": {"as_u32": 0x04030201, "as_bytes": b"\x01\x02\x03\x04"},
    }


def test_discriminated_union(layouts: BTF) -> None:
    dec = ring_decoder(layouts, "msgs")
    assert set(dec.kinds) == {1, 2}
    op = struct.pack("<II8sI", 1, 42, b"f.txt\0\0\0", 0o644)
    cl = struct.pack("<IIii", 2, 43, 3, -9) + bytes(4)
    assert dec.decode(op) == {"type": "open", "pid": 42, "file": "f.txt", "mode": 0o644}
    assert dec.decode(cl) == {"type": "close", "pid": 43, "fd": 3, "ret": -9}
    raw = dec.decode(struct.pack("<II", 99, 1))
    assert raw["type"] == "raw" and dec.undecoded == 1


def test_tagged_family_runs_and_seq(flood: BTF) -> None:
    dec = ring_decoder(flood, "events", clock="boottime")
    assert {d.kind for d in dec.kinds.values()} == {"tick", "note"}
    tick = struct.pack("<IIQQII", 1, 1, 1000, 7, 99, 0)
    note = struct.pack("<IIQQ16s32s", 2, 3, 2000, 8, b"comm\0", b"hi!xx")
    buf = slot(tick) * 3 + slot(note) + slot(tick)
    s1, s2 = len(slot(tick)), len(slot(note))
    runs = [(0, len(tick), 3, s1), (3 * s1, len(note), 1, s2), (3 * s1 + s2, len(tick), 1, s1)]
    now = time.time_ns()
    out = dec.decode_runs(buf, runs, seq=100, now=now)
    assert [r["seq"] for r in out] == [100, 101, 102, 103, 104]
    assert [r["type"] for r in out] == ["tick"] * 3 + ["note", "tick"]
    assert list(out[0])[:3] == ["seq", "ts", "type"]
    assert out[3]["text"] == "hi!" and out[3]["comm"] == "comm"
    assert out[0]["ts"] == 1000 + dec.time_base.offset
    booted = now - time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    assert abs(out[0]["ts"] - booted) < 10**10  # a boot-relative 1 µs stamp lands at boot time


def test_equal_length_run_of_mixed_kinds_splits_by_type(layouts: BTF) -> None:
    dec = ring_decoder(layouts, "msgs")
    op = struct.pack("<II8sI", 1, 1, b"a", 1)
    cl = struct.pack("<IIii", 2, 2, 3, 4) + bytes(4)
    buf = slot(op) + slot(cl) + slot(op)
    out = dec.decode_runs(buf, [(0, 20, 3, 32)], seq=0)
    assert [r["type"] for r in out] == ["open", "close", "open"]


def test_short_records_are_zero_filled_and_len_fields_bound_strings(flood: BTF) -> None:
    dec = ring_decoder(flood, "events")
    note = struct.pack("<IIQQ16s", 2, 4, 5, 6, b"x") + b"abcdef"  # text sent partly
    out = dec.decode_runs(slot(note), [(0, len(note), 1, len(slot(note)))], seq=0)
    assert out[0]["text"] == "abcd" and out[0]["n"] == 6


def test_unpack_run_gives_tuples_in_field_order(flood: BTF) -> None:
    dec = RecordDecoder.from_btf(flood, "rec")
    rec = struct.pack("<QQII40s", 1, 2, 3, 4, b"p")
    buf = slot(rec) * 4
    tuples = dec.unpack_run(buf, 0, 4, len(rec), len(slot(rec)))
    assert tuples == [(1, 2, 3, 4)] * 4  # `pad` is padding: skipped


def test_monitor_object_is_a_tagged_family() -> None:
    btf = btf_of(ROOT / "programs" / "claude_monitor.o")
    lay = find_record_layout(btf, "events")
    assert lay is not None and lay.enum_name == "rec_type"
    assert {k for k, _ in lay.family.values()} >= {"exec", "fork", "exit", "connect", "rename"}
    dec = ring_decoder(btf, "events")
    fork = dec.kinds[2]
    assert fork.fields[:3] == ["flags", "ts", "pid"] and "type" not in fork.fields


def test_record_type_option_and_errors(layouts: BTF) -> None:
    assert ring_decoder(layouts, "whatever", "point").single is not None
    with pytest.raises(BTFError, match="record type 'nope': no such struct"):
        ring_decoder(layouts, "samples", "nope")
    with pytest.raises(BTFError, match="not a struct"):
        RecordDecoder(layouts, layouts.get("color").id)
    assert ring_decoder(None, "x").raw_only


def test_flexible_array_and_raw_fallback(layouts: BTF) -> None:
    dec = ring_decoder(layouts, "nothing_matches_this_ring")
    # no struct named after the ring, and layouts.o's only enum family does not tag structs → raw
    assert dec.raw_only
    rec = dec.decode(b"\x01\x02")
    assert rec["type"] == "raw" and rec["data"] == b"\x01\x02"
    blob = RecordDecoder.from_btf(layouts, "blob")
    assert blob.decode(struct.pack("<I", 3) + b"xyz") == {"type": "blob", "size": 3, "data": b"xyz"}
    rec = struct.pack("<I", 2) + b"ab"
    out = blob.decode_run(slot(rec), 0, 1, len(rec), len(slot(rec)), seq=0)
    assert out[0]["data"] == b"ab" and out[0]["seq"] == 0


def test_time_base_auto_picks_the_nearest_clock() -> None:
    tb = TimeBase("auto")
    boot = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    off = tb.settle(boot)
    assert abs(boot + off - time.time_ns()) < 10**9
    with pytest.raises(RawBPFError, match="unknown clock"):
        TimeBase("tai")


def test_value_helpers() -> None:
    assert format_addr("inet", bytes([160, 79, 104, 10])) == "160.79.104.10"
    assert format_addr(10, bytes.fromhex("26076bc0" + "00" * 11 + "01")) == "2607:6bc0::1"
    assert format_addr(1, b"\x01") == "01"
    assert errno_name(-111) == "ECONNREFUSED" and errno_name(0) == "" and errno_name(99999) == "99999"
    assert signal_name(9) == "SIGKILL" and signal_name(0) == "" and signal_name(200) == "200"
    assert cstr(b"ab\0cd") == "ab" and cstr(b"\xff\xfe") == "\ufffd\ufffd" and cstr(b"full") == "full"
    assert common_prefix(["REC_EXEC", "REC_EXIT"]) == "REC_" and common_prefix(["A_B"]) == "A_"
    assert common_prefix(["EXEC", "EXIT"]) == ""


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_decoders_never_crash_on_any_bytes(data: bytes) -> None:
    for btf, ring in ((btf_of(DATA / "ringbuf" / "flood.o"), "events"),
                      (btf_of(DATA / "ringbuf" / "layouts.o"), "msgs"),
                      (btf_of(DATA / "ringbuf" / "layouts.o"), "samples")):
        dec = _decoders.setdefault(ring + str(id(btf)), ring_decoder(btf, ring))
        rec = dec.decode(data)
        assert isinstance(rec, dict) and isinstance(rec["type"], str)
        out = dec.decode_runs(slot(data), [(0, len(data), 1, len(slot(data)))], seq=5)
        assert out[0]["seq"] == 5


_decoders: Dict[str, Any] = {}


def _unpack_all(data: bytes) -> List[Dict[str, Any]]:
    return list(msgpack.Unpacker(io.BytesIO(data), raw=False))


def test_column_encoder_only_for_all_numeric_structs(flood: BTF, layouts: BTF) -> None:
    fam = ring_decoder(flood, "events")
    assert {d.kind: d.columns is not None for d in fam.kinds.values()} == {"tick": True, "note": False}
    assert ring_decoder(layouts, "samples").single.columns is None  # type: ignore[union-attr]
    assert RecordDecoder.from_btf(layouts, "point").columns is not None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1, 2, 3]), st.binary(min_size=72, max_size=72)), max_size=30),
       st.integers(0, 1 << 40))
def test_packed_runs_unpack_to_the_decoded_dicts(recs: List[Any], seq: int) -> None:
    """The column encoder (ticks) and the dict path (notes, unknown kinds) give identical records."""
    dec = _decoders.setdefault("fam", ring_decoder(btf_of(DATA / "ringbuf" / "flood.o"), "events",
                                                   clock="boottime"))
    buf = b""
    runs = []
    for kind, body in recs:
        size = 32 if kind == 1 else 72
        payload = bytearray(struct.pack("<I", kind) + body[4:size])
        payload[15] &= 0x3F  # kernel stamps stay below 2**62 ns
        s = slot(bytes(payload))
        if runs and runs[-1][1] == size:
            o, ln, c, stt = runs[-1]
            runs[-1] = (o, ln, c + 1, stt)
        else:
            runs.append((len(buf), size, 1, len(s)))
        buf += s
    now = time.time_ns()
    want = dec.decode_runs(buf, runs, seq, now)
    got = _unpack_all(dec.pack_runs(buf, runs, seq, now))
    assert got == want
    assert [list(g) for g in got] == [list(w) for w in want]


def test_packed_rec_runs_match_and_use_full_width_ints(flood: BTF) -> None:
    dec = ring_decoder(flood, "events", "rec", clock="monotonic")
    rec = struct.pack("<QQII40s", 1, 2, 3, 4, b"")
    buf = slot(rec) * 3
    data = dec.pack_runs(buf, [(0, len(rec), 3, len(slot(rec)))], 5, now=1)
    assert _unpack_all(data) == dec.decode_runs(buf, [(0, len(rec), 3, len(slot(rec)))], 5, now=1)
    assert len(data) == 3 * len(data) // 3 and data[:1] == b"\x86"


def test_long_numeric_arrays(layouts: BTF) -> None:
    dec = RecordDecoder.from_btf(layouts, "histo")
    body = (struct.pack("=64I", *range(64)) + struct.pack("=20q", *range(-10, 10))
            + struct.pack("=17d", *[i / 2 for i in range(17)]) + struct.pack("=3H", 7, 8, 9))
    rec = dec.decode(body.ljust(dec.size, b"\0"))
    assert rec["buckets"] == list(range(64)) and rec["sums"] == list(range(-10, 10))
    assert rec["avg"] == [i / 2 for i in range(17)] and rec["few"] == [7, 8, 9]
