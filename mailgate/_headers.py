"""Decode raw mail header values and charsets (8-bit, RFC 2047, RFC 2231) into text."""

from __future__ import annotations

import binascii
import codecs  # noqa: F401  (tests patch ``_headers.codecs.lookup``)
import contextlib
import re
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from helpdesk.mailheaders import header_text
from mailgate._charsets import clean as clean
from mailgate._charsets import decode_8bit, header_codec
from mailgate._charsets import decode_bytes as decode_bytes

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_WS = re.compile(r"\s+")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?]*)\?=")
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/]")
_MSGID = re.compile(r"<([^<>\s]+@[^<>\s]+)>")
_BARE_MSGID = re.compile(r"[^<>\s@]+@[^<>\s@]+")
_FILENAME_PARAM = re.compile(r'(?:file)?name\*?=\s*"?([^";]+)', re.IGNORECASE)
_RFC2231_VALUE = re.compile(r"([^']*)'[^']*'(.*)")
_PHRASE_TOKEN = re.compile(
    r'"(?:\\.|[^"\\])*"?|\((?:\\.|[^()\\])*\)?|<[^<>]*>?|=\?[^?\s"]+\?[QqBb]\?[^?\s"]*\?=')
ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"  # RFC 5322 atext, one or more
_DOT_ATOM = rf"{ATOM}(?:\.{ATOM})*"
# ``Name <local@domain>`` or ``local@domain``: a name of letters, digits and blanks, a
# dot-atom address. Anything else (quotes, comments, groups, encoded words) goes to the
# email package.
_ADDR_SPEC = rf"{_DOT_ATOM}@{_DOT_ATOM}"
_ADDR_SPEC_RE = re.compile(_ADDR_SPEC)
# An RFC 5322 date-time up to its zone: what is left of a Date with text glued to it.
_DATE_HEAD = re.compile(
    r"(?:[A-Za-z]{3},\s*)?\d{1,2}\s+[A-Za-z]{3}\s+\d{2,4}\s+\d{1,2}:\d{2}(?::\d{2})?"
    r"\s*(?:[+-]\d{4}|[A-Za-z]{1,5})?")
_PLAIN_MAILBOX = re.compile(
    rf"[ \t]*(?:([A-Za-z0-9 \t]*?)[ \t]*<({_ADDR_SPEC})>|({_ADDR_SPEC}))[ \t]*")


@dataclass(frozen=True)
class Address:
    """One mailbox from an address header."""

    email: str  # lowercased addr-spec, "" if unusable
    name: str  # decoded display name, "" when none


@dataclass(frozen=True)
class Charsets:
    """What a message says about the charset of its raw 8-bit header bytes.

    ``header``: the one charset that reads all of them (`mailgate._charsets.header_codec`),
    None when there are none; ``declared``: every charset the message declares, the
    message's own first, for bytes that charset does not read (filenames).
    """

    header: str | None = None
    declared: Iterable[str] = ()  # may be read lazily: iterate, do not index


NO_CHARSETS = Charsets()


def repair(value: str, charsets: Charsets = NO_CHARSETS) -> str:
    """Turn surrogate-escaped raw 8-bit bytes into text: UTF-8, else the message's charset.

    Without a charset from the message, bytes that are not UTF-8 become U+FFFD.
    """
    if value.isascii():
        return value
    try:
        data = value.encode("utf-8", "surrogateescape")
    except UnicodeError:  # a surrogate that is no escaped byte (RFC 2231 in UTF-7)
        return clean(value)
    if charsets is NO_CHARSETS:
        return data.decode("utf-8", "replace")
    return decode_8bit(data, charsets.declared, charsets.header)


def decode_header(value: str, charsets: Charsets = NO_CHARSETS) -> str:
    """Unfold, repair and RFC 2047-decode one header value; control characters are dropped.

    Never raises: an encoded word that cannot be decoded is decoded as UTF-8 with U+FFFD
    (see `decode_bytes`), and should anything else fail the value is kept undecoded.
    """
    text = repair(_LINE_BREAK.sub("", str(value)), charsets)
    if "=?" in text:
        with contextlib.suppress(Exception):  # a failure must not lose the header
            text = decode_words(text, charsets.declared)
    return clean(_CONTROL.sub("", text))


