"""Turn the raw bytes of one inbound mail into an ``Inbound`` value, never raising.

Parsing is on the gateway's hot path and meets every kind of broken mail, so the MIME
structure comes from the standard library's lenient, fast ``compat32`` parser, after
``_headblock`` has repaired a broken header block in a copy (a stray line before the
headers, an unindented continuation); ``_bodies`` keeps every text leaf as content,
``_headers`` decodes headers (RFC 2047, raw 8-bit), addresses and filenames, and
``_charsets`` reads bytes as mail clients do (supersets of declared charsets, UTF-8, the
charsets the mail declares elsewhere, a detector). mail-parser is not used: it wraps the
same ``compat32`` parser, costs about five times as much, logs, and raises on some real
mail. Every sub-step degrades instead of failing, and only for its own field: bytes no
charset reads become U+FFFD, an encoded word, body part or filename in a charset that
cannot decode (``idna``, ``punycode``, an unknown name) is read as if unlabelled, and what
still fails is noted in ``Inbound.defects``. Every text returned is one a database
stores: no lone surrogate (UTF-7 ``+2AA-``), no NUL, ids, names and types within their RFC
lengths. Input that has no mail headers at all is kept whole as the body text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from email import message_from_bytes
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from types import MappingProxyType
from typing import TypeVar

from helpdesk.filenames import clean_filename
from mailgate import _bigparts, _clean, _headblock, _headers, _html, _mime, _reply
from mailgate._bodies import MAX_BODY_CHARS as MAX_BODY_CHARS  # re-exported
from mailgate._bodies import bodies, clean_text, part_text, payload_bytes, truncate
from mailgate._dedupe import dedupe_key
from mailgate._headers import Address as Address  # re-exported: part of the Inbound contract
from mailgate.sniff import looks_like_mail as looks_like_mail

NO_SUBJECT = "(no subject)"
_MAIL_HEADERS = frozenset(
    {"from", "to", "cc", "subject", "date", "message-id", "received", "return-path",
     "mime-version", "content-type", "reply-to", "sender", "in-reply-to", "references",
     "delivered-to", "x-mailer", "user-agent", "content-transfer-encoding", "x-original-to"}
)
_MBOX_FROM = re.compile(rb"From [^\s:][^\n]*\n(?=[\x21-\x39\x3b-\x7e]+[ \t]*:)")
_WS = re.compile(r"\s+")
_T = TypeVar("_T")


@dataclass(frozen=True)
class InboundAttachment:
    """A file carried by the mail; ``filename`` is already safe to store and offer."""

    filename: str
    content_type: str  # lowercased "type/subtype"
    payload: bytes  # empty when ``large`` holds the body
    is_inline: bool
    content_id: str | None  # without angle brackets, as cid: URLs name it
    large: _bigparts.Elided | None = field(default=None, repr=False)  # decoded while stored

    def chunks(self) -> Iterator[bytes]:
        """The decoded content, in pieces for a large body (never all of it at once)."""
        if self.large is not None:
            yield from self.large.chunks()
        else:
            yield self.payload


@dataclass(frozen=True)
class Inbound:
    """Everything later pipeline steps need from one mail, decoded and made safe.

    The last three fields are extras beyond the agreed interface, for ``classify``.
    """

    message_id: str | None  # "<local@domain>", None when absent or garbage
    in_reply_to: tuple[str, ...]  # normalised message ids
    references: tuple[str, ...]  # normalised, duplicates removed, order kept
    sender: Address | None  # first From mailbox; None when absent, "<>" or unusable
    reply_to: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    subject: str  # decoded, whitespace collapsed; NO_SUBJECT when absent or blank
    date: datetime | None  # aware UTC
    text: str  # every text leaf in order (HTML leaves as their text), "\n"-joined
    html: str | None  # sanitised: no scripts, handlers, javascript: or remote images; set
    # when a leaf is HTML, and then every leaf in order (text leaves as escaped HTML)
    attachments: tuple[InboundAttachment, ...]  # named parts and unnamed non-text parts
    headers: Mapping[str, str] = field(hash=False)  # lowercased name -> first value, decoded
    defects: tuple[str, ...]  # parser defects and dropped attachments, for logging
    body_truncated: bool = False  # text or HTML was longer than MAX_BODY_CHARS
    content_type: str = "text/plain"  # of the whole message
    part_types: tuple[str, ...] = ()  # every MIME part's type, depth first
    delivery_status: str = ""  # fields of delivery-status / feedback-report parts
    # The From text, decoded, when ``sender`` is not read from it as is: its address was
    # no one mailbox, so the address came from Sender, Reply-To or Return-Path, or none.
    sender_text: str = ""

    @functools.cached_property
    def visible_text(self) -> str:
        """``text`` without quoted history and signature.

        Computed on first use: only replies need it, and reply parsing is a third of the
        cost of parsing a mail.
        """
        return _reply.visible_text(self.text)


def parse_message(
    raw: bytes,
    *,
    max_attachment_bytes: int = 25 * 2**20,
    max_total_attachment_bytes: int = 50 * 2**20,
) -> Inbound:
    """Parse one raw mail; never raises on anything that ``looks_like_mail``.

    Args:
        raw: The message bytes, LF or CRLF, optionally starting with an mbox ``From `` line.
        max_attachment_bytes: Attachments larger than this are dropped (noted in defects).
        max_total_attachment_bytes: Attachments beyond this running total are dropped.

    Returns:
        The decoded message. Headerless input becomes a message whose text is all of it.
    """
    return _parse(raw, (max_attachment_bytes, max_total_attachment_bytes))[0]


def parse_keyed(
    raw: bytes,
    *,
    max_attachment_bytes: int = 25 * 2**20,
    max_total_attachment_bytes: int = 50 * 2**20,
) -> tuple[Inbound, str, str | None]:
    """`parse_message` and `mailgate._dedupe.dedupe_key` of one mail, as the gateway needs.

    The key is computed from the header block the parse has read, when the parse read
    exactly the block the key would (the mail does not start with blanks or an mbox
    ``From `` line, and no large body was cut out before parsing); otherwise on its own.
    Either way it is the key `dedupe_key(raw)` gives: the same ``compat32`` parser reads
    the same header lines (``tests/unit/test_dedupe.py`` checks it on the corpus and on
    generated header blocks), so mail stored before this shortcut still deduplicates.
    """
    inbound, msg = _parse(raw, (max_attachment_bytes, max_total_attachment_bytes))
    key, message_id = dedupe_key(raw, headers=msg)
    return inbound, key, _clean.message_id(message_id)


def _parse(raw: bytes, limits: tuple[int, int]) -> tuple[Inbound, Message | None]:
    """The parse, and its ``compat32`` message when it read ``raw``'s header block as is."""
    inbound, msg = _parse_raw(raw, limits)
    return _clean.cleaned(inbound), msg


