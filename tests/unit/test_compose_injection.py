"""Nothing an attacker writes adds a header, a recipient or a body to the mail we compose.

Every mail goes through the real :class:`Composer` and is serialised by
:func:`responders.send.flatten`, the bytes ``deliver`` hands to the smarthost; a reader
parsing those bytes (``policy.default``) sees exactly the headers we meant, with the
sanitised text, the bodies we rendered and our loop headers in the header block.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
from email.header import decode_header, make_header
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from helpdesk import mailheaders as mh
from helpdesk.config import InstanceSettings
from helpdesk.subjects import SUBJECT_MAX
from responders.compose import (
    AttachmentData,
    ComposeError,
    Composer,
    MessageView,
    OutgoingRow,
    ReadModel,
)
from responders.send import flatten
from tests.unit.hostile import HOSTILE, MSG_IDS, nested
from tests.unit.test_compose import NOW, REQUESTER, SETTINGS, TICKET, composer, row

AGENT = "bob@support.example.com"
PERSONAL = "support+t42a3.abcdefghijklmnop@support.example.com"
KINDS = {  # kind -> (template, recipient, Auto-Submitted)
    "ack": ("acknowledgement", "alice@example.org", "auto-replied"),
    "reply": ("agent_reply", "alice@example.org", None),
    "resolved": ("resolved", "alice@example.org", "auto-generated"),
    "agent_notice": ("agent_new_ticket", AGENT, "auto-generated"),
}


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def header_lines(raw: bytes) -> list[bytes]:
    head, sep, _ = raw.partition(b"\r\n\r\n")
    assert sep, "no end of the header block"
    return head.split(b"\r\n")


def expected_names(r: OutgoingRow, auto: str | None) -> list[str]:
    names = ["From", "To", "Subject", "Date", "Message-ID"]
    refs = [i for i in map(mh.msg_id, (*r.references, r.in_reply_to or "")) if i]
    names += ["In-Reply-To"] if mh.msg_id(r.in_reply_to) else []
    names += ["References"] if refs else []
    names += ["Reply-To", "X-Helpdesk-Ticket", "X-Helpdesk-Loop"]
    names += ["Auto-Submitted", "X-Auto-Response-Suppress"] if auto else []
    return sorted([*names, "MIME-Version", "Content-Type"])


def bodies(msg: EmailMessage) -> list[str]:
    out = []
    for subtype in ("plain", "html"):
        part = msg.get_body(preferencelist=(subtype,))
        assert part is not None
        out.append(str(part.get_content()).replace("\r\n", "\n"))
    return out


def check(c: Composer, r: OutgoingRow, read: ReadModel) -> None:
    """Compose ``r``, serialise it as ``deliver`` does, and read it back as a receiver would."""
    auto = KINDS[r.kind][2]
    wanted_to = [a for a in map(mh.address, r.recipients) if a]
    personal = r.context.get("reply_to")
    if not wanted_to or mh.msg_id(r.message_id) is None or (
            personal and mh.address(personal) is None):
        with pytest.raises(ComposeError):
            c.compose(r, read, now=NOW)
        return
    msg = c.compose(r, read, now=NOW)
    raw = flatten(msg)
    assert raw.isascii()
    lines = header_lines(raw)
    for i, line in enumerate(lines):
        assert len(line) <= 998 and line.decode().isprintable(), line
        assert (i > 0 and line[:1] == b" ") or b":" in line, line
    parsed = parse(raw)
    assert sorted(parsed.keys()) == expected_names(r, auto), raw[:2000]
    top = parse(b"\r\n".join(lines) + b"\r\n\r\n")
    assert sorted(top.keys()) == sorted(parsed.keys())  # the same block, nothing in a body
    assert top["X-Helpdesk-Loop"] == mh.header_text(c.settings.instance.id)
    assert top["Auto-Submitted"] == auto

    assert str(top["Subject"]) == mh.header_text(c.subject(r, read))
    [sender] = top["From"].addresses
    assert sender.addr_spec == c.settings.outbound.sender
    phrase = dict(msg.raw_items())["From"].replace("\r\n", "").rpartition(" <")[0]
    name = mh.header_text(c.settings.instance.name)
    if phrase.startswith('"'):
        assert sender.display_name == name
    else:
        assert str(make_header(decode_header(phrase))) == name
    assert [a.addr_spec for a in top["To"].addresses] == wanted_to
    assert top["Message-ID"] == r.message_id.strip()
    in_reply_to = mh.msg_id(r.in_reply_to)
    assert (top["In-Reply-To"] or None) == in_reply_to
    refs = [i for i in map(mh.msg_id, r.references) if i]
    if in_reply_to and in_reply_to not in refs:
        refs.append(in_reply_to)
    assert str(top.get("References", "")).split() == refs

    assert bodies(parsed) == bodies(msg)
    if r.kind == "reply" and read.message is not None:
        assert read.message.text.split()[:1] == [] or bodies(parsed)[0].strip()
        got = [(a["Content-Disposition"].params["filename"], a.get_content_type(),
                a.get_content()) for a in parsed.iter_attachments()]
        assert got == [((mh.header_text(a.filename) or "attachment"),
                        "/".join(mh.mime_type(a.content_type)), a.data)
                       for a in read.message.attachments]


BASE = composer()
RECIPIENTS = st.lists(st.one_of(st.sampled_from(["alice@example.org", "carol@example.org"]),
                                HOSTILE), min_size=1, max_size=3)


@given(kind=st.sampled_from(sorted(KINDS)), subject=HOSTILE, name=HOSTILE,
       message_id=st.one_of(st.just("<hd.42.abc123.aaaaaaaaaa@support.example.com>"), MSG_IDS),
       in_reply_to=st.one_of(st.none(), MSG_IDS), references=st.lists(MSG_IDS, max_size=6),
       recipients=RECIPIENTS, text=HOSTILE, requester=HOSTILE,
       files=st.lists(st.tuples(HOSTILE, st.one_of(HOSTILE, st.just("application/pdf")),
                                st.binary(max_size=64)), max_size=2),
       reply_to=st.one_of(st.just(PERSONAL), HOSTILE), instance_id=st.one_of(
           st.just("helpdesk-1"), HOSTILE))
@example(kind="ack", subject=nested("=?utf-8?q?x=0D=0ABcc:_y@z?="), name="Helpdesk",
         message_id="<hd.42.abc123.aaaaaaaaaa@support.example.com>",
         in_reply_to="<a@=?utf-8?q?b=0D=0ABcc:_c?=>", references=[],
         recipients=["alice@example.org"], text="x", requester="Alice", files=[],
         reply_to=PERSONAL, instance_id="helpdesk-1")
@example(kind="agent_notice", subject="=?utf-8?q?x=0D=0A=0D=0Abody?=",
         name="=?utf-8?q?Help=0D=0ABcc:_evil@example.org?=",
         message_id="<hd.42.abc123.aaaaaaaaaa@support.example.com>", in_reply_to=None,
         references=["<=?utf-8?q?b=0D=0ABcc:_c?=@x>", "<ok@example.org>"],
         recipients=[AGENT], text="\r\n\r\nBcc: x", requester="Al\r\nBcc: y", files=[],
         reply_to=PERSONAL, instance_id="helpdesk-1")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_composed_mail_parses_back_to_exactly_the_headers_we_meant(
        kind: str, subject: str, name: str, message_id: str, in_reply_to: str | None,
        references: list[str], recipients: list[str], text: str, requester: str,
        files: list[tuple[str, str, bytes]], reply_to: str, instance_id: str) -> None:
    template, to, _ = KINDS[kind]
    settings_ = dataclasses.replace(SETTINGS, instance=InstanceSettings(name=name,
                                                                        id=instance_id))
    c = Composer(settings_, BASE.signer, BASE.templates)
    agents = frozenset({AGENT}) if kind == "agent_notice" else frozenset()
    contacts = {} if kind == "agent_notice" else {a: 11 for a in recipients} | REQUESTER
    context = {"reply_to": reply_to} if kind == "agent_notice" else {}
    r = OutgoingRow(id=1, kind=kind, template=template,
                    recipients=tuple(recipients if kind != "agent_notice" else [to, *recipients]),
                    message_id=message_id, in_reply_to=in_reply_to,
                    references=tuple(references), context=context)
    ticket = dataclasses.replace(TICKET, subject=subject, requester_name=requester)
    attachments = tuple(AttachmentData(f, ct, data) for f, ct, data in files)
    read = ReadModel(ticket, MessageView("public", text, requester, "alice@example.org",
                                         attachments),
                     contacts=contacts, agents=agents)
    check(c, r, read)


@pytest.mark.parametrize("subject", [
    "=?utf-8?q?hi=0D=0ABcc:_evil@example.org?=", nested("=?utf-8?q?x=0D=0ABcc:_y@z?="),
    "=?utf-8?q?x=0D=0A=0D=0AYour_password_expired?=", "x\r\nBcc: y@z", "a\u2028Bcc: b\x85c",
])
def test_an_acknowledgement_subject_cannot_add_a_header(subject: str) -> None:
    ticket = dataclasses.replace(TICKET, subject=subject)
    msg = composer().compose(row("ack", "acknowledgement"), ReadModel(ticket,
                                                                      contacts=REQUESTER),
                             now=NOW)
    parsed = parse(flatten(msg))
    assert "Bcc" not in parsed and parsed["X-Helpdesk-Loop"] == "helpdesk-1"
    assert str(parsed["Subject"]).startswith("[TKT-000042] ")
    assert "\n" not in str(parsed["Subject"]) and "\r" not in str(parsed["Subject"])


@pytest.mark.parametrize("bad", ["<a@=?utf-8?q?b=0D=0ABcc:_c?=>",
                                 "<=?utf-8?q?b=0D=0ABcc:_c?=@x>", "<a@b>\r\nBcc: c@d"])
def test_an_echoed_message_id_that_is_not_a_msg_id_is_dropped(bad: str) -> None:
    msg = composer().compose(row("ack", "acknowledgement", in_reply_to=bad,
                                 references=("<ok@example.org>", bad)),
                             ReadModel(TICKET, contacts=REQUESTER), now=NOW)
    parsed = parse(flatten(msg))
    assert "Bcc" not in parsed and "In-Reply-To" not in parsed
    assert parsed["References"] == "<ok@example.org>"


def test_a_recipient_that_is_not_an_address_is_left_out_and_none_left_is_an_error() -> None:
    read = ReadModel(TICKET, contacts={**REQUESTER, "x@y\r\nbcc: z@w": 12})
    msg = composer().compose(row("ack", "acknowledgement", recipients=(
        "alice@example.org", "x@y\r\nbcc: z@w")), read, now=NOW)
    assert parse(flatten(msg))["To"] == "alice@example.org"
    with pytest.raises(ComposeError):
        composer().compose(row("ack", "acknowledgement", recipients=("_e@example.org?=",)),
                           ReadModel(TICKET, contacts={"_e@example.org?=": 11}), now=NOW)


def test_a_huge_subject_is_cut_to_a_header_smarthosts_accept() -> None:
    ticket = dataclasses.replace(TICKET, subject="é" * 100_000)
    msg = composer().compose(row("ack", "acknowledgement"),
                             ReadModel(ticket, contacts=REQUESTER), now=NOW)
    subject = str(parse(flatten(msg))["Subject"])
    assert subject == "[TKT-000042] " + "é" * (SUBJECT_MAX - 1) + "\u2026"
    assert len(dict(msg.raw_items())["Subject"]) < 4000


def test_lone_surrogates_in_a_body_become_replacement_characters() -> None:
    msg = composer().compose(row("reply", "agent_reply"),
                             ReadModel(TICKET, MessageView("public", "caf\udce9 ok"),
                                       contacts=REQUESTER), now=NOW)
    assert "caf\ufffd ok" in bodies(parse(flatten(msg)))[0]
