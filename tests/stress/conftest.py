"""Fixtures for the slow reliability suites (make stress): every test here is marked ``slow``.

Suites that need the kernel skip only on a proven reason (not root); RAWBPF_REQUIRE_KERNEL=1 (set by
``make stress``) turns those skips into failures through the policy in tests/conftest.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MONITOR = ROOT / "programs" / "claude_monitor.o"


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    for item in items:
        if "tests/stress/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.slow)
            if item.get_closest_marker("needs_root") is not None:
                item.add_marker(pytest.mark.kernel)


@pytest.fixture()
def root_only() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
