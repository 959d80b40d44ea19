"""Issue 20 over every real mail we hold: sender and subject kept, no needless U+FFFD.

Every file of ``../shared/peer-corpus/zammad/`` (another help desk's test mails) and of
``../shared/corpus/`` is parsed and classified without an exception; a mail whose header
block has a From with an address, or a Subject, keeps a sender and a subject; and no
subject, sender name or filename holds U+FFFD, except where the mail's own bytes decode
in no charset (listed below with the reason). ``tests/integration/test_peer_corpus.py``
sends the same files through the gateway.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from mailgate.classify import classify
from mailgate.parse import NO_SUBJECT, parse_message

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
PEER = SHARED / "peer-corpus" / "zammad"
CORPUS = SHARED / "corpus"
IN_CI = os.environ.get("CI") == "true"

# From headers with an address-like text that is no mailbox, and no fallback to take.
NO_SENDER = {
    "peer-corpus/zammad/mail076.box": (
        "From: \"Millions Lottery Spain transfer\"@example.com> is a quoted local part with"
        " blanks and a stray '>': no mailbox we could answer, and no Sender, Reply-To or"
        " Return-Path; the gateway falls back to the envelope sender"
    ),
    "corpus/flufl.bounce/simple_35.eml": (
        "From: <Postmaster\\@xxx.com@xxx.com>, an escaped '@' in the local part: no"
        " mailbox, and the bounce's Return-Path is empty"
    ),
}
# Values whose bytes no charset reads as meant: a UTF-8 character cut short, a byte no
# label explains.
UNREADABLE = {
    "corpus/ruby-mail/plain_emails__raw_email8.eml": (
        "an 8-bit byte (%8A) in an RFC 2231 filename labelled ISO-2022-JP, a 7-bit charset:"
        " 'Dij?at' has no reading better than another"),
    "corpus/flanker/mailformed-headers.eml": (
        "the From name ends in half a UTF-8 character; the Subject is one stray byte 0xB4"),
    "corpus/flanker/russian-attachment-yahoo.eml": (
        "the filename is cut inside a UTF-8 character (a client's length limit)"),
}
_HEADER_BLOCK = re.compile(rb"\r?\n\r?\n")
_FROM = re.compile(rb"(?im)^from[ \t]*:([^\r\n]*)")
_SUBJECT = re.compile(rb"(?im)^subject[ \t]*:[ \t]*\S")


def _files() -> list[object]:
    found = sorted(PEER.glob("*.box")) + sorted(
        p for p in CORPUS.rglob("*") if p.is_file() and p.suffix not in (".jsonl", ".md"))
    if not found:
        return [pytest.param(None, id="corpora-missing")]
    return [pytest.param(p, id=str(p.relative_to(SHARED))) for p in found]


def test_both_corpora_are_there() -> None:
    found = [p for p in _files() if getattr(p, "values", (None,))[0] is not None]
    if not found and not IN_CI:
        pytest.skip(f"corpora not found under {SHARED}")
    assert len(found) >= 116 + 503


@pytest.mark.parametrize("path", _files())
def test_every_mail_keeps_sender_and_subject_without_needless_replacements(
        path: Path | None) -> None:
    if path is None:
        if IN_CI:
            pytest.fail(f"corpora not found under {SHARED}")
        pytest.skip(f"corpora not found under {SHARED}")
    name = str(path.relative_to(SHARED))
    raw = path.read_bytes()

    msg = parse_message(raw)
    classify(msg, instance_id="corpus-test")

    head = _HEADER_BLOCK.split(raw, maxsplit=1)[0]
    from_line = _FROM.search(head)
    if from_line and b"@" in from_line.group(1) and name not in NO_SENDER:
        assert msg.sender is not None and (msg.sender.email or msg.sender.name), name
    if _SUBJECT.search(head):
        assert msg.subject != NO_SUBJECT
    if b"\xef\xbf\xbd" not in raw and name not in UNREADABLE:  # the sender's own U+FFFD
        values = [msg.subject, msg.sender.name if msg.sender else "",
                  *(a.filename for a in msg.attachments)]
        assert not [v for v in values if "\ufffd" in v]