def decode_words(text: str, hints: Iterable[str] = ()) -> str:
    """Decode RFC 2047 words; adjacent words in one charset are joined before decoding.

    A word whose bytes its label does not read (Shift_JIS labelled ISO-2022-JP) is read
    as `decode_bytes` reads a body: UTF-8, the message's charsets (``hints``), detected.
    """
    pieces: list[tuple[str | None, list[bytes] | str]] = []
    pos = 0
    for match in _ENCODED_WORD.finditer(text):
        gap = text[pos : match.start()]
        if gap and not (gap.isspace() and pieces and pieces[-1][0] is not None):
            pieces.append((None, gap))
        charset = match.group(1).split("*", 1)[0].lower()
        data = _word_bytes(match.group(2), match.group(3))
        last = pieces[-1] if pieces else None
        if last is not None and last[0] == charset and isinstance(last[1], list):
            last[1].append(data)  # a list: joining bytes word by word is quadratic
        else:
            pieces.append((charset, [data]))
        pos = match.end()
    pieces.append((None, text[pos:]))
    return "".join(p if isinstance(p, str) else decode_bytes(b"".join(p), cs, hints)
                   for cs, p in pieces)


def _word_bytes(encoding: str, payload: str) -> bytes:
    raw = payload.encode("utf-8", "surrogateescape")
    if encoding in "Qq":
        return binascii.a2b_qp(raw, header=True)
    clean = _NOT_BASE64.sub("", payload)
    try:
        return binascii.a2b_base64(clean + "=" * (-len(clean) % 4))
    except binascii.Error:
        return raw


def message_charsets(raw_headers: Iterable[tuple[str, str]],
                     declared: Iterable[str]) -> Charsets:
    """The `Charsets` of a message from its raw headers and its declared charsets."""
    raw = [b for b in (_raw_bytes(v) for _, v in raw_headers if not v.isascii()) if b]
    return Charsets(header_codec(raw, declared) if raw else None, declared)


def _raw_bytes(value: str) -> bytes | None:
    """The bytes a header value was read from; None when it holds more than escaped bytes."""
    try:
        return str(value).encode("utf-8", "surrogateescape")
    except UnicodeError:
        return None


class HeaderMap(Mapping[str, str]):
    """Each lowercased header name -> its first value, decoded, whitespace collapsed.

    A value is decoded when it is first read: classification reads a score of names, and
    decoding every header up front made a mail of a million short encoded headers cost
    ten seconds on the event loop. Read-only; values are `clean` as `decode_header` is.
    """

    def __init__(self, raw_headers: Iterable[tuple[str, str]],
                 charsets: Charsets = NO_CHARSETS) -> None:
        self._raw: dict[str, str] = {}
        for name, value in raw_headers:
            self._raw.setdefault(clean(name), value)
        self._decoded: dict[str, str] = {}
        self._charsets = charsets

    def __getitem__(self, name: str) -> str:
        found = self._decoded.get(name)
        if found is None:
            found = _WS.sub(" ", decode_header(self._raw[name], self._charsets)).strip()
            self._decoded[name] = found
        return found

    def __contains__(self, name: object) -> bool:
        return name in self._raw

    def get(self, name: str, default: Any = None) -> Any:
        """Mapping's own ``get`` raises and catches KeyError for an absent name, and most
        of the names classification asks for are absent from most mail."""
        return self[name] if name in self._raw else default

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        return f"HeaderMap({dict(self)!r})"


def header_map(raw_headers: Iterable[tuple[str, str]],
               charsets: Charsets = NO_CHARSETS) -> HeaderMap:
    """Map each lowercased header name to its first value, decoded, whitespace collapsed."""
    return HeaderMap(raw_headers, charsets)


