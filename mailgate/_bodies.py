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
from dataclasses import dataclass, field
from email.message import Message

from mailgate import _bigparts, _headers, _html, _mime

MAX_BODY_CHARS = 2_000_000  # text or HTML longer than this is cut and body_truncated set
_MAX_DEPTH = 50
_BODY_CONTROL = str.maketrans("", "", "".join(
    chr(c) for c in [*range(0, 9), 0x0B, *range(0x0E, 0x20), 0x7F]))


@dataclass
class _Unit:
    """One piece of content: a leaf, or the versions of one content (an alternative).

    ``text``: the leaves of its text version; ``rich``: the leaves of its richest version
    in order, as (part, is HTML). A text leaf has only ``text``, an HTML leaf only
    ``rich``; an alternative has the first all-text child as ``text`` and the last child
    with HTML as ``rich`` (a ``mixed`` child: HTML and a text footer, both kept).
    """

    text: list[Message] = field(default_factory=list)
    rich: list[tuple[Message, bool]] = field(default_factory=list)


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
        units = [_Unit(text=[p]) for p, _ in walked if _mime.fallback_text(p)][:1]
    decoded: dict[int, str] = {}

    def text_of(part: Message, label: str) -> str:
        if id(part) not in decoded:
            try:
                decoded[id(part)] = decode(part)
            except Exception as exc:  # one undecodable part loses that part only
                on_error(label, exc)
                decoded[id(part)] = ""
        return decoded[id(part)]

    def rich_text(leaves: list[tuple[Message, bool]]) -> str:
        return "\n".join(_html.html_to_text(text_of(p, "html")) if is_html
                         else text_of(p, "text") for p, is_html in leaves)

    texts: list[str] = []
    markup: list[str] = []
    has_html = any(is_html for u in units for _, is_html in u.rich)
    for unit in units:
        plain = "\n".join(text_of(p, "text") for p in unit.text)
        if unit.rich and not plain.strip():  # no text version, or an empty one
            plain = rich_text(unit.rich)
        texts.append(plain)
        if has_html:
            markup.extend(text_of(p, "html") if is_html else _text_as_html(text_of(p, "text"))
                          for p, is_html in unit.rich)
            if not unit.rich:
                markup.append(_text_as_html(plain))
    text, cut_text = truncate("\n".join(texts))
    raw_html, cut_html = truncate("".join(markup))
    used = frozenset(id(p) for u in units for p in [*u.text, *(q for q, _ in u.rich)])
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
        return [_Unit(text=[part])] if sub == "plain" else [_Unit(rich=[(part, True)])]
    children = _mime.children(part)
    if maintype != "multipart" or not children:
        return []
    if sub != "alternative":
        return [u for child in children for u in _units(child, depth + 1)]
    versions = [v for v in (_units(child, depth + 1) for child in children) if v]
    if not versions:
        return []
    plain = next((v for v in versions if not any(u.rich for u in v)), None)
    richest = next((v for v in reversed(versions) if any(u.rich for u in v)), None)
    unit = _Unit()
    if plain is not None:
        unit.text = [p for u in plain for p in u.text]
    if richest is not None:
        unit.rich = [leaf for u in richest
                     for leaf in (u.rich or [(p, False) for p in u.text])]
    return [unit]


def _text_as_html(text: str) -> str:
    """A text leaf between HTML leaves, as HTML that shows it as written."""
    if not text.strip():
        return ""
    lines = html_lib.escape(text.strip("\n")).split("\n")
    return "<div>" + "<br>\n".join(lines) + "</div>"
