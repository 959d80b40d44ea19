"""Decode bytes of a mail into text the way mail clients read them, never raising.

Why a module of its own: a label in mail is a hint, not a promise. Clients decode a
declared charset through its superset (GB2312 as GB18030, ISO-8859-1 as Windows-1252,
ISO-2022-JP with the Windows extension rows, as CP50220 does), spot ISO-2022-JP by its
escape sequences when it carries no label, and read unlabelled 8-bit bytes as UTF-8,
else as the charset the message declares elsewhere, else as what a detector finds. Only
then does a byte become U+FFFD. Every text returned is `clean` (no lone surrogate, no NUL).
"""

from __future__ import annotations

import codecs
import encodings
import encodings.aliases
import functools
import pkgutil
import re
from collections.abc import Iterable

# Labels read through the superset mail clients use for them (the WHATWG encoding table).
_SUPERSETS = {
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "euc-cn": "gb18030",
    "iso-gb2312": "gb18030", "cp936": "gb18030", "gb_2312-80": "gb18030",
    "ks_c_5601-1987": "cp949", "euc-kr": "cp949", "iso-8859-8-i": "iso-8859-8",
    "windows-874": "cp874", "tis-620": "cp874", "iso-8859-11": "cp874",
    "x-sjis": "cp932", "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932",
    "ms_kanji": "cp932", "windows-31j": "cp932", "big5": "cp950", "x-big5": "cp950",
    "iso-8859-1": "cp1252", "latin1": "cp1252", "iso-8859-9": "cp1254",
    "us-ascii": "ascii", "unicode-1-1-utf-7": "utf-7",
}
_ISO2022JP = frozenset({"iso2022_jp", "iso2022_jp_1", "iso2022_jp_2", "iso2022_jp_3",
                        "iso2022_jp_ext", "iso2022_jp_2004"})
# Labels that say nothing reliable about 8-bit bytes: they decode (nearly) anything, or
# nothing at all; UTF-8 is tried before them.
WEAK = frozenset({None, "cp1252", "ascii"})
# Codecs Python knows that are no mail charset: a label naming one is treated as unknown.
# idna and punycode raise on most input (and even with errors="replace"), undefined always
# raises, and the escape codecs turn ``\udc80`` in a body into a lone surrogate.
_NOT_CHARSETS = frozenset(
    {"idna", "punycode", "undefined", "unicode-escape", "raw-unicode-escape"})
# Every name the standard codec search finds: its aliases and its modules.
_CODEC_NAMES = frozenset(encodings.aliases.aliases) | frozenset(
    m.name for m in pkgutil.iter_modules(encodings.__path__))
# What the detector may answer: the charsets real mail uses. Left open, it names exotic
# code pages (cp1006 for "caf\xe9") for short text.
_DETECTABLE = ["utf_8", "cp1252", "cp1250", "cp1251", "cp1253", "cp1254", "cp1255",
               "cp1256", "cp1257", "koi8_r", "cp932", "euc_jp", "gb18030", "cp950", "cp949"]
_DETECT_AT_MOST = 64 << 10  # the detector samples; this bounds the copy it is given
_DETECT_FROM = 4  # 8-bit bytes the detector needs to say anything worth more than a guess
# Half-width katakana alone is what Shift_JIS makes of Cyrillic or Greek single bytes;
# Japanese mail writes full-width text.
_KATAKANA_ONLY = re.compile(r"[\x00-\x7f\uff61-\uff9f]*")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_JIS_ESCAPE = re.compile(rb"\x1b(\$[@B]|\([BJI]|\$\(D|\$A|\.A|\.F|N)")
_JIS_RUNS = re.compile(rb"\x1b(\$[@B]|\([BJI])")
_OTHER_ESCAPE = re.compile(rb"\x1b(?!\$[@B]|\([BJI])")


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


@functools.lru_cache(maxsize=256)
def codec(charset: str | None) -> str | None:
    """The Python codec that reads ``charset`` (through its superset); None if unusable."""
    if not charset:
        return None
    name = charset.strip().strip("\"'").lower()
    name = _SUPERSETS.get(name, name)
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


