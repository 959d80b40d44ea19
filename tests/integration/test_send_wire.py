"""``deliver`` puts on the wire exactly the bytes :func:`responders.send.flatten` built.

aiosmtplib's own ``send_message`` flattens with ``policy.SMTP``, which refolds every header
line longer than 78 characters and so decodes its encoded words a second time; what the
smarthost receives here must be our bytes, unchanged, whatever the header lines hold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from helpdesk.config import OutboundSettings
from responders.compose import MessageView, ReadModel
from responders.send import PermanentFailure, deliver, flatten
from tests.unit.test_compose import NOW, REQUESTER, TICKET, composer, row

if TYPE_CHECKING:
    from tests.fixtures.smtp_sink import SmtpSink

pytest_plugins = ["tests.fixtures.smtp_sink"]

LONG_ID = "<" + "a" * 90 + "@example.org>"  # one msg-id longer than a header line


async def test_the_smarthost_receives_exactly_the_flattened_bytes(smtp_sink: SmtpSink) -> None:
    msg = composer().compose(
        row("reply", "agent_reply", in_reply_to=LONG_ID,
            references=("<x@=?utf-8?q?a=0D=0ABcc:_c?=>", LONG_ID)),
        ReadModel(TICKET, MessageView("public", ".\r\n.leading dot\r\n=?utf-8?q?x?=\r\n"),
                  contacts=REQUESTER), now=NOW)
    settings = OutboundSettings(host="127.0.0.1", port=smtp_sink.port)
    await deliver(msg, settings, recipients=["alice@example.org"])
    [received] = smtp_sink.messages
    assert received.raw == flatten(msg)
    assert f"In-Reply-To: {LONG_ID}\r\n".encode() in received.raw
    assert received.rcpt_tos == ("alice@example.org",)
    assert "Bcc" not in received.message


async def test_envelope_recipients_that_are_not_addresses_are_not_sent_to(
        smtp_sink: SmtpSink) -> None:
    msg = composer().compose(row("ack", "acknowledgement"),
                             ReadModel(TICKET, contacts=REQUESTER), now=NOW)
    settings = OutboundSettings(host="127.0.0.1", port=smtp_sink.port)
    await deliver(msg, settings, recipients=["alice@example.org", "_e@example.org?="])
    assert [m.rcpt_tos for m in smtp_sink.messages] == [("alice@example.org",)]
    with pytest.raises(PermanentFailure):
        await deliver(msg, settings, recipients=["x@y> NOTIFY=NEVER"])
