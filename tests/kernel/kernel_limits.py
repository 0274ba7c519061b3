"""Kernel limits: a kernel test that cannot run on an older kernel skips only with proof.

``require(present, what, since)`` is called with the outcome of a real probe on the running kernel (a feature
probe, a kernel BTF lookup, what the kernel answered). When the thing is present the test goes on. When it is
absent on a kernel older than ``since``, the test is skipped with a reason starting ``kernel limit:``; these
are the only skips RAWBPF_REQUIRE_KERNEL=1 lets through (tests/conftest.py), and the README's kernel table
lists them. When it is absent on a kernel that should have it, the test fails: that is a bug, not a limit.
"""

from __future__ import annotations

import os
import re
from typing import Tuple

import pytest

PREFIX = "kernel limit:"


def release() -> str:
    return os.uname().release


def version(text: str) -> Tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", text)
    if not m:
        raise ValueError(f"not a kernel version: {text!r}")
    return int(m.group(1)), int(m.group(2))


def require(present: bool, what: str, since: str) -> None:
    """Go on when ``present``; skip as a kernel limit on kernels before ``since``; fail on later ones."""
    if present:
        return
    if version(release()) >= version(since):
        pytest.fail(f"{what} is missing on Linux {release()}, which should have it (since {since})")
    pytest.skip(f"{PREFIX} {what} needs Linux {since}; this is {release()}")


def require_feature(name: str) -> None:
    """``require`` for one of rawbpf.features' probes, with its description and first release."""
    from rawbpf import features

    f = features.feature(name)
    require(features.has(name), f.description, f.min_kernel)