def _parse_raw(raw: bytes, limits: tuple[int, int]) -> tuple[Inbound, Message | None]:
    data = _strip_envelope(raw)
    repaired = _headblock.recover(data)
    if repaired is not None:  # the parser reads a repaired copy; raw stays as it came
        data = repaired
    light, elided = _bigparts.lighten(data)
    try:
        msg = message_from_bytes(light, policy=compat32)
        _bigparts.restore(msg.walk(), elided)
    except Exception as exc:  # deep nesting can exhaust the recursion limit
        return _headers_only(data, f"mime parse failed: {type(exc).__name__}", limits), None
    as_is = (len(data) == len(raw) and not elided and not raw.startswith(b"From ")
             and repaired is None)
    try:
        if not _MAIL_HEADERS.intersection(k.lower() for k in msg):
            # kept whole as text, but classify still reads what looked like headers
            found = _undecoded([(k.lower(), v) for k, v in msg.raw_items()])
            return _raw_inbound(data, "no mail headers", found), msg if as_is else None
        built = _build(msg, limits)
        if repaired is not None:
            built = replace(built, defects=("header block repaired", *built.defects))
        return built, msg if as_is else None
    except Exception as exc:  # last resort; sub-steps degrade on their own
        return _headers_only(data, f"parse failed: {type(exc).__name__}", limits), None