def message_ids(value: str) -> tuple[str, ...]:
    """The ``<id>`` message ids in a header value, duplicates removed, order kept."""
    text = repair(_LINE_BREAK.sub("", value))
    found = _MSGID.findall(text)
    if not found and _BARE_MSGID.fullmatch(text.strip()):
        found = [text.strip()]
    return tuple(dict.fromkeys(f"<{i}>" for i in found))


def normalize_email(addr: str) -> str:
    """The lowercased addr-spec, or "" when it is not a usable ``local@domain``."""
    addr = _CONTROL.sub("", repair(addr)).strip().strip("<>").strip().rstrip(".")
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in addr):
        return ""
    return addr.lower()


def subject(values: list[str], charsets: Charsets = NO_CHARSETS) -> str:
    """The first Subject value decoded, as one line; "" when absent or blank.

    Decoded text is made one safe line (`helpdesk.mailheaders.header_text`): an encoded
    CR or LF never reaches a header we write from it.
    """
    return header_text(decode_header(values[0], charsets)) if values else ""


def addresses(values: list[str], charsets: Charsets = NO_CHARSETS) -> tuple[Address, ...]:
    """Every mailbox in the header values that has an address or a display name.

    The address structure is read before any encoded word is decoded (each word is
    quoted first, so a comma, colon or ``@`` it holds is text, not syntax); a decoded
    display name is then made one safe line.
    """
    out = []
    unfolded = [_protect_words(_LINE_BREAK.sub("", v)) for v in values]
    for name, addr in split_addresses(unfolded):
        email = clean(normalize_email(addr))
        display = header_text(decode_header(name, charsets)) if name else ""
        if email or display:
            out.append(Address(email=email, name=display))
    return tuple(out)


