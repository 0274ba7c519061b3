"""Every failure path of the kernel layer, repeated: one-line errors and not a single fd or pin left."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from rawbpf import bpffs
from rawbpf.attach import attach_raw_tracepoint, attach_tracepoint, attach_uprobe
from rawbpf.consts import MapType, ProgType
from rawbpf.errors import RawBPFError
from rawbpf.kbtf import KernelBTF
from rawbpf.maps import Map
from rawbpf.programs import Program

ROOT = Path(__file__).resolve().parents[2]
RET0 = struct.pack("<BBhi", 0xB7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)
BAD = struct.pack("<BBhi", 0x95, 0, 0, 0)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_failures_are_one_line_and_leak_nothing(pin_dir: Path, tmp_path: Path) -> None:
    with Program.load(ProgType.TRACEPOINT, RET0, name="errs_tp") as tp, \
            Program.load(ProgType.KPROBE, RET0, name="errs_kp") as kp, \
            Map.create(MapType.ARRAY, 4, 4, 1, name="errs_map") as m:
        failing = [
            lambda: Map.create(MapType.HASH, 4, 4, 4, name="errs", flags=1 << 30),
            lambda: Map.create(MapType.ARRAY, 4, 1 << 31, 4, name="errs"),
            lambda: Map.create(MapType.ARRAY_OF_MAPS, 4, 4, 4, name="errs", inner_map_fd=1 << 20),
            lambda: Program.load(ProgType.SOCKET_FILTER, BAD, name="errs"),
            lambda: Program.load(ProgType.SOCKET_FILTER, RET0, name="errs", flags=1 << 30),
            lambda: Program.load(ProgType.TRACING, RET0, name="errs", expected_attach_type=23),
            lambda: KernelBTF.load(b"\x9f\xeb\x01\x00garbage"),
            lambda: attach_tracepoint(tp, "syscalls", "sys_enter_nothing_here"),
            lambda: attach_tracepoint(tp, "nocategory", "nothing"),
            lambda: attach_raw_tracepoint(tp, "no_such_tracepoint_xyz"),
            lambda: attach_uprobe(kp, "/bin/true", "no_such_symbol_xyz"),
            lambda: attach_uprobe(kp, str(tmp_path / "missing"), "main"),
            lambda: m.pin(tmp_path / "notbpffs"),
            lambda: Map.from_pin(pin_dir / "missing"),
            lambda: Program.from_id((1 << 31) - 7),
            lambda: Map.from_id((1 << 31) - 7),
            lambda: m.update(7, 1),
            lambda: m.lookup(b"\0"),
            lambda: m.pop(),
        ]
        before = _open_fds()
        for _round in range(25):
            for fn in failing:
                with pytest.raises(RawBPFError) as ei:
                    fn()
                msg = str(ei.value)
                assert msg and "\n" not in msg and msg[0].islower(), msg
        assert _open_fds() == before
    assert not pin_dir.exists() or not any(pin_dir.iterdir())


def test_mount_without_privilege_is_one_line(tmp_path: Path) -> None:
    code = ("from rawbpf import bpffs\nfrom rawbpf.errors import RawBPFError\n"
            f"try:\n    bpffs.ensure_mounted({str(tmp_path)!r})\nexcept RawBPFError as e:\n    print(e)\n")
    res = subprocess.run(["setpriv", "--bounding-set=-all", "--inh-caps=-all", sys.executable, "-c", code],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    want = f"mount bpffs at {tmp_path}: operation not permitted (need root or CAP_SYS_ADMIN)"
    assert res.stdout.strip() == want
    assert not bpffs.is_bpffs(tmp_path)
