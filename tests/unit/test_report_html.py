"""The report page in a real browser (Debian's headless chromium over the DevTools pipe): it draws without a
console error or a single network request, a tool call opens, a process node expands to its children."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

import audit_fixture  # noqa: E402

from rawbpf.audit import build_report, load_sessions, read_transcript, select_session  # noqa: E402
from rawbpf.audit.html import render_html  # noqa: E402
from tools.report_browser import check_page, find_chromium, page_ok  # noqa: E402


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        if os.environ.get("CI") or os.environ.get("RAWBPF_REQUIRE_KERNEL") == "1":
            pytest.fail("chromium is not installed: make deps installs it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


def _page(tmp_path: Path, mutate: bool = False) -> Path:
    s, _ = audit_fixture.build()
    if mutate:  # hostile text from a traced process must stay text
        p = s.spawn(s.root, "/usr/bin/sh", ["sh", "-c", "</script><script>console.error('pwned')</script>"],
                    origin="claude")
        s.exit(p, 0)
    s.write_log(str(tmp_path / "log"))
    s.write_transcript(str(tmp_path / "t.jsonl"))
    log = load_sessions(str(tmp_path / "log"))
    rep = build_report(select_session(log, "latest"), log, read_transcript(str(tmp_path / "t.jsonl")))
    page = tmp_path / "report.html"
    page.write_text(render_html(rep))
    return page


def test_page_renders_expands_and_fetches_nothing(chromium: str, tmp_path: Path) -> None:
    page = _page(tmp_path)
    res = check_page(str(page), screenshot=str(tmp_path / "shot.png"), binary=chromium)
    assert res["errors"] == [] and res["requests"] == [], res
    e = res["expand"]
    assert e["calls"] == 4 and e["opened"] > e["before"], e  # the call's process tree appears
    assert e["expanded"] == "true" and e["kidsAfter"] > e["kidsBefore"], e  # a node shows its children
    assert page_ok(res)
    assert (tmp_path / "shot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_hostile_argv_stays_text(chromium: str, tmp_path: Path) -> None:
    page = _page(tmp_path, mutate=True)
    text = page.read_text()
    assert "console.error('pwned')" in text and "<script>console" not in text
    res = check_page(str(page), binary=chromium)
    assert res["errors"] == [] and res["requests"] == [], res
