"""The PDF report rendered to PNG pages with pdftoppm (Debian's poppler-utils): a title
page, then each chart on a page of its own holding a drawing, then the tables; on SQLite
and PostgreSQL, from the known history of `tests/integration/test_reports.py`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from PIL import Image

from helpdesk.config import Settings
from tests.conftest import require
from tests.integration.test_reports import report_file


def test_the_pdf_report_has_a_page_per_chart_with_a_drawing(settings: Settings,
                                                            tmp_path: Path) -> None:
    require(shutil.which("pdftoppm") is not None, "pdftoppm (poppler-utils) is not installed")
    out = tmp_path / "report.pdf"
    report_file(settings, "pdf", out)
    assert out.read_bytes().startswith(b"%PDF")
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(out), str(tmp_path / "page")],
                   check=True, timeout=120)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 1 + 7 + 7  # the title, the charts, a page per section's table
    for chart in pages[1:8]:
        image = Image.open(chart).convert("L")
        inked = sum(image.histogram()[:200])  # pixels darker than light grey
        assert inked > 0.01 * image.width * image.height, f"{chart.name} is blank"


def test_the_ticket_export_as_pdf(settings: Settings, tmp_path: Path) -> None:
    require(shutil.which("pdftoppm") is not None, "pdftoppm (poppler-utils) is not installed")
    from tests.integration.test_reports import export_pdf

    out = tmp_path / "tickets.pdf"
    export_pdf(settings, out)
    subprocess.run(["pdftotext", str(out), str(tmp_path / "tickets.txt")], check=True,
                   timeout=60)
    text = (tmp_path / "tickets.txt").read_text(encoding="utf-8")
    assert "Tickets (6)" in text and "TKT-000002" in text and "Resolved" in text
