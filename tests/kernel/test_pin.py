"""bpffs against the real kernel: pin/get round trips for maps, programs and links, removal, mounting."""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from rawbpf import bpffs
from rawbpf.attach import Link, attach_raw_tracepoint
from rawbpf.consts import MapType, ProgType
from rawbpf.errors import ConfigError, NotSupportedError, SyscallError
from rawbpf.maps import Map
from rawbpf.programs import Program


def I(op: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:  # noqa: E743
    return struct.pack("<BBhi", op, dst | src << 4, off, imm)


RET0 = I(0xB7, 0, 0, 0, 0) + I(0x95)


def counter(m: Map, tgid: int) -> bytes:
    return b"".join([
        I(0x85, 0, 0, 0, 14), I(0x77, 0, 0, 0, 32), I(0x55, 0, 0, 9, tgid),
        I(0x18, 1, 1, 0, m.fd), I(0), I(0x62, 10, 0, -4, 0), I(0xBF, 2, 10), I(0x07, 2, 0, 0, -4),
        I(0x85, 0, 0, 0, 1), I(0x15, 0, 0, 2, 0), I(0xB7, 1, 0, 0, 1), I(0xDB, 0, 1, 0, 0),
        I(0xB7, 0, 0, 0, 0), I(0x95),
    ])


def test_map_pin_round_trip(pin_dir: Path) -> None:
    path = pin_dir / "maps" / "counts"  # parents are created on bpffs
    with Map.create(MapType.HASH, 4, 8, 4, name="pinned_map") as m:
        m.update(1, 111)
        m.pin(path)
        mid = m.id
    assert path.exists()
    with Map.from_pin(path) as again:
        assert again.id == mid and again.name == "pinned_map"
        assert again.lookup_int(1) == 111
        again.update(2, 222)
    with Map.from_pin(path) as third:
        assert third.lookup_int(2) == 222
    assert bpffs.unpin(path) is True
    assert bpffs.unpin(path) is False
    with pytest.raises(SyscallError) as ei:
        Map.from_pin(path)
    assert ei.value.errno == errno.ENOENT and "nothing is pinned there" in str(ei.value)
    bpffs.remove_tree(pin_dir)


def test_program_pin_round_trip(pin_dir: Path) -> None:
    path = pin_dir / "prog"
    with Program.load(ProgType.SOCKET_FILTER, RET0, name="pinned_prog") as p:
        p.pin(path)
        pid = p.id
    with Program.from_pin(path) as again:
        assert again.id == pid and again.name == "pinned_prog"
        assert again.test_run(b"\0" * 16).retval == 0
    with pytest.raises(ConfigError, match=r"pinned at .*: not a map \(a program object\)"):
        Map.from_pin(path)
    with pytest.raises(ConfigError, match="not a link"):
        Link.from_pin(path)
    bpffs.remove_tree(pin_dir)


def _stops_counting(hits: Map, within_s: float = 5.0) -> bool:
    """Whether the counter stops moving: the kernel frees an unpinned link from a work queue, later."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        stopped = hits.lookup_int(0) or 0
        os.getppid()
        if (hits.lookup_int(0) or 0) == stopped:
            return True
        time.sleep(0.01)
    return False


def test_pinned_link_keeps_program_attached(pin_dir: Path) -> None:
    path = pin_dir / "link"
    with Map.create(MapType.ARRAY, 4, 8, 1, name=f"pl_{uuid.uuid4().hex[:6]}") as hits:
        with Program.load(ProgType.RAW_TRACEPOINT, counter(hits, os.getpid()), name="pinned_link") as prog:
            link = attach_raw_tracepoint(prog, "sys_enter")
            link.pin(path)
            link.close()
        before = hits.lookup_int(0) or 0
        os.getppid()
        assert (hits.lookup_int(0) or 0) > before, "a pinned link must keep firing after every fd closed"
        with Link.from_pin(path) as again:
            assert again.info().target == "sys_enter"
            with pytest.raises(NotSupportedError, match="forced detach of link pinned at"):
                again.detach()  # raw tracepoint links have no BPF_LINK_DETACH
        os.getppid()
        assert (hits.lookup_int(0) or 0) > before + 1, "a failed detach must leave the link attached"
        bpffs.unpin(path)
        assert _stops_counting(hits), "unpinning the last reference must detach the link"
    bpffs.remove_tree(pin_dir)


def test_pin_errors_are_one_line(pin_dir: Path, tmp_path: Path) -> None:
    with Map.create(MapType.ARRAY, 4, 4, 1, name="pinerr") as m:
        with pytest.raises(ConfigError) as ei:
            m.pin(tmp_path / "x")
        assert "is not on a bpffs mount" in str(ei.value) and "\n" not in str(ei.value)
        m.pin(pin_dir / "a")
        with pytest.raises(SyscallError) as ei2:
            m.pin(pin_dir / "a")
        assert ei2.value.errno == errno.EEXIST
        assert str(ei2.value).startswith("pin map 'pinerr' at ")
    with pytest.raises(SyscallError):
        bpffs.get(tmp_path)
    bpffs.remove_tree(pin_dir)


def test_remove_tree(pin_dir: Path, tmp_path: Path) -> None:
    with Map.create(MapType.ARRAY, 4, 4, 1, name="tree") as m:
        for rel in ("a", "d1/b", "d1/d2/c"):
            m.pin(pin_dir / rel)
    assert bpffs.remove_tree(pin_dir) == 3
    assert not pin_dir.exists()
    assert bpffs.remove_tree(pin_dir) == 0
    (tmp_path / "keep").write_text("x")
    with pytest.raises(ConfigError, match="not on a bpffs mount"):
        bpffs.remove_tree(tmp_path)
    assert (tmp_path / "keep").exists()
    with pytest.raises(ConfigError, match="whole bpffs mount"):
        bpffs.remove_tree("/sys/fs/bpf")


def test_is_bpffs_and_ensure_mounted(tmp_path: Path) -> None:
    assert bpffs.is_bpffs("/sys/fs/bpf")
    assert not bpffs.is_bpffs(tmp_path)
    assert not bpffs.is_bpffs(tmp_path / "missing")
    assert bpffs.ensure_mounted("/sys/fs/bpf") is False
    mnt = tmp_path / "bpffs"
    assert bpffs.ensure_mounted(mnt) is True
    try:
        assert bpffs.is_bpffs(mnt)
        assert bpffs.ensure_mounted(mnt) is False
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    assert not bpffs.is_bpffs(mnt)
