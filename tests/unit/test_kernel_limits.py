"""RAWBPF_REQUIRE_KERNEL=1 lets a kernel test skip only as a proven kernel limit (kernel_limits.py): absent
on a kernel older than the release named, it skips; absent on a later kernel, it fails; any other skip of a
kernel test fails. Run as a separate pytest over a copy of the suite's conftest; no root, no kernel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict

ROOT = Path(__file__).resolve().parents[2]

CASES = '''
import pytest
from kernel_limits import require

def test_limit_on_an_older_kernel():
    require(False, "a feature of the far future", "99.0")

def test_missing_on_a_kernel_that_has_it():
    require(False, "a feature of old", "2.6")

def test_present():
    require(True, "anything", "99.0")

def test_plain_skip():
    pytest.skip("no reason given")
'''


def _run(tmp_path: Path, require: bool) -> Dict[str, str]:
    kernel = tmp_path / "tests" / "kernel"
    kernel.mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "tests" / "conftest.py")
    shutil.copy(ROOT / "tests" / "kernel" / "kernel_limits.py", kernel / "kernel_limits.py")
    (kernel / "test_cases.py").write_text(CASES)
    env = dict(os.environ, RAWBPF_REQUIRE_KERNEL="1" if require else "0")
    xml = tmp_path / "out.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--rootdir={tmp_path}",
                    "-o", "addopts=", f"--junitxml={xml}", str(kernel / "test_cases.py")],
                   cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    out = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            out[case.get("name", "")] = "failed"
        elif (skip := case.find("skipped")) is not None:
            out[case.get("name", "")] = "skipped: " + skip.get("message", "")
        else:
            out[case.get("name", "")] = "passed"
    return out


def test_only_a_proven_kernel_limit_skips_when_kernel_tests_are_required(tmp_path: Path) -> None:
    got = _run(tmp_path, require=True)
    assert got["test_limit_on_an_older_kernel"].startswith(
        "skipped: kernel limit: a feature of the far future needs Linux 99.0; this is ")
    assert got["test_missing_on_a_kernel_that_has_it"] == "failed"
    assert got["test_present"] == "passed"
    assert got["test_plain_skip"] == "failed"


def test_without_the_requirement_a_plain_skip_stays_a_skip(tmp_path: Path) -> None:
    got = _run(tmp_path, require=False)
    assert got["test_plain_skip"].startswith("skipped")
    assert got["test_missing_on_a_kernel_that_has_it"] == "failed"