class _Steps:
    """Runs the sub-steps of one parse: a failure gives a default and a defect note."""

    def __init__(self) -> None:
        self.defects: list[str] = []

    def run(self, label: str, step: Callable[[], _T], default: _T) -> _T:
        try:
            return step()
        except Exception as exc:  # one bad field must not lose the mail
            self.defects.append(f"{label}: {type(exc).__name__}")
            return default


def _build(msg: Message, limits: tuple[int, int]) -> Inbound:
    steps = _Steps()
    raw_headers = [(k.lower(), v) for k, v in msg.raw_items()]

    def every(name: str) -> list[str]:
        return [v for k, v in raw_headers if k == name]

    def ids(name: str) -> tuple[str, ...]:
        return _headers.message_ids(" ".join(every(name)))

    walked: _mime.Walked = steps.run("mime walk", lambda: _mime.walk(msg), [(msg, None)])
    declared = _mime.DeclaredCharsets(walked)
    charsets: _headers.Charsets = steps.run(
        "charsets", lambda: _headers.message_charsets(raw_headers, declared),
        _headers.NO_CHARSETS)
    found = bodies(msg, walked, functools.partial(part_text, hints=declared),
                   lambda label, exc: steps.defects.append(f"{label}: {type(exc).__name__}"))
    for part, _ in walked:
        steps.defects.extend(type(d).__name__ for d in getattr(part, "defects", ()))
    attachments: tuple[InboundAttachment, ...] = steps.run(
        "attachments",
        lambda: _attachments(walked, found.used, limits, steps.defects, charsets), ()
    )
    headers: Mapping[str, str] | None = steps.run(
        "headers", lambda: _headers.header_map(raw_headers, charsets), None)
    if headers is None:  # classify reads them: never lose them all
        headers = MappingProxyType(_undecoded(raw_headers))
    senders = every("from")
    fallbacks = [*every("sender"), *every("reply-to"), *every("return-path")]
    no_sender: tuple[Address | None, str] = (None, "")
    sender, sender_text = steps.run(
        "from", lambda: _headers.sender(senders, fallbacks, charsets), no_sender
    ) if senders else no_sender
    return Inbound(
        message_id=steps.run("message-id", lambda: next(iter(ids("message-id")), None), None),
        in_reply_to=steps.run("in-reply-to", lambda: ids("in-reply-to"), ()),
        references=steps.run("references", lambda: ids("references"), ()),
        sender=sender,
        reply_to=steps.run("reply-to",
                           lambda: _headers.addresses(every("reply-to"), charsets), ()),
        to=steps.run("to", lambda: _headers.addresses(every("to"), charsets), ()),
        cc=steps.run("cc", lambda: _headers.addresses(every("cc"), charsets), ()),
        subject=steps.run(
            "subject", lambda: _headers.subject(every("subject"), charsets), "") or NO_SUBJECT,
        date=steps.run("date", lambda: _headers.header_date(every("date")), None),
        text=found.text,
        html=_html.sanitize_html(found.raw_html) if found.raw_html else None,
        attachments=attachments,
        headers=headers,
        defects=tuple(dict.fromkeys(steps.defects)),
        body_truncated=found.truncated,
        content_type=_mime.ctype(msg),
        part_types=tuple(_mime.ctype(p) for p, _ in walked),
        delivery_status=steps.run("delivery status", lambda: _report_text(walked), ""),
        sender_text=sender_text,
    )


def _undecoded(raw_headers: list[tuple[str, str]]) -> dict[str, str]:
    """Header name -> first value, repaired but not RFC 2047-decoded: the last resort."""
    out: dict[str, str] = {}
    for name, value in raw_headers:
        out.setdefault(_headers.clean(name),
                       _headers.clean(_WS.sub(" ", _headers.repair(str(value))).strip()))
    return out


