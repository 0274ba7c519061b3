#!/usr/bin/env python3
"""Draw the README's picture of ``rawbpf report --html``: the test-suite's scripted session (every kind of
tool call, helper and finding; tests/unit/audit_fixture.py) rendered and photographed in headless chromium.

    python3 tools/report_screenshot.py [--out docs/report.png] [--html report.html]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "unit"))

import audit_fixture  # noqa: E402

from rawbpf.audit import build_report, load_sessions, read_transcript, select_session  # noqa: E402
from rawbpf.audit.html import render_html  # noqa: E402
from tools.report_browser import check_page, page_ok  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "report.png"))
    ap.add_argument("--html", help="also keep the page here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="rawbpf-shot-") as tmp:
        s, _ = audit_fixture.build()
        s.write_log(f"{tmp}/log")
        s.write_transcript(f"{tmp}/session.jsonl")
        log = load_sessions(f"{tmp}/log")
        rep = build_report(select_session(log, "latest"), log, read_transcript(f"{tmp}/session.jsonl"),
                           transcript_source="given")
        page = Path(args.html or f"{tmp}/report.html")
        page.write_text(render_html(rep))
        res = check_page(str(page), screenshot=args.out)
    print(f"{args.out}: page drawn in {res['open_s']} s, {len(res['errors'])} errors, "
          f"{len(res['requests'])} requests")
    return 0 if page_ok(res) else 1


if __name__ == "__main__":
    sys.exit(main())
