"""The monitor's precompiled path (RunShaper) makes exactly the records of the generic path (BTF decoder, then
Shaper, then the writer's stamp), key order included, over random raw records of every field value."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawbpf.btf import Kind
from rawbpf.elf import load_spec
from rawbpf.monitor.shape import Catalog, Shaper
from rawbpf.monitor.shape_files import FileShaping
from rawbpf.monitor.shape_runs import EXEC, EXIT, FILE, FORK, HEADER, RunShaper, member
from rawbpf.records import ring_decoder

OBJ = Path(__file__).resolve().parents[2] / "programs" / "claude_monitor.o"
BTF = load_spec(str(OBJ)).btf
CATALOG = Catalog.from_btf(BTF)
KIND = {v: k for k, v in CATALOG.kinds.items()}
NOW = 1_700_000_000_123_456_789
CGROUPS = {7: "/user.slice", 8: "/system.slice/x.service"}


def _struct_id(kind: str) -> int:
    t = BTF.find(f"rec_{kind}", Kind.STRUCT)
    assert t is not None
    return int(t.id)


def _size(kind: str) -> int:
    return int(BTF.size_of(_struct_id(kind)))


def _put(buf: bytearray, kind: str, name: str, value: Any) -> None:
    off, t = member(BTF, _struct_id(kind), name)
    if isinstance(value, bytes):
        n = t.array.nelems
        buf[off:off + n] = value[:n].ljust(n, b"\0")
    else:
        buf[off:off + t.size] = (value % (1 << (8 * t.size))).to_bytes(t.size, "little")


#: names and dentry chains (leaf first, NUL-terminated) of file records: relative, absolute, dot-dot,
#: non-UTF-8, watched reads, a Claude transcript
FILE_NAMES = [b"f1", b"/abs/p", b"../x", b"", "ü".encode(), b"a/./b", b"\xff", b"tmp\0", b"b\0a\0",
              b"/etc/shadow", b"x/.env", b".env",
              b"/root/.claude/projects/p/0e6f2c5a-1b2c-4d5e-8f90-123456789abc.jsonl"]
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**63)  # kernel stamps stay far below 2**64
small = st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 0xFFFFFFFF, 99])
junk = st.binary(max_size=80)
words = st.sampled_from(["ls", "-la", "--api-key", "--token=abc", "sk-ant-api03-abcdefgh", "x=y",
                         "\u017fk-ant-zz", "https://u:pw@host/p", "Authorization: Bearer t", "ü", "\udcff",
                         "ghp_" + "a" * 24, "", "/usr/bin/env", "AKIA" + "B" * 16, "-p", "tóken=1"])


@st.composite
def argv_bytes(draw: Any) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    args = draw(st.lists(words, max_size=8))
    return b"".join(a.encode("utf-8", "surrogateescape") + b"\0" for a in args)


@st.composite
def header(draw: Any) -> Dict[str, Any]:
    return {
        "flags": draw(small), "ts": draw(u64), "pid": draw(small | u32), "tid": draw(u32),
        "ppid": draw(small | u32), "uid": draw(u32), "root_pid": draw(st.sampled_from([0, 1, 4242]) | u32),
        "depth": draw(small), "comm": draw(junk), "start": draw(u64), "parent_start": draw(u64),
        "root_start": draw(u64), "cgroup_id": draw(st.sampled_from([0, 7, 8, 9])), "euid": draw(u32),
        "auid": draw(small | u32), "tty": draw(st.sampled_from([0, 136 << 20 | 3, 4 << 20 | 70, 5 << 20 | 1,
                                                                7 << 20 | 2]) | u32),
        "attr.origin": draw(small), "attr.session_id": draw(junk | st.just(b"")),
        "attr.traceparent": draw(junk | st.just(b"")),
    }


@st.composite
def record(draw: Any) -> bytes:
    kind = draw(st.sampled_from(["exec", "exec", "fork", "exit", "file", "file", "rename", "unknown"]))
    fields = draw(header())
    if kind == "unknown":
        raw = bytearray(draw(st.binary(min_size=4, max_size=64)))
        raw[0:4] = (77).to_bytes(4, "little")
        return bytes(raw)
    buf = bytearray(_size(kind))
    _put(buf, kind, "type", KIND[kind])
    for name in HEADER[1:]:
        _put(buf, kind, name, fields[name])
    length = len(buf)
    if kind == "exec":
        argv = draw(argv_bytes())
        cwd = draw(st.binary(max_size=300) | st.sampled_from([b"tmp\0", "ü\0tmp\0".encode(), b"a\0b\0c\0"]))
        _put(buf, kind, "argv", argv)
        _put(buf, kind, "cwd", cwd)
        _put(buf, kind, "filename", draw(st.sampled_from([b"/bin/ls", b"ls", b"../x", b""]) | junk))
        for name in ("match", "argv_truncated", "env", "claude_pid", "cwd_truncated"):
            _put(buf, kind, name, draw(small | u32))
        _put(buf, kind, "argv_len", draw(st.sampled_from([len(argv), len(argv) + 3, 0, 5000]) | u32))
        _put(buf, kind, "cwd_len", draw(st.sampled_from([len(cwd), 0, 400]) | u32))
        argv_off = member(BTF, _struct_id("exec"), "argv")[0]
        length = draw(st.integers(argv_off - 8, len(buf) + 16))  # short records, zero-filled; longer ones
    elif kind == "fork":
        _put(buf, kind, "child_pid", draw(u32))
    elif kind == "file":
        parts = [draw(st.sampled_from(FILE_NAMES) | junk) for _ in range(4)]
        data = b"".join(parts)
        lens = [len(x) for x in parts] if draw(st.booleans()) else [draw(st.integers(0, 5000)) for _ in parts]
        for name, value in zip(("name1_len", "walk1_len", "name2_len", "walk2_len"), lens):
            _put(buf, kind, name, value)
        _put(buf, kind, "data", data)
        _put(buf, kind, "op", draw(st.sampled_from([1, 2, 5, 10, 11, 12]) | st.integers(0, 14)))
        _put(buf, kind, "fflags", draw(st.integers(0, 63)))
        _put(buf, kind, "ret", draw(st.sampled_from([0, -2, -13, 5])))
        for name in ("count", "mode", "owner_uid", "owner_gid", "dev", "gen"):
            _put(buf, kind, name, draw(small | st.sampled_from([0o644, 0o104755])))
        _put(buf, kind, "ino", draw(st.sampled_from([0, 5, 2**40])))
        data_off = member(BTF, _struct_id("file"), "data")[0]
        whole = data_off + len(data)  # as the kernel sends it: only the used bytes
        length = draw(st.sampled_from([whole]) | st.integers(data_off - 8, whole + 16))  # or short, longer
    elif kind == "exit":
        for name in EXIT:
            _put(buf, kind, name, draw(u64))
    else:
        _put(buf, kind, "old_comm", draw(junk))
        _put(buf, kind, "new_comm", draw(junk))
    return bytes(buf[:length]).ljust(length, b"\xaa")


def ring(records: List[bytes]) -> Tuple[bytes, List[Tuple[int, int, int, int]]]:
    """The records as a ring holds them (8-byte headers, 8-byte aligned), with runs of equal lengths."""
    out = bytearray()
    runs: List[List[int]] = []
    for r in records:
        stride = (len(r) + 8 + 7) & ~7
        off = len(out)
        out += struct.pack("=II", len(r), 0) + r + bytes(stride - 8 - len(r))
        if runs and runs[-1][1] == len(r):
            runs[-1][2] += 1
        else:
            runs.append([off, len(r), 1, stride])
    return bytes(out), [(a, b, c, d) for a, b, c, d in runs]


def paths(sessions: Optional[Dict[int, str]] = None) -> Tuple[Shaper, Any]:
    files = FileShaping()
    for root, sid in (sessions or {}).items():
        files.sessions[root] = {"session_id": sid, "transcript": "/x"}
    shaper = Shaper(CATALOG, 5, boot_id="0e6f2c5a-1b2c-4d5e-8f90-123456789abc", cgroup_path=CGROUPS.get,
                    files=files)
    dec = ring_decoder(BTF, "events", clock="monotonic")
    dec.time_base.offset = 1_000_000
    return shaper, dec


def generic(shaper: Shaper, dec: Any, buf: bytes, runs: List[Tuple[int, int, int, int]]) -> List[Any]:
    """The path of a per-record transform: decode, shape, then the writer's stamp."""
    out = []
    for rec in dec.decode_runs(buf, runs, 0, NOW):
        del rec["seq"]
        shaped = shaper(rec)
        for one in shaped if isinstance(shaped, list) else [shaped] if shaped is not None else []:
            stamped = {"seq": 0, "ts": one.get("ts") or NOW}
            stamped.update(one)
            out.append(list(stamped.items()))
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(record(), min_size=1, max_size=12), st.booleans())
def test_run_shaper_makes_the_generic_paths_records(records: List[bytes], redact: bool) -> None:
    buf, runs = ring(records)
    shaper, dec = paths({4242: "sess-from-transcript"})
    shaper.redact = redact
    mine, dec2 = paths({4242: "sess-from-transcript"})  # its own state: file records learn sessions
    mine.redact = redact
    rs = RunShaper(mine, dec2)
    new = [list(r.items()) for r in rs(buf, runs, NOW)]
    assert new == generic(shaper, dec, buf, runs)
    assert mine.files.sessions == shaper.files.sessions
    assert [_as_written(r) for r in mine.files.last_write.values()] == \
        [_as_written(r) for r in shaper.files.last_write.values()]  # what a summary's remainder repeats


