"""Unit-test fixtures: a fake kernel behind rawbpf's one syscall entry."""

from __future__ import annotations

from typing import Iterator

import pytest
from fake_kernel import FakeKernel

from rawbpf import _sys, features


@pytest.fixture
def fake_kernel() -> Iterator[FakeKernel]:
    """Every bpf/perf_event_open/ioctl/close goes to a :class:`FakeKernel`; every feature probe says yes
    (probes are kernel calls too, and their answers are cached per process)."""
    fake = FakeKernel()
    saved = dict(features._cache)
    features._cache.clear()
    features._cache.update({name: True for name in features.names()})
    previous = _sys.use_backend(fake)
    try:
        yield fake
    finally:
        _sys.use_backend(previous)
        features._cache.clear()
        features._cache.update(saved)
        # descriptors a failing test leaked stay open: objects still holding them close them when collected,
        # and closing them here would let those objects close whatever reuses the number
