"""The msgpack log: rotation boundaries, seq continuity, torn tails, restart, follow, symlinks, full disk."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List

import msgpack
import pytest

from rawbpf.errors import ConfigError, LogFormatError
from rawbpf.logfile import LogReader, LogWriter, pack_records


def read_all(d: Path) -> List[Dict[str, Any]]:
    with LogReader(str(d)) as r:
        return list(r.records())


def body(recs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [r for r in recs if r["type"] != "header"]


def assert_seq_continuous(recs: List[Dict[str, Any]]) -> None:
    seqs = [r["seq"] for r in recs]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 65535, 65536, 70000])
def test_pack_records_is_the_concatenation(n: int) -> None:
    recs = [{"i": i} for i in range(n)]
    assert pack_records(recs) == b"".join(msgpack.packb(r) for r in recs)


def test_write_read_roundtrip_with_header(tmp_path: Path) -> None:
    with LogWriter(str(tmp_path), header={"object": "x.o"}) as w:
        w.write({"type": "exec", "pid": 1, "data": b"\x00\xff"})
        w.write_many([{"type": "exit", "pid": 2}, {"type": "exit", "pid": 3, "ts": 123}])
    recs = read_all(tmp_path)
    assert recs[0]["type"] == "header" and recs[0]["object"] == "x.o" and recs[0]["format"] == 1
    assert {"host", "boot_id", "start_time", "pid"} <= set(recs[0])
    assert [r["type"] for r in recs] == ["header", "exec", "exit", "exit"]
    assert recs[1]["data"] == b"\x00\xff" and recs[3]["ts"] == 123
    assert all(isinstance(r["ts"], int) and r["ts"] > 0 for r in recs)
    assert_seq_continuous(recs)
    assert list(recs[1])[:2] == ["seq", "ts"]


def test_files_are_0600_and_never_follow_symlinks(tmp_path: Path) -> None:
    with LogWriter(str(tmp_path)) as w:
        w.write({"type": "x"})
        st = os.stat(w.current_file)
    assert stat.S_IMODE(st.st_mode) == 0o600
    link = tmp_path.parent / f"link-{uuid.uuid4().hex}"
    link.symlink_to(tmp_path)
    try:
        with pytest.raises(ConfigError, match="is a symlink"):
            LogWriter(str(link))
        with pytest.raises(ConfigError, match="is a symlink"):
            LogReader(str(link))
    finally:
        link.unlink()


def test_symlink_planted_as_a_log_file_is_refused_by_the_reader(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_bytes(msgpack.packb({"seq": 0, "type": "x"}))
    (tmp_path / f"rawbpf-{0:016d}-{1:019d}.mlog").symlink_to(target)
    with LogReader(str(tmp_path)) as r, pytest.raises(LogFormatError, match="symlink"):
        list(r.records())


def test_size_rotation_keeps_backups_and_seq(tmp_path: Path) -> None:
    with LogWriter(str(tmp_path), max_bytes=2048, backups=2, flush_interval=0) as w:
        for i in range(400):
            w.write({"type": "t", "i": i, "pad": "x" * 20})
            w.flush()
        assert w.rotations > 3
    files = sorted(os.listdir(tmp_path))
    assert len(files) == 3  # current + 2 backups
    for f in files:
        assert os.path.getsize(tmp_path / f) <= 2048
    recs = read_all(tmp_path)
    assert recs[0]["type"] == "header"
    assert_seq_continuous(recs)
    assert body(recs)[-1]["i"] == 399
    # every file starts with a header
    for f in files:
        with open(tmp_path / f, "rb") as fh:
            assert next(iter(msgpack.Unpacker(fh, raw=False)))["type"] == "header"


def test_record_exactly_at_the_boundary(tmp_path: Path) -> None:
    rec = {"type": "t", "pad": "y" * 100}
    with LogWriter(str(tmp_path), max_bytes=1024, flush_interval=0) as w:
        hdr_size = os.path.getsize(w.current_file)
        one = len(msgpack.packb({"seq": 1, "ts": time.time_ns(), **rec}))
        fit = (1024 - hdr_size) // one
        for _ in range(fit):
            w.write(rec)
        w.flush()
        assert w.rotations == 0
        w.write(rec)
        w.flush()
        assert w.rotations == 1
    assert len(os.listdir(tmp_path)) == 2
    assert len(body(read_all(tmp_path))) == fit + 1


def test_age_rotation(tmp_path: Path) -> None:
    with LogWriter(str(tmp_path), max_age=0.05, flush_interval=0) as w:
        w.write({"type": "a"})
        time.sleep(0.08)
        w.maybe_flush()
        w.write({"type": "b"})
    assert len(os.listdir(tmp_path)) == 2
    assert [r["type"] for r in read_all(tmp_path)] == ["header", "a", "header", "b"]


def test_reopen_starts_a_new_file_after_logrotate_moved_it(tmp_path: Path) -> None:
    d = tmp_path / "log"
    with LogWriter(str(d)) as w:
        w.write({"type": "a"})
        w.flush()
        moved = tmp_path / "archived.mlog"
        os.rename(w.current_file, moved)
        w.reopen()
        w.write({"type": "b"})
    assert [r["type"] for r in read_all(d)] == ["header", "b"]
    assert read_all(d)[0]["seq"] == 2  # continues after the moved file's records


def test_torn_tail_is_skipped_and_writer_resumes_seq(tmp_path: Path) -> None:
    w = LogWriter(str(tmp_path))
    for i in range(10):
        w.write({"type": "t", "i": i})
    w.close()
    name = sorted(os.listdir(tmp_path))[-1]
    good = msgpack.packb({"seq": 11, "ts": 1, "type": "t", "i": 10})
    with open(tmp_path / name, "ab") as f:
        f.write(good[:-3])  # the write a kill -9 interrupted
    with LogReader(str(tmp_path)) as r:
        recs = list(r.records())
        assert r.torn == 1
    assert body(recs)[-1]["i"] == 9
    w = LogWriter(str(tmp_path))
    w.write({"type": "t", "i": 100})
    w.close()
    recs = read_all(tmp_path)
    assert_seq_continuous(recs)
    assert body(recs)[-1]["i"] == 100 and len(os.listdir(tmp_path)) == 2


def test_kill_9_of_a_writing_process(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom rawbpf.logfile import LogWriter\n"
        "w = LogWriter(sys.argv[1], flush_interval=0)\n"
        "i = 0\nwhile True:\n    w.write({'type': 't', 'i': i, 'p': 'z' * 300}); w.flush(); i += 1\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=Path(__file__).parents[2])
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            files = [f for f in os.listdir(tmp_path) if f.endswith(".mlog")]
            if files and os.path.getsize(tmp_path / files[0]) > 100_000:
                break
            time.sleep(0.02)
    finally:
        p.kill()
        p.wait()
    before = body(read_all(tmp_path))
    assert len(before) > 100
    with LogWriter(str(tmp_path)) as w:
        w.write({"type": "t", "i": -1})
    recs = read_all(tmp_path)
    assert_seq_continuous(recs)
    assert body(recs)[:-2] == before
    # the restart names the window nobody wrote in: from the dead writer's last record to the new start
    crash = body(recs)[-2]
    assert crash["type"] == "crash" and crash["writer_pid"] == p.pid
    assert crash["since"] == before[-1]["ts"] and crash["until"] > crash["since"]
    assert body(recs)[-1]["i"] == -1


def _logfiles(d: Path) -> List[Path]:
    return sorted(p for p in d.iterdir() if p.name.endswith(".mlog"))


@pytest.mark.parametrize("damage", [b"\xc1", b"\x00" * 4096, bytes(range(256)) * 3, b"\xdb\xff\xff\xff\xff",
                                    b"\xdd\x03\xd0\x00\x00", b"\xdf\x00\xff\xff\xff"])
def test_damage_in_the_middle_is_skipped_and_reported(tmp_path: Path, damage: bytes) -> None:
    """Garbage, power-loss NUL padding, or a length field claiming 4 GiB: skipped with a notice naming file,
    offset and size; the rest of the file and the later files are read (this stopped the reader for good)."""
    with LogWriter(str(tmp_path), max_bytes=2048, flush_interval=0) as w:
        for i in range(60):
            w.write({"type": "t", "i": i})
            w.flush()
    first = _logfiles(tmp_path)[0]
    good = first.read_bytes()
    cut = good.index(msgpack.packb({"seq": 5})[1:5])  # where the record with seq 5 starts, less its header
    cut -= 1
    first.write_bytes(good[:cut] + damage + good[cut:])
    notes: List[Any] = []
    with LogReader(str(tmp_path), on_damage=lambda *a: notes.append(a)) as r:
        recs = list(r.records())
    assert [x["i"] for x in body(recs)] == list(range(60))
    assert notes == [(str(first), cut, len(damage))] and r.damaged == 1 and r.skipped_bytes == len(damage)


def test_damage_at_the_end_of_the_newest_file_then_restart(tmp_path: Path) -> None:
    """The next writer resumes seq above every seq seen, in a new file sorting after the damaged one, and a
    gap record says what happened (the next run reused old seq numbers in a file tail never reached)."""
    with LogWriter(str(tmp_path), flush_interval=0) as w:
        for i in range(10):
            w.write({"type": "t", "i": i})
    damaged = _logfiles(tmp_path)[-1]
    data = damaged.read_bytes()
    tail = msgpack.packb({"seq": 11, "ts": 1, "type": "t", "i": 10})
    damaged.write_bytes(data + b"\x00" * 512 + tail + b"\xdb\xff\xff\xff\xff" + b"x" * 300)
    with LogWriter(str(tmp_path)) as w:
        w.write({"type": "t", "i": 100})
    files = _logfiles(tmp_path)
    assert files[0] == damaged and len(files) == 2
    recs = read_all(tmp_path)
    gap = [r for r in recs if r["type"] == "gap"]
    assert len(gap) == 2 and gap[0]["file"] == damaged.name and gap[0]["offset"] == len(data)
    assert gap[0]["bytes"] == 512 and gap[1]["offset"] == len(data) + 512 + len(tail)
    assert gap[1]["bytes"] == 305 and all(g["last_seq"] == 11 for g in gap)
    after = recs[recs.index(gap[0]) - 1]
    assert after["type"] == "header" and after["seq"] == 12
    assert_seq_continuous(recs)


def test_a_torn_tail_without_a_crash_is_a_gap(tmp_path: Path) -> None:
    """A writer that stopped cleanly leaves no torn record: one found later is damage, not a crash."""
    with LogWriter(str(tmp_path)) as w:
        w.write({"type": "t"})
    f = _logfiles(tmp_path)[-1]
    size = f.stat().st_size
    with open(f, "ab") as out:
        out.write(b"\x85\xa3seq\x05\xa2ts")
    with LogWriter(str(tmp_path)):
        pass
    gap = [r for r in read_all(tmp_path) if r["type"] == "gap"]
    assert [(g["file"], g["offset"], g["bytes"]) for g in gap] == [(f.name, size, 9)]


def test_one_writer_per_log_dir(tmp_path: Path) -> None:
    """A second writer is refused naming the running pid and object (it used to delete the running
    writer's current file)."""
    code = ("import sys, time\nfrom rawbpf.logfile import LogWriter\n"
            "w = LogWriter(sys.argv[1], header={'object': 'claude_monitor'}, backups=0)\n"
            "w.write({'type': 't'}); w.flush(); print('ready', flush=True); time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                         cwd=Path(__file__).parents[2])
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        running = _logfiles(tmp_path)
        with pytest.raises(ConfigError, match=rf"is in use: 'claude_monitor' is running as pid {p.pid}"):
            LogWriter(str(tmp_path), backups=0, header={"object": "other"})
        from rawbpf.logfile import probe

        with pytest.raises(ConfigError, match=rf"'claude_monitor' is running as pid {p.pid}"):
            probe(str(tmp_path))
        assert _logfiles(tmp_path) == running
    finally:
        p.kill()
        p.wait()


def test_rotation_deletes_only_its_own_objects_files(tmp_path: Path) -> None:
    with LogWriter(str(tmp_path), header={"object": "a"}) as w:
        w.write({"type": "t"})
    theirs = _logfiles(tmp_path)
    with LogWriter(str(tmp_path), header={"object": "b"}, max_bytes=1024, backups=1, flush_interval=0) as w:
        for i in range(200):
            w.write({"type": "t", "i": i, "pad": "x" * 40})
            w.flush()
    files = _logfiles(tmp_path)
    assert files[0] == theirs[0] and len(files) == 3


def test_log_dir_modes(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        d = tmp_path / "made" / "log"
        with LogWriter(str(d)):
            pass
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    finally:
        os.umask(old)
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(ConfigError, match=r"group- or world-writable \(mode 0777\).*chmod go-w"):
        LogWriter(str(open_dir))
    assert os.listdir(open_dir) == []


def test_removed_log_dir_is_recreated_and_the_loss_counted(tmp_path: Path, caplog: Any) -> None:
    d = tmp_path / "log"
    with LogWriter(str(d), flush_interval=0) as w:
        w.write({"type": "t", "i": 0})
        w.flush()
        shutil.rmtree(d)
        w._next_dir_check = 0.0
        w.write({"type": "t", "i": 1})
        w.flush()  # notices, recreates the directory; the record meant for the removed one is counted
        w.write({"type": "t", "i": 2})
    recs = read_all(d)
    assert recs[0]["type"] == "header"
    assert [(r["type"], r.get("i"), r.get("count"), r.get("reason"), r.get("error")) for r in body(recs)] == [
        ("lost", None, 1, "log", "log dir removed"), ("t", 2, None, None, None)]
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert sum("recreated" in r.message for r in caplog.records) == 1


class FullDisk:
    """A write(2) that fails with ENOSPC (after a partial write) while ``full`` is set."""

    def __init__(self) -> None:
        self.full = False

    def __call__(self, fd: int, data: bytes) -> int:
        if self.full:
            if len(data) > 10:
                os.write(fd, data[:7])  # a partial write the writer must truncate away
                self.full_partial = True
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.write(fd, data)


def test_full_disk_is_counted_and_reported_never_raised(tmp_path: Path) -> None:
    disk = FullDisk()
    with LogWriter(str(tmp_path), write=disk, flush_interval=0) as w:
        w.write({"type": "a"})
        w.flush()
        disk.full = True
        for _ in range(5):
            w.write({"type": "b"})
        w.flush()
        w.write({"type": "c"})
        w.flush()
        assert w.lost_records == 6
        disk.full = False
        w.write({"type": "d"})
    recs = read_all(tmp_path)
    kinds = [r["type"] for r in recs]
    assert kinds == ["header", "a", "d", "lost"]
    lost = recs[3]
    assert lost["count"] == 6 and lost["reason"] == "log" and lost["error"] == "no space left on device"
    # the gap in seq is exactly what the lost record accounts for, and the partial write was truncated away
    assert recs[2]["seq"] - recs[1]["seq"] - 1 == 6 and lost["seq"] == recs[2]["seq"] + 1


_FULL_DISK = """
import json, os, sys
from pathlib import Path
from rawbpf.logfile import LogReader, LogWriter
mnt = Path(sys.argv[1])
with LogWriter(str(mnt), max_bytes=1 << 20, flush_interval=0) as w:
    for i in range(2000):
        w.write({"type": "t", "i": i, "pad": "p" * 100})
        w.flush()
    lost = w.lost_records
    for f in os.listdir(mnt):  # space comes back (an operator cleans up)
        if f.endswith(".mlog") and mnt / f != Path(w.current_file):
            os.unlink(mnt / f)
    os.truncate(w.current_file, 0)
    w._size = 0
    w.write({"type": "after"})
with LogReader(str(mnt)) as r:
    print(json.dumps({"lost": lost, "records": [(x["type"], x.get("count"), x.get("reason"))
                                                  for x in r.records()]}))
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="tmpfs mount needs root")
def test_full_disk_on_a_tiny_tmpfs(tmp_path: Path) -> None:
    """A real ENOSPC from a 64 KiB tmpfs mounted in a private mount namespace: counted, said once on stderr,
    and a ``lost`` record with reason ``log`` once space comes back."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    script = tmp_path / "full.py"
    script.write_text(_FULL_DISK)
    cp = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                         'mount -t tmpfs -o size=64k,mode=0700 tmpfs "$1" && exec "$2" "$3" "$1"', "sh",
                         str(mnt), sys.executable, str(script)],
                        capture_output=True, text=True, cwd=Path(__file__).parents[2], timeout=120)
    assert cp.returncode == 0, cp.stderr
    out = json.loads(cp.stdout)
    assert out["lost"] > 0
    assert out["records"] == [["after", None, None], ["lost", out["lost"], "log"]]
    assert cp.stderr.count("counting records as lost") == 1, cp.stderr
    assert os.listdir(mnt) == []  # the mount never reached this namespace


def test_follow_across_rotation_without_loss_or_duplicates(tmp_path: Path) -> None:
    total = 3000
    done = threading.Event()

    def produce() -> None:
        with LogWriter(str(tmp_path), max_bytes=4096, backups=1000, flush_interval=0.001) as w:
            for i in range(total):
                w.write({"type": "t", "i": i})
                if i % 50 == 0:
                    w.flush()
                    time.sleep(0.001)
        done.set()

    seen: List[int] = []
    t = threading.Thread(target=produce)
    with LogReader(str(tmp_path)) as r:
        t.start()
        for rec in r.records(follow=True, poll_interval=0.005, stop=done.is_set):
            if rec["type"] == "t":
                seen.append(rec["i"])
        assert r.gaps == 0 and r.torn == 0
    t.join()
    assert len(os.listdir(tmp_path)) > 10
    assert seen == list(range(total))


def test_follow_reports_pruned_files_as_a_gap(tmp_path: Path) -> None:
    with LogWriter(str(tmp_path), max_bytes=1024, backups=1, flush_interval=0) as w:
        for i in range(300):
            w.write({"type": "t", "i": i})
            w.flush()
    with LogReader(str(tmp_path)) as r:
        recs = list(r.records(start_after_seq=0))
        assert r.gaps == 1 and r.missing == recs[0]["seq"] - 1


def test_tail_n_reads_only_the_newest(tmp_path: Path) -> None:
    with LogWriter(str(tmp_path), max_bytes=2048, backups=50, flush_interval=0) as w:
        for i in range(500):
            w.write({"type": "t", "i": i})
            w.flush()
    with LogReader(str(tmp_path)) as r:
        last = r.tail(7)
    assert [x.get("i") for x in last if x["type"] == "t"][-5:] == [495, 496, 497, 498, 499]
    assert len(last) == 7


def test_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max bytes 10 is too small"):
        LogWriter(str(tmp_path), max_bytes=10)
    with pytest.raises(ConfigError, match=r"log dir .*: no such file"):
        LogReader(str(tmp_path / "absent"))


def test_rotation_that_cannot_create_a_file_keeps_writing(tmp_path: Path) -> None:
    with LogWriter(str(tmp_path), max_bytes=1024, flush_interval=0) as w:
        real = w._create

        def full() -> Any:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        w._create = full  # type: ignore[method-assign]
        for i in range(100):
            w.write({"type": "t", "i": i})
        w.flush()
        assert w.rotate_errors >= 1 and w.rotations == 0 and w.lost_records == 0
        w._create = real  # type: ignore[method-assign]
        w._retry_rotate = 0.0
        w.write({"type": "t", "i": 100})
        assert w.rotations == 1
    recs = body(read_all(tmp_path))
    assert [r["i"] for r in recs] == list(range(101))


def test_writing_after_close_is_an_error(tmp_path: Path) -> None:
    w = LogWriter(str(tmp_path))
    w.close()
    w.close()
    with pytest.raises(ConfigError, match="the writer is closed"):
        w.write({"type": "x"})


def test_batches_larger_than_a_file_keep_seq_contiguous(tmp_path: Path) -> None:
    w = LogWriter(str(tmp_path), max_bytes=1024, backups=50)
    for _ in range(3):
        w.write_many([{"type": "x", "data": "a" * 80} for _ in range(12)])
    w.close()
    recs = list(LogReader(str(tmp_path)).records())
    seqs = [r["seq"] for r in recs]
    assert seqs == list(range(seqs[0], seqs[0] + len(recs)))
    assert sum(r["type"] == "x" for r in recs) == 36
    # no file holds only its header
    types = [r["type"] for r in recs]
    assert all(not (a == "header" and b == "header") for a, b in zip(types, types[1:]))