def _as_written(rec: Dict[str, Any]) -> List[Tuple[str, Any]]:
    out = {"seq": 0, "ts": rec["ts"]}
    out.update(rec)
    out["seq"] = 0
    return list(out.items())


def test_exec_fork_exit_file_take_the_compiled_path() -> None:
    shaper, dec = paths()
    rs = RunShaper(shaper, dec)
    assert sorted(CATALOG.kinds[v] for v in rs._fast) == ["exec", "exit", "file", "fork"]
    assert set(FORK) | set(EXEC) | set(EXIT) | set(FILE) <= {m.name for k in ("exec", "fork", "exit", "file")
                                                  for m in BTF.resolved(_struct_id(k)).members}


def _exec(cwd: bytes, argv: bytes) -> bytes:
    buf = bytearray(_size("exec"))
    _put(buf, "exec", "type", KIND["exec"])
    _put(buf, "exec", "pid", 10)
    _put(buf, "exec", "cwd", cwd)
    _put(buf, "exec", "cwd_len", len(cwd))
    _put(buf, "exec", "argv", argv)
    _put(buf, "exec", "argv_len", len(argv))
    _put(buf, "exec", "filename", b"run")
    return bytes(buf)


@pytest.mark.parametrize("cwd, text", [("ü\0tmp\0".encode(), "/tmp/ü"), (b"\xff\0a\0", "/a/\ufffd"),
                                       ("日本\0".encode(), "/日本")])
