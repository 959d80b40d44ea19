"""Turn the raw bytes of one inbound mail into an ``Inbound`` value, never raising.

Parsing is on the gateway's hot path and meets every kind of broken mail, so the MIME
structure comes from the standard library's lenient, fast ``compat32`` parser and this module
decodes headers (RFC 2047, raw 8-bit), charsets and filenames itself. mail-parser is not
used: it wraps the same ``compat32`` parser, costs about five times as much, logs, and raises
on some real mail. Every sub-step degrades instead of failing: an undecodable byte becomes
U+FFFD, a header that cannot be read is left out, and the reason is kept in
``Inbound.defects``. Input that has no mail headers at all is kept whole as the body text.
"""

from __future__ import annotations

import binascii
import codecs
import functools
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime
from types import MappingProxyType
from typing import TypeVar

from mailparser_reply import EmailMessage as _ReplyText

from mailgate import _html

NO_SUBJECT = "(no subject)"
MAX_BODY_CHARS = 2_000_000  # text or HTML longer than this is cut and body_truncated set
_REPLY_PARSE_LIMIT = 32_000  # the reply parser reads at most this much of a text
_LINE_LIMIT = 200  # longer lines reach the reply parser split (its regexes are quadratic)
_JOIN = "\u2063"  # marks where a long line was split for the reply parser
_REPLY_LANGUAGES = ("en", "de", "fr", "es")  # each language costs ~0.1 ms a mail
_MAX_PARTS = 1000
_MAX_DEPTH = 50
_MAIL_HEADERS = frozenset(
    {"from", "to", "cc", "subject", "date", "message-id", "received", "return-path",
     "mime-version", "content-type", "reply-to", "sender", "in-reply-to", "references",
     "delivered-to", "x-mailer", "user-agent", "content-transfer-encoding", "x-original-to"}
)
_CHARSET_ALIASES = {
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "euc-cn": "gb18030",
    "ks_c_5601-1987": "cp949", "euc-kr": "cp949", "iso-8859-8-i": "iso-8859-8",
    "windows-874": "cp874", "x-sjis": "cp932", "shift_jis": "cp932", "shift-jis": "cp932",
    "iso-8859-1": "cp1252", "latin1": "cp1252", "unicode-1-1-utf-7": "utf-7",
}
_EXTENSIONS = {
    "image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "application/pdf": ".pdf",
    "text/calendar": ".ics", "message/rfc822": ".eml", "text/plain": ".txt",
}
_WEAK_CODECS = frozenset({None, "cp1252", "ascii"})
_REPORT_TYPES = frozenset(
    {"message/delivery-status", "message/global-delivery-status", "message/feedback-report"}
)
_MBOX_FROM = re.compile(rb"From [^\s:][^\n]*\n(?=[\x21-\x39\x3b-\x7e]+[ \t]*:)")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_WS = re.compile(r"\s+")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?]*)\?=")
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/]")
_MSGID = re.compile(r"<([^<>\s]+@[^<>\s]+)>")
_BARE_MSGID = re.compile(r"[^<>\s@]+@[^<>\s@]+")
_ADDRESS = re.compile(r"[\w.+\-=/]+@[\w.\-]+")
_FILENAME_PARAM = re.compile(r'(?:file)?name\*?=\s*"?([^";]+)', re.IGNORECASE)
_QUOTED_LINE = re.compile(r"^[ \t]*>.*\n?", re.MULTILINE)
_BLANK_RUN = re.compile(r"\n{3,}")
_SPACE_RUN = re.compile(r"[^\S\n]{8,}")
_T = TypeVar("_T")
_Walked = list[tuple[Message, "Message | None"]]


@dataclass(frozen=True)
class Address:
    """One mailbox from an address header."""

    email: str  # lowercased addr-spec, "" if unusable
    name: str  # decoded display name, "" when none


@dataclass(frozen=True)
class InboundAttachment:
    """A file carried by the mail; ``filename`` is already safe to store and offer."""

    filename: str
    content_type: str  # lowercased "type/subtype"
    payload: bytes
    is_inline: bool
    content_id: str | None  # without angle brackets, as cid: URLs name it


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
    text: str  # the text/plain body (inline text parts joined), else text from the HTML
    visible_text: str  # text without quoted history and signature
    html: str | None  # sanitised: no scripts, handlers, javascript: or remote images
    attachments: tuple[InboundAttachment, ...]  # named parts and unnamed non-text parts
    headers: Mapping[str, str] = field(hash=False)  # lowercased name -> first value, decoded
    defects: tuple[str, ...]  # parser defects and dropped attachments, for logging
    body_truncated: bool = False  # text or HTML was longer than MAX_BODY_CHARS
    content_type: str = "text/plain"  # of the whole message
    part_types: tuple[str, ...] = ()  # every MIME part's type, depth first
    delivery_status: str = ""  # fields of delivery-status / feedback-report parts


