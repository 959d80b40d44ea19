"""Make inbound HTML safe to show, and derive plain text from it.

Both functions are pure and never raise: mail HTML is hostile and often broken, and a
failure here must degrade the message (no HTML, or tag-stripped text), not lose it.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import nh3

_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "caption", "center", "dd", "div",
        "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3",
        "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section",
        "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
    }
)
_SKIP_TAGS = frozenset({"head", "script", "style", "title", "noscript", "template"})
_SPACES = re.compile(r"[ \t\r\f\v\u00a0\u200b]+")
_BLANK_LINES = re.compile(r"\n\s*\n(\s*\n)+")
_TAG = re.compile(r"<[^>]*>")


def _keep_attribute(element: str, attribute: str, value: str) -> str | None:
    """Drop image sources that would load something: only ``cid:`` parts of the mail stay."""
    if element == "img" and attribute == "src" and not value.lower().startswith("cid:"):
        return None
    return value


_CLEANER = nh3.Cleaner(
    clean_content_tags={"script", "style", "title", "noscript", "template"},
    url_schemes=set(nh3.ALLOWED_URL_SCHEMES) | {"cid"},
    attribute_filter=_keep_attribute,
)


def sanitize_html(markup: str) -> str:
    """Return ``markup`` reduced to a safe subset for display to agents and requesters.

    Scripts, styles, event handlers and ``javascript:`` URLs go; images keep only ``cid:``
    sources, so opening a message never loads a remote (tracking) image.

    Args:
        markup: HTML from a mail body, any quality.

    Returns:
        Sanitised HTML; ``""`` when the sanitiser itself fails.
    """
    try:
        return _CLEANER.clean(markup)
    except Exception:  # the sanitiser is a C extension; fail closed
        return ""


class _TextExtractor(HTMLParser):
    """Collect visible text, breaking lines at block elements, skipping head/script/style."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skip = 0
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag == "pre":
            self._pre += 1
        if tag in _BLOCK_TAGS:
            self.chunks.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS and self._skip:
            self._skip -= 1
        elif tag == "pre" and self._pre:
            self._pre -= 1
        if tag in _BLOCK_TAGS:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._pre:
            self.chunks.append(data.replace("\u00a0", " "))
        else:
            self.chunks.append(_SPACES.sub(" ", data.replace("\n", " ")))


def html_to_text(markup: str) -> str:
    """Return the readable text of an HTML body, one line per block element.

    Args:
        markup: HTML from a mail body, any quality.

    Returns:
        Plain text with runs of blank lines collapsed; a regex tag strip when the HTML
        parser gives up.
    """
    try:
        parser = _TextExtractor()
        parser.feed(markup)
        parser.close()
        text = "".join(parser.chunks)
    except Exception:  # html.parser can assert on pathological input
        text = html.unescape(_TAG.sub("\n", markup))
    lines = [line.strip() for line in text.splitlines()]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