def test_a_non_ascii_working_directory_is_kept(cwd: bytes, text: str) -> None:
    buf, runs = ring([_exec(cwd, b"run\0")])
    shaper, dec = paths()
    (rec,) = RunShaper(shaper, dec)(buf, runs, NOW)
    assert rec["cwd"] == text and rec["filename"] == text + "/run"
    assert [list(rec.items())] == generic(shaper, dec, buf, runs)


def test_secrets_are_redacted_on_the_compiled_path() -> None:
    buf, runs = ring([_exec(b"tmp\0", b"curl\0--token\0abc\0-H\0x-api-key: k1\0TOKEN=s3\0")])
    shaper, dec = paths()
    (rec,) = RunShaper(shaper, dec)(buf, runs, NOW)
    assert rec["argv"] == ["curl", "--token", "[REDACTED]", "-H", "x-api-key: [REDACTED]", "TOKEN=[REDACTED]"]



@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(words, max_size=4), min_size=1, max_size=4), st.integers(2, 4), st.booleans())
def test_a_command_line_seen_again_gives_the_same_fresh_argv(argvs: List[List[str]], times: int,
                                                             redact: bool) -> None:
    """Records of a command line run again (their exec fields copied from the memo of exec tails seen) equal
    the generic path's, over two drains; no record shares a list with another, and with redaction on, the
    memo keeps no line that may hold a secret."""
    raws = ["\0".join(a).encode("utf-8", "surrogatepass") + b"\0" for a in argvs]
    buf, runs = ring([_exec(b"tmp\0", raw) for raw in raws] * times)
    shaper, dec = paths()
    shaper.redact = redact
    mine, dec2 = paths()
    mine.redact = redact
    rs = RunShaper(mine, dec2)
    got = rs(buf, runs, NOW) + rs(buf, runs, NOW)
    want = generic(shaper, dec, buf, runs)
    assert [list(r.items()) for r in got] == want + want
    assert len({id(r["argv"]) for r in got}) == len(got)
    assert len({id(r["claude_env"]) for r in got}) == len(got)
    memo = rs._fast[KIND["exec"]][0].__globals__["_tails"]
    assert memo or redact  # every line here is short: kept unless it may hold a secret
    if redact:
        assert not [t for t in memo.values()
                    if any(w in "\0".join(t["argv"]) for w in ("sk-ant", "--", "=", "://"))]



