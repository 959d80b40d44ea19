"""Decode raw mail header values and charsets (8-bit, RFC 2047, RFC 2231) into text."""

from __future__ import annotations

import binascii
import codecs
import contextlib
import encodings
import encodings.aliases
import functools
import pkgutil
import re
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

_CHARSET_ALIASES = {
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "euc-cn": "gb18030",
    "ks_c_5601-1987": "cp949", "euc-kr": "cp949", "iso-8859-8-i": "iso-8859-8",
    "windows-874": "cp874", "x-sjis": "cp932", "shift_jis": "cp932", "shift-jis": "cp932",
    "iso-8859-1": "cp1252", "latin1": "cp1252", "unicode-1-1-utf-7": "utf-7",
}
_WEAK_CODECS = frozenset({None, "cp1252", "ascii"})
# Codecs Python knows that are no mail charset: a label naming one is treated as unknown.
# idna and punycode raise on most input (and even with errors="replace"), undefined always
# raises, and the escape codecs turn ``\udc80`` in a body into a lone surrogate.
_NOT_CHARSETS = frozenset(
    {"idna", "punycode", "undefined", "unicode-escape", "raw-unicode-escape"})
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# Every name the standard codec search finds: its aliases and its modules.
_CODEC_NAMES = frozenset(encodings.aliases.aliases) | frozenset(
    m.name for m in pkgutil.iter_modules(encodings.__path__))
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_WS = re.compile(r"\s+")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?]*)\?=")
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/]")
_MSGID = re.compile(r"<([^<>\s]+@[^<>\s]+)>")
_BARE_MSGID = re.compile(r"[^<>\s@]+@[^<>\s@]+")
_FILENAME_PARAM = re.compile(r'(?:file)?name\*?=\s*"?([^";]+)', re.IGNORECASE)
_RFC2231_VALUE = re.compile(r"([^']*)'[^']*'(.*)")
_ADDRESS = re.compile(r"[\w.+\-=/]+@[\w.\-]+")
ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"  # RFC 5322 atext, one or more
_DOT_ATOM = rf"{ATOM}(?:\.{ATOM})*"
# ``Name <local@domain>`` or ``local@domain``: a name of letters, digits and blanks, a
# dot-atom address. Anything else (quotes, comments, groups, encoded words) goes to the
# email package.
_ADDR_SPEC = rf"{_DOT_ATOM}@{_DOT_ATOM}"
_PLAIN_MAILBOX = re.compile(
    rf"[ \t]*(?:([A-Za-z0-9 \t]*?)[ \t]*<({_ADDR_SPEC})>|({_ADDR_SPEC}))[ \t]*")


@dataclass(frozen=True)
class Address:
    """One mailbox from an address header."""

    email: str  # lowercased addr-spec, "" if unusable
    name: str  # decoded display name, "" when none


def repair(value: str) -> str:
    """Turn surrogate-escaped raw 8-bit bytes into text: UTF-8, else U+FFFD."""
    if value.isascii():
        return value
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeError:  # a surrogate that is no escaped byte (RFC 2231 in UTF-7)
        return clean(value)


def clean(text: str) -> str:
    """``text`` as valid Unicode a database stores: lone surrogates become U+FFFD, NULs go.

    Surrogates come from UTF-7 (``+2AA-``), UTF-16 and surrogate-escaped raw bytes; a pair
    that is split into two code points is joined. PostgreSQL refuses NUL in text.
    """
    if "\x00" in text:
        text = text.replace("\x00", "")
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        text = _SURROGATE.sub("\ufffd", text)  # the decoder passes some lone ones through
    return text


def decode_header(value: str) -> str:
    """Unfold, repair and RFC 2047-decode one header value; control characters are dropped.

    Never raises: an encoded word that cannot be decoded is decoded as UTF-8 with U+FFFD
    (see `decode_bytes`), and should anything else fail the value is kept undecoded.
    """
    text = repair(_LINE_BREAK.sub("", str(value)))
    if "=?" in text:
        with contextlib.suppress(Exception):  # a failure must not lose the header
            text = decode_words(text)
    return clean(_CONTROL.sub("", text))