def looks_like_mail(raw: bytes) -> bool:
    """Return False only for input that is clearly not mail (empty, or binary with NULs).

    Text without headers counts as mail: it is kept and becomes a ticket.
    """
    return bool(raw.strip()) and b"\x00" not in raw[:8192]


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
    data = _strip_envelope(raw)
    limits = (max_attachment_bytes, max_total_attachment_bytes)
    try:
        msg = message_from_bytes(data, policy=compat32)
    except Exception as exc:  # deep nesting can exhaust the recursion limit
        return _headers_only(data, f"mime parse failed: {type(exc).__name__}", limits)
    try:
        if not _MAIL_HEADERS.intersection(k.lower() for k in msg):
            return _raw_inbound(data, "no mail headers")
        return _build(msg, limits)
    except Exception as exc:  # last resort; sub-steps degrade on their own
        return _headers_only(data, f"parse failed: {type(exc).__name__}", limits)


def safe_filename(name: str, index: int, content_type: str = "") -> str:
    """Return ``name`` made safe to store and offer for download.

    No path, no control or format characters (so no bidi tricks), no leading dots, at most
    200 characters keeping the extension, never empty: ``attachment-<index><ext>``.
    """
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    kinds = [unicodedata.category(c)[0] for c in name]
    name = "".join(" " if k == "Z" else c for c, k in zip(name, kinds, strict=True) if k != "C")
    name = _WS.sub(" ", name).strip().lstrip(".").strip()
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        keep = dot + ext if dot and 0 < len(ext) <= 16 else ""
        name = (stem if keep else name)[: 200 - len(keep)].rstrip() + keep
    return name or f"attachment-{index}{_EXTENSIONS.get(content_type, '.bin')}"


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
        return _message_ids(" ".join(every(name)))

    walked: _Walked = steps.run("mime walk", lambda: _walk(msg), [(msg, None)])
    text, html, used, truncated = _bodies(msg, walked, steps)
    for part, _ in walked:
        steps.defects.extend(type(d).__name__ for d in getattr(part, "defects", ()))
    attachments: tuple[InboundAttachment, ...] = steps.run(
        "attachments", lambda: _attachments(walked, used, limits, steps.defects), ()
    )
    headers: dict[str, str] = steps.run("headers", lambda: _header_map(raw_headers), {})
    senders = every("from")
    return Inbound(
        message_id=steps.run("message-id", lambda: next(iter(ids("message-id")), None), None),
        in_reply_to=steps.run("in-reply-to", lambda: ids("in-reply-to"), ()),
        references=steps.run("references", lambda: ids("references"), ()),
        sender=steps.run("from", lambda: _sender(senders), None) if senders else None,
        reply_to=steps.run("reply-to", lambda: _addresses(every("reply-to")), ()),
        to=steps.run("to", lambda: _addresses(every("to")), ()),
        cc=steps.run("cc", lambda: _addresses(every("cc")), ()),
        subject=steps.run("subject", lambda: _subject(every("subject")), NO_SUBJECT),
        date=steps.run("date", lambda: _date(every("date")), None),
        text=text,
        visible_text=_visible_text(text),
        html=html,
        attachments=attachments,
        headers=MappingProxyType(headers),
        defects=tuple(dict.fromkeys(steps.defects)),
        body_truncated=truncated,
        content_type=_ctype(msg),
        part_types=tuple(_ctype(p) for p, _ in walked),
        delivery_status=steps.run("delivery status", lambda: _report_text(walked), ""),
    )


def _bodies(msg: Message, walked: _Walked, steps: _Steps) -> tuple[str, str | None, set[int], bool]:
    """Text, sanitised HTML, the ids of the parts used for them, and whether one was cut."""
    plain = steps.run("plain body", lambda: _best_body(msg, "plain"), None)
    html_part = steps.run("html body", lambda: _best_body(msg, "html"), None)
    parts: list[Message] = steps.run("text parts", lambda: _text_parts(plain, walked), [])
    if not parts and html_part is None:
        parts = [p for p, _ in walked if _fallback_text(p)][:1]
    text = steps.run("text", lambda: "\n".join(_part_text(p) for p in parts), "")
    raw_html = ""
    if html_part is not None:
        raw_html = steps.run("html", functools.partial(_part_text, html_part), "")
    if raw_html and not text.strip():  # no text part, or an empty one beside the HTML
        text = _html.html_to_text(raw_html)
    text, cut_text = _truncate(text)
    raw_html, cut_html = _truncate(raw_html)
    html = _html.sanitize_html(raw_html) if raw_html else None
    used = {id(p) for p in [*parts, html_part] if p is not None}
    return text, html, used, cut_text or cut_html


