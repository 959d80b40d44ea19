"""The one place where text becomes a header value: sanitised, encoded once by us, folded.

Why not let the email package do it: assigning ``msg["Subject"] = text`` with
``policy.default`` *parses* the text, so an encoded word in it is decoded (an attacker's
``=?utf-8?q?x=0D=0ABcc:_y?=`` becomes a line break and a ``Bcc:`` line), and the
interpreter's folder re-decodes once more on output; whether it then refuses the line
break depends on the Python release (CVE-2024-6923). Here nothing is parsed: a value is
plain decoded text in, a finished raw header value out, meant for
``Message.set_raw`` and a generator policy that never refolds (``refold_source="none"``).

- :func:`header_text`: plain text -> one safe line. Every control character (Cc: NUL, CR,
  LF, TAB, DEL, C1 such as U+0085), line and paragraph separator (U+2028, U+2029) and
  other Unicode whitespace becomes one space, runs collapse, the ends are trimmed; lone
  surrogates (undecodable bytes kept by ``surrogateescape``) become U+FFFD.
- :func:`unstructured` (Subject, X- headers) and :func:`mailbox` / :func:`address_list`
  (From, To, Reply-To): RFC 2047 encoded words (UTF-8, Q encoding, phrase-safe characters)
  wherever a word is not plain printable ASCII or could be read as an encoded word
  (contains ``=?``), folded at spaces to lines of at most 78 characters.
- :func:`msg_id` / :func:`msg_id_list`: RFC 5322 msg-ids (``<dot-atom@dot-atom>`` or a
  ``[literal]`` right side), at most 250 characters, never containing ``=?``; anything
  else is dropped, never repaired.
- :func:`address`: an ASCII ``local@host`` we are willing to write (dot-atom local part,
  hostname labels, an internationalised domain in IDNA form); anything else is None.
- :func:`attachment_disposition`: ``Content-Disposition`` with the file name in RFC 2231
  form, so a hostile file name is data, never syntax; :func:`mime_type`: a content type
  made of RFC 2045 tokens or ``application/octet-stream``.
- :data:`WIRE_POLICY`: the policy that writes those values byte for byte.

Pure: no I/O, no clock; inbound and outbound both use :func:`header_text`.
"""

from __future__ import annotations

import email.policy
import re
import unicodedata
import urllib.parse
from collections.abc import Iterable, Sequence
from email.charset import QP, Charset

LINE = 78
"""The longest header line we write (RFC 5322 2.1.1 "SHOULD"), folding whitespace included."""
MAX_MSG_ID = 250
"""Longest msg-id we echo; a msg-id cannot be folded, so its line may pass :data:`LINE`."""
FOLD = "\r\n "
WIRE_POLICY = email.policy.SMTP.clone(refold_source="none")
"""Policy of the mail we build and of the generator that writes it: CRLF, and values set
with ``Message.set_raw`` are written as they are, never parsed and refolded (which would
decode their encoded words a second time)."""

_SEPARATORS = frozenset({"Cc", "Zl", "Zp"})
_UTF8 = Charset("utf-8")
_UTF8.header_encoding = QP
_EW_OVERHEAD = len("=?utf-8?q??=")
_EW_MAX = 75  # RFC 2047 2: an encoded word is at most 75 characters
_PHRASE_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_MSG_ID = re.compile(rf"<{_DOT_ATOM}@(?:{_DOT_ATOM}|\[[!-Z^-~]*\])>")
_ATOM_WORD = re.compile(rf"{_ATEXT}+")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"({_DOT_ATOM})@({_LABEL}(?:\.{_LABEL})*)")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def header_text(text: str) -> str:
    """``text`` as one line of plain text that is safe to encode into any header.

    Idempotent; the result has no control characters, line separators or surrogates, no
    leading, trailing or repeated whitespace, and only ASCII spaces as whitespace.
    """
    if not (text.isascii() and text.isprintable()):  # else nothing to replace
        text = "".join(
            " " if ch.isspace() or unicodedata.category(ch) in _SEPARATORS
            else "\ufffd" if unicodedata.category(ch) == "Cs" else ch
            for ch in text)
    return " ".join(text.split())