@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(record(), min_size=1, max_size=6), st.booleans())
def test_records_seen_again_are_made_as_the_first_time(records: List[bytes], redact: bool) -> None:
    """Every kind of random record repeated (short, long, cut, of memoised processes and exec tails) gives
    the generic path's records again, in one drain and the next."""
    buf, runs = ring(records * 2)
    shaper, dec = paths({4242: "sess-from-transcript"})
    shaper.redact = redact
    mine, dec2 = paths({4242: "sess-from-transcript"})
    mine.redact = redact
    rs = RunShaper(mine, dec2)
    got = [list(r.items()) for r in rs(buf, runs, NOW) + rs(buf, runs, NOW)]
    want = generic(shaper, dec, buf, runs)
    assert got == want + generic(shaper, dec, buf, runs)


def _dns_capture(data: bytes, sent: int) -> bytes:
    """A dns record of a TCP socket: fd 3, socket inode 9, of process 10."""
    size = _size("dns") - 2048 + len(data)
    buf = bytearray(_size("dns"))
    for name, value in (("type", KIND["dns"]), ("pid", 10), ("tid", 10), ("root_pid", 10), ("proto", 1),
                        ("sent", sent), ("fd", 3), ("sock_type", 1), ("family", 2), ("port", 53),
                        ("size", len(data)), ("data_len", len(data)), ("sock_ino", 9), ("data", data)):
        _put(buf, "dns", name, value)
    return bytes(buf[:size])


def _exit_of(pid: int) -> bytes:
    buf = bytearray(_size("exit"))
    for name, value in (("type", KIND["exit"]), ("pid", pid), ("tid", pid), ("root_pid", pid)):
        _put(buf, "exit", name, value)
    return bytes(buf)


def test_tcp_dns_records_on_the_daemons_path() -> None:
    """Two DNS messages in one capture are two records; the compiled exit of a process with a message half
    received comes after that message's record (truncated), as on the generic path."""
    from rawbpf.monitor.dns import build_query

    qa, qb = build_query("a.test", 1, 1), build_query("b.test", 28, 2)
    two = struct.pack("!H", len(qa)) + qa + struct.pack("!H", len(qb)) + qb
    answer = struct.pack("!6H", 1, 0x8180, 1, 1, 0, 0) + qa[12:] + b"\xc0\x0c" + struct.pack(
        "!HHIH", 1, 1, 60, 4) + bytes([10, 0, 0, 1])
    half = struct.pack("!H", len(answer)) + answer[:-2]
    buf, runs = ring([_dns_capture(two, 1), _dns_capture(half, 0), _exit_of(11), _exit_of(10)])
    shaper, dec = paths()
    got = RunShaper(shaper, dec)(buf, runs, NOW)
    assert [(r["type"], r.get("qname"), r.get("truncated")) for r in got] == [
        ("dns", "a.test", None), ("dns", "b.test", None), ("exit", None, None),
        ("dns", "a.test", True), ("exit", None, None)]
    assert got[3]["response"] is True and got[3]["size"] == len(answer) and len(shaper.files.tcp) == 0
    shaper2, dec2 = paths()
    assert [list(r.items()) for r in got] == generic(shaper2, dec2, buf, runs)


def _of(kind: str, fields: Dict[str, Any], **extra: Any) -> bytes:
    buf = bytearray(_size(kind))
    _put(buf, kind, "type", KIND[kind])
    for name, value in {**fields, **extra}.items():
        _put(buf, kind, name, value)
    return bytes(buf)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(header(), min_size=1, max_size=3),
       st.lists(st.tuples(st.sampled_from(["exec", "fork", "exit"]), st.integers(0, 2), u64, u32),
                min_size=1, max_size=12))
