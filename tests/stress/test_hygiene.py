"""Hygiene: load/attach/pin/close cycles of the monitor leave no fd, program, map, link or pin behind.

The number of cycles is a time budget: the monitor is 39 programs, and the kernel's verifier takes 2.9 to
3.8 s to load them all on the shared 2-core test machine, so 1000 cycles took about an hour. 100 cycles (6 to
7 minutes; the suite with its 30 CLI cycles about 10) still load, attach, pin and close every program and map
of the monitor 100 times over, and every id they had is checked gone: a leak of one fd, pin or kernel object
per cycle, or per some branch taken every few cycles, shows as dozens of them. ``RAWBPF_HYGIENE_CYCLES``
runs more (or fewer).

Objects are identified by the kernel ids this process created (ids are allocated cyclically, so a closed
object's id does not come back during the test), never by counting system-wide objects: others load BPF
programs on this machine at the same time.
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator, Set

import pytest

from rawbpf.collection import Collection
from rawbpf.elf import load_spec
from rawbpf.errors import RawBPFError
from rawbpf.maps import Map
from rawbpf.programs import Program

ROOT = Path(__file__).resolve().parents[2]
MONITOR = Path(os.environ.get("RAWBPF_HYGIENE_OBJ", ROOT / "programs" / "claude_monitor.o"))
CYCLES = int(os.environ.get("RAWBPF_HYGIENE_CYCLES", "100"))
CLI_CYCLES = int(os.environ.get("RAWBPF_HYGIENE_CLI_CYCLES", "30"))

pytestmark = pytest.mark.usefixtures("root_only")


@pytest.fixture()
def pins() -> Iterator[Path]:
    path = Path("/sys/fs/bpf") / f"rawbpf-stress-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield path
    left = sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []
    shutil.rmtree(path, ignore_errors=True)
    assert not left, f"pins left behind: {left}"


def _fds() -> Set[str]:
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.add(f"{fd}:{os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            pass
    return out


def _gone(kind: str, obj_id: int) -> bool:
    opener = Program.from_id if kind == "prog" else Map.from_id
    try:
        obj = opener(obj_id)
    except RawBPFError:
        return True
    obj.close()
    return False


def test_load_attach_close_cycles_leak_nothing(pins: Path) -> None:
    spec = load_spec(str(MONITOR))
    gc.collect()
    before = _fds()
    prog_ids: Set[int] = set()
    map_ids: Set[int] = set()
    links = 0
    t0 = time.monotonic()
    for cycle in range(CYCLES):
        with Collection.load(spec, pin_dir=str(pins)) as coll:
            links += len(coll.attach_all())
            coll.pin(str(pins / "objs"))
            prog_ids |= {p.info().id for p in coll.programs.values()}  # every cycle's, all checked gone
            map_ids |= {m.id for m in coll.maps.values()}
        objs = pins / "objs"
        assert not objs.exists() or not any(objs.rglob("*")), f"cycle {cycle}: pins left"
    took = time.monotonic() - t0
    gc.collect()
    leaked_fds = _fds() - before
    assert not leaked_fds, f"fds leaked: {sorted(leaked_fds)[:10]}"
    # the kernel releases links, and through them programs, from a workqueue: give it a moment
    deadline = time.monotonic() + 5.0
    while True:
        alive_progs = [i for i in prog_ids if not _gone("prog", i)]
        alive_maps = [i for i in map_ids if not _gone("map", i)]
        if not (alive_progs or alive_maps) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not alive_progs and not alive_maps, f"alive after close: progs {alive_progs} maps {alive_maps}"
    assert links >= CYCLES
    print(f"\nhygiene: {CYCLES} cycles, {links} links, {took / CYCLES * 1000:.1f} ms per cycle; "
          f"0 leaked fds, checked {len(prog_ids)} program and {len(map_ids)} map ids gone")


def test_cli_load_stop_cycles_leave_no_pins(pins: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    for cycle in range(CLI_CYCLES):
        proc = subprocess.Popen(
            [sys.executable, "-m", "rawbpf", "load", str(MONITOR), "--pin-dir", str(pins), "--log-dir",
             str(tmp_path / "log")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("attached ") and " programs in " in line:
                break
        else:
            err = proc.stderr.read() if proc.stderr else ""
            pytest.fail(f"cycle {cycle}: rawbpf load ended early: {err}")
        sig = signal.SIGINT if cycle % 2 == 0 else signal.SIGTERM
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, f"cycle {cycle}: exit {proc.returncode}: {err.strip()[-300:]}"
        assert "Traceback" not in err
        left = [p for p in pins.rglob("*") if not p.is_dir()] if pins.exists() else []
        assert not left, f"cycle {cycle}: pins left after {sig.name}: {left}"