def _plain(word: str) -> bool:
    """May ``word`` go on the wire as it is: printable ASCII, not mistakable for an encoded word?"""
    return word.isascii() and word.isprintable() and " " not in word and "=?" not in word


def _q_length(ch: str) -> int:
    if ch == " ":
        return 1
    return sum(1 if b in _PHRASE_SAFE else 3 for b in ch.encode("utf-8"))


def _encoded_word(text: str) -> str:
    word = _UTF8.header_encode(text)
    assert word is not None
    return word


class _Folder:
    """Collects tokens into header lines of at most :data:`LINE` characters.

    ``lines[0]`` starts with ``Name:``, every later line with the folding space.
    """

    def __init__(self, name: str) -> None:
        self.lines = [f"{name}:"]
        self.count = 0

    def fits(self, length: int) -> bool:
        """Does a token of ``length`` characters go on the current line?"""
        return len(self.lines[-1]) + 1 + length <= LINE

    def add(self, token: str) -> None:
        """Append ``token``; on a new line when it does not fit (never before the first)."""
        if self.count and not self.fits(len(token)):
            self.lines.append("")
        self.lines[-1] += " " + token
        self.count += 1

    def add_encoded(self, text: str) -> None:
        """``text`` as encoded words, split between characters to fill the lines."""
        limit = min(_EW_MAX, LINE - len(self.lines[-1]) - 1)
        if self.count and limit < _EW_OVERHEAD + 12:  # room for one 4-byte character
            limit = min(_EW_MAX, LINE - 1)  # add() puts it on the next line
        chunk: list[str] = []
        size = _EW_OVERHEAD
        for ch in text:
            length = _q_length(ch)
            if chunk and size + length > limit:
                self.add(_encoded_word("".join(chunk)))
                chunk, size, limit = [], _EW_OVERHEAD, min(_EW_MAX, LINE - 1)
            chunk.append(ch)
            size += length
        if chunk:
            self.add(_encoded_word("".join(chunk)))

    def value(self) -> str:
        """The raw value for ``Message.set_raw``: the lines without ``Name: ``, joined by CRLF."""
        return "\r\n".join(self.lines).partition(":")[2][1:]


def _add_words(folder: _Folder, words: Sequence[str], *, phrase: bool) -> None:
    """Plain words as they are; each run of other words as encoded words, spaces inside.

    Whitespace between two encoded words is dropped when they are decoded (RFC 2047 6.2),
    so the words of one run share their encoded text; plain words end a run.
    """
    run: list[str] = []
    for word in words:
        plain = _plain(word) and (not phrase or _ATOM_WORD.fullmatch(word) is not None)
        if plain and len(word) <= LINE - 1 and (folder.count or folder.fits(len(word))):
            if run:
                folder.add_encoded(" ".join(run))
                run.clear()
            folder.add(word)
        else:
            run.append(word)
    if run:
        folder.add_encoded(" ".join(run))


def unstructured(name: str, text: str) -> str:
    """The raw, folded value of header ``name`` for ``text`` (sanitised by :func:`header_text`)."""
    folder = _Folder(name)
    clean = header_text(text)
    if clean:
        _add_words(folder, clean.split(" "), phrase=False)
    return folder.value()


def address(value: str) -> str | None:
    """``value`` (surrounding spaces trimmed) when it is an ASCII ``local@host``, else None.

    An internationalised domain is written in its ASCII (IDNA) form; a non-ASCII local part
    would need SMTPUTF8, which we do not send, so such an address is None.
    """
    candidate = value.strip()
    local, at, domain = candidate.rpartition("@")
    if at and not domain.isascii() and local.isascii():
        try:
            candidate = f"{local}@{domain.encode('idna').decode('ascii')}"
        except UnicodeError:
            return None
    m = _ADDRESS.fullmatch(candidate)
    if m is None or len(m.group(1)) > 64 or len(candidate) > 254:
        return None
    return candidate


def _require(value: str) -> str:
    checked = address(value)
    if checked is None:
        raise ValueError(f"not an address we write: {value!r}")
    return checked


