"""Find every text-bearing leaf of a mail and join them into its text and HTML, in order.

Why a module of its own: what a reader sees is not one "body part". A ``multipart/mixed``
mail may hold an HTML message and then a text footer, or text, an image and more text
(Apple Mail); each leaf is content and is kept, in order. Only the children of a
``multipart/alternative`` are versions of one content: there one is chosen (the HTML
when there is one, with the text version as its text). Leaves named as files or marked
``attachment`` are attachments, not content.
"""

from __future__ import annotations

import html as html_lib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import Message

from mailgate import _bigparts, _headers, _html, _mime

MAX_BODY_CHARS = 2_000_000  # text or HTML longer than this is cut and body_truncated set
_MAX_DEPTH = 50
_BODY_CONTROL = str.maketrans("", "", "".join(
    chr(c) for c in [*range(0, 9), 0x0B, *range(0x0E, 0x20), 0x7F]))


@dataclass
class _Unit:
    """One piece of content: a text leaf, an HTML leaf, or both versions of one content."""

    plain: Message | None = None
    html: Message | None = None


@dataclass(frozen=True)
class Bodies:
    """The content of a mail: its text, its raw (unsanitised) HTML, and the parts used."""

    text: str
    raw_html: str
    used: frozenset[int]  # ids of the parts that are content, so not attachments
    truncated: bool


Decoder = Callable[[Message], str]


def bodies(msg: Message, walked: _mime.Walked, decode: Decoder,
           on_error: Callable[[str, Exception], None]) -> Bodies:
    """The text and HTML of ``msg``: its content leaves joined in order.

    Text: the text leaves, and for HTML leaves without a text version the text derived
    from them. HTML (only when some leaf is HTML): the HTML leaves, with text leaves
    between them as escaped HTML, so the order a reader sees is kept.
    """
    try:
        units = _units(msg, 0)
    except Exception as exc:  # a broken part loses the structure, not the mail
        on_error("body parts", exc)
        units = []
    if not units:
        units = [_Unit(plain=p) for p, _ in walked if _mime.fallback_text(p)][:1]

    def text_of(part: Message, label: str) -> str:
        try:
            return decode(part)
        except Exception as exc:  # one undecodable part loses that part only
            on_error(label, exc)
            return ""

    texts: list[str] = []
    markup: list[str] = []
    has_html = any(u.html is not None for u in units)
    for unit in units:
        plain = text_of(unit.plain, "text") if unit.plain is not None else ""
        page = text_of(unit.html, "html") if unit.html is not None else ""
        if page and not plain.strip():  # no text version, or an empty one beside the HTML
            plain = _html.html_to_text(page)
        texts.append(plain)
        if has_html:
            markup.append(page if page else _text_as_html(plain))
    text, cut_text = truncate("\n".join(texts))
    raw_html, cut_html = truncate("".join(markup))
    used = frozenset(id(p) for u in units for p in (u.plain, u.html) if p is not None)
    return Bodies(text, raw_html, used, cut_text or cut_html)


def part_text(part: Message, hints: Iterable[str] = ()) -> str:
    """A leaf's decoded text: its charset, else UTF-8, the message's charsets, detected."""
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    return clean_text(_headers.decode_bytes(payload_bytes(part), charset, hints))


def payload_bytes(part: Message) -> bytes:
    """A leaf's body with its transfer encoding undone."""
    big = _bigparts.elided(part)
    if big is not None:
        return big.decode()
    data = part.get_payload(decode=True)  # safe: only decode=False re-decodes by charset
    if isinstance(data, bytes):
        return data
    return _mime.body_text(part).encode("utf-8", "surrogateescape")


def clean_text(text: str) -> str:
    """Line ends made LF; control characters but tab, LF and form feed dropped."""
    return text.replace("\r\n", "\n").replace("\r", "\n").translate(_BODY_CONTROL)


def truncate(text: str) -> tuple[str, bool]:
    return (text[:MAX_BODY_CHARS], True) if len(text) > MAX_BODY_CHARS else (text, False)


def _units(part: Message, depth: int) -> list[_Unit]:
    if depth > _MAX_DEPTH or _mime.disposition(part) == "attachment":
        return []
    maintype, _, sub = _mime.ctype(part).partition("/")
    if maintype == "text":
        if sub not in ("plain", "html") or _headers.part_filename(part) is not None:
            return []
        return [_Unit(plain=part)] if sub == "plain" else [_Unit(html=part)]
    children = _mime.children(part)
    if maintype != "multipart" or not children:
        return []
    found = [u for child in children for u in _units(child, depth + 1)]
    if sub != "alternative" or not found:
        return found
    # versions of one content: the last (richest) HTML, the first text
    plain = next((u.plain for u in found if u.plain is not None), None)
    page = next((u.html for u in reversed(found) if u.html is not None), None)
    return [_Unit(plain=plain, html=page)]


def _text_as_html(text: str) -> str:
    """A text leaf between HTML leaves, as HTML that shows it as written."""
    if not text.strip():
        return ""
    lines = html_lib.escape(text.strip("\n")).split("\n")
    return "<div>" + "<br>\n".join(lines) + "</div>"