def _headers_only(data: bytes, reason: str, limits: tuple[int, int]) -> Inbound:
    """Salvage the header block when MIME parsing fails; the rest becomes the text."""
    try:
        msg = BytesHeaderParser(policy=compat32).parsebytes(data)
        body = msg.get_payload()
        msg.set_payload("")
        del msg["content-type"], msg["content-transfer-encoding"]
        inbound = _build(msg, limits)
        text, cut = _truncate(_clean_text(_repair(body if isinstance(body, str) else "")))
        return replace(inbound, text=text, visible_text=_visible_text(text),
                       defects=(reason, *inbound.defects), body_truncated=cut)
    except Exception:  # fall through to keeping the bytes as text
        return _raw_inbound(data, reason)


def _raw_inbound(data: bytes, reason: str) -> Inbound:
    text, cut = _truncate(_clean_text(_decode_bytes(data, None)))
    return Inbound(
        message_id=None, in_reply_to=(), references=(), sender=None, reply_to=(), to=(),
        cc=(), subject=NO_SUBJECT, date=None, text=text, visible_text=_visible_text(text),
        html=None, attachments=(), headers=MappingProxyType({}), defects=(reason,),
        body_truncated=cut,
    )


def _strip_envelope(raw: bytes) -> bytes:
    """Drop leading blank lines and an mbox ``From `` line (only when a header follows)."""
    data = raw.lstrip()
    if data.startswith(b"From ") and _MBOX_FROM.match(data[:4096].replace(b"\r\n", b"\n")):
        data = data.partition(b"\n")[2]
    return data


# --- headers ---------------------------------------------------------------------------


def _repair(value: str) -> str:
    """Turn surrogate-escaped raw 8-bit bytes into text: UTF-8, else U+FFFD."""
    if value.isascii():
        return value
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeError:
        return value.encode("utf-8", "replace").decode("utf-8")


def _decode_header(value: str) -> str:
    text = _repair(_LINE_BREAK.sub("", str(value)))
    if "=?" in text:
        text = _decode_words(text)
    return _CONTROL.sub("", text)


def _decode_words(text: str) -> str:
    """Decode RFC 2047 words; adjacent words in one charset are joined before decoding."""
    pieces: list[tuple[str | None, bytes | str]] = []
    pos = 0
    for match in _ENCODED_WORD.finditer(text):
        gap = text[pos : match.start()]
        if gap and not (gap.isspace() and pieces and pieces[-1][0] is not None):
            pieces.append((None, gap))
        charset = match.group(1).split("*", 1)[0].lower()
        data = _word_bytes(match.group(2), match.group(3))
        last = pieces[-1] if pieces else None
        if last is not None and last[0] == charset and isinstance(last[1], bytes):
            pieces[-1] = (charset, last[1] + data)
        else:
            pieces.append((charset, data))
        pos = match.end()
    pieces.append((None, text[pos:]))
    return "".join(p if isinstance(p, str) else _decode_bytes(p, cs) for cs, p in pieces)


def _word_bytes(encoding: str, payload: str) -> bytes:
    raw = payload.encode("utf-8", "surrogateescape")
    if encoding in "Qq":
        return binascii.a2b_qp(raw, header=True)
    clean = _NOT_BASE64.sub("", payload)
    try:
        return binascii.a2b_base64(clean + "=" * (-len(clean) % 4))
    except binascii.Error:
        return raw


@functools.lru_cache(maxsize=256)
def _codec(charset: str | None) -> str | None:
    if not charset:
        return None
    name = charset.strip().strip("\"'").lower()
    name = _CHARSET_ALIASES.get(name, name)
    try:
        info = codecs.lookup(name)
    except Exception:  # LookupError, or ValueError on odd names
        return None
    return info.name if getattr(info, "_is_text_encoding", True) else None


