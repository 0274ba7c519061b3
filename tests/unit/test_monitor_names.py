"""DNS and TLS ClientHello parsing, file paths from the kernel's chains, watch globs, transcripts, host names;
all pure (no root, no kernel)."""

from __future__ import annotations

import ssl
import struct
from typing import Any, Dict, List, Tuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawbpf.monitor.dns import DnsError, build_query, parse_dns
from rawbpf.monitor.files import (
    FF_FILE1,
    FF_WALK1,
    FF_WALK2,
    HostNames,
    HostRule,
    WatchList,
    chain_dir,
    file_paths,
    glob_regex,
    transcript_session,
)
from rawbpf.monitor.shape_files import FileShaping, match_port_rules
from rawbpf.monitor.tls import TlsError, parse_client_hello


def _name(n: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in n.split(".")) + b"\0"


def _rr(name: bytes, rtype: int, rdata: bytes, ttl: int = 60) -> bytes:
    return name + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def _response(qname: str, qtype: int, answers: List[bytes], rcode: int = 0, ident: int = 7) -> bytes:
    head = struct.pack("!6H", ident, 0x8180 | rcode, 1, len(answers), 0, 0)
    return head + _name(qname) + struct.pack("!HH", qtype, 1) + b"".join(answers)


def test_query() -> None:
    m = parse_dns(build_query("api.anthropic.com", 28, ident=0x4242))
    assert (m.id, m.response, m.qname, m.qtype, m.rcode, m.answers) == (
        0x4242, False, "api.anthropic.com", "AAAA", None, [])


def test_response_with_cname_chain_and_compression() -> None:
    ptr = b"\xc0\x0c"  # the question's name
    cname_target = _name("edge.example.net")
    answers = [
        _rr(ptr, 5, cname_target),
        _rr(b"\xc0\x2d", 1, bytes([10, 0, 0, 7])),  # compression pointer to the CNAME target (offset 45)
        _rr(b"\xc0\x2d", 28, bytes(15) + b"\x01"),
    ]
    raw = _response("www.example.com", 1, answers)
    assert raw[45:45 + len(cname_target)] == cname_target
    m = parse_dns(raw)
    assert m.response and m.rcode == "NOERROR" and m.qname == "www.example.com" and m.qtype == "A"
    assert [(a.name, a.type, a.data) for a in m.answers] == [
        ("www.example.com", "CNAME", "edge.example.net"),
        ("edge.example.net", "A", "10.0.0.7"),
        ("edge.example.net", "AAAA", "::1"),
    ]
    assert m.addresses() == ["10.0.0.7", "::1"]


def test_nxdomain_and_tcp_framing() -> None:
    raw = _response("nope.test", 1, [], rcode=3)
    m = parse_dns(struct.pack("!H", len(raw)) + raw, stream=True)
    assert (m.rcode, m.answers) == ("NXDOMAIN", [])


def test_cut_capture_keeps_the_answers_that_fit() -> None:
    a1, a2 = _rr(b"\xc0\x0c", 1, b"\x01\x02\x03\x04"), _rr(b"\xc0\x0c", 1, b"\x05\x06\x07\x08")
    raw = _response("a.test", 1, [a1, a2])
    m = parse_dns(raw[:-3])
    assert m.addresses() == ["1.2.3.4"]


