"""The scheduled report: the period just ended, mailed once to the admin and recipients.

The SLA daemon's tick asks `send_due` (so ``helpdesk sla tick --at`` drives it too).
When a period is due (``[reports]``: daily, weekly on a day, monthly on a day of the
month, from an hour in the instance time zone), the report of the period before it is
built (every section), rendered as HTML with its charts and as a PDF, and queued as one
outbox row to the admin address and the recipients. The period's ``report_runs`` row is
inserted in that transaction with insert-or-ignore: of several daemons, only the one
whose row lands sends, and a crash before the commit leaves the period to send again.

The rendered HTML and PDF go to the blob store (the row holds their digests): an outbox
row stays small, and the worker that sends it reads them back.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import func, select

from helpdesk import outbox
from helpdesk.config import Settings
from helpdesk.db import insert_or_ignore
from helpdesk.direct import connection, run
from helpdesk.models import ReportRun

if TYPE_CHECKING:
    from helpdesk.runtime import Runtime

log = structlog.get_logger("helpdesk.report_schedule")
_WARNED: set[str] = set()
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLAIM = {name: stmt.returning(ReportRun.period)
          for name, stmt in insert_or_ignore(ReportRun, "period").items()}


@dataclass(frozen=True)
class Period:
    """A report period: its key (``weekly:2026-11-30``) and range in UTC."""

    key: str
    since: datetime
    until: datetime


def due(settings: Settings, at: datetime) -> Period | None:
    """The period whose report is due at ``at``, or None (pure).

    Daily: yesterday, from ``hour``. Weekly: the seven days before ``day``, from its
    ``hour``. Monthly: the previous calendar month, from ``day_of_month`` at ``hour``.
    """
    r = settings.reports
    tz = settings.instance.zone
    local = at.astimezone(tz)
    if r.schedule == "off" or local.hour < r.hour:
        return None
    today = local.date()
    if r.schedule == "daily":
        start, end = today - timedelta(days=1), today
    elif r.schedule == "weekly":
        if WEEKDAYS[local.weekday()] != r.day:
            return None
        start, end = today - timedelta(days=7), today
    else:
        if today.day != r.day_of_month:
            return None
        end = today.replace(day=1)
        start = (end - timedelta(days=1)).replace(day=1)

    def instant(d: date) -> datetime:
        return datetime(d.year, d.month, d.day, tzinfo=tz)

    return Period(f"{r.schedule}:{start.isoformat()}", instant(start), instant(end))


async def send_due(rt: Runtime, at: datetime) -> bool:
    """Queue the due report unless it went out already; True when this call queued it."""
    period = due(rt.settings, at)
    if period is None:
        return False
    async with rt.read_sessions() as session:
        if await session.get(ReportRun, period.key) is not None:
            return False
    recipients = [a for a in (rt.settings.instance.admin_email, *rt.settings.reports.recipients)
                  if a]
    if not recipients:
        return False
    if importlib.util.find_spec("matplotlib") is None:
        if period.key not in _WARNED:  # said once a period, not on every tick
            _WARNED.add(period.key)
            log.error("report.needs_charts", period=period.key,
                      fix="pip install 'helpdesk[reports]' where the SLA daemon runs")
        return False
    from helpdesk.report_document import to_html, to_pdf
    from helpdesk.reports import Scope, dashboard, report

    scope = Scope(period.since, period.until)
    async with rt.read_sessions() as session:
        data = await report(session, rt.settings, "all", scope)
        widgets = await dashboard(session, rt.settings, at, period.until)
    from helpdesk.report_text import as_table  # the same tables as the command line

    title = (f"{rt.settings.instance.name}: {rt.settings.reports.schedule} report, "
             f"{period.since:%Y-%m-%d} to {period.until - timedelta(days=1):%Y-%m-%d}")
    tables = {name: as_table(part) for name, part in data.items()}
    try:
        html_sha = rt.store.put(to_html(data, title=title, tables=tables, widgets=widgets,
                                        fragment=True).encode())
        pdf_sha = rt.store.put(to_pdf(data, title=title, tables=tables, widgets=widgets))
    except Exception as exc:  # charts missing (no matplotlib) or failed: say so, retry
        log.error("report.render_failed", period=period.key, error=str(exc))
        return False
    async with rt.sessions() as session, session.begin():
        conn = await connection(session)
        claimed = (await run(conn, _CLAIM[conn.dialect.name],
                             {"period": period.key, "sent_at": at})).scalar_one_or_none()
        if claimed is None:
            return False  # another daemon's row landed first
        await outbox.enqueue(
            session, kind=outbox.REPORT, template="report", to=recipients,
            instance_id=rt.settings.instance.id, secret=rt.secrets[-1],
            domain=rt.mail_domain, at=rt.clock(),
            context={"subject": title, "html": html_sha, "pdf": pdf_sha,
                     "period": period.key, "created": data["overview"]["created"],
                     "resolved": data["overview"]["resolved"],
                     "open": data["overview"]["open"]})
    log.info("report.queued", period=period.key, to=recipients)
    return True


async def runs(rt: Runtime) -> int:
    """How many periods went out (for tests and ``config check``)."""
    async with rt.read_sessions() as session:
        return int((await session.execute(select(func.count()).select_from(ReportRun)))
                   .scalar_one())
