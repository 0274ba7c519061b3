"""Shaping decoded kernel records into the log schema, with names from the object's own BTF."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Dict

import pytest

from rawbpf.monitor.shape import Catalog, Shaper, format_addr, split_argv

OBJ = Path(__file__).resolve().parents[2] / "programs" / "claude_monitor.o"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    from rawbpf.elf import load_spec

    return Catalog.from_btf(load_spec(str(OBJ)).btf)


def test_catalog_from_the_objects_btf(catalog: Catalog) -> None:
    kinds = ("exec", "fork", "exit", "connect", "rename", "connect_result", "file", "dns", "tls")
    assert catalog.kinds == dict(enumerate(kinds, 1))
    assert catalog.structs == {k: f"rec_{k}" for k in kinds}
    assert catalog.matches[0] == "inherited" and catalog.matches[3] == "script"
    assert catalog.flags == {1: "seen_at_start", 2: "new_root", 4: "thread"}


def _hdr(kind: int, **kw: Any) -> Dict[str, Any]:
    rec = {"type": kind, "flags": 0, "ts": 5, "pid": 10, "tid": 11, "ppid": 1, "uid": 0, "root_pid": 10,
           "depth": 0, "comm": "claude"}
    rec.update(kw)
    return rec


def test_exec_splits_and_redacts_argv(catalog: Catalog) -> None:
    argv = b"claude\0--api-key\0sk-ant-api03-xxxxxxxx\0-p\0hi\0garbage after argv_len"
    out = Shaper(catalog, 1000)(_hdr(1, match=1, argv=argv, argv_len=argv.index(b"garbage"),
                                     argv_truncated=1, filename="/usr/bin/claude"))
    assert out["type"] == "exec" and out["ts"] == 1005
    assert out["argv"] == ["claude", "--api-key", "[REDACTED]", "-p", "hi"]
    assert out["argv_truncated"] is True and out["match"] == "comm" and out["seen_at_start"] is False


def test_enum_names_from_a_decoder_are_accepted(catalog: Catalog) -> None:
    out = Shaper(catalog, 0)(_hdr("REC_RENAME", match="MATCH_RENAME", old_comm=b"python3\0\0",
                                  new_comm="claude", flags=1))
    assert (out["type"], out["match"], out["old_comm"], out["new_comm"], out["seen_at_start"]) == (
        "rename", "rename", "python3", "claude", True)


@pytest.mark.parametrize(
    ("family", "addr", "path", "plen", "text"),
    [
        (2, bytes([127, 0, 0, 1]) + bytes(12), b"", 0, "127.0.0.1"),
        (10, ipaddress.IPv6Address("::1").packed, b"", 0, "::1"),
        (10, ipaddress.IPv6Address("::ffff:160.79.104.10").packed, b"", 0, "160.79.104.10"),
        (1, bytes(16), b"/run/x.sock\0\0\0", 14, "/run/x.sock"),
        (1, bytes(16), b"\0abstract-name", 14, "@abstract-name"),
        (1, bytes(16), b"", 0, ""),
    ],
)
def test_connect_addresses(catalog: Catalog, family: int, addr: bytes, path: bytes, plen: int,
                           text: str) -> None:
    out = Shaper(catalog, 0)(_hdr(4, family=family, addr=addr, path=path, path_len=plen, port=443, ret=-115,
                                  endpoint=""))
    assert out["addr"] == text and out["endpoint"] is None and out["ret"] == -115
    assert out["family"] == {1: "unix", 2: "inet", 10: "inet6"}[family]
    assert format_addr(family, addr, path, plen) == text


def test_exit_and_fork(catalog: Catalog) -> None:
    shaper = Shaper(catalog, 0)
    ex = shaper(_hdr(3, exit_code=0, signal=9, core_dumped=0, duration_ns=77))
    assert (ex["type"], ex["signal"], ex["core_dumped"], ex["duration_ns"]) == ("exit", 9, False, 77)
    fk = shaper(_hdr(2, child_pid=99))
    assert (fk["type"], fk["child_pid"]) == ("fork", 99)


def test_split_argv_edges() -> None:
    assert split_argv(b"", 0) == []
    assert split_argv(b"a\0b\0", 4) == ["a", "b"]
    assert split_argv(b"a\0bcd", 4) == ["a", "bc"]


def test_records_of_other_kinds_pass_unchanged(catalog: Catalog) -> None:
    raw = {"type": "raw", "ts": 1, "map": "events", "data": b"\x09\x00"}
    assert Shaper(catalog, 0)(dict(raw)) == raw


def test_identity_and_attribution_fields(catalog: Catalog) -> None:
    from rawbpf.monitor.shape import exec_id

    boot = "40975d43-5a56-4c1e-9d2a-0123456789ab"
    rec = _hdr(2, child_pid=12, start=3_000_000_017, parent_start=25_000_000, root_start=3_000_000_000,
               euid=1000, auid=0xFFFFFFFF, tty=(136 << 20) | 3, cgroup_id=77,
               attr={"origin": "tool", "session_id": "6a0b-…", "traceparent": ""})
    out = Shaper(catalog, 0, boot_id=boot, cgroup_path={77: "/user.slice"}.get)(rec)
    assert out["exec_id"] == "40975d435a56-10-300" == exec_id(boot, 10, 300 * 10_000_000)
    assert (out["parent_exec_id"], out["root_exec_id"]) == ("40975d435a56-1-2", "40975d435a56-10-300")
    assert (out["euid"], out["auid"], out["tty"], out["cgroup"]) == (1000, None, "pts/3", "/user.slice")
    assert (out["origin"], out["session_id"], out["traceparent"]) == ("tool", "6a0b-…", None)
    out = Shaper(catalog, 0)(_hdr(2, child_pid=1, auid=0, attr={"origin": 0}))
    assert (out["auid"], out["origin"], out["cgroup"], out["tty"]) == (0, None, None, None)


def test_exec_cwd_filename_and_claude_env(catalog: Catalog) -> None:
    cwd = b"repo\0project\0tmp\0"
    out = Shaper(catalog, 0)(_hdr(1, filename="./build.sh", argv=b"./build.sh\0", argv_len=11, cwd=cwd,
                                  cwd_len=len(cwd), env=1 | 8 | 64, claude_pid=0))
    assert out["cwd"] == "/tmp/project/repo" and out["filename"] == "/tmp/project/repo/build.sh"
    assert out["claude_env"] == ["CLAUDE_CODE_SESSION_ID", "CLAUDE_CODE_CHILD_SESSION"]
    assert out["claude_env_truncated"] is True and out["claude_pid"] is None
    out = Shaper(catalog, 0)(_hdr(1, filename="../x", cwd=b"a\0", cwd_len=2, cwd_truncated=1))
    assert out["cwd"] == "…/a" and out["filename"] == "../x"  # no guess from a cut path
    out = Shaper(catalog, 0)(_hdr(1, filename="/bin/ls", cwd=b"", cwd_len=0))
    assert out["cwd"] == "/"


@pytest.mark.parametrize(("result", "error", "name"), [
    ("established", 0, "established"), ("failed", 111, "refused"), ("failed", 110, "timeout"),
    ("failed", 104, "reset"), ("failed", 113, "unreachable"), ("failed", 101, "unreachable"),
    ("failed", 103, "ECONNABORTED"), ("failed", 0, "closed"), (1, 111, "refused"),
])
def test_connect_result_names(catalog: Catalog, result: Any, error: int, name: str) -> None:
    out = Shaper(catalog, 0)(_hdr(6, conn_id=99, result=result, error=error, latency_ns=5))
    assert (out["type"], out["conn_id"], out["result"], out["latency_ns"]) == ("connect_result", 99, name, 5)
    assert out["error"] == (error or None)


def test_thread_rename_and_tty_names(catalog: Catalog) -> None:
    from rawbpf.monitor.shape import tty_name

    out = Shaper(catalog, 0)(_hdr(5, flags=4, tid=12, old_comm="claude", new_comm="HTTP Client", match=0))
    assert out["thread"] is True and out["tid"] == 12
    assert [tty_name(d) for d in (0, 4 << 20 | 1, 4 << 20 | 65, 137 << 20 | 2, 5 << 20 | 1, 7 << 20 | 9)] == [
        None, "tty1", "ttyS1", "pts/258", "console", "7:9"]


def test_cgroup_paths_from_inode_numbers(tmp_path: Path) -> None:
    import os

    from rawbpf.monitor.cgroups import CgroupPaths, cgroup2_mount

    (tmp_path / "a" / "b").mkdir(parents=True)
    now = [0.0]
    paths = CgroupPaths(str(tmp_path), clock=lambda: now[0])
    assert paths(os.stat(tmp_path / "a" / "b").st_ino) == "/a/b"
    assert paths(os.stat(tmp_path).st_ino) == "/"
    (tmp_path / "c").mkdir()
    ino = os.stat(tmp_path / "c").st_ino
    assert paths(ino) is None  # rescans at most once per interval
    now[0] = 2.0
    assert paths(ino) == "/c"
    info = tmp_path / "mountinfo"
    info.write_text("30 1 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n")
    assert cgroup2_mount(str(info)) == "/sys/fs/cgroup"
    assert CgroupPaths("")(5) is None