def test_records_of_one_process_repeat_its_identity_exactly(heads: List[Dict[str, Any]],
                                                            picks: List[Tuple[str, int, int, int]]) -> None:
    """A process's fork, exec and exit records share their identity fields (kept from the first): each still
    gets its own stamp, kind, seen-at-start bit and fields, and equals the generic path's record."""
    records = []
    for kind, i, ts, value in picks:
        fields = dict(heads[i % len(heads)], ts=ts, flags=value % 4)
        extra = {"child_pid": value} if kind == "fork" else {"exit_code": value} if kind == "exit" else {}
        if kind == "exec":
            extra = {"argv": b"ls\0", "argv_len": 3, "filename": b"/bin/ls", "cwd": b"tmp\0", "cwd_len": 4}
        records.append(_of(kind, fields, **extra))
    buf, runs = ring(records)
    shaper, dec = paths()
    rs = RunShaper(shaper, dec)
    for _ in range(2):  # the second drain from what the first one kept
        new = [list(r.items()) for r in rs(buf, runs, NOW)]
        assert new == generic(shaper, dec, buf, runs)


def test_a_session_learnt_later_and_a_cgroup_found_later_reach_records_of_a_known_process() -> None:
    fields = {"pid": 50, "tid": 50, "ppid": 4242, "root_pid": 4242, "cgroup_id": 9, "start": 10**9}
    buf, runs = ring([_of("fork", fields, child_pid=51), _of("exit", fields)])
    cgroups: Dict[int, str] = {}
    files = FileShaping()
    shaper = Shaper(CATALOG, 5, boot_id="b", cgroup_path=cgroups.get, files=files)
    dec = ring_decoder(BTF, "events", clock="monotonic")
    rs = RunShaper(shaper, dec)
    first = rs(buf, runs, NOW)
    assert [(r["session_id"], r["cgroup"]) for r in first] == [(None, None), (None, None)]
    files.sessions[4242] = {"session_id": "sess-1", "transcript": "/t"}
    cgroups[9] = "/user.slice/x"
    later = rs(buf, runs, NOW)
    assert [(r["session_id"], r["cgroup"]) for r in later] == [("sess-1", "/user.slice/x")] * 2
    assert [list(r.items()) for r in later] == generic(shaper, dec, buf, runs)
    assert later[0] is not first[0] and later[0]["exec_id"] == first[0]["exec_id"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(header(), min_size=2, max_size=3),
       st.lists(st.tuples(st.sampled_from(["fork", "exec", "exit"]), st.integers(0, 5), st.integers(0, 2)),
                min_size=1, max_size=12))
def test_processes_of_one_tree_share_its_part_and_keep_their_own(heads: List[Dict[str, Any]],
                                                               picks: List[Tuple[str, int, int]]) -> None:
    """Processes with their own ids, names and starts under one tree's cgroup, tty, origin, session and trace
    context (the part kept once per tree) each get their own fields and the tree's, as the generic path."""
    trees = [{k: v for k, v in h.items() if k in ("cgroup_id", "euid", "auid", "tty", "attr.origin",
                                                   "attr.session_id", "attr.traceparent")} for h in heads]
    records = []
    for kind, own, tree in picks:
        fields = dict(heads[own % len(heads)], **trees[tree % len(trees)], pid=100 + own, start=own * 10**7)
        extra = {"child_pid": own} if kind == "fork" else {"exit_code": own} if kind == "exit" else {}
        if kind == "exec":
            extra = {"argv": b"ls\0", "argv_len": 3, "filename": b"/bin/ls", "cwd": b"tmp\0", "cwd_len": 4}
        records.append(_of(kind, fields, **extra))
    buf, runs = ring(records)
    shaper, dec = paths({4242: "sess-from-transcript"})
    rs = RunShaper(shaper, dec)
    for _ in range(2):
        assert [list(r.items()) for r in rs(buf, runs, NOW)] == generic(shaper, dec, buf, runs)


def test_a_new_process_of_a_tree_whose_cgroup_was_unknown_gets_its_path() -> None:
    tree = {"ppid": 4242, "root_pid": 4242, "cgroup_id": 9}
    cgroups: Dict[int, str] = {}
    shaper = Shaper(CATALOG, 5, boot_id="b", cgroup_path=cgroups.get, files=FileShaping())
    dec = ring_decoder(BTF, "events", clock="monotonic")
    rs = RunShaper(shaper, dec)
    buf, runs = ring([_of("exit", dict(tree, pid=50, tid=50))])
    assert rs(buf, runs, NOW)[0]["cgroup"] is None
    cgroups[9] = "/user.slice/x"
    buf, runs = ring([_of("exit", dict(tree, pid=51, tid=51))])
    assert rs(buf, runs, NOW)[0]["cgroup"] == "/user.slice/x"
