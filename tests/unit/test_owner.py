"""Pin directory ownership (flock + owner record) on a plain directory, and what status and the log make of it
(no root, no kernel)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rawbpf.errors import ConfigError
from rawbpf.logfile import LogWriter
from rawbpf.monitor.status import read_status, write_status
from rawbpf.owner import OwnerRecord, PinDirLock, lock_holder, process_start, read_owner, running

DEAD = OwnerRecord(2**22 + 7, 12345, "")  # above PID_MAX_LIMIT: never a live process


def test_process_start_and_record() -> None:
    me = OwnerRecord.current()
    assert me.pid == os.getpid() and me.start == process_start(os.getpid()) and me.start > 0
    assert me.alive()
    assert not OwnerRecord(me.pid, me.start + 1, me.boot).alive()  # same pid, another process
    assert not OwnerRecord(me.pid, me.start, "0" * 8).alive()  # another boot
    assert not DEAD.alive() and process_start(DEAD.pid) is None
    assert "." not in me.name  # bpffs refuses dots


def test_lock_names_the_holder_and_is_released(tmp_path: Path) -> None:
    d = tmp_path / "root" / "obj"
    lock = PinDirLock(str(d), "obj")
    assert lock.acquire().stale_pid is None
    assert lock_holder(str(d)) == os.getpid() and running(str(d)) == os.getpid()
    assert read_owner(str(d)) == lock.record
    with pytest.raises(ConfigError, match=rf"'obj' is already loaded and running as pid {os.getpid()} "):
        PinDirLock(str(d), "obj").acquire()
    lock.release()
    assert not d.exists() and not d.parent.exists()  # made by the lock, removed by it
    lock.release()  # idempotent


def test_dead_owner_pins_are_taken_over(tmp_path: Path) -> None:
    d = tmp_path / "obj"
    d.mkdir()
    (d / DEAD.name).mkdir()
    (d / "events").write_text("")  # stands in for a pin
    assert running(str(d)) is None
    with PinDirLock(str(d), "obj") as lock:
        owner = lock.acquire()
        assert (owner.stale_pins, owner.stale_pid) == (1, DEAD.pid)
        assert sorted(os.listdir(d)) == [lock.record.name if lock.record else ""]
    assert not d.exists()  # the dead owner's directory goes with its pins


def test_unknown_or_live_contents_are_refused(tmp_path: Path) -> None:
    d = tmp_path / "obj"
    d.mkdir()
    (d / "foreign").write_text("")
    with pytest.raises(ConfigError, match="is not empty: 'obj' is already loaded \\(or left over"):
        PinDirLock(str(d), "obj").acquire()
    (d / OwnerRecord.current().name).mkdir()  # a live owner that holds no lock
    with pytest.raises(ConfigError, match=f"already loaded by pid {os.getpid()} "):
        PinDirLock(str(d), "obj").acquire()
    assert sorted(os.listdir(d)) == sorted(["foreign", OwnerRecord.current().name])


def test_status_says_stale_pins(tmp_path: Path) -> None:
    pins = tmp_path / "pins"
    pins.mkdir()
    (pins / DEAD.name).mkdir()
    (pins / "events").write_text("")
    write_status(str(tmp_path), {"pid": DEAD.pid, "pid_start": DEAD.start, "pin_dir": str(pins)})
    with pytest.raises(ConfigError, match=rf"^status: claude_monitor is not running \(stale pins from pid "
                                          rf"{DEAD.pid} in {pins};"):
        read_status(str(tmp_path))
    # a reused pid (alive, other start time) is not the daemon either
    write_status(str(tmp_path), {"pid": os.getpid(), "pid_start": 1, "pin_dir": str(tmp_path / "gone")})
    with pytest.raises(ConfigError, match=r"is not running; .* is stale"):
        read_status(str(tmp_path))


def test_flush_due(tmp_path: Path) -> None:
    with LogWriter(str(tmp_path), flush_interval=0.1) as w:
        assert w.flush_due() is None  # nothing pending: nothing to wake up for
        w.write({"type": "x"})
        due = w.flush_due()
        assert due is not None and 0.0 <= due <= 0.1
        assert w.flush_due(now=w._last_flush + 5) == 0.0
        w.flush()
        assert w.flush_due() is None
