"""Perf event array reader against the real kernel: per-CPU buffers, samples, and PERF_RECORD_LOST."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from rawbpf.collection import load
from rawbpf.errors import ConfigError, RawBPFError
from rawbpf.perfbuf import PerfBuffer
from rawbpf.records import ring_decoder

FLOOD = Path(__file__).resolve().parents[1] / "data" / "ringbuf" / "flood.o"


def test_samples_and_lost_records_account_for_every_attempt() -> None:
    consts = {"target_tgid": os.getpid(), "per_call": 0}
    with load(str(FLOOD), programs=["on_getppid"], constants=consts) as coll:
        coll.attach_all()
        dec = ring_decoder(coll.spec.btf, "samples")
        out: List[Dict[str, Any]] = []
        lost: List[Tuple[int, int]] = []
        with PerfBuffer(coll.maps["samples"], sink=lambda b, r: out.extend(dec.decode_runs(b, r, len(out))),
                        lost=lambda cpu, n: lost.append((cpu, n)), pages=1) as pb:
            assert len(pb.fds()) >= 1
            for _ in range(3):
                os.getppid()
            assert pb.poll(1000) == 3  # wakeup_events=1: the first sample wakes the waiter
            for _ in range(2000):  # a one-page buffer cannot hold these
                os.getppid()
            pb.drain()
            os.getppid()  # the kernel writes its lost record before the next sample that fits
            pb.drain()
            attempts = coll.variables["sample_attempts"]
            assert attempts == 2004
            assert pb.lost == sum(n for _, n in lost) > 0
            assert len(out) + pb.lost == attempts
        assert [r["n"] for r in out][:3] == [0, 1, 2]
        assert all(r["type"] == "tick" and r["pid"] == os.getpid() for r in out)


def test_callback_mode_gives_cpu_and_payload() -> None:
    consts = {"target_tgid": os.getpid(), "per_call": 0}
    with load(str(FLOOD), programs=["on_getppid"], constants=consts) as coll:
        coll.attach_all()
        got: List[Tuple[int, int]] = []
        with PerfBuffer(coll.maps["samples"], callback=lambda cpu, b: got.append((cpu, len(b)))) as pb:
            os.getppid()
            assert pb.poll(1000) == 1
        assert got[0][1] >= 32  # the 32-byte record, padded by the kernel to keep 8-byte alignment


def test_bad_arguments() -> None:
    with load(str(FLOOD), programs=["flood"]) as coll:
        with pytest.raises(ConfigError, match="power of two"):
            PerfBuffer(coll.maps["samples"], callback=print, pages=3)
        with pytest.raises(RawBPFError, match="not perf_event_array"):
            PerfBuffer(coll.maps["events"], callback=print)