def mailbox(name: str, display: str, addr: str) -> str:
    """The raw value of ``Display Name <addr>`` (just ``addr`` without a display name).

    Atoms stay atoms; a printable ASCII name with specials that fits the line is a quoted
    string (never holding ``=?``, which the email package would decode even there); any
    other name is encoded words. Needless encoding of ASCII names is a spam-filter signal.

    Raises:
        ValueError: ``addr`` is not an address :func:`address` accepts.
    """
    checked = _require(addr)
    folder = _Folder(name)
    clean = header_text(display)
    quoted = '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if clean and _plain(clean.replace(" ", "x")) and folder.fits(len(quoted)) \
            and not all(_ATOM_WORD.fullmatch(w) for w in clean.split(" ")):
        folder.add(quoted)  # printable ASCII with specials: a quoted string, as formataddr
        folder.add(f"<{checked}>")
    elif clean:
        _add_words(folder, clean.split(" "), phrase=True)
        folder.add(f"<{checked}>")
    else:
        folder.add(checked)
    return folder.value()


def address_list(name: str, addrs: Iterable[str]) -> str:
    """The raw value of a list of bare addresses, folded after the commas.

    Raises:
        ValueError: an address :func:`address` does not accept, or none at all.
    """
    checked = [_require(a) for a in addrs]
    if not checked:
        raise ValueError(f"{name}: no address")
    folder = _Folder(name)
    for i, addr in enumerate(checked):
        folder.add(addr + ("," if i < len(checked) - 1 else ""))
    return folder.value()


def msg_id(value: str | None) -> str | None:
    """``value`` (surrounding spaces trimmed) when it is an RFC 5322 msg-id we echo, else None."""
    if not value:
        return None
    candidate = value.strip()
    if len(candidate) > MAX_MSG_ID or "=?" in candidate or not _MSG_ID.fullmatch(candidate):
        return None
    return candidate


def msg_id_list(name: str, ids: Iterable[str]) -> str:
    """The raw value of a list of msg-ids (References), one or more a line; invalid ones dropped."""
    folder = _Folder(name)
    for value in ids:
        checked = msg_id(value)
        if checked is not None:
            folder.add(checked)
    return folder.value()


def mime_type(value: str, default: str = "application/octet-stream") -> tuple[str, str]:
    """``(maintype, subtype)`` of ``value`` when both are RFC 2045 tokens, else of ``default``.

    A ``multipart`` type is replaced too: an attachment's bytes are never a MIME structure.
    """
    maintype, _, subtype = value.strip().lower().partition("/")
    if _TOKEN.fullmatch(maintype) and _TOKEN.fullmatch(subtype) and maintype != "multipart":
        return maintype, subtype
    main, _, sub = default.partition("/")
    return main, sub


_ATTR_SAFE = "!#$&+-.^_`|~"  # RFC 2231 attribute-char besides letters and digits
_CHUNK = 56


def attachment_disposition(filename: str, default: str = "attachment") -> str:
    """The raw ``Content-Disposition`` value for ``filename``.

    A short printable ASCII name is a quoted string (``filename="report.pdf"``); any other
    is RFC 2231 percent-encoded UTF-8, continued over several lines when long, so no
    character of it is header syntax and nothing in it is decoded twice.
    """
    text = header_text(filename) or default
    if (_plain(text.replace(" ", "x")) and len(text) <= _CHUNK
            and not any(c in text for c in '"\\')):
        return f'attachment;{FOLD}filename="{text}"'
    quoted = urllib.parse.quote(text, safe=_ATTR_SAFE)
    chunks: list[str] = []
    while quoted:
        cut = min(len(quoted), _CHUNK)
        while cut < len(quoted) and "%" in quoted[max(cut - 2, 0):cut]:
            cut -= 1  # never split a %XX triple
        chunks.append(quoted[:cut])
        quoted = quoted[cut:]
    if len(chunks) == 1:
        return f"attachment;{FOLD}filename*=utf-8''{chunks[0]}"
    params = [f"filename*{i}*=" + ("utf-8''" if i == 0 else "") + chunk
              for i, chunk in enumerate(chunks)]
    return "attachment;" + FOLD + (";" + FOLD).join(params)
