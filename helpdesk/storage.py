"""Content-addressed file store for raw messages and attachments, durable before any DB commit."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path


class BlobStore:
    """Files named by their sha256 under ``root/ab/cd/<sha256>``.

    A blob is written to a temporary name in its final folder, fsynced, renamed, and the
    folder fsynced, so that once :meth:`put` returns the bytes survive a crash; only then
    may a database row that points at them commit. Identical content is stored once.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError("not a sha256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        """Store ``data`` durably and return its sha256 hex digest."""
        digest = hashlib.sha256(data).hexdigest()
        final = self.path_for(digest)
        if not _holds(final, len(data)):
            final.parent.mkdir(parents=True, exist_ok=True)
            _place(_write_synced(final.parent, [data]), final)
        return digest

    def put_chunks(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Store a stream durably without holding it whole; returns (sha256, size).

        For large attachments decoded on the fly: the digest is known only at the end, so
        the temporary file lives in the store's root and is renamed into place.
        """
        digest, size = hashlib.sha256(), 0

        def counted() -> Iterator[bytes]:
            nonlocal size
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                yield chunk

        self.root.mkdir(parents=True, exist_ok=True)
        tmp = _write_synced(self.root, counted())
        sha = digest.hexdigest()
        final = self.path_for(sha)
        if _holds(final, size):
            tmp.unlink()
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            _place(tmp, final)
        return sha, size

    def get(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).exists()


def _holds(final: Path, size: int) -> bool:
    """Whether the blob is already stored (identical content is stored once)."""
    return final.exists() and final.stat().st_size == size


def _write_synced(folder: Path, chunks: Iterable[bytes]) -> Path:
    """Write ``chunks`` to a new temporary file in ``folder`` and fsync it; its path."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _place(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final`` and fsync the folder, so the name survives a crash."""
    try:
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(final.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
