"""Attachment file names made safe to store, show and offer for download: one rule.

Names arrive from mail (the gateway's parser) and from browsers (the portal's upload
form), and leave in mail (the composer) and in downloads (the portal): whatever the
source, a stored name has no path, no control or format characters (so no bidi tricks),
no leading dots, and a bounded length that keeps its extension.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["MAX_FILENAME_CHARS", "clean_filename"]

MAX_FILENAME_CHARS = 200

_EXTENSIONS = {
    "image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "application/pdf": ".pdf",
    "text/calendar": ".ics", "message/rfc822": ".eml", "text/plain": ".txt",
}  # fmt: skip
_WS = re.compile(r"\s+")


def clean_filename(name: str, index: int = 1, content_type: str = "") -> str:
    """Return ``name`` made safe to store and offer for download.

    NFC-normalised; the last path component only (``/`` and ``\\`` both separate);
    control, format and unassigned characters dropped, other spaces made ASCII spaces and
    collapsed; leading dots and spaces removed; at most :data:`MAX_FILENAME_CHARS` characters,
    keeping an extension of up to 16 characters. Idempotent.

    Args:
        name: the name as sent, decoded.
        index: the attachment's position, for the made-up name of a nameless one.
        content_type: its type, for the made-up name's extension.

    Returns:
        The clean name; never empty: ``attachment-<index><ext>`` when nothing is left.
    """
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    kinds = [unicodedata.category(c)[0] for c in name]
    name = "".join(" " if k == "Z" else c for c, k in zip(name, kinds, strict=True) if k != "C")
    # again: a dropped character may have stood between a letter and its accent
    name = unicodedata.normalize("NFC", name)
    name = _WS.sub(" ", name).strip().lstrip(". ")
    if len(name) > MAX_FILENAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        keep = dot + ext if dot and 0 < len(ext) <= 16 else ""
        name = (stem if keep else name)[: MAX_FILENAME_CHARS - len(keep)].rstrip() + keep
    return name or f"attachment-{index}{_EXTENSIONS.get(content_type, '.bin')}"
