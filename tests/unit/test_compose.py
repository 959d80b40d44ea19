"""Composing outbound mail: headers, threading, Auto-Submitted per kind, links, no notes."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from helpdesk.config import OutboundSettings, PortalSettings, Settings
from helpdesk.links import LinkSigner, Purpose
from helpdesk.mailtokens import parse_reply_address
from responders.compose import (
    AttachmentData,
    ComposeError,
    Composer,
    InternalNoteRefused,
    MessageView,
    OutgoingRow,
    ReadModel,
    TicketView,
    template_environment,
)

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
SECRET = "unit-secret"
SETTINGS = dataclasses.replace(
    Settings(),
    outbound=OutboundSettings(sender="support@support.example.com"),
    portal=PortalSettings(base_url="https://help.example.com", secret_key=(SECRET,)),
)
TICKET = TicketView(
    id=7, number=42, reference="TKT-000042", subject="Re: AW: Printer on fire", status="Open",
    priority="normal", queue_address="support@support.example.com",
    requester_email="alice@example.org", requester_name="Alice", link_secret="ticket-secret",
)
REQUESTER = {"alice@example.org": 11}


def composer() -> Composer:
    return Composer.from_settings(SETTINGS, lambda: NOW)


def row(kind: str, template: str, to: str = "alice@example.org", **kw: object) -> OutgoingRow:
    values: dict[str, object] = {
        "id": 1, "kind": kind, "template": template, "recipients": (to,),
        "message_id": "<hd.42.abc123.aaaaaaaaaa@support.example.com>",
        "in_reply_to": "<alice-2@example.org>",
        "references": ("<alice-1@example.org>", "<alice-2@example.org>"),
    }
    values.update(kw)
    return OutgoingRow(**values)  # type: ignore[arg-type]


def compose(r: OutgoingRow, read: ReadModel | None = None) -> EmailMessage:
    return composer().compose(r, read or ReadModel(TICKET, contacts=REQUESTER), now=NOW)


def body(msg: EmailMessage, subtype: str = "plain") -> str:
    part = msg.get_body(preferencelist=(subtype,))
    assert part is not None
    return str(part.get_content())


def signer() -> LinkSigner:
    return LinkSigner([SECRET], view_max_age=timedelta(days=30), clock=lambda: NOW)


def test_acknowledgement_carries_token_subject_threading_and_loop_headers() -> None:
    msg = compose(row("ack", "acknowledgement"))
    assert msg["Subject"] == "[TKT-000042] Printer on fire"
    assert msg["Message-ID"] == "<hd.42.abc123.aaaaaaaaaa@support.example.com>"
    assert msg["In-Reply-To"] == "<alice-2@example.org>"
    assert msg["References"] == "<alice-1@example.org> <alice-2@example.org>"
    assert msg["To"] == "alice@example.org"
    assert msg["From"] == "Helpdesk <support@support.example.com>"
    assert msg["X-Helpdesk-Ticket"] == "TKT-000042"
    assert msg["X-Helpdesk-Loop"] == SETTINGS.instance.id
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["Date"] is not None


def test_reply_to_is_the_queue_address_signed_with_the_ticket() -> None:
    reply_to = str(compose(row("ack", "acknowledgement"))["Reply-To"])
    assert reply_to.startswith("support+") and reply_to.endswith("@support.example.com")
    token = parse_reply_address(reply_to, secrets=[SECRET])
    assert token is not None and (token.ticket, token.agent_id) == (42, None)


@pytest.mark.parametrize(("kind", "template", "expected"), [
    ("ack", "acknowledgement", "auto-replied"),
    ("resolved", "resolved", "auto-generated"),
    ("agent_notice", "agent_new_ticket", "auto-generated"),
    ("admin_notice", "admin_delivery_failed", "auto-generated"),
    ("reply", "agent_reply", None),
])
def test_auto_submitted_depends_on_the_kind(kind: str, template: str,
                                            expected: str | None) -> None:
    to = "bob@support.example.com" if kind == "agent_notice" else "alice@example.org"
    msg = compose(row(kind, template, to=to, context={"reply_to": "x+t42a1.y@z"}),
                  ReadModel(TICKET, MessageView("public", "Hello"), contacts=REQUESTER,
                            agents=frozenset({"bob@support.example.com"})))
    assert msg["Auto-Submitted"] == expected
    assert (msg["X-Auto-Response-Suppress"] is not None) == (expected is not None)


@pytest.mark.parametrize(("kind", "template"), [
    ("ack", "acknowledgement"), ("reply", "agent_reply"), ("resolved", "resolved")])
def test_every_requester_mail_has_a_signed_view_link_for_that_contact(kind: str,
                                                                     template: str) -> None:
    msg = compose(row(kind, template), ReadModel(TICKET, MessageView("public", "Hi"),
                                                 contacts=REQUESTER))
    for subtype in ("plain", "html"):
        found = re.findall(r"https://help\.example\.com/t/([A-Za-z0-9_.\-]+)", body(msg, subtype))
        assert found, subtype
        claims = signer().verify(found[0], Purpose.VIEW,
                                 ticket_secret_for=lambda _: "ticket-secret")
        assert (claims.ticket, claims.contact) == (7, 11)


def test_a_watcher_gets_a_link_bound_to_their_own_contact() -> None:
    msg = compose(row("reply", "agent_reply", to="carol@example.org"),
                  ReadModel(TICKET, MessageView("public", "Hi"),
                            contacts={"carol@example.org": 12}))
    token = re.findall(r"/t/([A-Za-z0-9_.\-]+)", body(msg))[0]
    claims = signer().verify(token, Purpose.VIEW, ticket_secret_for=lambda _: "ticket-secret")
    assert claims.contact == 12


def test_resolved_notice_has_five_one_click_rating_links() -> None:
    text = body(compose(row("resolved", "resolved")))
    scores = re.findall(r"https://help\.example\.com/csat/[A-Za-z0-9_.\-]+\?score=(\d)", text)
    assert scores == ["1", "2", "3", "4", "5"]


def test_requester_mail_without_a_contact_for_the_link_is_refused() -> None:
    with pytest.raises(ComposeError):
        compose(row("ack", "acknowledgement"), ReadModel(TICKET, contacts={}))


def test_agent_reply_relays_the_text_and_forwards_attachments() -> None:
    message = MessageView("public", "Please restart it.\n<b>not markup</b>", "Bob",
                          "bob@support.example.com",
                          (AttachmentData("manual.pdf", "application/pdf", b"%PDF-1.4 data"),))
    msg = compose(row("reply", "agent_reply"), ReadModel(TICKET, message, contacts=REQUESTER))
    assert "Please restart it." in body(msg)
    assert "&lt;b&gt;not markup&lt;/b&gt;" in body(msg, "html")
    attachments = list(msg.iter_attachments())
    assert [(a.get_filename(), a.get_content_type(), a.get_content()) for a in attachments] == [
        ("manual.pdf", "application/pdf", b"%PDF-1.4 data")]


def test_an_internal_note_is_never_composed_for_a_requester() -> None:
    note = ReadModel(TICKET, MessageView("internal", "secret remark"), contacts=REQUESTER)
    with pytest.raises(InternalNoteRefused):
        compose(row("reply", "agent_reply"), note)


def test_an_internal_note_may_go_to_agents_only() -> None:
    note = ReadModel(TICKET, MessageView("internal", "secret remark"),
                     agents=frozenset({"bob@support.example.com"}))
    msg = compose(row("agent_notice", "agent_reply_notice", to="bob@support.example.com"), note)
    assert "secret remark" in body(msg)


def test_agent_notice_replies_go_to_the_agents_signed_address_and_carry_no_portal_link() -> None:
    personal = "support+t42a3.abcdefghijklmnop@support.example.com"
    msg = compose(row("agent_notice", "agent_assigned", to="bob@support.example.com",
                      context={"reply_to": personal}),
                  ReadModel(TICKET, agents=frozenset({"bob@support.example.com"})))
    assert msg["Reply-To"] == personal
    assert "/t/" not in body(msg)


def test_status_change_notice_names_both_statuses() -> None:
    msg = compose(row("agent_notice", "agent_status_changed", to="bob@support.example.com",
                      context={"before": {"status": "Open"}, "after": {"status": "Pending"}}),
                  ReadModel(TICKET, agents=frozenset({"bob@support.example.com"})))
    assert "Open -> Pending" in body(msg)


def test_in_reply_to_is_appended_to_references_when_missing() -> None:
    msg = compose(row("reply", "agent_reply", references=("<a@x>",), in_reply_to="<b@x>"),
                  ReadModel(TICKET, MessageView("public", "x"), contacts=REQUESTER))
    assert msg["References"] == "<a@x> <b@x>"


def test_html_part_escapes_ticket_data() -> None:
    evil = dataclasses.replace(TICKET, subject="<script>alert(1)</script>")
    html = body(compose(row("ack", "acknowledgement"), ReadModel(evil, contacts=REQUESTER)),
                "html")
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_templates_are_overridable_from_a_folder(tmp_path: Path) -> None:
    (tmp_path / "acknowledgement.txt").write_text("Custom ack for {{ ticket.reference }}\n"
                                                  "{{ view_url }}\n")
    c = Composer(SETTINGS, signer(), template_environment(tmp_path))
    msg = c.compose(row("ack", "acknowledgement"), ReadModel(TICKET, contacts=REQUESTER), now=NOW)
    assert body(msg).startswith("Custom ack for TKT-000042")
    assert "we have received" in body(msg, "html")  # not overridden: built-in html


def test_a_missing_template_is_a_compose_error() -> None:
    with pytest.raises(ComposeError):
        compose(row("ack", "no_such_template"))


@pytest.mark.parametrize(("raw", "subject"), [
    ("Re: AW: Printer", "[TKT-000042] Printer"), ("SV: VS: Antw: Fwd: WG: x", "[TKT-000042] x"),
    ("RIF: ENC: YNT: Réf. : 回覆: 転送: Printer", "[TKT-000042] Printer"),
    ("RE: [TKT-000042] Printer", "[TKT-000042] Printer"), ("Re[2]: z", "[TKT-000042] z"),
    ("   ", "[TKT-000042]"), ("Regarding the bill", "[TKT-000042] Regarding the bill"),
])
def test_subject_loses_every_reply_prefix_the_gateway_strips(raw: str, subject: str) -> None:
    ticket = dataclasses.replace(TICKET, subject=raw)
    msg = compose(row("ack", "acknowledgement"), ReadModel(ticket, contacts=REQUESTER))
    assert msg["Subject"] == subject


def test_link_signer_from_settings_accepts_what_the_composer_signs() -> None:
    view_url = body(compose(row("ack", "acknowledgement"))).split("/t/", 1)[1].split()[0]
    claims = LinkSigner.from_settings(SETTINGS, lambda: NOW).verify(
        view_url, "view", ticket_secret_for={7: "ticket-secret"}.get)
    assert (claims.ticket, claims.contact) == (7, 11)


BUILT_IN = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "templates" / "email")
                  .glob("[!_]*.txt"))
CONTEXTS: dict[str, dict[str, object]] = {
    "agent_command_errors": {"errors": [{"line": "#status nope", "reason": "unknown status"}],
                             "applied": ["#priority high"], "prefix": "#"},
    "agent_help": {"commands": ["#status NAME", "#assign AGENT"], "prefix": "#"},
    "agent_auth_refused": {"reason": "DKIM fail", "handled_as": "a contact's reply",
                           "agent_subject": "Re: x"},
    "magic_link": {"url": "https://help.example.com/my/tok", "valid_hours": 24, "name": "Al",
                   "product_name": "Help", "subject": "Your tickets at Help"},
    "sla_warning": {"ticket": "TKT-000042", "policy": "gold", "clock_label": "first response",
                    "target_minutes": 60, "elapsed_minutes": 50.0, "due_at": None},
    "sla_breach": {"ticket": "TKT-000042", "policy": "gold", "clock_label": "resolution",
                   "target_minutes": 60, "elapsed_minutes": 61.0, "escalated_to": "boss@x"},
    "escalation": {"automation": "escalate breaches"},
    "admin_delivery_failed": {"row_id": 5, "row_kind": "ack", "recipients": ["a@b"],
                              "message_id": "<m@x>", "error": "550 no"},
    "agent_list": {"title": "#list my-open", "more": False, "subject": "#list my-open: 1",
                   "rows": [{"reference": "TKT-000042", "subject": "Printer", "found": "",
                             "requester": "a@b", "priority": "high", "status": "Open",
                             "sla": "on track", "due": "-", "reply_to": "r@x"}]},
    "agent_board": {"day": "2026-12-07", "mine": 1, "agent": "bob@x", "subject": "Board",
                    "columns": [{"name": "Open", "cards": [
                        {"reference": "TKT-000042", "subject": "Printer", "requester": "a@b",
                         "priority": "high", "status": "Open", "sla": "warning",
                         "reply_to": "r@x"}]}], "urgent": [], "breaching": []},
    "report": {"subject": "Helpdesk: weekly report", "created": 4, "resolved": 3, "open": 2,
               "html": "0" * 64, "pdf": "0" * 64},
    "agent_collision": {"held": True, "prefix": "#", "other": {
        "name": "Carol", "email": "carol@x", "at": "2026-12-07 10:00 UTC", "text": "Hi."}},
}
KINDS = {"acknowledgement": "ack", "agent_reply": "reply", "resolved": "resolved",
         "admin_delivery_failed": "admin_notice", "magic_link": "magic_link",
         "reminder": "update", "escalation": "staff_notice"}


def test_built_in_templates_cover_every_template_the_project_enqueues() -> None:
    expected = {"acknowledgement", "agent_reply", "resolved", "agent_new_ticket",
                "agent_reply_notice", "agent_assigned", "agent_status_changed",
                "admin_delivery_failed", "sla_warning", "sla_breach", "agent_auth_refused",
                "agent_command_errors", "agent_help", "magic_link", "reminder",
                "escalation", "agent_list", "agent_board", "agent_collision"}
    assert expected <= set(BUILT_IN)


@pytest.mark.parametrize("template", BUILT_IN)
def test_every_built_in_template_renders_text_and_html(template: str) -> None:
    kind = KINDS.get(template, "agent_notice")
    requester_side = kind in ("ack", "reply", "resolved", "magic_link", "update")
    to = "alice@example.org" if requester_side else "bob@support.example.com"
    ticket = None if kind == "magic_link" else TICKET
    read = ReadModel(ticket, MessageView("public", "Body text"), contacts=REQUESTER,
                     agents=frozenset({"bob@support.example.com"}))
    msg = compose(row(kind, template, to=to, context=CONTEXTS.get(template, {})), read)
    assert body(msg).strip() and "<html>" in body(msg, "html")
    assert (html := body(msg, "html")).count("<body") == 1, html