def _decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode with the declared charset, else UTF-8, else best effort with U+FFFD."""
    codec = _codec(charset)
    # UTF-8 labelled as Latin-1/ASCII is common; real Latin-1 text is almost never valid UTF-8
    order = ("utf-8", codec) if codec in _WEAK_CODECS else (codec, "utf-8")
    for attempt in order:
        if attempt:
            try:
                return data.decode(attempt)
            except (UnicodeDecodeError, LookupError):
                pass
    return data.decode(codec or "cp1252", "replace")


def _header_map(raw_headers: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in raw_headers:
        if name not in out:
            out[name] = _WS.sub(" ", _decode_header(value)).strip()
    return out


def _subject(values: list[str]) -> str:
    subject = _WS.sub(" ", _decode_header(values[0])).strip() if values else ""
    return subject or NO_SUBJECT


def _message_ids(value: str) -> tuple[str, ...]:
    text = _repair(_LINE_BREAK.sub("", value))
    found = _MSGID.findall(text)
    if not found and _BARE_MSGID.fullmatch(text.strip()):
        found = [text.strip()]
    return tuple(dict.fromkeys(f"<{i}>" for i in found))


def _normalize_email(addr: str) -> str:
    addr = _CONTROL.sub("", _repair(addr)).strip().strip("<>").strip().rstrip(".")
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in addr):
        return ""
    return addr.lower()


def _addresses(values: list[str]) -> tuple[Address, ...]:
    out = []
    for name, addr in getaddresses([_LINE_BREAK.sub("", v) for v in values]):
        email = _normalize_email(addr)
        display = _WS.sub(" ", _decode_header(name)).strip()
        if email or display:
            out.append(Address(email=email, name=display))
    return tuple(out)


def _sender(values: list[str]) -> Address | None:
    found = next((a for a in _addresses(values[:1]) if a.email), None)
    if found is None:
        match = _ADDRESS.search(_decode_header(values[0]))
        found = Address(email=match.group(0).lower(), name="") if match else None
    return found


def _date(values: list[str]) -> datetime | None:
    if not values:
        return None
    try:
        parsed = parsedate_to_datetime(_repair(_LINE_BREAK.sub("", values[0])).strip())
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


# --- MIME structure ----------------------------------------------------------------------


def _ctype(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:
        return "application/octet-stream"


def _disposition(part: Message) -> str:
    value = part.get("content-disposition")
    return str(value).split(";", 1)[0].strip().lower() if value is not None else ""


def _walk(msg: Message) -> _Walked:
    """Every part, depth first, with its parent; DSN field blocks are not parts."""
    out: _Walked = []
    stack: list[tuple[Message, Message | None, int]] = [(msg, None, 0)]
    while stack and len(out) < _MAX_PARTS:
        part, parent, depth = stack.pop()
        out.append((part, parent))
        payload = part.get_payload()
        if isinstance(payload, list) and depth < _MAX_DEPTH and _ctype(part) not in _REPORT_TYPES:
            stack.extend((c, part, depth + 1) for c in reversed(payload) if isinstance(c, Message))
    return out


def _find_body(part: Message, subtype: str, depth: int = 0) -> Iterator[Message]:
    """The body search of ``EmailMessage.get_body``, on ``compat32`` parts."""
    if depth > _MAX_DEPTH or _disposition(part) == "attachment":
        return
    maintype, _, sub = _ctype(part).partition("/")
    if maintype == "text":
        if sub == subtype:
            yield part
        return
    payload = part.get_payload()
    if maintype != "multipart" or not isinstance(payload, list):
        return
    children = [c for c in payload if isinstance(c, Message)]
    if sub == "related" and children:
        start = part.get_param("start")
        match = [c for c in children if start and c.get("content-id") == start]
        children = match[:1] or children[:1]
    for child in children:
        yield from _find_body(child, subtype, depth + 1)


def _best_body(msg: Message, subtype: str) -> Message | None:
    return next(_find_body(msg, subtype), None)


def _text_parts(plain: Message | None, walked: _Walked) -> list[Message]:
    """The chosen text/plain part plus later inline text siblings (Apple Mail splits text)."""
    if plain is None:
        return []
    parent = next((p for c, p in walked if c is plain), None)
    if parent is None or _ctype(parent) != "multipart/mixed":
        return [plain]
    siblings = [c for c in parent.get_payload() if isinstance(c, Message)]
    later = siblings[siblings.index(plain) + 1 :] if plain in siblings else []
    return [plain] + [c for c in later if _ctype(c) == "text/plain" and _is_bare_text(c)]


def _is_bare_text(part: Message) -> bool:
    return _disposition(part) != "attachment" and _filename(part) is None


def _fallback_text(part: Message) -> bool:
    return _ctype(part).startswith("text/") and _is_bare_text(part)


def _payload_bytes(part: Message) -> bytes:
    data = part.get_payload(decode=True)
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    return payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""


def _part_text(part: Message) -> str:
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    return _clean_text(_decode_bytes(_payload_bytes(part), charset))


def _clean_text(text: str) -> str:
    return _BODY_CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def _truncate(text: str) -> tuple[str, bool]:
    return (text[:MAX_BODY_CHARS], True) if len(text) > MAX_BODY_CHARS else (text, False)


def _filename(part: Message) -> str | None:
    """The part's filename from the raw headers, with RFC 2231 and RFC 2047 decoded."""
    probe = Message()
    for key, value in part.raw_items():
        if key.lower() in ("content-disposition", "content-type") and key not in probe:
            probe[key] = _repair(_LINE_BREAK.sub("", value))
    try:
        name = probe.get_filename()
    except Exception:  # malformed RFC 2231 parameters
        match = _FILENAME_PARAM.search(" ".join(str(v) for v in probe.values()))
        name = match.group(1) if match else None
    if name is None:
        return None
    name = _repair(str(name))
    return _decode_words(name) if "=?" in name else name


