"""Content-addressed file store for raw messages and attachments, durable before any DB commit."""

from __future__ import annotations

import ctypes
import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path


class BlobStore:
    """Files named by their sha256 under ``root/ab/cd/<sha256>``.

    A blob is written to a temporary name in its final folder, fsynced, renamed, and the
    folder fsynced, so that once :meth:`put` returns the bytes survive a crash; only then
    may a database row that points at them commit. Identical content is stored once.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._unsynced: set[Path] = set()
        self._folders: set[Path] = set()  # made already: one mkdir per folder, not per put
        self._settled: set[Path] = set()  # folders whose names up to the root are on disk

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError("not a sha256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes, *, durable: bool = True) -> str:
        """Store ``data`` and return its sha256 hex digest.

        With ``durable`` the bytes survive a crash once this returns. Without it they are
        written and renamed into place but not fsynced: the caller must call `sync` before
        it commits anything that points at them. That lets a batch of mails share one
        sync instead of paying two fsyncs each.

        A blob that is already there with its full size is not written again: ext4
        (data=ordered), XFS and btrfs extend a file's size on disk only after its data is
        written, so after a crash a file either holds its bytes or is short.

        Written with few system calls (a stat, then open, write, close and rename; each
        folder made once per store): the gateway calls this once per mail on its event
        loop, where every microsecond spent here is one no other mail is served.
        """
        digest = hashlib.sha256(data).hexdigest()
        final = self.path_for(digest)
        if _holds(final, len(data)):
            # Another writer (this process or not) may not have synced it yet.
            if durable:
                self._make_durable(final)
            else:
                self._note_unsynced(final)
            return digest
        _place(self._write_new(final, data, fsync=durable), final, sync_folder=durable)
        if durable:
            self._settle(final.parent)
        else:
            self._note_unsynced(final)
        return digest

    def _make_durable(self, final: Path) -> None:
        """A blob that is there already, perhaps unsynced by its writer: its data and names."""
        _fsync_path(final)
        _fsync_path(final.parent)
        self._settle(final.parent)

    def _settle(self, folder: Path) -> None:
        """The names of ``folder`` and the folders above it durable, once per folder.

        Whoever made the folder (another process, or a put whose sync is still to come)
        may not have synced its name in its parent; a durable put cannot count on it.
        """
        if folder not in self._settled:
            _fsync_folders(self.root, folder.parent)
            self._settled.add(folder)

    def _write_new(self, final: Path, data: bytes, *, fsync: bool) -> str:
        """Write ``data`` to a temporary file beside ``final``, its folder made once."""
        folder = final.parent
        if folder not in self._folders:
            folder.mkdir(parents=True, exist_ok=True)
            self._folders.add(folder)
        try:
            return _write(folder, [data], fsync=fsync)
        except FileNotFoundError:  # the folder went away since we made it
            self._folders.discard(folder)
            self._settled.discard(folder)
            folder.mkdir(parents=True, exist_ok=True)
            return _write(folder, [data], fsync=fsync)

    def _note_unsynced(self, path: Path) -> None:
        with self._lock:
            self._unsynced.add(path)

    def sync(self) -> None:
        """Make every blob `put` without ``durable`` so far durable (data and names).

        One ``syncfs`` of the store's filesystem where Linux offers it, else an fsync per
        file and folder.
        """
        with self._sync_lock:  # a second caller returns only after the first's sync
            with self._lock:
                pending, self._unsynced = self._unsynced, set()
            if not pending:
                return
            try:
                _sync_all(self.root, pending)
            except BaseException:
                with self._lock:
                    self._unsynced |= pending
                raise
            self._settled |= {path.parent for path in pending}

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
        tmp = _write(self.root, counted(), fsync=True)
        sha = digest.hexdigest()
        final = self.path_for(sha)
        if _holds(final, size):
            os.unlink(tmp)
            self._make_durable(final)
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            _place(tmp, final)
            self._settle(final.parent)
        return sha, size

    def get(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).exists()


def _holds(final: Path, size: int) -> bool:
    """Whether the blob is already stored (identical content is stored once)."""
    try:
        return os.stat(final).st_size == size
    except FileNotFoundError:
        return False


def _write(folder: Path, chunks: Iterable[bytes], *, fsync: bool) -> str:
    """Write ``chunks`` to a new temporary file in ``folder`` (fsynced on request); its path.

    The name is random: processes sharing the store (or one reusing a crashed one's pid)
    must not meet on a leftover temporary file. Plain system calls, no ``tempfile``: the
    gateway writes each raw mail this way on its event loop.
    """
    tmp = f"{folder}/.tmp-{os.urandom(8).hex()}"
    fd = os.open(tmp, _NEW_FILE, 0o600)
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def _place(tmp: str, final: Path, *, sync_folder: bool = True) -> None:
    """Rename ``tmp`` to ``final``; with ``sync_folder`` fsync the folder, so the name
    survives a crash (without, the caller syncs it later)."""
    try:
        os.replace(tmp, final)
    except BaseException:
        os.unlink(tmp)
        raise
    if sync_folder:
        _fsync_path(final.parent)


def _sync_all(root: Path, paths: set[Path]) -> None:
    if _SYNCFS is not None:
        fd = os.open(root, os.O_RDONLY)
        try:
            if _SYNCFS(fd) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err), str(root))
        finally:
            os.close(fd)
        return
    for path in paths:
        _fsync_path(path)
    for folder in sorted({f for path in paths for f in _up_to(root, path.parent)}, reverse=True):
        _fsync_path(folder)


def _fsync_folders(root: Path, folder: Path) -> None:
    """fsync ``folder`` and each folder above it up to ``root``: a folder made by `put`
    is durable only once its name is in its parent on disk."""
    for each in _up_to(root, folder):
        _fsync_path(each)


def _up_to(root: Path, folder: Path) -> list[Path]:
    """``folder`` and its parents up to and including ``root`` (only ``folder`` if outside)."""
    chain = [folder]
    while chain[-1] != root and root in chain[-1].parents:
        chain.append(chain[-1].parent)
    return chain


def _fsync_path(path: Path) -> None:
    """fsync a file or a folder by name."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _find_syncfs() -> Callable[[int], int] | None:
    """Linux's ``syncfs(2)`` from the C library, or None where there is none."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    fn = getattr(libc, "syncfs", None)
    if fn is None:
        return None
    fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
    return fn  # type: ignore[no-any-return]


_SYNCFS = _find_syncfs()
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
