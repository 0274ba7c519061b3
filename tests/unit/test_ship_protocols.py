"""Pure protocol code of ``rawbpf ship``: destination URLs, Fluent Forward messages and handshake, RFC 5424
messages with octet counting, RELP frames; and the cursor files."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
from pathlib import Path

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawbpf.errors import ConfigError, RawBPFError
from rawbpf.ship import forward, relp, syslog
from rawbpf.ship.cursor import Cursor, CursorFile, read_cursor
from rawbpf.ship.url import parse_destination

# -- URLs


def test_urls_parse() -> None:
    d = parse_destination("forward://collector.example:24224?gzip=1&batch=100")
    assert (d.protocol, d.host, d.port, d.tls, d.batch, d.flag("gzip", False)) == \
        ("forward", "collector.example", 24224, False, 100, True)
    assert d.key == "forward-collector.example-24224"
    t = parse_destination("syslog+tls://[::1]:6514?ca=/etc/ca.pem&facility=authpriv")
    assert (t.protocol, t.host, t.tls, t.facility) == ("syslog", "::1", True, 10)
    assert parse_destination("relp://127.0.0.1:2514").protocol == "relp"


@pytest.mark.parametrize("url, says", [
    ("127.0.0.1:24224", "expected SCHEME://"),
    ("http://h:1", "unknown scheme"),
    ("forward://h", "missing port"),
    ("forward://h:99999", "port must be"),
    ("forward://user:pw@h:1", "credentials do not belong"),
    ("forward://h:1?gzip=1&nope=2", "unknown option 'nope'"),
    ("forward://h:1?ca=/x", "needs a +tls scheme"),
    ("syslog+tcp://h:1?gzip=1", "forward:// only"),
    ("forward://h:1?facility=local0", "syslog and relp only"),
    ("relp://h:1?facility=bogus", "facility 'bogus'"),
    ("forward://h:1?batch=0", "at least 1"),
    ("forward://h:1?batch=50&window=10", "must not exceed window"),
    ("forward://h:1?username=u", "go together"),
    ("forward://h:1/path", "no path"),
])
def test_bad_urls_are_one_line_errors(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_destination(url)
    assert says in str(e.value) and "\n" not in str(e.value)


# -- Forward


def test_packed_forward_message_decodes_as_the_spec_says() -> None:
    recs = [{"seq": 1, "ts": 1_700_000_000_123_456_789, "type": "exec", "argv": ["a"], "b": b"\x00"},
            {"seq": 2, "ts": 1_700_000_001_000_000_001, "type": "connect"},
            {"seq": 3, "ts": 1_700_000_002_000_000_000, "type": "exec"}]
    ids = forward.ChunkIds(b"\x01" * 8)
    msgs = forward.encode_batch(recs, ids)
    assert [c for _, c, _ in msgs] == [forward.ChunkIds(b"\x01" * 8).next() for _ in range(1)] + [msgs[1][1]]
    seen = []
    for data, chunk, count in msgs:
        tag, entries, option = msgpack.unpackb(data, raw=False)
        assert option == {"size": count, "chunk": chunk}
        assert len(__import__("base64").b64decode(chunk)) == 16
        unpacker = msgpack.Unpacker(raw=False)
        unpacker.feed(entries)
        for t, rec in unpacker:
            assert isinstance(t, msgpack.ExtType) and t.code == 0
            sec, nsec = int.from_bytes(t.data[:4], "big"), int.from_bytes(t.data[4:], "big")
            assert sec * 10**9 + nsec == rec["ts"]
            assert tag == f"rawbpf.{rec['type']}"
            seen.append(rec["seq"])
    assert sorted(seen) == [1, 2, 3]
    assert [m[2] for m in msgs] == [2, 1]


def test_gzip_option() -> None:
    data, _, _ = forward.encode_batch([{"seq": 1, "type": "x"}], None, compress=True)[0]
    _tag, entries, option = msgpack.unpackb(data, raw=False)
    assert option == {"size": 1, "compressed": "gzip"}
    assert msgpack.unpackb(gzip.decompress(entries), raw=False)[1] == {"seq": 1, "type": "x"}


def test_tags_are_safe() -> None:
    assert forward.tag_for({"type": "exec"}) == "rawbpf.exec"
    assert forward.tag_for({"type": "a b"}) == "rawbpf.unknown"
    assert forward.tag_for({}) == "rawbpf.unknown"


def test_acks_and_handshake() -> None:
    s = forward.ServerStream()
    packed = msgpack.packb({"ack": "abc"}) + msgpack.packb(["HELO", {"nonce": b"n" * 16, "auth": b"",
                                                                     "keepalive": True}])
    out = s.feed(packed[:3]) + s.feed(packed[3:])
    assert out[0] == "abc" and isinstance(out[1], forward.Helo) and out[1].nonce == b"n" * 16
    helo = out[1]
    key, salt = b"k3y", b"s" * 16
    ping = msgpack.unpackb(forward.make_ping(helo, "client", key, salt, "u", b"pw"), raw=False)
    assert ping[:3] == ["PING", "client", salt]
    assert ping[3] == hashlib.sha512(salt + b"client" + helo.nonce + key).hexdigest()
    assert ping[4] == "u" and ping[5] == hashlib.sha512(b"" + b"u" + b"pw").hexdigest()
    good = ["PONG", True, "", "server", hashlib.sha512(salt + b"server" + helo.nonce + key).hexdigest()]
    assert forward.check_pong(good, helo, "client", key, salt) == "server"
    with pytest.raises(forward.ForwardError, match="does not match"):
        forward.check_pong([*good[:4], "0" * 128], helo, "client", key, salt)
    with pytest.raises(forward.ForwardError, match="refused the handshake: shared key mismatch"):
        forward.check_pong(["PONG", False, "shared key mismatch", "server", ""], helo, "client", key, salt)
    with pytest.raises(forward.ForwardError, match="own name"):
        forward.check_pong([*good[:3], "client", good[4]], helo, "client", key, salt)
    with pytest.raises(forward.ForwardError, match="unexpected message"):
        forward.ServerStream().feed(msgpack.packb([1, 2]))


@given(st.binary(max_size=200))
def test_server_stream_only_raises_rawbpf_errors(data: bytes) -> None:
    try:
        forward.ServerStream().feed(data)
    except RawBPFError:
        pass


# -- syslog

_RFC5424 = re.compile(rb"^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|\[.*?[^\\]\]) (.*)$", re.S)


def test_rfc5424_message_and_octet_counting() -> None:
    rec = {"seq": 7, "ts": 1_700_000_000_123_456_789, "type": "exec", "pid": 42, "comm": 'we"ird]\\',
           "argv": ["a\nb", "ü"], "blob": b"\x01\x02"}
    msg = syslog.format_message(rec, hostname="host-1", facility=16)
    m = _RFC5424.match(msg)
    assert m, msg
    pri, ts, host, app, procid, msgid, sd, body = m.groups()
    assert pri == b"134" and ts == b"2023-11-14T22:13:20.123456Z" and host == b"host-1"
    assert (app, procid, msgid) == (b"rawbpf", b"-", b"exec")
    assert sd == b'[rawbpf@32473 seq="7" type="exec" pid="42" comm="we\\"ird\\]\\\\"]'
    assert json.loads(body) == {**rec, "blob": "0102"}
    framed = syslog.frame(msg)
    n, _, rest = framed.partition(b" ")
    assert int(n) == len(rest) == len(msg)
    lost = syslog.format_message({"type": "lost", "count": 3, "reason": "unshipped"}, hostname="h")
    assert lost.startswith(b"<132>1 - h rawbpf - lost [rawbpf@32473 type=\"lost\" count=\"3\"")


# -- RELP


def test_relp_frames() -> None:
    assert relp.encode(1, "open", b"x") == b"1 open 1 x\n"
    assert relp.encode(5, "close") == b"5 close 0\n"
    p = relp.FrameParser()
    offer = b"200 OK\nrelp_version=0\nrelp_software=rsyslogd,8.2302.0\ncommands=syslog"
    data = relp.encode(1, "rsp", offer) + b"2 rsp 6 200 OK\n0 serverclose 0\n"
    frames = []
    for i in range(len(data)):  # byte by byte: frames only when complete
        frames += p.feed(data[i:i + 1])
    assert [(f.txnr, f.command, f.ok) for f in frames] == [(1, "rsp", True), (2, "rsp", True),
                                                           (0, "serverclose", False)]
    assert frames[0].status == "200 OK"
    assert relp.next_txnr(relp.MAX_TXNR) == 1
    for bad in (b"x rsp 1 a\n", b"1 rsp 3 abcX", b"1 rsp 0X", b"123456789012345"):
        with pytest.raises(relp.RelpError):
            relp.FrameParser().feed(bad)


@given(st.binary(max_size=100))
def test_relp_parser_only_raises_rawbpf_errors(data: bytes) -> None:
    try:
        relp.FrameParser().feed(data)
    except RawBPFError:
        pass


# -- cursor files


def test_cursor_is_replaced_atomically_and_locked(tmp_path: Path) -> None:
    with CursorFile(str(tmp_path), "forward-h-1", "forward://h:1") as c:
        c.lock()
        assert c.load() is None
        assert c.save(Cursor(seq=41, file="rawbpf-x.mlog"))
        assert c.save(Cursor(seq=42, file="rawbpf-y.mlog"))
        got = read_cursor(c.path)
        assert got is not None and (got.seq, got.file, got.url) == (42, "rawbpf-y.mlog", "forward://h:1")
        assert sorted(os.listdir(tmp_path)) == ["ship-forward-h-1.cursor", "ship-forward-h-1.lock"]
        other = CursorFile(str(tmp_path), "forward-h-1", "forward://h:1")
        with pytest.raises(ConfigError, match=f"already shipped by pid {os.getpid()}"):
            other.lock()
    again = CursorFile(str(tmp_path), "forward-h-1", "forward://h:1")
    again.lock()  # released on close
    again.close()
    Path(c.path).write_text('{"seq": "x"}')
    with pytest.raises(ConfigError, match="damaged"):
        read_cursor(c.path)
