"""Organization roles, set with the CLI, as the portal shows them in real headless Chromium.

The admin makes Olga owner of her organization with ``helpdesk orgs set-role``; in the
portal she then sees every ticket of the organization and may reopen a resolved one,
while Mike, a member, sees only his own, and the links between his tickets. Each asks for
a "my tickets" link in the page, gets it by mail (the worker role, over real SMTP) and
opens it in the browser.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from click.testing import CliRunner

from helpdesk.audit import Actor
from helpdesk.cli import cli
from helpdesk.directory import get_or_create_contact
from helpdesk.runtime import Runtime
from helpdesk.tickets import TicketService
from tests.e2e.test_portal_browser import LiveDaemon, _link, live  # noqa: F401
from tests.fixtures.browser import browser, browser_page, save_screenshot  # noqa: F401
from tests.fixtures.smtp_sink import SmtpSink, smtp_sink  # noqa: F401

pytestmark = pytest.mark.browser
AGENT = Actor("agent", "bob@support.example.com")


async def _tickets(rt: Runtime) -> None:
    async with rt.sessions() as session, session.begin():
        svc = TicketService.for_runtime(session, rt)
        people = {name: await get_or_create_contact(session, f"{name}@acme.example",
                                                    name.title())
                  for name in ("olga", "mike", "zoe")}
        mine, _ = await svc.open_ticket(requester=people["mike"], subject="Mike's printer",
                                        text="It jams.", actor=AGENT)
        again, _ = await svc.open_ticket(requester=people["mike"], subject="Mike's toner",
                                         text="Empty.", actor=AGENT)
        await svc.link(again, "related", AGENT, other=mine)
        solved, _ = await svc.open_ticket(requester=people["zoe"], subject="Zoe's VPN",
                                          text="Down.", actor=AGENT)
        await svc.set_type(solved, "Bug", AGENT)
        await svc.set_status(solved, "Resolved", AGENT)
        await svc.open_ticket(requester=people["olga"], subject="Olga's invoice",
                              text="Wrong total.", actor=AGENT)


def _my_tickets(page: Any, daemon: LiveDaemon, sink: SmtpSink, email: str) -> None:
    """Ask for the link in the page, then open the one the mail brings."""
    page.goto(f"{daemon.settings.portal.base_url}/my")
    page.fill("#fresh-email", email)
    page.click("button[type=submit]")
    page.wait_for_selector("text=we have sent it a link")
    [mail] = sink.wait_for(lambda m: email in m.rcpt_tos, timeout=20)
    page.goto(_link(mail, r"http://127\.0\.0\.1:\d+/my/[A-Za-z0-9_.\-]+"))


def test_owner_sees_the_organization_and_a_member_only_their_own(
        live: LiveDaemon, smtp_sink: SmtpSink, browser_page: Any) -> None:  # noqa: F811
    page = browser_page
    live.call(_tickets)
    with ThreadPoolExecutor(1) as shell:  # the command runs its own event loop
        made = shell.submit(CliRunner().invoke, cli, [
            "--config", live.settings.source, "orgs", "set-role", "olga@acme.example",
            "owner"]).result()
    assert made.exit_code == 0, made.output

    _my_tickets(page, live, smtp_sink, "olga@acme.example")
    cards = page.locator("ul.tickets li.card")
    assert sorted(cards.locator("a").all_inner_texts()) == [
        "TKT-000001 Mike's printer", "TKT-000002 Mike's toner", "TKT-000003 Zoe's VPN",
        "TKT-000004 Olga's invoice"]
    zoe = cards.filter(has_text="Zoe's VPN")
    assert zoe.locator(".type").inner_text() == "Bug"
    assert zoe.locator("button", has_text="Reopen").count() == 1
    save_screenshot(page, "portal-org-owner")
    zoe.locator("button", has_text="Reopen").click()
    page.wait_for_load_state()
    assert "Open" in page.locator("ul.tickets li.card", has_text="Zoe's VPN").inner_text()

    _my_tickets(page, live, smtp_sink, "mike@acme.example")
    cards = page.locator("ul.tickets li.card")
    assert sorted(cards.locator("a").all_inner_texts()) == [
        "TKT-000001 Mike's printer", "TKT-000002 Mike's toner"]
    assert page.locator("button", has_text="Reopen").count() == 0
    save_screenshot(page, "portal-org-member")
    cards.filter(has_text="Mike's toner").locator("a").click()
    related = page.locator("section.links li")
    assert related.inner_text().startswith("related TKT-000001")
    related.locator("a").click()
    assert page.locator("h1").inner_text().startswith("TKT-000001")