def _attachments(
    walked: _Walked,
    skip: set[int],
    limits: tuple[int, int],
    defects: list[str],
) -> tuple[InboundAttachment, ...]:
    """Named parts, plus unnamed non-text parts (an image or PDF sent without a name)."""
    out: list[InboundAttachment] = []
    total = 0
    for part, _ in walked:
        if isinstance(part.get_payload(), list) or id(part) in skip:
            continue
        ctype = _ctype(part)
        name = _filename(part)
        disposition = _disposition(part)
        if name is None and disposition != "attachment" and (
            ctype in ("text/plain", "text/html", "text/rfc822-headers")
            or ctype.startswith(("multipart/", "message/"))
        ):
            continue
        payload = _payload_bytes(part)
        filename = safe_filename(name or "", len(out) + 1, ctype)
        if len(payload) > limits[0]:
            defects.append(f"attachment too large: {filename} ({len(payload)} bytes)")
            continue
        if total + len(payload) > limits[1]:
            defects.append(f"attachment over message total: {filename} ({len(payload)} bytes)")
            continue
        total += len(payload)
        cid_raw = part.get("content-id")
        cid = _decode_header(str(cid_raw)).strip().strip("<>").strip() if cid_raw else ""
        inline = disposition == "inline" or (not disposition and bool(cid))
        out.append(InboundAttachment(filename, ctype, payload, inline, cid or None))
    return tuple(out)


def _report_text(walked: _Walked) -> str:
    chunks: list[str] = []
    for part, _ in walked:
        if _ctype(part) not in _REPORT_TYPES:
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            for block in payload:
                if isinstance(block, Message):
                    chunks.extend(f"{k}: {_decode_header(v)}" for k, v in block.raw_items())
                    chunks.append("")
        else:
            chunks.append(_part_text(part))
    return "\n".join(chunks)


# --- reply stripping ---------------------------------------------------------------------


def _visible_text(text: str) -> str:
    """The new part of ``text``: quoted history and signature removed; ``text`` on failure.

    The library's regexes are quadratic in line length and in whitespace runs, so it sees a
    bounded copy: long lines are split at marked points (joined again afterwards), whitespace
    runs are shortened, and only the first ``_REPLY_PARSE_LIMIT`` characters are read.
    """
    whole = text.strip()
    if not whole:
        return ""
    try:
        head = _bounded_lines(text[:_REPLY_PARSE_LIMIT])
        replies = _ReplyText(text=head, languages=list(_REPLY_LANGUAGES), keep_hyphen_lists=True)
        found = replies.read().replies
    except Exception:  # third-party regexes: never lose the text
        return whole
    if not found or (len(text) > _REPLY_PARSE_LIMIT and len(found) < 2):
        body = text  # no quoted history inside the part the parser saw
    else:
        body = found[0].body.replace("\n" + _JOIN, "").replace(_JOIN, "")
    body = _BLANK_RUN.sub("\n\n", _QUOTED_LINE.sub("", body)).strip()
    return body or whole


def _bounded_lines(text: str) -> str:
    lines = []
    for raw in text.replace(_JOIN, "").split("\n"):
        line = _SPACE_RUN.sub(" ", raw.rstrip())
        while len(line) > _LINE_LIMIT:
            cut = line.rfind(" ", _LINE_LIMIT // 2, _LINE_LIMIT)
            cut = cut if cut > 0 else _LINE_LIMIT
            lines.append(line[:cut])
            line = _JOIN + line[cut:]
        lines.append(line)
    return _BLANK_RUN.sub("\n\n", "\n".join(lines))
