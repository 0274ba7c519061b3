"""make test-kernels' own logic: the test files split over guests, one line per kernel from their parts."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("test_kernels_tool", ROOT / "tools" / "test_kernels.py")
assert _spec is not None and _spec.loader is not None
tk = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tk)


def test_every_kernel_test_file_lands_in_exactly_one_guest_and_the_loads_are_close() -> None:
    groups = tk.split_tests(["tests/kernel"], 2)
    files = sorted(p.name for p in (ROOT / "tests" / "kernel").glob("test_*.py"))
    assert len(groups) == 2
    assert sorted(Path(t).name for g in groups for t in g) == files
    cost = [sum(tk.COSTS.get(Path(t).name, tk.DEFAULT_COST) for t in g) for g in groups]
    assert abs(cost[0] - cost[1]) <= max(tk.COSTS.values())


def test_node_ids_of_one_file_stay_together_and_one_file_needs_one_guest() -> None:
    a = "tests/kernel/test_maps.py::test_one"
    b = "tests/kernel/test_maps.py::test_two"
    assert tk.split_tests([a, b], 2) == [[a, b]]
    groups = tk.split_tests([a, "tests/kernel/test_monitor_program.py", b], 2)
    assert sorted(map(sorted, groups)) == [[a, b], ["tests/kernel/test_monitor_program.py"]]


def _part(out: Path, name: str, cases: str, monitor: object = None) -> None:
    (out / f"{name}.xml").write_text(f"<testsuites><testsuite>{cases}</testsuite></testsuites>")
    summary = {"release": "6.1.0-57-amd64", "pytest_exit": 1 if "<failure" in cases else 0}
    if monitor is not None:
        summary["monitor"] = monitor
    (out / f"{name}.json").write_text(json.dumps(summary))


def test_one_line_per_kernel_adds_up_its_guests(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _part(tmp_path, "k.1", '<testcase classname="tests.kernel.test_a" name="t1"/>'
          '<testcase classname="tests.kernel.test_a" name="t2">'
          '<skipped message="kernel limit: x"/></testcase>',
          {"problems": [], "attach_s": 2.5, "records": 40})
    _part(tmp_path, "k.2", '<testcase classname="tests.kernel.test_b" name="t3"><failure/></testcase>'
          '<testcase classname="tests.kernel.test_b" name="t4"/>')
    assert not tk.summarise(tmp_path, "?", ["k.1", "k.2"], "here", 10.0)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "kernel 6.1.0-57-amd64: 3 passed, 1 failed, 1 skipped"  # t1, t4 and the workload
    assert "  FAILED tests/kernel/test_b.py::t3" in out
    assert "  skipped tests/kernel/test_a.py::t2: kernel limit: x" in out


def test_a_guest_that_left_no_results_is_a_failure(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _part(tmp_path, "k.1", '<testcase classname="tests.kernel.test_a" name="t1"/>', {"problems": []})
    assert not tk.summarise(tmp_path, "6.1.0-57-amd64", ["k.1", "k.2"], "here", 10.0)
    out = capsys.readouterr().out
    assert out.startswith("kernel 6.1.0-57-amd64: 2 passed, 1 failed, 0 skipped\n")
    assert "FAILED k.2: no results" in out