def decode_bytes(data: bytes, charset: str | None, hints: Iterable[str] = ()) -> str:
    """Decode ``data`` labelled ``charset``, as a mail client would; never raises.

    A usable label is tried first (UTF-8 first when the label is a weak one: UTF-8
    labelled Latin-1 or ASCII is common, real Latin-1 is almost never valid UTF-8); then
    UTF-8, then ``hints`` (the charsets the message declares elsewhere, read lazily), then
    UTF-8 with stray bytes read as Windows-1252 when it holds real UTF-8 sequences, then
    a detector; only then are undecodable bytes replaced by U+FFFD.
    """
    name = codec(charset)
    if data.isascii():
        if (b"\x1b" in data and (name in WEAK or name in _ISO2022JP or name == "utf-8")
                and _JIS_ESCAPE.search(data)):
            return clean(iso2022jp(data, name if name in _ISO2022JP else "iso2022_jp"))
        if name in WEAK or name == "utf-8":
            return clean(data.decode("ascii"))
    order = ("utf-8", name) if name in WEAK else (name, "utf-8")
    for attempt in order:
        found = _strict(data, attempt)
        if found is not None:
            return found
    for hint in hints:
        hinted = codec(hint)
        if hinted not in WEAK and hinted != name:
            found = _strict(data, hinted)
            if found is not None:
                return found
    if _has_utf8_sequence(data):
        return clean(data.decode("utf-8", "helpdesk-cp1252"))
    detected = detect(data)
    if detected is not None:
        return detected
    try:  # as clients do, bytes a weak label (us-ascii) does not read are Windows-1252
        return clean(data.decode("cp1252" if name in WEAK else str(name), "replace"))
    except Exception:  # a codec that cannot replace
        return clean(data.decode("utf-8", "replace"))


def decode_8bit(data: bytes, hints: Iterable[str] = (), prefer: str | None = None) -> str:
    """Unlabelled 8-bit bytes of a header or filename: UTF-8, a declared charset, else detected.

    ``prefer`` (the message's `header_codec`) is tried right after UTF-8; hints that
    decode any byte (Latin-1 and the like) only after the detector. Bytes that none of
    them reads become U+FFFD: a guess (Windows-1252) would show a name no one wrote.
    """
    if data.isascii():
        return clean(iso2022jp(data) if _JIS_ESCAPE.search(data) else data.decode("ascii"))
    found = _strict(data, "utf-8")
    if found is not None:
        return found
    if _has_utf8_sequence(data):
        return clean(data.decode("utf-8", "helpdesk-cp1252"))
    for first in ("utf-8", codec(prefer)):
        found = _strict(data, first)
        if found is not None:
            return found
    weak: list[str] = []
    for hint in hints:
        hinted = codec(hint)
        if hinted is None or hinted in _ISO2022JP:
            continue
        if _is_weak(hinted):
            weak.append(hinted)
            continue
        found = _strict(data, hinted)
        if found is not None:
            return found
    detected = detect(data)
    if detected is not None:
        return detected
    for hinted in weak:
        found = _strict(data, hinted)
        if found is not None:
            return found
    if _latin_letters(data):
        return clean(data.decode("cp1252"))
    return clean(data.decode("utf-8", "replace"))  # read in no charset: U+FFFD


def _latin_letters(data: bytes) -> bool:
    """Whether every 8-bit byte is a Latin-1 letter inside an ASCII word (``L\xfctke``).

    Too few bytes for a detector, yet unmistakable: accented letters between plain
    ones. Control-range bytes or a byte alone between non-letters are no such word.
    """
    for match in _HIGH_RUN.finditer(data):
        start, end = match.span()
        around = data[start - 1:start] + data[end:end + 1]
        if (end - start > 3 or not _LATIN_LETTERS.fullmatch(match.group())
                or not any(chr(b).isalpha() for b in around)):
            return False
    return True


def _is_weak(name: str) -> bool:
    """Single-byte charsets that read nearly any bytes, so decoding proves nothing."""
    return name in WEAK or name.startswith(("cp125", "iso8859", "latin", "koi8"))


def detect(data: bytes) -> str | None:
    """``data`` decoded in the charset a detector (charset-normalizer) finds, or None."""
    return _strict(data, detect_codec(data))


def detect_codec(data: bytes) -> str | None:
    """The charset a detector (charset-normalizer) finds for ``data``, or None.

    None for fewer than ``_DETECT_FROM`` 8-bit bytes: on two bytes any single-byte code
    page is as likely as another, and Windows-1252, the caller's last resort, is likeliest.
    """
    sample = data[:_DETECT_AT_MOST]
    if len(sample) - len(sample.translate(None, _HIGH)) < _DETECT_FROM:
        return None
    try:
        from charset_normalizer import from_bytes  # imported on first need: 40 ms
        results = list(from_bytes(sample, cp_isolation=_DETECTABLE))
    except Exception:  # a detector failure leaves the caller's last resort
        return None
    plausible = [r for r in results if not _KATAKANA_ONLY.fullmatch(str(r))]
    if not plausible:
        return None
    best = plausible[0]
    # Ties are common on short text: Windows-1250 and -1252 both read "Formação" without
    # chaos, one as "Formaçăo"; KOI8-R "тест" is Windows-1251 "ФЕУФ". Text is mostly
    # lower case, and Windows-1252 the commonest: those win a tie.
    tied = [r for r in plausible if r.chaos <= best.chaos and r.coherence >= best.coherence]
    if _lower_share(str(best)) < 0:  # all capitals: another code page's lower case
        best = max(tied, key=lambda r: _lower_share(str(r)))
    latin = next((r for r in tied if r.encoding == "cp1252"), None)
    if latin is not None and _lower_share(str(latin)) >= _lower_share(str(best)):
        best = latin
    return best.encoding


