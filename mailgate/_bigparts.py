"""Keep large base64 bodies out of the standard library's MIME parser.

Why: ``email``'s feed parser turns a body into one ``str`` per line, joins them, and
``get_payload(decode=True)`` makes two more copies, so a 25 MB attachment cost ~190 MB of
memory (measured with tracemalloc). Large bodies are almost always base64, and base64
text has a property that makes them easy to cut out without a MIME parser of our own: a
line made only of the base64 alphabet can be neither a boundary (``--`` is outside the
alphabet), nor a header (no ``:``), nor the blank line that ends a header block. So a long
run of such lines lies inside one part's body.

`lighten` swaps each long run for a one-line placeholder before parsing; `restore`
then finds the parts holding a placeholder and remembers where their bytes are, and
`elided` decodes them from the raw message in chunks when the attachment is stored.
A run inside a part that is not base64-encoded (a long list of bare words) is put back
as text, so the parse sees exactly what it would have seen.
"""

from __future__ import annotations

import binascii
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message

from mailgate import _mime

LIGHTEN_ABOVE = 1 << 20  # messages smaller than this are parsed as they are
ELIDE_AT_LEAST = 128 << 10  # runs of base64 lines shorter than this stay in place
_CHUNK = 1 << 20
# Possessive: a plain ``(...)+`` keeps a backtracking state per line (60 MB for 25 MB).
_RUNS = re.compile(rb"(?m)^(?:[A-Za-z0-9+/=]{4,998}+\r?\n)++")
_ATTR = "_helpdesk_elided"
_TOKEN = "helpdesk-elided-"  # + a per-parse nonce and a counter: cannot occur in real mail


@dataclass(frozen=True)
class Elided:
    """Where a body that was kept out of the parser lies in the raw message."""

    raw: bytes
    start: int
    end: int

    def text(self) -> str:
        return self.raw[self.start:self.end].decode("ascii")

    def decoded_size(self) -> int:
        """The decoded size, from the length of the base64 text alone (no decoding)."""
        lines = self.raw.count(b"\n", self.start, self.end)
        crs = self.raw.count(b"\r", self.start, self.end)
        pads = self.raw.count(b"=", max(self.start, self.end - 8), self.end)
        return (self.end - self.start - lines - crs) * 3 // 4 - min(pads, 2)

    def chunks(self) -> Iterator[bytes]:
        """The decoded bytes, about a megabyte at a time."""
        carry = b""
        for offset in range(self.start, self.end, _CHUNK):
            piece = carry + self.raw[offset:min(offset + _CHUNK, self.end)].translate(
                None, b"\r\n")
            whole = len(piece) - len(piece) % 4
            carry = piece[whole:]
            if whole:
                yield binascii.a2b_base64(piece[:whole])
        if carry.rstrip(b"="):
            yield binascii.a2b_base64(carry + b"=" * (-len(carry) % 4))

    def decode(self) -> bytes:
        return b"".join(self.chunks())


def lighten(data: bytes) -> tuple[bytes, dict[str, Elided]]:
    """``data`` with long base64 runs replaced by placeholder lines, and what they stand for."""
    if len(data) < LIGHTEN_ABOVE:
        return data, {}
    nonce = secrets.token_hex(8)
    pieces: list[bytes] = []
    elided: dict[str, Elided] = {}
    last = 0
    for match in _RUNS.finditer(data):
        start, end = match.span()
        if end - start < ELIDE_AT_LEAST:
            continue
        token = f"{_TOKEN}{nonce}-{len(elided)}"
        elided[token] = Elided(data, start, end)
        pieces += [data[last:start], token.encode(), b"\n"]
        last = end
    if not elided:
        return data, {}
    pieces.append(data[last:])
    return b"".join(pieces), elided


def restore(parts: Iterator[Message], elided: dict[str, Elided]) -> None:
    """Mark each part that holds a placeholder; put non-base64 bodies back as text."""
    if not elided:
        return
    for part in parts:
        payload = _mime.body_text(part)  # get_payload() raises for some charsets (idna)
        if _TOKEN not in payload:
            continue
        found = elided.get(payload.strip())
        cte = str(part.get("content-transfer-encoding", "")).strip().lower()
        if found is not None and cte == "base64":
            setattr(part, _ATTR, found)
            continue
        for token, run in elided.items():
            if token in payload:
                # Before a boundary the parser gives the line end to the boundary, so the
                # token may lack its newline there; the run's own last newline goes with it.
                text = run.text()
                last_line_end = 2 if text.endswith("\r\n") else 1
                payload = payload.replace(token + "\n", text).replace(
                    token, text[:-last_line_end])
        part.set_payload(payload)


def elided(part: Message) -> Elided | None:
    """The raw base64 body of ``part`` when `lighten` kept it out of the parse."""
    found = getattr(part, _ATTR, None)
    return found if isinstance(found, Elided) else None