def _protect_words(value: str) -> str:
    """``value`` with each encoded word outside quotes, comments and ``<>`` quoted.

    An encoded word is an atom to the address parser, but what it decodes to is text: a
    word must not split a name at its comma or make a group of it at its colon. A word
    touching ``@`` or ``.`` is part of an address and stays as it is (never decoded).
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pos = 0
    for match in _PHRASE_TOKEN.finditer(value):
        token = match.group(0)
        if not token.startswith("=?"):
            continue
        before = value[match.start() - 1] if match.start() else " "
        after = value[match.end()] if match.end() < len(value) else " "
        if before in "@." or after in "@.":
            continue
        out += [value[pos:match.start()], '"', token.replace("\\", "\\\\"), '"']
        pos = match.end()
    out.append(value[pos:])
    return "".join(out)


def split_addresses(values: list[str]) -> list[tuple[str, str]]:
    """``email.utils.getaddresses(values)``, without its parser when every value is plain.

    The email package's address parser took a twentieth of the gateway's CPU per mail,
    and nearly every From, To and Cc is one plain mailbox, for which a regular expression
    gives the same pairs (``tests/unit/test_parse.py`` compares the two).
    """
    pairs = []
    for value in values:
        plain = _PLAIN_MAILBOX.fullmatch(value)
        if plain is None:
            return getaddresses(values)
        name, bracketed, bare = plain.groups()
        pairs.append((" ".join(name.split()) if name else "", bracketed or bare))
    return pairs


def _unbracketed(value: str, charsets: Charsets) -> Address | None:
    """``Name local@domain``, a display name without its angle brackets: a mailbox.

    Only without brackets: inside ``<...>`` the whole text is the address, and one with
    blanks in it is not one mailbox.
    """
    text = _LINE_BREAK.sub("", value)
    words = text.split()
    if "<" in text or len(words) < 2 or '"' in words[-1]:
        return None
    if all(_ADDR_SPEC_RE.fullmatch(w) for w in words):  # a list that lost its commas
        return Address(clean(normalize_email(words[0])), "")
    email = clean(normalize_email(words[-1]))
    if not email or not _ADDR_SPEC_RE.fullmatch(email):
        return None
    return Address(email, header_text(decode_header(" ".join(words[:-1]), charsets)))


def sender(values: list[str], fallbacks: Iterable[str] = (),
           charsets: Charsets = NO_CHARSETS) -> tuple[Address | None, str]:
    """The sender, and the From text when the sender's address is not taken from it as is.

    The first From header with a usable address wins (a mailer that writes two, one of
    them broken, means the good one). An address that is not one mailbox (``power
    quadrant system@example.com``) is never cut down to another (``system@example.com``),
    which would send our replies to someone else: the address comes from ``fallbacks``
    (Sender, Reply-To, Return-Path), keeping the From's display name, and the From text
    is returned to be recorded. With no address anywhere: the display name alone when the
    From held an address-like text, else None.
    """
    name = ""
    for value in values:
        for found in (*addresses([value], charsets), _unbracketed(value, charsets)):
            if found is not None and found.email:
                return Address(found.email, found.name or name), ""
            name = name or (found.name if found is not None else "")
    original = header_text(decode_header(values[0], charsets)) if values else ""
    if "@" not in original:  # no address (``<>``, a bare name): no sender, as written
        return None, original
    for value in fallbacks:
        other = next((a for a in addresses([value], charsets) if a.email), None)
        if other is not None:
            return Address(other.email, name), original
    return (Address("", name) if name else None), original


def header_date(values: list[str]) -> datetime | None:
    """The first Date header value as an aware UTC datetime; None when absent or unreadable."""
    if not values:
        return None
    text = repair(_LINE_BREAK.sub("", values[0])).strip()
    head = _DATE_HEAD.match(text)
    if head and head.end() < len(text) and not text[head.end()].isspace():
        text = head.group(0)  # a header glued to its zone ("+0200Received: from ...")
    return _parse_date(text)


def _parse_date(text: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(text)
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def part_filename(part: Message, charsets: Charsets = NO_CHARSETS) -> str | None:
    """The part's filename from the raw headers, with RFC 2231 and RFC 2047 decoded.

    Raw 8-bit and RFC 2231 bytes are read in the part's charset, else as the message's
    header bytes are (`Charsets`): UTF-8, a declared charset, or the detected one.
    """
    if not any(k.lower() in ("content-disposition", "content-type") and "name" in v.lower()
               for k, v in part.raw_items()):
        return None  # most parts: no parameter that could name a file
    own = _part_charset(part)
    if own:
        charsets = Charsets(own, (own, *charsets.declared))
    probe = Message()
    for key, value in part.raw_items():
        if key.lower() in ("content-disposition", "content-type") and key not in probe:
            probe[key] = repair(_LINE_BREAK.sub("", value), charsets)
    try:
        name = _filename_param(probe, charsets)
    except Exception:  # malformed RFC 2231 parameters
        match = _FILENAME_PARAM.search(" ".join(str(v) for v in probe.values()))
        name = match.group(1) if match else None
        extended = _RFC2231_VALUE.fullmatch(name or "")
        if extended:  # charset'language'%XX..., in a charset the email package fails on
            raw = urllib.parse.unquote_to_bytes(extended.group(2))
            return decode_bytes(raw, extended.group(1), charsets.declared)
    if name is None:
        return None
    return decode_header(str(name), charsets)


def _filename_param(probe: Message, charsets: Charsets) -> str | None:
    """``get_filename``, reading RFC 2231 bytes as `decode_bytes` reads a body.

    The email package decodes them in the labelled charset with U+FFFD for the rest
    (``us-ascii''W%F6lbung.jpg``); a client reads them as Latin-1 or the message's charset.
    """
    for header, param in (("content-disposition", "filename"), ("content-type", "name")):
        value = probe.get_param(param, None, header)
        if value is None:
            continue
        if isinstance(value, tuple):  # RFC 2231: (charset, language, text of bytes)
            label, _, text = value
            try:
                raw = str(text).encode("latin-1")
            except UnicodeEncodeError:  # raw 8-bit bytes in it, already decoded
                return str(text).strip()
            return decode_bytes(raw, label or charsets.header, charsets.declared)
        return str(value).strip()
    return None


def _part_charset(part: Message) -> str | None:
    try:
        found = part.get_param("charset")
    except Exception:  # a malformed Content-Type
        return None
    return found if isinstance(found, str) and found.isascii() else None
