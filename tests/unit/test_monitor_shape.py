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
    assert catalog.kinds == {1: "exec", 2: "fork", 3: "exit", 4: "connect", 5: "rename"}
    assert catalog.structs == {k: f"rec_{k}" for k in ("exec", "fork", "exit", "connect", "rename")}
    assert catalog.matches[0] == "inherited" and catalog.matches[3] == "script"
    assert catalog.flags == {1: "seen_at_start", 2: "new_root"}


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