@pytest.mark.parametrize("raw", [
    b"", b"\0" * 11, struct.pack("!6H", 1, 0x0100, 0, 0, 0, 0),  # short; no question
    struct.pack("!6H", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c" + b"\0\1\0\1",  # pointer to itself
    struct.pack("!6H", 1, 0x0100, 1, 0, 0, 0) + b"\x3f" + b"a" * 10,  # label past the end
    struct.pack("!6H", 1, 0x2900, 1, 0, 0, 0) + b"\0\0\1\0\1",  # opcode UPDATE
])
def test_malformed_is_a_dns_error(raw: bytes) -> None:
    with pytest.raises(DnsError):
        parse_dns(raw)


@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_crash(raw: bytes) -> None:
    try:
        parse_dns(raw)
        parse_dns(raw, stream=True)
    except DnsError:
        pass


def _client_hello(server_name: str, alpn: Tuple[str, ...] = ()) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def test_sni_and_alpn_of_a_real_client_hello() -> None:
    hello = parse_client_hello(_client_hello("api.anthropic.com", ("h2", "http/1.1")))
    assert hello.sni == "api.anthropic.com" and hello.alpn == ["h2", "http/1.1"]


def test_no_sni_and_not_tls() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    assert parse_client_hello(outgoing.read()).sni is None
    with pytest.raises(TlsError):
        parse_client_hello(b"GET / HTTP/1.1\r\n\r\n")


@given(st.binary(max_size=400))
def test_tls_arbitrary_bytes_never_crash(raw: bytes) -> None:
    try:
        parse_client_hello(b"\x16\x03\x01" + raw)
    except TlsError:
        pass


# -- file paths

def _data(*parts: bytes) -> Tuple[bytes, List[int]]:
    return b"".join(parts), [len(p) for p in parts]


def test_relative_name_joined_to_the_reversed_chain_with_dotdot() -> None:
    data, lens = _data(b"../x/./a.txt", b"inner\0sub\0w\0tmp\0", b"", b"")
    assert file_paths(data, lens, FF_WALK1, "create") == ("/tmp/w/sub/x/a.txt", None)


def test_absolute_name_and_the_file_itself() -> None:
    data, lens = _data(b"//etc/../etc/shadow", b"", b"", b"")
    assert file_paths(data, lens, 0, "read") == ("/etc/shadow", None)
    data, lens = _data(b"", b"b.txt\0sub\0", b"", b"")
    assert file_paths(data, lens, FF_FILE1 | FF_WALK1, "write") == ("/sub/b.txt", None)
    assert chain_dir(b"") == "/"


def test_rename_and_symlink_targets() -> None:
    data, lens = _data(b"a", b"w\0", b"../b", b"d\0w\0")
    assert file_paths(data, lens, FF_WALK1 | FF_WALK2, "rename") == ("/w/a", "/w/b")
    data, lens = _data(b"link", b"w\0", b"../target", b"")
    assert file_paths(data, lens, FF_WALK1, "symlink") == ("/w/link", "../target")


def test_watch_globs() -> None:
    wl = WatchList.build(["/srv/**/secrets/*.pem", "~/notes/"])
    home = "/home/ann"
    yes = ["/home/ann/.ssh/id_ed25519", "/home/ann/.aws/credentials", "/home/ann/.config/gcloud/a/b.json",
           "/home/ann/.netrc", "/home/ann/.docker/config.json", "/home/ann/.kube/config", "/work/p/.env",
           "/.env", "/etc/shadow", "/home/ann/.claude/.credentials.json", "/srv/a/b/secrets/k.pem",
           "/srv/secrets/k.pem", "/home/ann/notes/x/y"]
    no = ["/root/.ssh/id_rsa", "/home/ann/.ssh", "/work/p/.env.local", "/home/ann/.kube/config.bak",
          "/etc/shadow-", "/srv/secrets/k.pem.txt", "/home/ann/x/.netrc"]
    for p in yes:
        assert wl.matches(p, home), p
    for p in no:
        assert not wl.matches(p, home), p
    names, every = wl.kernel_names()
    assert not every and names[".ssh"] == 2 and names[".env"] == 1 and names["shadow"] == 1
    assert names["secrets"] == 2 and names["notes"] == 2
    assert WatchList.build(["/tmp/*"], defaults=False).kernel_names() == ({"tmp": 2}, False)
    assert WatchList.build(["**/*.key"], defaults=False).kernel_names() == ({}, True)
    assert glob_regex("~/.ssh/", "/root").match("/root/.ssh/known_hosts")


def test_transcript() -> None:
    sid = "0f5e3c1a-2b4d-4e6f-8a9b-0c1d2e3f4a5b"
    path = f"/root/.claude/projects/-work-repo/{sid}.jsonl"
    assert transcript_session(path, "/root") == sid
    assert transcript_session(path, "/home/ann") is None
    assert transcript_session("/root/.claude/projects/x/notes.jsonl") is None


def test_host_names_per_tree_and_rules() -> None:
    h = HostNames(per_tree=2)
    h.learn(10, "::ffff:10.0.0.1", "a.test")
    h.learn(10, "10.0.0.2", "b.test")
    h.learn(10, "10.0.0.3", "c.test")
    assert h.lookup(10, "10.0.0.1") is None and h.lookup(10, "10.0.0.3") == "c.test"
    assert h.lookup(11, "10.0.0.3") is None
    assert HostRule("*.anthropic.com", "x").matches("api.anthropic.com.")
    assert not HostRule("*.anthropic.com", "x").matches("anthropic.com.evil")
    import ipaddress
    net = ipaddress.ip_network("10.0.0.0/8")
    rules = ((net, None, "corp"), (net, 53, "dns"))
    assert match_port_rules(rules, "10.1.2.3", 53) == "dns"
    assert match_port_rules(rules, "10.1.2.3", 443) == "corp"
    assert match_port_rules(rules, "11.1.2.3", 53) is None


def _dns_rec(data: bytes, **kw: Any) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    rec = {"sock_type": 2, **kw}
    out = {"type": "dns", "pid": 5, "root_pid": 5, "uid": 0}
    return rec, out


def test_shaping_learns_hosts_and_names_connects() -> None:
    fs = FileShaping(host_rules=(HostRule("api.test", "api"),))
    raw = _response("api.test", 1, [_rr(b"\xc0\x0c", 1, bytes([192, 0, 2, 9]))])
    rec, out = _dns_rec(raw)
    [shaped] = fs.dns(rec, out, raw)
    assert shaped["rcode"] == "NOERROR" and shaped["proto"] == "udp" and "truncated" not in shaped
    assert shaped["answers"][0]["data"] == "192.0.2.9"
    conn: Dict[str, Any] = {"type": "connect", "root_pid": 5, "family": "inet", "addr": "192.0.2.9",
                            "port": 443, "endpoint": None}
    fs.name_connect(conn)
    assert conn["host"] == "api.test" and conn["endpoint"] == "api"
    other = dict(conn, root_pid=6, endpoint=None, host=None)
    fs.name_connect(other)
    assert other["host"] is None and other["endpoint"] is None
    assert fs.dns(*_dns_rec(b"garbage"), b"garbage") == []


def _file_rec(op: int, data: bytes, lens: List[int], fflags: int, **kw: Any) -> Dict[str, Any]:
    rec = {"op": op, "fflags": fflags, "data": data, "ret": 0, "count": 1, "mode": 0,
           "name1_len": lens[0], "walk1_len": lens[1], "name2_len": lens[2], "walk2_len": lens[3], **kw}
    return rec


def test_file_shaping_reads_transcript_and_remainder() -> None:
    fs = FileShaping(home=lambda uid: "/home/ann")
    out = {"type": "file", "pid": 7, "root_pid": 7, "uid": 1000, "session_id": None}
    data, lens = _data(b"", b"id_rsa\0.ssh\0ann\0home\0", b"", b"")
    got = fs.file(_file_rec(12, data, lens, FF_FILE1 | FF_WALK1 | 8), dict(out), data)
    assert got is not None and got["op"] == "read" and got["sensitive"] is True
    data, lens = _data(b"", b"config\0.ssh\0bob\0home\0", b"", b"")  # another user's .ssh: not this owner's
    assert fs.file(_file_rec(12, data, lens, FF_FILE1 | FF_WALK1 | 8), dict(out), data) is None
    sid = "0f5e3c1a-2b4d-4e6f-8a9b-0c1d2e3f4a5b"
    data, lens = _data(b"", f"{sid}.jsonl\0-w\0projects\0.claude\0ann\0home\0".encode(), b"", b"")
    got = fs.file(_file_rec(2, data, lens, FF_FILE1 | FF_WALK1, ino=5, dev=1, gen=9), dict(out), data)
    assert got is not None and got["transcript"] is True and got["session_id"] == sid
    assert fs.session_of(7) == sid and fs.status()[0]["transcript"].endswith(f"/{sid}.jsonl")
    rest = fs.remainder(7, "write", 1, 5, 9, 41, 123)
    assert rest is not None and (rest["count"], rest["ts"], "transcript" in rest) == (41, 123, False)
    assert fs.remainder(7, "write", 1, 5, 9, 1, 124) is None  # reported once
