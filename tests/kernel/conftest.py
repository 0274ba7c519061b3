"""Fixtures for tests against the real kernel: availability, bpffs, and leak checks.

Every kernel test is checked for leaked BPF/perf file descriptors; ``pin_dir`` gives a private bpffs directory
that must be empty again when the test ends.
"""

from __future__ import annotations

import gc
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator, Set

import pytest

from rawbpf import bpffs

BPFFS = Path("/sys/fs/bpf")


def _kernel_unavailable_reason() -> str:
    if os.geteuid() != 0:
        return "kernel tests need root"
    if not Path("/sys/kernel/btf/vmlinux").exists():
        return "kernel has no BTF (/sys/kernel/btf/vmlinux)"
    return ""


@pytest.fixture(scope="session", autouse=True)
def kernel_available() -> None:
    reason = _kernel_unavailable_reason()
    if reason:
        pytest.skip(reason)
    # rawbpf's own on-demand mount (what `rawbpf load` does); tracefs is left to the code that needs it
    bpffs.ensure_mounted(str(BPFFS))


def _bpf_fds() -> Set[str]:
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if "bpf" in target or "perf_event" in target:
            out.add(f"{fd}:{target}")
    return out


@pytest.fixture(autouse=True)
def no_fd_leaks() -> Iterator[None]:
    """Fail a test that leaves a BPF map/program/link/BTF or perf-event fd open."""
    gc.collect()
    before = _bpf_fds()
    yield
    gc.collect()
    leaked = _bpf_fds() - before
    assert not leaked, f"test leaked kernel fds: {sorted(leaked)}"


@pytest.fixture()
def pin_dir() -> Iterator[Path]:
    """A private directory under /sys/fs/bpf; the test must leave it empty (it is removed afterwards)."""
    path = BPFFS / f"rawbpf-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield path
    left = sorted(p.name for p in path.rglob("*")) if path.exists() else []
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():
            for p in sorted(path.rglob("*"), reverse=True):
                (p.rmdir() if p.is_dir() else p.unlink())
            path.rmdir()
    assert not left, f"test left pinned objects behind: {left}"


@pytest.fixture(scope="session")
def claude_cli() -> str:
    """Path of the real Claude Code CLI (``claude``); skips when it is not installed (fails in CI)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from workload.claude_stub import find_claude

    path = find_claude()
    if path is None:
        pytest.skip("the claude CLI is not installed (npm install -g @anthropic-ai/claude-code)")
    return path
