"""Hostile variants of real mail, reproducible from a seed, for the gateway's fuzz runs.

Why a module of its own: the CI fuzz test (``tests/integration/test_fuzz.py``) and the
longer run by hand (``bench/fuzz.py``) must mutate the same way, so a count reported by
one can be reproduced with the other. Each mutation is one thing real mail or an attacker
does: a truncated transfer, flipped bytes, repeated or missing header lines, broken MIME
boundaries, charsets Python knows but mail must not use (``idna``, ``punycode``,
``undefined``, the escape codecs), bad transfer encodings, and encoded words that decode
to lone surrogates, NULs or nothing sensible.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import random
import re
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from helpdesk.errors import NotMailError
from mailgate.ingest import Gateway

BAD_CHARSETS = (
    "idna", "punycode", "undefined", "utf-7", "unicode_escape", "raw_unicode_escape",
    "utf-16", "utf-32", "x-garbage", "rot13", "base64", "zlib", "hex", "uu", "mbcs",
    "utf-8*en", '"', "", "iso-8859-1'en'", "charset", "\xff\xfe", "utf-8\x00",
)
BAD_ENCODINGS = (
    "base64", "quoted-printable", "x-uuencode", "uuencode", "garbage", "8bit", "7bit",
    "binary", "base-64", "",
)
# Encoded words that decode to surrogates, NULs, CR/LF, nested words, or nothing valid.
HOSTILE_WORDS = (
    "=?utf-7?Q?+2AA-?=", "=?UTF-7?B?KzJBQS0=?=", "=?utf-7?Q?a+2D3eAA-b?=",
    "=?unicode_escape?Q?\\udc80x?=", "=?raw_unicode_escape?Q?\\ud800?=",
    "=?utf-8?B?7aCA?=", "=?utf-8?Q?=ED=A0=80?=", "=?utf-16?B?ANg=?=",
    "=?utf-16-le?B?ANg=?=", "=?utf-8?Q?a=00b?=", "=?utf-8?Q?x=0D=0ABcc:_e@f.g?=",
    "=?idna?Q?xn--=FF?=", "=?punycode?Q?=FF=FE?=", "=?undefined?Q?abc?=",
    "=?idna?B?" + "QUFB" * 30 + "?=", "=?x-garbage?Q?abc?=", "=?utf-8?X?abc?=",
    "=?utf-8?B?!!!?=", "=?utf-8?Q?=?=", "=?utf-8?B?PT91dGYtOD9RP2E9MEQ9MEFiPz0=?=",
    "=?utf-32?B?AAARAA==?=", "=?utf-8*?Q?x?=", "\udc80", "=?utf-8?Q?\xff?=",
)
HOSTILE_FILENAMES = (
    b"filename*=idna''%FF%FE.pdf", b"filename*=utf-7''%2B2AA-.pdf", b"filename*=punycode''x",
    b"filename*=undefined''a.txt", b"filename*0*=utf-8''%ED%A0%80; filename*1=x.doc",
    b"filename*1*=%FF; filename*0=y", b'filename="\xed\xa0\x80.pdf"', b"filename*=''%00.bin",
    b'name="=?idna?Q?=FF.pdf?="', b'filename="=?utf-7?Q?+2AA-.zip?="',
)
_HEADER_LINE = re.compile(rb"^[\x21-\x39\x3b-\x7e]+:[^\n]*\n(?:[ \t][^\n]*\n)*", re.M)
_BOUNDARY = re.compile(rb'boundary="?([^";\r\n]+)"?', re.I)
_CHARSET = re.compile(rb'(charset="?)([^";\s?]+)', re.I)
_ENCODED_WORD_CHARSET = re.compile(rb"(=\?)([^?\s]+)(\?[QqBb]\?)")
_CTE = re.compile(rb"(content-transfer-encoding:[ \t]*)([^\r\n]*)", re.I)
_TARGETS = (b"Subject", b"From", b"Cc", b"To", b"Reply-To")
_FILENAME = re.compile(rb'((?:file)?name\*?="?)([^";\r\n]*)', re.I)

Mutation = Callable[[random.Random, bytes], bytes]
# The first mail of a run opens TKT-000001; `as_reply` makes a mail its requester's reply,
# so the reply path (threading, visible text, the ticket's messages) meets hostile mail too.
SEED_MAIL = (b"From: Fuzz Requester <fuzz@example.org>\nTo: support@support.example.com\n"
             b"Subject: The first ticket\nMessage-ID: <fuzz-seed@example.org>\n\nHelp.\n")


def corpus_files(corpus: Path) -> list[Path]:
    """The corpus mails named by ``expected.jsonl``, in its order."""
    lines = (corpus / "expected.jsonl").read_text(encoding="utf-8").splitlines()
    return [corpus / json.loads(line)["file"] for line in lines if line.strip()]


def _header_end(raw: bytes) -> int:
    found = re.search(rb"\r?\n\r?\n", raw)
    return found.end() if found else len(raw)


def truncate(rng: random.Random, raw: bytes) -> bytes:
    return raw[: rng.randrange(len(raw) + 1)]


def flip_bytes(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 12)):
        if data:
            data[rng.randrange(len(data))] = rng.choice((0, 0x80, 0xFF, 0x0D, 0x0A, 0x3D,
                                                         rng.randrange(256)))
    return bytes(data)


def _header_lines(raw: bytes) -> list[re.Match[bytes]]:
    end = _header_end(raw)
    return [m for m in _HEADER_LINE.finditer(raw.replace(b"\r\n", b"\n")[:end])]


def duplicate_header(rng: random.Random, raw: bytes) -> bytes:
    raw = raw.replace(b"\r\n", b"\n")
    lines = _header_lines(raw)
    if not lines:
        return raw
    line = rng.choice(lines)
    at = rng.choice(lines).start()
    return raw[:at] + line.group(0) * rng.randint(1, 3) + raw[at:]


def delete_header(rng: random.Random, raw: bytes) -> bytes:
    raw = raw.replace(b"\r\n", b"\n")
    lines = _header_lines(raw)
    if not lines:
        return raw
    line = rng.choice(lines)
    return raw[: line.start()] + raw[line.end() :]


def break_boundary(rng: random.Random, raw: bytes) -> bytes:
    found = _BOUNDARY.search(raw)
    if found is None:
        return flip_bytes(rng, raw)
    boundary = found.group(1)
    choice = rng.randrange(4)
    if choice == 0:  # the declared boundary no longer matches the body
        return raw[: found.start(1)] + boundary[:-1] + raw[found.end(1) :]
    if choice == 1:  # the closing delimiter is gone
        return raw.replace(b"--" + boundary + b"--", b"")
    if choice == 2:  # one delimiter line is cut in half
        spots = [m.start() for m in re.finditer(re.escape(b"--" + boundary), raw)]
        if spots:
            at = rng.choice(spots)
            return raw[: at + 3] + raw[at + 3 + len(boundary) // 2 :]
        return raw
    return raw[: found.start(1)] + b'"' + raw[found.start(1) :]  # an unbalanced quote


def bad_charset(rng: random.Random, raw: bytes) -> bytes:
    spots = list(_CHARSET.finditer(raw)) + list(_ENCODED_WORD_CHARSET.finditer(raw))
    charset = rng.choice(BAD_CHARSETS).encode("utf-8", "surrogateescape")
    if not spots:
        end = _header_end(raw)
        return raw[:end].rstrip(b"\r\n") + b"\nContent-Type: text/plain; charset=" + charset \
            + b"\n\n" + raw[end:]
    for spot in rng.sample(spots, min(len(spots), rng.randint(1, 3))):
        raw = raw[: spot.start(2)] + charset + raw[spot.end(2) :]
        break  # offsets move after the first change; one more is left for the next round
    return raw


def bad_encoding(rng: random.Random, raw: bytes) -> bytes:
    spots = list(_CTE.finditer(raw))
    value = rng.choice(BAD_ENCODINGS).encode()
    if not spots:
        end = _header_end(raw)
        return raw[:end].rstrip(b"\r\n") + b"\nContent-Transfer-Encoding: " + value + b"\n\n" \
            + raw[end:]
    spot = rng.choice(spots)
    return raw[: spot.start(2)] + value + raw[spot.end(2) :]


def hostile_word(rng: random.Random, raw: bytes) -> bytes:
    word = rng.choice(HOSTILE_WORDS).encode("utf-8", "surrogateescape")
    files = list(_FILENAME.finditer(raw))
    if files and rng.random() < 0.3:
        spot = rng.choice(files)
        return raw[: spot.end(1)] + word + raw[spot.end(1) :]
    name = rng.choice(_TARGETS)
    raw = raw.replace(b"\r\n", b"\n")
    match = re.search(rb"^" + name + rb":[ \t]*", raw[: _header_end(raw)], re.M | re.I)
    if match is None:
        value = word + (b" <x@example.org>" if name != b"Subject" else b"")
        return name + b": " + value + b"\n" + raw
    return raw[: match.end()] + word + b" " + raw[match.end() :]


def hostile_filename(rng: random.Random, raw: bytes) -> bytes:
    spots = list(_FILENAME.finditer(raw))
    param = rng.choice(HOSTILE_FILENAMES)
    if not spots:
        return raw.replace(b"Content-Type:", b"Content-Type: application/pdf; " + param + b";"
                           b" x=", 1)
    spot = rng.choice(spots)
    line_end = raw.find(b"\n", spot.start())
    return raw[: spot.start()] + param + raw[line_end if line_end > 0 else len(raw) :]


def raw_bytes_in_header(rng: random.Random, raw: bytes) -> bytes:
    """8-bit bytes, NULs and stray CRs into a header value (or its name)."""
    raw = raw.replace(b"\r\n", b"\n")
    lines = _header_lines(raw)
    if not lines:
        return raw
    line = rng.choice(lines)
    at = rng.randrange(line.start(), line.end())
    junk = bytes(rng.choice((0, 0x0D, 0x80, 0xA0, 0xED, 0xFF, 0xC3))
                 for _ in range(rng.randint(1, 4)))
    return raw[:at] + junk + raw[at:]


def stretch(rng: random.Random, raw: bytes) -> bytes:
    """One header value (a name, an id, a content type, a filename) made hundreds long."""
    raw = raw.replace(b"\r\n", b"\n")
    lines = _header_lines(raw)
    if not lines:
        return raw
    line = rng.choice(lines)
    name, _, value = line.group(0).partition(b":")
    value = value.strip()
    if not value:
        return raw
    at = rng.randrange(len(value))
    longer = value[:at] + value[at : at + 8] * rng.randint(40, 200) + value[at:]
    return raw[: line.start()] + name + b": " + longer + b"\n" + raw[line.end() :]


MUTATIONS: tuple[Mutation, ...] = (
    truncate, flip_bytes, duplicate_header, delete_header, break_boundary, bad_charset,
    bad_encoding, hostile_word, hostile_word, bad_charset, hostile_filename,
    raw_bytes_in_header, stretch,
)


def as_reply(rng: random.Random, raw: bytes) -> bytes:
    """The mail as the seed ticket's requester's reply (From and subject token)."""
    raw = re.sub(rb"(?im)^from:[^\n]*\n(?:[ \t][^\n]*\n)*", b"", raw.replace(b"\r\n", b"\n"),
                 count=1)
    subject = re.search(rb"(?im)^subject:[ \t]*", raw[: _header_end(raw)])
    if subject is None:
        raw = b"Subject: Re: [TKT-000001]\n" + raw
    else:
        raw = raw[: subject.end()] + b"Re: [TKT-000001] " + raw[subject.end() :]
    return b"From: Fuzz Requester <fuzz@example.org>\n" + raw


def mutate(rng: random.Random, raw: bytes) -> bytes:
    """One to three mutations of ``raw``, chosen by ``rng``; a fifth become replies first."""
    if rng.random() < 0.2:
        raw = as_reply(rng, raw)
    for _ in range(rng.randint(1, 3)):
        raw = rng.choice(MUTATIONS)(rng, raw)
    return raw


def mutations(corpus: Path, count: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """``count`` (label, mutated bytes) pairs from the corpus; the same for the same seed."""
    rng = random.Random(seed)
    files = corpus_files(corpus)
    cache: dict[Path, bytes] = {}
    for number in range(count):
        path = rng.choice(files)
        if path not in cache:
            cache[path] = path.read_bytes()
        yield f"#{number} {path.relative_to(corpus)}", mutate(rng, cache[path])


def stdlib_parses(raw: bytes) -> bool:
    """Whether the email package reads the whole mail: parts walked, every header parsed."""
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        for part in msg.walk():
            for _name, value in part.items():
                str(value)
    except Exception:
        return False
    return True


def has_headers(raw: bytes) -> bool:
    """Whether the email package finds at least one header at the start of ``raw``."""
    return bool(email.message_from_bytes(raw, policy=email.policy.compat32).keys())


@dataclass
class Tally:
    """What became of the mutated mails; ``failures`` names every one that counts against us."""

    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def fail(self, label: str, what: str) -> None:
        self.outcomes[what.split(":", 1)[0]] += 1
        self.failures.append(f"{label}: {what}")


async def ingest_all(gateway: Gateway, items: Iterable[tuple[str, bytes]],
                     batch: int = 32) -> Tally:
    """Each mail through ``gateway.ingest`` as the MTA pipe delivers it (strict).

    Allowed: stored (any disposition but quarantined), or `NotMailError` (exit 65) for
    input that is clearly not mail. A quarantine counts against us only when the email
    package parses the mail; any other exception is a failure. Mails go in batches, so
    the gateway's group commit writes many per transaction.
    """
    tally = Tally()
    seed = await gateway.ingest(SEED_MAIL, "pipe", strict=True)
    assert seed.ticket is not None, seed

    async def one(label: str, raw: bytes) -> None:
        try:
            result = await gateway.ingest(raw, "pipe", strict=True)
        except NotMailError:
            if raw.strip() and has_headers(raw):
                tally.fail(label, "not mail (65) for input with a header block")
            else:
                tally.outcomes["not mail (65)"] += 1
            return
        except Exception as exc:  # what the fuzz run is looking for
            where = traceback.extract_tb(exc.__traceback__)[-1]
            tally.fail(label, f"exception: {type(exc).__name__}: {exc!s:.120} "
                              f"at {Path(where.filename).name}:{where.lineno}")
            return
        if result.disposition == "quarantined" and stdlib_parses(raw):
            tally.fail(label, f"quarantined: {result.reason}")
            return
        tally.outcomes[result.disposition] += 1

    pending: list[tuple[str, bytes]] = []
    for item in items:
        pending.append(item)
        if len(pending) >= batch:
            await asyncio.gather(*(one(*p) for p in pending))
            pending.clear()
    await asyncio.gather(*(one(*p) for p in pending))
    return tally
