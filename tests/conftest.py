"""Test-suite policy shared by unit and kernel tests.

Kernel tests live in tests/kernel and are marked ``kernel`` automatically. They skip only on a proven reason
(not root, no BPF); with ``RAWBPF_REQUIRE_KERNEL=1`` every skip of a kernel test is turned into a failure, so
CI cannot pass by skipping. The one exception is a proven kernel limit (tests/kernel/kernel_limits.py): a
feature a probe found missing on a kernel older than the release that added it, skipped as ``kernel limit:``.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

REQUIRE_KERNEL = os.environ.get("RAWBPF_REQUIRE_KERNEL") == "1"
ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


def pytest_configure(config: pytest.Config) -> None:
    """Give the children the tests start the default SIGINT and SIGQUIT actions, as a terminal's would have.

    Tests check what a Ctrl-C (SIGINT) or a core-dumping SIGQUIT does to a child. A runner started in the
    background of a non-interactive shell inherits both ignored, and an ignored signal stays ignored across
    exec, so its children would never see them. A handled signal is reset to its default by exec."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGQUIT) == signal.SIG_IGN:
        signal.signal(signal.SIGQUIT, lambda signum, frame: None)


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    for item in items:
        if "tests/kernel/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.kernel)
        if "claude_cli" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.claude_cli)


def _kernel_limit(report: pytest.TestReport) -> bool:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return str(reason).startswith("Skipped: kernel limit:") or str(reason).startswith("kernel limit:")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if (
        REQUIRE_KERNEL
        and report.skipped
        and not hasattr(report, "wasxfail")
        and item.get_closest_marker("kernel") is not None
        and not _kernel_limit(report)
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"kernel test would skip, but RAWBPF_REQUIRE_KERNEL=1: {reason}"
    return report


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """tests/data: committed BPF objects and golden files."""
    return DATA
