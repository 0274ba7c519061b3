"""DNS over TCP from the monitor's captures: a length-prefixed stream split into calls as resolvers split it
(glibc: two queries in one writev, an answer's length and body in separate reads; dig: prefix and message in
one read), cut by the capture limit, ended by an exit or a reused fd; all pure (no root, no kernel)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from hypothesis import given, settings
from hypothesis import strategies as st

from rawbpf.monitor.dns import build_query
from rawbpf.monitor.dnsstream import TcpDnsStreams, TcpMessage
from rawbpf.monitor.shape import Catalog, Shaper
from rawbpf.monitor.shape_files import FileShaping

OBJ = Path(__file__).resolve().parents[2] / "programs" / "claude_monitor.o"


def _prefixed(msg: bytes) -> bytes:
    return struct.pack("!H", len(msg)) + msg


def _answer(qname: str, addr: Tuple[int, int, int, int], ident: int = 7, extra: int = 0) -> bytes:
    """A response with one A record (and ``extra`` bytes of a TXT record, to make it long)."""
    name = b"".join(bytes([len(p)]) + p.encode() for p in qname.split(".")) + b"\0"
    an = 2 if extra else 1
    out = struct.pack("!6H", ident, 0x8180, 1, an, 0, 0) + name + struct.pack("!HH", 1, 1)
    out += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes(addr)
    if extra:
        out += b"\xc0\x0c" + struct.pack("!HHIH", 16, 1, 60, extra) + b"t" * extra
    return out


def _split(stream: bytes, cuts: List[int]) -> List[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    return [stream[a:b] for a, b in zip(points, points[1:])]


def _feed_all(s: TcpDnsStreams, pieces: List[bytes], limit: Optional[int] = None) -> List[TcpMessage]:
    out: List[TcpMessage] = []
    for p in pieces:
        data = p if limit is None else p[:limit]
        out += s.feed("k", data, len(p))
    return out


messages = st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(messages, st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_any_split_of_a_stream_yields_the_same_messages(msgs: List[bytes], cuts: List[int]) -> None:
    stream = b"".join(_prefixed(m) for m in msgs)
    s = TcpDnsStreams()
    got = _feed_all(s, _split(stream, cuts))
    assert [(m.data, m.length, m.cut) for m in got] == [(m, len(m), False) for m in msgs]
    assert len(s) == 0  # nothing held once every message is complete


@settings(max_examples=300, deadline=None)
@given(messages, st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
       st.integers(min_value=1, max_value=64))
def test_captures_cut_by_the_limit_never_invent(msgs: List[bytes], cuts: List[int], limit: int) -> None:
    """Calls of whole messages (as clients make them), each captured only up to ``limit`` bytes: every
    message returned is the start of a real one, in order, with its real length, cut unless it is all
    there; every message captured whole by a call made while the stream was in step is returned (after
    uncaptured bytes hid a message's start, it resumes at a call of whole messages); the memory held stays
    within the limit."""
    ends = [0]
    for m in msgs:
        ends.append(ends[-1] + 2 + len(m))
    stream = b"".join(_prefixed(m) for m in msgs)
    points = sorted({ends[c % len(ends)] for c in cuts} | {0, len(stream)})
    calls = [(stream[a:b], [i for i in range(len(msgs)) if a <= ends[i] < b])
             for a, b in zip(points, points[1:])]
    s = TcpDnsStreams(limit=limit)
    got: List[TcpMessage] = []
    whole = set()
    for call, idx in calls:
        held = s.held.get("k")
        if held is None or not held.lost:
            whole |= {i for i in idx if ends[i + 1] <= ends[idx[0]] + limit}
        got += s.feed("k", call[:limit], len(call))
        assert all(len(st.body) <= limit for st in s.held.values())
    i = 0
    for m in got:
        while i < len(msgs) and not (msgs[i].startswith(m.data) and len(msgs[i]) == m.length):
            i += 1
        assert i < len(msgs), (m, msgs)
        assert m.cut is (m.data != msgs[i])
        i += 1
    exact = [m.data for m in got if not m.cut]
    for i in sorted(whole):
        assert msgs[i] in exact


@settings(max_examples=300, deadline=None)
@given(messages, st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
       st.integers(min_value=1, max_value=64))
def test_any_cut_split_is_right_until_a_boundary_is_hidden(msgs: List[bytes], cuts: List[int],
                                                           limit: int) -> None:
    """Arbitrary calls, each captured only up to ``limit`` bytes: until a call's uncaptured bytes hide where
    a message starts, every message returned is the start of the real one in its place."""
    stream = b"".join(_prefixed(m) for m in msgs)
    s = TcpDnsStreams(limit=limit)
    got: List[TcpMessage] = []
    for call in _split(stream, cuts):
        got += s.feed("k", call[:limit], len(call))
        if any(st.lost for st in s.held.values()):
            break
    for m, real in zip(got, msgs):
        assert real.startswith(m.data) and m.length == len(real) and m.cut is (m.data != real)


def test_glibc_writev_of_two_queries_and_split_reads() -> None:
    s = TcpDnsStreams()
    qa, qaaaa = build_query("api.test", 1, 1), build_query("api.test", 28, 2)
    sent = s.feed("out", _prefixed(qa) + _prefixed(qaaaa))  # one writev, four iovecs
    assert [m.data for m in sent] == [qa, qaaaa]
    ans = _answer("api.test", (127, 0, 0, 2))
    assert s.feed("in", _prefixed(ans)[:2]) == [] and len(s) == 1  # read(fd, buf, 2): the length alone
    assert s.feed("in", ans[:10]) == []  # the body in two reads
    [m] = s.feed("in", ans[10:])
    assert (m.data, m.length, m.cut) == (ans, len(ans), False) and len(s) == 0


def test_a_prefix_split_across_calls() -> None:
    s = TcpDnsStreams()
    q = build_query("a.test")
    whole = _prefixed(q)
    assert s.feed("k", whole[:1]) == [] and s.feed("k", whole[1:5]) == []
    assert [m.data for m in s.feed("k", whole[5:])] == [q]


def test_the_capture_limit_cuts_a_message_and_the_stream_goes_on() -> None:
    s = TcpDnsStreams(limit=100)
    big, small = _answer("big.test", (10, 0, 0, 1), extra=300), _answer("small.test", (10, 0, 0, 2))
    # one read of a big message: the kernel captured 100 of its bytes; the rest are counted
    [m] = s.feed("k", _prefixed(big)[:100], len(big) + 2)
    assert (m.data, m.length, m.cut) == (big[:98], len(big), True)
    [m2] = s.feed("k", _prefixed(small))
    assert (m2.data, m2.cut) == (small, False)
    # a message read in pieces: returned once the kept bytes reach the limit, the rest skipped
    assert s.feed("k", _prefixed(big)[:60]) == []
    [m3] = s.feed("k", _prefixed(big)[60:200])
    assert (m3.data, m3.cut) == (big[:100], True)
    assert s.feed("k", _prefixed(big)[200:]) == [] and len(s) == 0
    assert [m.data for m in s.feed("k", _prefixed(small))] == [small]


def test_a_gap_over_a_boundary_resynchronises_at_the_next_call() -> None:
    s = TcpDnsStreams(limit=50)
    a, b = _answer("a.test", (1, 2, 3, 4), extra=100), _answer("b.test", (1, 2, 3, 5))
    call = _prefixed(a) + _prefixed(b)  # two messages in one call; only 50 bytes captured
    [m] = s.feed("k", call[:50], len(call))
    assert m.cut and m.length == len(a)  # b's prefix was in the bytes not captured: b is not invented
    assert [x.data for x in s.feed("k", _prefixed(b))] == [b]


def test_close_returns_a_partial_message_and_bounds_hold() -> None:
    s = TcpDnsStreams(max_streams=2)
    a = _answer("a.test", (1, 2, 3, 4))
    assert s.feed(1, _prefixed(a)[:20], tag="t1") == []
    [m] = s.close(1)
    assert (m.data, m.length, m.cut, m.tag) == (a[:18], len(a), True, "t1")
    assert s.close(1) == [] and s.feed(2, b"\x00") == [] and s.close(2) == []  # a prefix alone: nothing
    for k in range(3):
        s.feed(k, _prefixed(a)[:20])
    assert len(s) == 2  # the least recently fed stream went, its part returned on the next feed
    assert s.close_where(lambda k: True) and len(s) == 0
    assert s.feed(9, b"\x00\x00") == [] and len(s) == 0  # a zero length announces nothing


# -- shaping: records from captures


def _cap(sent: bool, data: bytes, size: Optional[int] = None, *, fd: int = 3, ino: int = 77, pid: int = 5
         ) -> Tuple[Dict[str, Any], Dict[str, Any], bytes]:
    rec = {"sock_type": 1, "fd": fd, "sock_ino": ino}
    out = {"type": "dns", "pid": pid, "root_pid": pid, "uid": 0, "sent": sent,
           "size": len(data) if size is None else size, "addr": "127.0.0.1", "port": 53}
    return rec, out, data


def test_shaping_a_glibc_tcp_lookup() -> None:
    fs = FileShaping()
    qa, qaaaa = build_query("api.test", 1, 1), build_query("api.test", 28, 2)
    queries = fs.dns(*_cap(True, _prefixed(qa) + _prefixed(qaaaa)))
    assert [(r["qname"], r["qtype"], r["proto"], r["size"]) for r in queries] == [
        ("api.test", "A", "tcp", len(qa)), ("api.test", "AAAA", "tcp", len(qaaaa))]
    ans = _answer("api.test", (127, 0, 0, 2), ident=1)
    assert fs.dns(*_cap(False, _prefixed(ans)[:2])) == []
    [r] = fs.dns(*_cap(False, ans))
    assert (r["response"], r["answers"][0]["data"], r["sent"], "truncated" in r) == (
        True, "127.0.0.2", False, False)
    conn: Dict[str, Any] = {"type": "connect", "root_pid": 5, "family": "inet", "addr": "127.0.0.2",
                            "port": 80, "endpoint": None}
    fs.name_connect(conn)
    assert conn["host"] == "api.test"


def test_shaping_cut_exit_and_reused_fd() -> None:
    fs = FileShaping()
    big = _answer("big.test", (10, 0, 0, 1), extra=3000)
    [r] = fs.dns(*_cap(False, _prefixed(big)[:2048], len(big) + 2))  # the kernel's capture limit
    assert r["truncated"] is True and r["size"] == len(big) and r["answers"][0]["data"] == "10.0.0.1"
    a = _answer("a.test", (10, 0, 0, 3))
    assert fs.dns(*_cap(False, _prefixed(a)[:40])) == []
    # the fd now names another socket: the old stream's half message is recorded, cut
    [old] = fs.dns(*_cap(False, _prefixed(a)[:2], ino=78))
    assert (old["qname"], old["truncated"]) == ("a.test", True)
    assert fs.dns(*_cap(False, a[:30], ino=78)) == []
    [end] = fs.end_process(5)  # the process exits with a message half received
    assert (end["qname"], end["truncated"]) == ("a.test", True)
    assert fs.end_process(5) == [] and len(fs.tcp) == 0 and not fs.tcp_socks
    udp = fs.dns({"sock_type": 2}, dict(_cap(False, b"")[1], size=len(a) + 10), a)
    assert udp[0]["proto"] == "udp" and udp[0]["truncated"] is True


def test_the_shaper_returns_every_message_and_ends_streams_at_exit() -> None:
    from rawbpf.elf import load_spec

    catalog = Catalog.from_btf(load_spec(str(OBJ)).btf)
    shaper = Shaper(catalog, 0)
    kinds = {v: k for k, v in catalog.kinds.items()}
    qa, qb = build_query("a.test", 1, 1), build_query("b.test", 1, 2)
    data = _prefixed(qa) + _prefixed(qb)
    base = {"pid": 5, "tid": 5, "root_pid": 5, "uid": 0, "family": 2, "addr": b"\0" * 16, "port": 53}
    got = shaper({"type": kinds["dns"], **base, "sock_type": 1, "fd": 3, "sock_ino": 9, "sent": 1,
                  "size": len(data), "data": data, "data_len": len(data)})
    assert isinstance(got, list) and [r["qname"] for r in got] == ["a.test", "b.test"]
    ans = _answer("a.test", (10, 0, 0, 4), ident=1)
    half = _prefixed(ans)[:-2]  # the answer's address not all received yet
    assert shaper({"type": kinds["dns"], **base, "sock_type": 1, "fd": 3, "sock_ino": 9, "sent": 0,
                   "size": len(half), "data": half, "data_len": len(half)}) is None
    ended = shaper({"type": kinds["exit"], **base})
    assert isinstance(ended, list) and [r["type"] for r in ended] == ["dns", "exit"]
    assert ended[0]["truncated"] is True and ended[0]["qname"] == "a.test" and ended[0]["response"]
    assert ended[0]["answers"] == [] and ended[0]["size"] == len(ans)
