"""Agents drive tickets by mail: every command, errors, and forged agent mail, through SMTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from sqlalchemy import func, select

from helpdesk.config import Settings
from helpdesk.directory import add_agent
from helpdesk.mailtokens import make_reply_address
from helpdesk.models import (
    Agent,
    Attachment,
    AuditEvent,
    CannedResponse,
    Contact,
    Message,
    MessageRef,
    OutboxRow,
    Ticket,
    TicketTag,
    TimeEntry,
    Watcher,
)
from helpdesk.runtime import Runtime
from mailgate.service import make_gateway
from mailgate.smtp import start_smtp
from tests.conftest import make_settings

SUPPORT = "support@support.example.com"
BOB = "bob@support.example.com"
RELAY = "mx.support.example.com"


@dataclass
class Desk:
    rt: Runtime
    port: int
    bob: Agent
    carol: Agent

    async def send(self, msg: EmailMessage, rcpts: list[str] | None = None) -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=self.port, timeout=30) as smtp:
            errors, _ = await smtp.sendmail("someone@example.org", rcpts or [SUPPORT],
                                            msg.as_bytes())
            assert not errors

    async def ticket(self, number: int = 1) -> Ticket:
        async with self.rt.sessions() as session:
            return (await session.execute(
                select(Ticket).where(Ticket.number == number))).unique().scalar_one()

    async def rows(self, model: type, *where: Any) -> list[Any]:
        async with self.rt.sessions() as session:
            stmt = select(model).where(*where)
            return list((await session.execute(stmt)).unique().scalars())

    async def count(self, model: type, *where: Any) -> int:
        async with self.rt.sessions() as session:
            return int((await session.execute(
                select(func.count()).select_from(model).where(*where))).scalar_one())

    async def tags(self, number: int = 1) -> list[str]:
        ticket = await self.ticket(number)
        return sorted(t.tag for t in await self.rows(TicketTag, TicketTag.ticket_id == ticket.id))

    def signed(self, number: int = 1, agent: Agent | None = None) -> str:
        return make_reply_address(SUPPORT, number, secret="test-secret",
                                  agent_id=(agent or self.bob).id)

    async def from_bob(self, body: str, *, number: int = 1, signed: bool = True,
                       attachment: bytes | None = None, **headers: str) -> None:
        """Bob answers ticket ``number``: to his signed reply address unless told otherwise."""
        to = self.signed(number) if signed else SUPPORT
        msg = mail(f"Re: [TKT-{number:06d}] Printer on fire", body, sender=f"Bob <{BOB}>",
                   to=to, **headers)
        if attachment is not None:
            msg.add_attachment(attachment, maintype="application", subtype="octet-stream",
                               filename="log.bin")
        await self.send(msg, [to])


def mail(subject: str = "Printer on fire", body: str = "It burns.\n", *,
         sender: str = "Alice <alice@example.org>", to: str = SUPPORT,
         **headers: str) -> EmailMessage:
    msg = EmailMessage()
    for name, value in headers.items():  # trace headers on top, as a relay adds them
        msg[name.replace("_", "-")] = value
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg["Date"] = "Mon, 23 Nov 2026 10:00:00 +0000"
    msg.set_content(body)
    return msg


@pytest.fixture
async def desk(tmp_path: Path, db_url: str) -> AsyncIterator[Desk]:
    async for d in _open_desk(tmp_path, db_url, trusted_authserv_ids=[RELAY],
                              trusted_relay_hosts=["127.0.0.1"]):
        yield d


async def _open_desk(tmp_path: Path, db_url: str, *,
                     sections: dict[str, Any] | None = None,
                     adjust: Callable[[Settings], Settings] | None = None,
                     clock: Callable[[], datetime] | None = None,
                     **commands: Any) -> AsyncIterator[Desk]:
    """A gateway on SMTP with agents Bob and Carol and ticket 1 from Alice.

    ``sections`` adds config sections; ``adjust`` changes the settings built from them;
    ``clock`` replaces the fixed one.
    """
    settings = make_settings(tmp_path, db_url, commands=commands,
                             **{"instance": {"timezone": "Europe/Berlin"}, **(sections or {})})
    if adjust is not None:
        settings = adjust(settings)
    rt = await Runtime.open(settings, clock=clock or (
        lambda: datetime(2026, 11, 23, 10, 0, tzinfo=UTC)))
    async with rt.sessions() as session, session.begin():
        bob = await add_agent(session, BOB, "Bob Builder")
        carol = await add_agent(session, "carol@support.example.com", "Carol")
    server = await start_smtp(make_gateway(rt), settings.smtp, port=0)
    d = Desk(rt, server.sockets[0].getsockname()[1], bob, carol)
    try:
        await d.send(mail())  # TKT-000001 from alice@example.org
        yield d
    finally:
        server.close()
        await server.wait_closed()
        await rt.close()


# -- authenticated commands ---------------------------------------------------------------------

async def test_field_commands_apply_and_the_rest_is_a_public_first_response(desk: Desk) -> None:
    await desk.from_bob("#status In Progress\n#PRIORITY: high\n#category billing\n"
                        "#tag +vip +printer\n#due 2026-12-01\n#assign me\n\n"
                        "Unplug it first.\n")
    ticket = await desk.ticket()
    assert (ticket.status, ticket.priority, ticket.category) == ("In Progress", "high", "billing")
    assert ticket.assignee_id == desk.bob.id
    assert ticket.due_at == datetime(2026, 12, 1, 16, 0, tzinfo=UTC)  # 17:00 in Berlin
    assert ticket.first_response_at is not None
    assert await desk.tags() == ["printer", "vip"]
    [reply] = await desk.rows(Message, Message.author_agent_id == desk.bob.id)
    assert reply.kind == "public" and reply.text.strip() == "Unplug it first."
    assert "#status" not in reply.text
    relayed = await desk.rows(OutboxRow, OutboxRow.kind == "reply")
    assert [r.recipients for r in relayed] == [["alice@example.org"]]
    assert await desk.count(OutboxRow, OutboxRow.kind == "agent_error") == 0


async def test_a_mail_of_only_commands_sends_nothing_to_the_requester(desk: Desk) -> None:
    await desk.from_bob("#priority urgent\n#tag -nothing +x\n")
    ticket = await desk.ticket()
    assert ticket.priority == "urgent" and await desk.tags() == ["x"]
    assert ticket.first_response_at is None
    assert await desk.count(Message, Message.author_agent_id.is_not(None)) == 0
    assert await desk.count(OutboxRow, OutboxRow.kind == "reply") == 0


async def test_note_files_the_whole_mail_as_an_internal_note(desk: Desk) -> None:
    await desk.from_bob("#note\nCustomer is on the old firmware, do not tell them yet.\n",
                        attachment=b"\x00log")
    [note] = await desk.rows(Message, Message.author_agent_id == desk.bob.id)
    assert note.kind == "internal" and "old firmware" in note.text
    assert [a.filename for a in note.attachments] == ["log.bin"]
    assert (await desk.ticket()).first_response_at is None
    assert await desk.count(OutboxRow, OutboxRow.kind == "reply") == 0


async def test_assign_by_email_and_by_name_then_unassign(desk: Desk) -> None:
    await desk.from_bob("#assign carol@support.example.com\n")
    assert (await desk.ticket()).assignee_id == desk.carol.id
    await desk.from_bob("#assign bob builder\n")
    assert (await desk.ticket()).assignee_id == desk.bob.id
    await desk.from_bob("#unassign\n")
    assert (await desk.ticket()).assignee_id is None


async def test_watch_and_unwatch(desk: Desk) -> None:
    await desk.from_bob("#watch dave@partner.example, erin@partner.example\n")
    ticket = await desk.ticket()
    watchers = await desk.rows(Watcher, Watcher.ticket_id == ticket.id)
    assert sorted(w.contact.email for w in watchers) == ["dave@partner.example",
                                                         "erin@partner.example"]
    await desk.from_bob("#unwatch dave@partner.example\n")
    watchers = await desk.rows(Watcher, Watcher.ticket_id == ticket.id)
    assert [w.contact.email for w in watchers] == ["erin@partner.example"]


async def test_time_records_minutes_against_ticket_and_agent(desk: Desk) -> None:
    await desk.from_bob("#time 1h30m remote session\n#time 45m\n")
    entries = await desk.rows(TimeEntry)
    assert sorted((e.minutes, e.note, e.agent_id) for e in entries) == [
        (45, "", desk.bob.id), (90, "remote session", desk.bob.id)]


async def test_close_and_reopen(desk: Desk) -> None:
    await desk.from_bob("#close\n")
    ticket = await desk.ticket()
    assert ticket.status == "Closed" and ticket.closed_at is not None
    await desk.from_bob("#reopen\nLet us look again.\n")  # a closed ticket: no follow-up
    ticket = await desk.ticket()
    assert ticket.status == "Open" and ticket.closed_at is None
    assert await desk.count(Ticket) == 1


async def test_canned_response_is_rendered_into_the_reply(desk: Desk) -> None:
    async with desk.rt.sessions() as session, session.begin():
        session.add(CannedResponse(
            shortcut="restart", title="Restart", category="technical",
            body="Hello {{ requester.name }}, please restart ({{ ticket.reference }}).\n"
                 "-- {{ agent.name }}"))
    await desk.from_bob("#canned restart\nOne more thing.\n")
    [reply] = await desk.rows(Message, Message.author_agent_id == desk.bob.id)
    assert "One more thing." in reply.text
    assert "Hello Alice, please restart (TKT-000001).\n-- Bob Builder" in reply.text
    assert await desk.count(OutboxRow, OutboxRow.kind == "reply") == 1


async def test_canned_response_cannot_escape_the_sandbox(desk: Desk) -> None:
    async with desk.rt.sessions() as session, session.begin():
        session.add(CannedResponse(shortcut="evil", title="x",
                                   body="{{ ticket.__class__.__mro__ }}"))
    await desk.from_bob("#canned evil\n#priority high\n")
    assert (await desk.ticket()).priority == "high"
    [error] = await desk.rows(OutboxRow, OutboxRow.kind == "agent_error")
    assert error.context["errors"][0]["line"] == "#canned evil"


async def test_help_mails_the_command_list_to_the_agent(desk: Desk) -> None:
    await desk.from_bob("#help\n")
    [row] = await desk.rows(OutboxRow, OutboxRow.template == "agent_help")
    assert row.recipients == [BOB]
    assert any(line.startswith("#merge") for line in row.context["commands"])
    assert await desk.count(OutboxRow, OutboxRow.kind == "reply") == 0


async def test_merge_moves_everything_and_later_mail_lands_on_the_target(desk: Desk) -> None:
    await desk.send(mail("Also broken", "second\n", sender="Frank <frank@other.example>",
                         Cc="gina@other.example"))  # TKT-000002
    att = mail("Re: [TKT-000002] Also broken", "photo\n", sender="frank@other.example")
    att.add_attachment(b"PNG", maintype="image", subtype="png", filename="fire.png")
    await desk.send(att)
    await desk.from_bob("#time 20m\n#merge tkt-1\nMerging this into your first ticket.\n",
                        number=2)
    source, target = await desk.ticket(2), await desk.ticket(1)
    assert source.merged_into_id == target.id and source.status == "Closed"
    moved = await desk.rows(Message, Message.ticket_id == target.id)
    assert {m.text.strip() for m in moved} >= {"second", "photo",
                                               "Merging this into your first ticket."}
    [png] = await desk.rows(Attachment, Attachment.filename == "fire.png")
    assert png.message_id in {m.id for m in moved}
    assert [e.ticket_id for e in await desk.rows(TimeEntry)] == [target.id]
    watchers = await desk.rows(Watcher, Watcher.ticket_id == target.id)
    assert {w.contact.email for w in watchers} == {"frank@other.example", "gina@other.example"}
    assert await desk.count(MessageRef, MessageRef.ticket_id == source.id) == 0
    [left] = await desk.rows(Message, Message.ticket_id == source.id)
    assert left.kind == "system" and "TKT-000001" in left.text
    assert any(m.kind == "system" and "TKT-000002" in m.text for m in moved)
    # Frank answers the merged ticket's mail: it lands on the target, no follow-up ticket.
    await desk.send(mail("Re: [TKT-000002] Also broken", "thanks\n",
                         sender="frank@other.example"))
    assert await desk.count(Ticket) == 2
    assert await desk.count(Message, Message.ticket_id == target.id,
                            Message.text.contains("thanks")) == 1


async def test_failed_lines_are_reported_once_and_valid_lines_still_apply(desk: Desk) -> None:
    await desk.from_bob("#frobnicate now\n#priority whenever\n#status Resolved\n"
                        "#merge TKT-999\n#assign nobody@nowhere.example\n#due 2020-01-01\n"
                        "#unwatch zed@example.org\n#canned nope\n")
    ticket = await desk.ticket()
    assert ticket.status == "Resolved" and ticket.priority == "normal"
    [row] = await desk.rows(OutboxRow, OutboxRow.kind == "agent_error")
    assert row.template == "agent_command_errors" and row.recipients == [BOB]
    failed = [e["line"] for e in row.context["errors"]]
    assert failed == ["#frobnicate now", "#canned nope", "#priority whenever",
                      "#assign nobody@nowhere.example", "#due 2020-01-01",
                      "#unwatch zed@example.org", "#merge TKT-999"]
    assert all(e["reason"] for e in row.context["errors"])
    assert row.context["applied"] == ["#status Resolved"]


async def test_agent_mails_render_with_the_shipped_templates(desk: Desk) -> None:
    from responders.actors import load_read_model
    from responders.compose import Composer, OutgoingRow

    await desk.from_bob("#help\n#bogus\n")
    await desk.from_bob("#priority high\n", signed=False)  # refused: not authenticated
    composer = Composer.from_settings(desk.rt.settings, desk.rt.clock)
    async with desk.rt.sessions() as session:
        rows = list((await session.execute(select(OutboxRow).where(OutboxRow.kind.in_(
            ["agent_notice", "agent_error", "agent_auth_refused"])))).scalars())
        assert {r.template for r in rows} >= {"agent_help", "agent_command_errors",
                                              "agent_auth_refused"}
        for row in rows:
            read = await load_read_model(desk.rt, session, row)
            msg = composer.compose(OutgoingRow.from_row(row), read, now=desk.rt.clock())
            text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            if row.template == "agent_command_errors":
                assert "#bogus" in text and "unknown command" in text
            if row.template == "agent_help":
                assert "#time <duration> [text]" in text
                assert msg["Reply-To"] == desk.signed(1)
            if row.template == "agent_auth_refused":
                assert row.context["reason"] in text
            assert msg["Reply-To"] == row.context["reply_to"]


# -- authentication -----------------------------------------------------------------------------

def _ar(authserv: str, result: str) -> str:
    return f"{authserv}; {result}"


@pytest.mark.parametrize("headers", [
    pytest.param({"Authentication_Results": _ar(RELAY, "dkim=pass header.d=support.example.com")},
                 id="trusted-dkim-pass"),
    pytest.param({"Authentication_Results": _ar(
        RELAY, "dkim=pass header.i=@mail.support.example.com")},
                 id="trusted-dkim-pass-subdomain-identity"),
    pytest.param({"Authentication_Results": _ar(
        RELAY, "spf=pass smtp.mailfrom=bounce@support.example.com; dkim=none")},
                 id="trusted-spf-pass"),
])
async def test_trusted_relay_results_authenticate_an_agent(desk: Desk,
                                                           headers: dict[str, str]) -> None:
    await desk.from_bob("#priority high\n", signed=False, **headers)
    assert (await desk.ticket()).priority == "high"
    assert await desk.count(OutboxRow, OutboxRow.kind == "agent_auth_refused") == 0


async def test_dkim_verified_by_the_daemon_authenticates(tmp_path: Path, db_url: str,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    import base64

    import dkim
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))

    def txt(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name.rstrip(b".") == b"sel._domainkey.support.example.com" else None

    monkeypatch.setattr(dkim, "get_txt", txt)  # no DNS here: the key is served locally
    async for d in _open_desk(tmp_path, db_url, verify_dkim=True):
        def signed(body: str) -> bytes:
            raw = mail("Re: [TKT-000001] x", body, sender=BOB).as_bytes().replace(b"\n",
                                                                               b"\r\n")
            return dkim.sign(raw, b"sel", b"support.example.com", pem,
                             canonicalize=(b"relaxed", b"relaxed"),
                             include_headers=[b"from", b"to", b"subject"]) + raw

        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=d.port, timeout=30) as smtp:
            await smtp.sendmail(BOB, [SUPPORT], signed("#priority high\n"))
            forged = signed("#priority low\n").replace(b"#priority low", b"#priority urgent")
            await smtp.sendmail(BOB, [SUPPORT], forged)
        assert (await d.ticket()).priority == "high"
        assert await d.count(OutboxRow, OutboxRow.kind == "agent_auth_refused") == 1


@pytest.mark.parametrize("headers", [
    pytest.param({}, id="no-authentication-results"),
    pytest.param({"Authentication_Results": _ar("mx.evil.example",
                                                "dkim=pass header.d=support.example.com")},
                 id="untrusted-authserv-id"),
    pytest.param({"Authentication_Results": _ar(RELAY, "dkim=pass header.d=evil.example")},
                 id="trusted-but-unaligned-dkim"),
    pytest.param({"Authentication_Results": _ar(RELAY, "dkim=fail header.d=support.example.com")},
                 id="trusted-dkim-fail"),
])
async def test_forged_agent_mail_changes_nothing(desk: Desk, headers: dict[str, str]) -> None:
    await desk.from_bob("#priority urgent\n#close\n#assign me\nYou can ignore this.\n",
                        signed=False, **headers)
    ticket = await desk.ticket()
    assert (ticket.priority, ticket.status, ticket.assignee_id) == ("normal", "Open", None)
    assert ticket.first_response_at is None
    # handled as mail from a contact who is no participant: a new ticket of its own
    assert await desk.count(Ticket) == 2
    assert await desk.count(Message, Message.author_agent_id.is_not(None)) == 0
    assert await desk.count(AuditEvent, AuditEvent.actor.like("agent:%")) == 0
    [notice] = await desk.rows(OutboxRow, OutboxRow.kind == "agent_auth_refused")
    assert notice.recipients == [BOB] and notice.context["reason"]


async def test_a_tampered_signed_address_changes_nothing(desk: Desk) -> None:
    good = desk.signed(1)
    local, _, domain = good.partition("@")
    tampered = f"{local[:-1]}{'b' if local[-1] != 'b' else 'c'}@{domain}"
    msg = mail("Re: [TKT-000001] Printer on fire", "#close\n", sender=BOB, to=tampered)
    await desk.send(msg, [tampered])
    ticket = await desk.ticket()
    assert ticket.status == "Open"
    assert await desk.count(OutboxRow, OutboxRow.kind == "agent_auth_refused") == 1


async def test_another_agents_signed_address_does_not_authenticate(desk: Desk) -> None:
    carols = desk.signed(1, desk.carol)
    await desk.send(mail("Re: [TKT-000001] x", "#close\n", sender=BOB, to=carols), [carols])
    assert (await desk.ticket()).status == "Open"
    [notice] = await desk.rows(OutboxRow, OutboxRow.kind == "agent_auth_refused")
    assert "not your own" in notice.context["reason"]


async def test_unauthenticated_agent_reply_on_a_known_thread_is_an_internal_note(
        desk: Desk) -> None:
    plain = make_reply_address(SUPPORT, 1, secret="test-secret")  # the requesters' address
    await desk.send(mail("Re: [TKT-000001] x", "#close\nDone.\n", sender=BOB, to=plain),
                    [plain])
    ticket = await desk.ticket()
    assert ticket.status == "Open" and ticket.first_response_at is None
    [msg] = await desk.rows(Message, Message.ticket_id == ticket.id,
                            Message.author_contact_id.is_not(None),
                            Message.text.contains("Done."))
    bob_contact = (await desk.rows(Contact, Contact.email == BOB))[0]
    assert msg.author_contact_id == bob_contact.id and msg.author_agent_id is None
    assert msg.kind == "internal"  # never shown to the requester (issue 19, item 6)
    assert await desk.count(OutboxRow, OutboxRow.kind == "agent_auth_refused") == 1


# -- CLI: canned responses, time export, notification preferences -------------------------------

def _cli() -> Any:
    import click

    import helpdesk.cli  # noqa: F401 - first, as the console script imports it
    from helpdesk.cli_agents import agents_prefs, canned, time_group

    root = click.Group("helpdesk", commands=[canned, time_group,
                                             click.Group("agents", commands=[agents_prefs])])
    return root


def _invoke(cfg: Path, *args: str, stdin: str | None = None) -> Any:
    from click.testing import CliRunner

    group, *rest = args
    return CliRunner().invoke(_cli(), [group, *rest[:1], "--config", str(cfg), *rest[1:]],
                              input=stdin, catch_exceptions=True)


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    from tests.conftest import sqlite_url

    make_settings(tmp_path, sqlite_url(tmp_path))
    return tmp_path / "helpdesk.toml"


def test_canned_add_list_show_remove(cfg: Path) -> None:
    ok = _invoke(cfg, "canned", "add", "restart", "--title", "Restart the router",
                 "--category", "Technical", "--body", "Hi {{ requester.first_name }},\nrestart.")
    assert ok.exit_code == 0, ok.output
    _invoke(cfg, "canned", "add", "refund", "--title", "Refund", "--category", "billing",
            "--body-file", "-", stdin="Your refund for {{ ticket.reference }} is on its way.")
    listed = _invoke(cfg, "canned", "list")
    assert [line.split()[0] for line in listed.output.splitlines()] == ["refund", "restart"]
    assert [line.split()[0] for line in _invoke(cfg, "canned", "list", "ROUTER").output
            .splitlines()] == ["restart"]
    assert [line.split()[0] for line in _invoke(cfg, "canned", "list", "its way").output
            .splitlines()] == ["refund"]  # the body is searched too
    shown = _invoke(cfg, "canned", "show", "restart")
    assert "Restart the router [technical]" in shown.output and "first_name" in shown.output
    duplicate = _invoke(cfg, "canned", "add", "restart", "--title", "x", "--body", "y")
    assert duplicate.exit_code != 0
    bad = _invoke(cfg, "canned", "add", "broken", "--title", "x", "--body", "{{ oops")
    assert bad.exit_code == 2 and "line 1" in bad.output
    assert _invoke(cfg, "canned", "remove", "restart").exit_code == 0
    assert [line.split()[0] for line in _invoke(cfg, "canned", "list").output.splitlines()] \
        == ["refund"]
    assert _invoke(cfg, "canned", "show", "restart").exit_code != 0


def test_time_export_gives_billable_minutes_per_organization(cfg: Path) -> None:
    import asyncio
    import csv
    import io

    from helpdesk.audit import Actor
    from helpdesk.config import load_settings
    from helpdesk.directory import get_or_create_contact
    from helpdesk.tickets import TicketService

    async def seed() -> None:
        rt = await Runtime.open(load_settings(cfg, environ={}))
        try:
            async with rt.sessions() as session, session.begin():
                bob = await add_agent(session, BOB)
                svc = TicketService(session, rt.settings)
                minutes = {"alice@acme.example": [30, 45], "zoe@acme.example": [15],
                           "max@globex.example": [60], "solo@gmail.com": [10]}
                for email, entries in minutes.items():
                    contact = await get_or_create_contact(
                        session, email, freemail=rt.settings.tickets.freemail_domains)
                    ticket, _ = await svc.open_ticket(requester=contact, subject="x", text="y",
                                                      actor=Actor("cli", "test"))
                    for m in entries:
                        session.add(TimeEntry(ticket_id=ticket.id, agent_id=bob.id, minutes=m,
                                              created_at=datetime(2026, 11, 10, tzinfo=UTC)))
                    session.add(TimeEntry(ticket_id=ticket.id, agent_id=bob.id, minutes=999,
                                          created_at=datetime(2026, 10, 31, 23, 59, tzinfo=UTC)))
        finally:
            await rt.close()

    asyncio.run(seed())
    result = _invoke(cfg, "time", "export", "--since", "2026-11-01", "--until", "2026-12-01",
                     "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    got = {r["organization"]: (r["tickets"], r["entries"], r["minutes"], r["hours"])
           for r in rows}
    assert got == {"acme.example": ("2", "3", "90", "1.50"),
                   "globex.example": ("1", "1", "60", "1.00"),
                   "(no organization)": ("1", "1", "10", "0.17")}
    everything = _invoke(cfg, "time", "export")
    assert "acme.example,acme.example,2,5,2088,34.80" in everything.output  # no window


def test_agent_notification_preferences(cfg: Path) -> None:
    import asyncio

    from helpdesk.config import load_settings

    async def seed() -> None:
        rt = await Runtime.open(load_settings(cfg, environ={}))
        try:
            async with rt.sessions() as session, session.begin():
                await add_agent(session, BOB)
        finally:
            await rt.close()

    asyncio.run(seed())
    shown = _invoke(cfg, "agents", "prefs", BOB)
    assert shown.output.strip() == (f"{BOB}: new-ticket on, assignment on, reply on, "
                                    "status off, board on")
    changed = _invoke(cfg, "agents", "prefs", BOB, "--no-new-ticket", "--status", "--json")
    assert '"new_ticket": false' in changed.output and '"status": true' in changed.output
    assert "reply on" in _invoke(cfg, "agents", "prefs", BOB).output
    assert _invoke(cfg, "agents", "prefs", "nobody@example.org").exit_code != 0


async def test_a_watcher_added_with_a_reply_receives_that_reply(desk: Desk) -> None:
    await desk.from_bob("#watch erin@partner.example\n")
    await desk.from_bob("#watch dave@partner.example\n#unwatch erin@partner.example\n\n"
                        "We replaced the fuser.\n")
    replies = await desk.rows(OutboxRow, OutboxRow.kind == "reply")
    assert sorted(r.to_addr for r in replies) == ["alice@example.org", "dave@partner.example"]
