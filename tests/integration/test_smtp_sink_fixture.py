"""Check that the SMTP sink fixture records what real SMTP clients send and can refuse mail."""

from __future__ import annotations

import email.policy
import smtplib
import threading
import time
from email.message import EmailMessage
from typing import TYPE_CHECKING

import aiosmtplib
import pytest

if TYPE_CHECKING:
    from tests.fixtures.smtp_sink import SmtpSink

# The fixture comes from tests/fixtures/smtp_sink.py, also listed in tests/conftest.py; naming
# it here too keeps this file runnable on its own (pytest loads a plugin module only once).
pytest_plugins = ["tests.fixtures.smtp_sink"]


def _message(subject: str, message_id: str = "<reply-1@support.example.com>") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Support <support@support.example.com>"
    message["To"] = "alice@example.com"
    message["Subject"] = subject
    message["Message-ID"] = message_id
    message.set_content(f"Body of {subject}.\n")
    return message


def _send_sync(sink: SmtpSink, message: EmailMessage, rcpts: list[str] | None = None) -> None:
    with smtplib.SMTP(sink.host, sink.port, timeout=10) as client:
        client.send_message(message, to_addrs=rcpts)


def test_sink_listens_on_a_kernel_chosen_loopback_port(smtp_sink: SmtpSink) -> None:
    assert smtp_sink.host == "127.0.0.1"
    assert smtp_sink.port not in (0, 25, 8025)


def test_smtplib_message_is_recorded_with_envelope_and_parsed_headers(
    smtp_sink: SmtpSink,
) -> None:
    message = _message("[TKT-000042] Printer on fire")

    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=10) as client:
        client.sendmail(
            "bounces@support.example.com",
            ["alice@example.com", "bob@example.com"],
            message.as_bytes(policy=email.policy.SMTP),
        )

    [received] = smtp_sink.wait_for()
    assert received.mail_from == "bounces@support.example.com"
    assert received.rcpt_tos == ("alice@example.com", "bob@example.com")
    assert received.subject == "[TKT-000042] Printer on fire"
    assert received.message.get_content() == "Body of [TKT-000042] Printer on fire.\n"
    assert b"Subject: [TKT-000042] Printer on fire" in received.raw
    assert smtp_sink.by_message_id() == {"<reply-1@support.example.com>": [received]}


async def test_aiosmtplib_message_is_recorded(smtp_sink: SmtpSink) -> None:
    await aiosmtplib.send(
        _message("Sent asynchronously", "<async-1@support.example.com>"),
        hostname=smtp_sink.host,
        port=smtp_sink.port,
        timeout=10,
    )

    # the sink records before it answers 250, so the message is there once send() returns
    [received] = smtp_sink.messages
    assert received.message_id == "<async-1@support.example.com>"
    assert received.rcpt_tos == ("alice@example.com",)


def test_fail_next_answers_451_once_then_accepts_the_retry(smtp_sink: SmtpSink) -> None:
    smtp_sink.fail_next(1, "451 4.3.0 Try again later")
    message = _message("Retried")

    with pytest.raises(smtplib.SMTPDataError) as refused:
        _send_sync(smtp_sink, message)
    _send_sync(smtp_sink, message)

    assert refused.value.smtp_code == 451
    assert [r.stage for r in smtp_sink.rejections] == ["DATA"]
    assert smtp_sink.rejections[0].raw.startswith(b"From: ")
    assert list(smtp_sink.by_message_id()) == ["<reply-1@support.example.com>"]
    assert len(smtp_sink.messages) == 1


async def test_aiosmtplib_sees_permanent_550_from_fail_next(smtp_sink: SmtpSink) -> None:
    smtp_sink.fail_next(1, "550 5.7.1 Message refused")

    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await aiosmtplib.send(
            _message("Refused"), hostname=smtp_sink.host, port=smtp_sink.port, timeout=10
        )

    assert refused.value.code == 550
    assert smtp_sink.messages == []


def test_fail_next_at_rcpt_refuses_one_recipient_and_keeps_the_other(
    smtp_sink: SmtpSink,
) -> None:
    smtp_sink.fail_next(1, "550 5.1.1 No such user", stage="RCPT")

    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=10) as client:
        refused = client.sendmail(
            "support@support.example.com",
            ["gone@example.com", "alice@example.com"],
            _message("Partly refused").as_bytes(policy=email.policy.SMTP),
        )

    assert refused == {"gone@example.com": (550, b"5.1.1 No such user")}
    [received] = smtp_sink.wait_for()
    assert received.rcpt_tos == ("alice@example.com",)


def test_fail_next_rejects_a_reply_that_is_not_an_error(smtp_sink: SmtpSink) -> None:
    with pytest.raises(ValueError, match="4xx or 5xx"):
        smtp_sink.fail_next(1, "250 OK")
    with pytest.raises(ValueError, match="stage"):
        smtp_sink.fail_next(1, "451 later", stage="HELO")


def test_wait_for_returns_a_message_sent_later_from_another_thread(smtp_sink: SmtpSink) -> None:
    def send_later() -> None:
        time.sleep(0.2)
        _send_sync(smtp_sink, _message("Late"))

    sender = threading.Thread(target=send_later)
    sender.start()
    try:
        found = smtp_sink.wait_for(lambda m: m.subject == "Late", timeout=10)
    finally:
        sender.join()

    assert [m.subject for m in found] == ["Late"]


def test_wait_for_times_out_naming_what_did_arrive(smtp_sink: SmtpSink) -> None:
    _send_sync(smtp_sink, _message("Something else"))

    with pytest.raises(TimeoutError, match="Something else"):
        smtp_sink.wait_for(lambda m: m.subject == "Never sent", timeout=0.3)


def test_by_message_id_lists_a_message_sent_twice_twice(smtp_sink: SmtpSink) -> None:
    message = _message("Duplicate", "<dup@support.example.com>")
    _send_sync(smtp_sink, message)
    _send_sync(smtp_sink, message)
    _send_sync(smtp_sink, _message("Other", "<other@support.example.com>"))

    grouped = smtp_sink.by_message_id()

    assert len(grouped["<dup@support.example.com>"]) == 2
    assert len(grouped["<other@support.example.com>"]) == 1
    assert len(smtp_sink.wait_for(count=3)) == 3