def _lower_share(text: str) -> int:
    """How many more lower-case than upper-case letters outside ASCII ``text`` has."""
    high = [c for c in text if not c.isascii()]
    return sum(c.islower() for c in high) - sum(c.isupper() for c in high)


def header_codec(values: Iterable[bytes], hints: Iterable[str] = ()) -> str | None:
    """The one charset that reads every raw 8-bit header value of a message.

    Decided on all of them at once: a detector needs more than a six-byte name, and a
    mailer writes all its raw headers in one charset. UTF-8, else a declared charset
    that reads them all, else the detector's answer, else a declared single-byte charset;
    None when nothing reads them (each value is then read on its own).
    """
    joined = b"\n".join(values)
    if _strict(joined, "utf-8") is not None or _has_utf8_sequence(joined):
        return "utf-8"
    weak: list[str] = []
    for hint in hints:
        hinted = codec(hint)
        if hinted is None or hinted in _ISO2022JP:
            continue
        if _is_weak(hinted):
            weak.append(hinted)
        elif _strict(joined, hinted) is not None:
            return hinted
    found = detect_codec(joined)
    if found is not None and _strict(joined, found) is not None:
        return found
    return next((w for w in weak if _strict(joined, w) is not None), None)


def iso2022jp(data: bytes, label: str = "iso2022_jp") -> str:
    """ISO-2022-JP, with the Windows extension rows (NEC, IBM) that CP50220 knows.

    Python's codecs refuse the NEC row 13 (circled numbers, Roman numerals) and the IBM
    extension rows that Windows clients write; each JIS X 0208 run is then re-coded as
    Shift_JIS and read as CP932, which holds those rows.
    """
    found = _strict(data, label)
    if found is not None:
        return found
    try:
        return _jis_via_cp932(data)
    except Exception:  # escapes of other sets (JIS X 0212, GB2312): the widest codec
        return data.decode("iso2022_jp_2", "replace")


def _jis_via_cp932(data: bytes) -> str:
    if _OTHER_ESCAPE.search(data):
        raise ValueError("escape to a set CP932 does not hold")
    out = bytearray()
    pos, mode = 0, b"(B"
    for match in [*_JIS_RUNS.finditer(data), None]:
        end = match.start() if match else len(data)
        chunk = data[pos:end]
        if mode in (b"$B", b"$@"):
            chunk = chunk.replace(b"\r", b"").replace(b"\n", b"")
            for i in range(0, len(chunk) - 1, 2):
                out += _jis_to_sjis(chunk[i], chunk[i + 1])
        elif mode == b"(I":
            out += bytes(b | 0x80 for b in chunk)
        else:
            out += chunk
        if match:
            pos, mode = match.end(), match.group(1)
    return out.decode("cp932", "replace")


def _jis_to_sjis(j1: int, j2: int) -> bytes:
    s1 = ((j1 + 1) >> 1) + (0x70 if j1 <= 0x5E else 0xB0)
    s2 = j2 + (0x1F if j1 % 2 else 0x7E)
    if j1 % 2 and s2 >= 0x7F:
        s2 += 1
    return bytes((s1 & 0xFF, s2 & 0xFF))


def _strict(data: bytes, name: str | None) -> str | None:
    if not name:
        return None
    try:
        return clean(data.decode(name))
    except Exception:  # UnicodeError, or a codec's own error on odd input
        return None


_HIGH = bytes(range(0x80, 0x100))
_HIGH_RUN = re.compile(rb"[\x80-\xff]+")
_LATIN_LETTERS = re.compile(rb"[\xc0-\xd6\xd8-\xf6\xf8-\xff]+")
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}"
                            rb"|[\xf0-\xf4][\x80-\xbf]{3}")


def _has_utf8_sequence(data: bytes) -> bool:
    """Whether ``data`` is mostly UTF-8 with stray bytes: most of its 8-bit bytes form
    well-formed UTF-8 sequences (in GB or Big5 text about a tenth do, by chance)."""
    sample = data[:_DETECT_AT_MOST]
    high = len(sample) - len(sample.translate(None, _HIGH))
    covered = sum(len(m) for m in _UTF8_SEQUENCE.findall(sample))
    return covered >= 4 and covered * 4 >= high * 3


def _cp1252_bytes(error: UnicodeError) -> tuple[str, int]:
    """Error handler: bytes that are not UTF-8 read as Windows-1252 (Latin-1 for holes).

    Except a byte right after a UTF-8 character, or at the very end: that is a character
    cut short (a name cut to a length limit), and becomes U+FFFD.
    """
    if not isinstance(error, UnicodeDecodeError):
        raise error
    bad = error.object[error.start:error.end]
    after_utf8 = error.start and 0x80 <= error.object[error.start - 1] < 0xC0
    if error.reason == "unexpected end of data" or after_utf8:
        return "\ufffd", error.end  # a UTF-8 character cut off, at the end or in a run
    return bad.decode("cp1252", "replace"), error.end


codecs.register_error("helpdesk-cp1252", _cp1252_bytes)
