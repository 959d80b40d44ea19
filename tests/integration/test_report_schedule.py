"""The scheduled report: due at its hour on its day, for the period just ended, queued
once however many daemons tick, composed as HTML with the charts and the PDF attached
(issue "Reports", item 5). On SQLite and PostgreSQL, over the known history of
`tests/integration/test_reports.py`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

from helpdesk.config import ReportSettings, Settings
from helpdesk.models import OutboxRow
from helpdesk.report_schedule import due, runs, send_due
from helpdesk.runtime import Runtime
from responders.actors import load_read_model
from responders.compose import Composer, OutgoingRow
from tests.integration.test_reports import history

__all__ = ["history"]
NEXT_MONDAY = datetime(2026, 11, 30, tzinfo=UTC)


def weekly(settings: Settings, **changes: object) -> Settings:
    return dataclasses.replace(settings, reports=ReportSettings(
        schedule="weekly", day="mon", hour=7, recipients=("lead@example.org",),
        **changes))  # type: ignore[arg-type]


def test_when_a_period_is_due() -> None:
    s = weekly(Settings())
    assert due(s, NEXT_MONDAY.replace(hour=6, minute=59)) is None
    period = due(s, NEXT_MONDAY.replace(hour=7))
    assert period is not None and period.key == "weekly:2026-11-23"
    assert (period.since, period.until) == (datetime(2026, 11, 23, tzinfo=UTC), NEXT_MONDAY)
    assert due(s, datetime(2026, 12, 1, 9, tzinfo=UTC)) is None  # a Tuesday
    daily = dataclasses.replace(s, reports=ReportSettings(schedule="daily", hour=6))
    assert due(daily, datetime(2026, 12, 1, 6, tzinfo=UTC)).key == "daily:2026-11-30"  # type: ignore[union-attr]
    monthly = dataclasses.replace(s, reports=ReportSettings(schedule="monthly",
                                                            day_of_month=2, hour=0))
    m = due(monthly, datetime(2026, 12, 2, 1, tzinfo=UTC))
    assert m is not None and m.key == "monthly:2026-11-01" and m.until.day == 1
    assert due(dataclasses.replace(s, reports=ReportSettings(schedule="off")),
               NEXT_MONDAY.replace(hour=9)) is None


async def test_the_report_is_queued_once_and_composed_with_charts_and_pdf(
        history: Runtime) -> None:
    history.settings = weekly(history.settings)
    other = await Runtime.open(history.settings)  # a second SLA daemon
    try:
        assert not await send_due(history, NEXT_MONDAY.replace(hour=6, minute=59))
        sent = await asyncio.gather(send_due(history, NEXT_MONDAY.replace(hour=7)),
                                    send_due(other, NEXT_MONDAY.replace(hour=7, minute=1)))
        assert sorted(sent) == [False, True]
        assert not await send_due(other, NEXT_MONDAY.replace(hour=15))
        assert await runs(history) == 1
    finally:
        await other.close()
    async with history.sessions() as session:
        from sqlalchemy import select

        [row] = (await session.execute(select(OutboxRow).where(
            OutboxRow.kind == "report"))).scalars().all()
        assert row.recipients == ["admin@support.example.com", "lead@example.org"]
        assert (row.context["created"], row.context["resolved"]) == (4, 3)
        read = await load_read_model(history, session, row)
        outgoing = OutgoingRow.from_row(row)
    mail = Composer.from_settings(history.settings, history.clock).compose(
        outgoing, read, now=history.clock())
    assert "weekly report, 2026-11-23 to 2026-11-29" in mail["Subject"]
    html = mail.get_body(("html",))
    assert html is not None and html.get_content().count("<svg") == 7
    assert "<script" not in html.get_content()
    [pdf] = [p for p in mail.iter_attachments() if p.get_content_type() == "application/pdf"]
    assert pdf.get_filename() == "report.pdf"
    assert pdf.get_content().startswith(b"%PDF")
