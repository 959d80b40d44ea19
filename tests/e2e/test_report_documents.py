"""The HTML report opened in real headless Chromium: every chart an inline SVG with
data, no script anywhere. Built from the known history of
`tests/integration/test_reports.py` (its PDF form: `tests/integration/test_report_pdf.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings, sqlite_url
from tests.fixtures.browser import browser, browser_page, save_screenshot  # noqa: F401
from tests.integration.test_reports import report_file


@pytest.mark.browser
def test_the_html_report_is_svg_charts_and_no_script(tmp_path: Path,
                                                      browser_page: Any) -> None:  # noqa: F811
    # on SQLite: the browser's driver runs a loop in this thread for the whole session,
    # and the PostgreSQL fixture needs one of its own (the figures are tested on both)
    out = tmp_path / "report.html"
    report_file(make_settings(tmp_path, sqlite_url(tmp_path)), "html", out)
    text = out.read_text(encoding="utf-8")
    assert "<script" not in text.lower() and "javascript:" not in text.lower()
    page = browser_page
    page.goto(out.as_uri())
    charts = page.locator("figure.chart > svg")
    assert charts.count() == 7  # volume, type, organization, resolution, SLA, load, CSAT
    for n in range(charts.count()):
        drawn = charts.nth(n).evaluate("s => s.querySelectorAll('path, use').length")
        assert drawn > 10, f"chart {n} is empty"
    assert page.evaluate("document.scripts.length") == 0
    widgets = page.locator(".widget").all_inner_texts()
    assert [w.split("\n")[-1] for w in widgets] == ["Open tickets", "SLA breaches today",
                                                   "Overdue tickets"]
    assert "overview" in page.locator("h2").all_inner_texts()
    save_screenshot(page, "report-html")