def decode_words(text: str) -> str:
    """Decode RFC 2047 words; adjacent words in one charset are joined before decoding."""
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
    return "".join(p if isinstance(p, str) else decode_bytes(b"".join(p), cs)
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


@functools.lru_cache(maxsize=256)
def _codec(charset: str | None) -> str | None:
    if not charset:
        return None
    name = charset.strip().strip("\"'").lower()
    name = _CHARSET_ALIASES.get(name, name)
    norm = encodings.normalize_encoding(name)
    if norm not in _CODEC_NAMES and norm.replace(".", "_") not in _CODEC_NAMES:
        return None  # unknown: codecs.lookup would try an import (25 µs, per unique name)
    try:
        info = codecs.lookup(name)
    except Exception:  # LookupError, or ValueError on odd names
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return None
    return info.name


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode with the declared charset, else UTF-8, else best effort with U+FFFD.

    Never raises, and the text is `clean`: an unknown or unusable charset decodes as
    UTF-8, else Windows-1252, with U+FFFD for what is undecodable.
    """
    codec = _codec(charset)
    # UTF-8 labelled as Latin-1/ASCII is common; real Latin-1 text is almost never valid UTF-8
    order = ("utf-8", codec) if codec in _WEAK_CODECS else (codec, "utf-8")
    for attempt in order:
        if attempt:
            try:
                return clean(data.decode(attempt))
            except Exception:  # UnicodeError, or a codec's own error on odd input
                pass
    try:
        return clean(data.decode(codec or "cp1252", "replace"))
    except Exception:  # a codec that cannot replace
        return clean(data.decode("utf-8", "replace"))


class HeaderMap(Mapping[str, str]):
    """Each lowercased header name -> its first value, decoded, whitespace collapsed.

    A value is decoded when it is first read: classification reads a score of names, and
    decoding every header up front made a mail of a million short encoded headers cost
    ten seconds on the event loop. Read-only; values are `clean` as `decode_header` is.
    """

    def __init__(self, raw_headers: Iterable[tuple[str, str]]) -> None:
        self._raw: dict[str, str] = {}
        for name, value in raw_headers:
            self._raw.setdefault(clean(name), value)
        self._decoded: dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        found = self._decoded.get(name)
        if found is None:
            found = _WS.sub(" ", decode_header(self._raw[name])).strip()
            self._decoded[name] = found
        return found

    def __contains__(self, name: object) -> bool:
        return name in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        return f"HeaderMap({dict(self)!r})"


def header_map(raw_headers: Iterable[tuple[str, str]]) -> HeaderMap:
    """Map each lowercased header name to its first value, decoded, whitespace collapsed."""
    return HeaderMap(raw_headers)


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


def subject(values: list[str]) -> str:
    """The first Subject value decoded, whitespace collapsed; "" when absent or blank."""
    return _WS.sub(" ", decode_header(values[0])).strip() if values else ""


def addresses(values: list[str]) -> tuple[Address, ...]:
    """Every mailbox in the header values that has an address or a display name."""
    out = []
    for name, addr in split_addresses([_LINE_BREAK.sub("", v) for v in values]):
        email = clean(normalize_email(addr))
        display = _WS.sub(" ", decode_header(name)).strip()
        if email or display:
            out.append(Address(email=email, name=display))
    return tuple(out)


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


def sender(values: list[str]) -> Address | None:
    """The first From mailbox with a usable address, else a bare address found in it."""
    found = next((a for a in addresses(values[:1]) if a.email), None)
    if found is None:
        match = _ADDRESS.search(decode_header(values[0]))
        found = Address(email=match.group(0).lower(), name="") if match else None
    return found


def header_date(values: list[str]) -> datetime | None:
    """The first Date header value as an aware UTC datetime; None when absent or unreadable."""
    if not values:
        return None
    try:
        parsed = parsedate_to_datetime(repair(_LINE_BREAK.sub("", values[0])).strip())
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def part_filename(part: Message) -> str | None:
    """The part's filename from the raw headers, with RFC 2231 and RFC 2047 decoded."""
    probe = Message()
    for key, value in part.raw_items():
        if key.lower() in ("content-disposition", "content-type") and key not in probe:
            probe[key] = repair(_LINE_BREAK.sub("", value))
    try:
        name = probe.get_filename()
    except Exception:  # malformed RFC 2231 parameters
        match = _FILENAME_PARAM.search(" ".join(str(v) for v in probe.values()))
        name = match.group(1) if match else None
        extended = _RFC2231_VALUE.fullmatch(name or "")
        if extended:  # charset'language'%XX..., in a charset the email package fails on
            raw = urllib.parse.unquote_to_bytes(extended.group(2))
            return decode_bytes(raw, extended.group(1))
    if name is None:
        return None
    return decode_header(str(name))