def _headers_only(data: bytes, reason: str, limits: tuple[int, int]) -> Inbound:
    """Salvage the header block when MIME parsing fails; the rest becomes the text."""
    try:
        msg = BytesHeaderParser(policy=compat32).parsebytes(data)
        body = _mime.body_text(msg)
        msg.set_payload("")
        del msg["content-type"], msg["content-transfer-encoding"]
        inbound = _build(msg, limits)
        text, cut = truncate(clean_text(_headers.repair(body if isinstance(body, str) else "")))
        return replace(inbound, text=text,
                       defects=(reason, *inbound.defects), body_truncated=cut)
    except Exception:  # fall through to keeping the bytes as text
        return _raw_inbound(data, reason)


def _raw_inbound(data: bytes, reason: str, headers: dict[str, str] | None = None) -> Inbound:
    text, cut = truncate(clean_text(_headers.decode_bytes(data, None)))
    return Inbound(
        message_id=None, in_reply_to=(), references=(), sender=None, reply_to=(), to=(),
        cc=(), subject=NO_SUBJECT, date=None, text=text,
        html=None, attachments=(), headers=MappingProxyType(headers or {}), defects=(reason,),
        body_truncated=cut,
    )


def _strip_envelope(raw: bytes) -> bytes:
    """Drop leading blank lines and an mbox ``From `` line (only when a header follows)."""
    data = raw.lstrip()
    if data.startswith(b"From ") and _MBOX_FROM.match(data[:4096].replace(b"\r\n", b"\n")):
        data = data.partition(b"\n")[2]
    return data


def _attachments(
    walked: _mime.Walked,
    skip: frozenset[int],
    limits: tuple[int, int],
    defects: list[str],
    charsets: _headers.Charsets = _headers.NO_CHARSETS,
) -> tuple[InboundAttachment, ...]:
    """Named parts, plus unnamed non-text parts (an image or PDF sent without a name)."""
    out: list[InboundAttachment] = []
    total = 0
    for part, _ in walked:
        if part.is_multipart() or id(part) in skip:
            continue
        try:  # one unreadable part loses that attachment, not the others
            found = _attachment(part, len(out) + 1, defects, charsets)
        except Exception as exc:
            defects.append(f"attachment {len(out) + 1} dropped: {type(exc).__name__}")
            continue
        if found is None:
            continue
        size = found.large.decoded_size() if found.large is not None else len(found.payload)
        if size > limits[0]:
            defects.append(f"attachment too large: {found.filename} ({size} bytes)")
            continue
        if total + size > limits[1]:
            defects.append(f"attachment over message total: {found.filename} ({size} bytes)")
            continue
        total += size
        out.append(found)
    return tuple(out)


def _attachment(part: Message, index: int, defects: list[str],
                charsets: _headers.Charsets) -> InboundAttachment | None:
    """``part`` as attachment number ``index``; None for a part that is not one (body text)."""
    ctype = _mime.ctype(part)
    try:
        name = _headers.part_filename(part, charsets)
    except Exception as exc:  # the part keeps a made-up name: ``attachment-<index>.<ext>``
        defects.append(f"filename {index}: {type(exc).__name__}")
        name = ""
    disposition = _mime.disposition(part)
    if name is None and disposition != "attachment" and (
        ctype in ("text/plain", "text/html", "text/rfc822-headers")
        or ctype.startswith(("multipart/", "message/"))
    ):
        return None
    filename = clean_filename(name or "", index, ctype)
    big = _bigparts.elided(part)
    payload = b"" if big is not None else payload_bytes(part)
    cid_raw = part.get("content-id")
    cid = _headers.decode_header(str(cid_raw)).strip().strip("<>").strip() if cid_raw else ""
    inline = disposition == "inline" or (not disposition and bool(cid))
    return InboundAttachment(filename, ctype, payload, inline, cid or None, big)


def _report_text(walked: _mime.Walked) -> str:
    chunks: list[str] = []
    for part, _ in walked:
        if _mime.ctype(part) not in _mime.REPORT_TYPES:
            continue
        blocks = _mime.children(part)
        if blocks is not None:
            for block in blocks:
                chunks.extend(f"{k}: {_headers.decode_header(v)}" for k, v in block.raw_items())
                chunks.append("")
        else:
            chunks.append(part_text(part))
    return "\n".join(chunks)
