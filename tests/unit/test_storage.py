"""The blob store: content-addressed, durable, deduplicated."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpdesk.storage import BlobStore


def test_put_returns_the_sha256_and_get_gives_the_bytes_back(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = b"From: a@b\r\n\r\nhello\r\n"
    digest = store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.get(digest) == data
    assert store.path_for(digest).parent.parent.name == digest[:2]


def test_identical_content_is_stored_once_and_no_temp_files_remain(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    a, b = store.put(b"same"), store.put(b"same")
    assert a == b
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert [p.name for p in files] == [a]


def test_put_after_its_folder_was_removed_makes_the_folder_again(tmp_path: Path) -> None:
    """Folders are made once per store; one removed behind its back (an operator pruning
    the store) is made again rather than failing the put."""
    store = BlobStore(tmp_path / "blobs")
    first = store.put(b"one", durable=False)
    shutil.rmtree(tmp_path / "blobs")
    second = store.put(b"one", durable=False)
    assert first == second and store.get(second) == b"one"
    assert [p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == [second]


def test_path_for_refuses_anything_but_a_digest(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        BlobStore(tmp_path).path_for("../../etc/passwd")


def test_put_chunks_stores_a_stream_under_its_sha256(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    pieces = [b"first ", b"", b"second ", b"x" * 100_000]
    whole = b"".join(pieces)
    sha, size = store.put_chunks(iter(pieces))
    assert (sha, size) == (hashlib.sha256(whole).hexdigest(), len(whole))
    assert store.get(sha) == whole
    assert store.put(whole) == sha  # the same address as a one-shot put


def test_put_chunks_of_known_content_keeps_one_file_and_no_temp_files(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    sha = store.put(b"already here")
    assert store.put_chunks([b"already", b" here"]) == (sha, 12)
    assert store.put_chunks([]) == (hashlib.sha256(b"").hexdigest(), 0)
    files = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert files == sorted([sha, hashlib.sha256(b"").hexdigest()])


def test_put_chunks_leaves_nothing_when_the_stream_fails(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)

    def broken() -> Iterator[bytes]:
        yield b"part of it"
        raise OSError("source went away")

    with pytest.raises(OSError, match="source went away"):
        store.put_chunks(broken())
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_put_without_durable_waits_for_one_sync_of_the_batch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import helpdesk.storage as storage

    synced: list[set[Path]] = []
    monkeypatch.setattr(storage, "_sync_all", lambda root, paths: synced.append(set(paths)))
    store = BlobStore(tmp_path)
    a, b = store.put(b"one", durable=False), store.put(b"two", durable=False)
    store.put(b"one", durable=False)  # already there: still synced with this batch
    assert store.get(a) == b"one" and store.get(b) == b"two"
    store.sync()
    store.sync()  # nothing new: no second sync
    assert synced == [{store.path_for(a), store.path_for(b)}]


def test_a_failed_sync_keeps_its_blobs_for_the_next(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import helpdesk.storage as storage

    store = BlobStore(tmp_path)
    digest = store.put(b"mail", durable=False)

    def broken(root: Path, paths: set[Path]) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(storage, "_sync_all", broken)
    with pytest.raises(OSError):
        store.sync()
    synced: list[set[Path]] = []
    monkeypatch.setattr(storage, "_sync_all", lambda root, paths: synced.append(set(paths)))
    store.sync()
    assert synced == [{store.path_for(digest)}]


def test_without_syncfs_every_file_and_folder_is_fsynced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import helpdesk.storage as storage

    fsynced: list[Path] = []
    monkeypatch.setattr(storage, "_SYNCFS", None)
    monkeypatch.setattr(storage, "_fsync_path", fsynced.append)
    store = BlobStore(tmp_path)
    paths = [store.path_for(store.put(data, durable=False)) for data in (b"x", b"y")]
    store.sync()
    folders = {p.parent for p in paths}
    above = {p.parent.parent for p in paths} | {tmp_path}  # the names of the folders made
    assert sorted(fsynced) == sorted([*paths, *folders, *above])


def _same_folder_as(data: bytes) -> bytes:
    """Other content whose blob lands in the same ``ab/cd`` folder as ``data``'s."""
    prefix = hashlib.sha256(data).hexdigest()[:4]
    return next(other for i in range(10**7) if hashlib.sha256(
        other := b"%d" % i).hexdigest()[:4] == prefix and other != data)


def test_a_durable_put_syncs_the_names_of_its_folders_up_to_the_root_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever made a folder (this put, another process, a put whose sync is still to
    come) may not have synced its name: a durable put does, once per folder."""
    import helpdesk.storage as storage

    fsynced: list[Path] = []
    monkeypatch.setattr(storage, "_fsync_path", fsynced.append)
    store = BlobStore(tmp_path)
    final = store.path_for(store.put(b"first"))
    assert fsynced == [final.parent, final.parent.parent, tmp_path]  # the file itself: os.fsync
    fsynced.clear()
    data = b"into a folder that someone else made"
    store.path_for(hashlib.sha256(data).hexdigest()).parent.mkdir(parents=True, exist_ok=True)
    final = store.path_for(store.put(data))
    assert fsynced == [final.parent, final.parent.parent, tmp_path]
    fsynced.clear()
    final = store.path_for(store.put(_same_folder_as(data)))  # that folder is settled now
    assert fsynced == [final.parent]


def test_syncfs_is_found_on_linux() -> None:
    import sys

    import helpdesk.storage as storage

    if sys.platform == "linux":
        assert storage._SYNCFS is not None


def test_a_durable_put_of_a_blob_already_there_syncs_it_and_its_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process may have written it without syncing yet."""
    import helpdesk.storage as storage

    store = BlobStore(tmp_path)
    digest = store.put(b"written by someone else", durable=False)
    fsynced: list[Path] = []
    monkeypatch.setattr(storage, "_fsync_path", fsynced.append)
    assert store.put(b"written by someone else") == digest
    final = store.path_for(digest)
    assert fsynced == [final, final.parent, final.parent.parent, tmp_path]


def test_folders_of_synced_blobs_need_no_second_sync_of_their_names(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import helpdesk.storage as storage

    store = BlobStore(tmp_path)
    data = b"synced with its batch"
    store.put(data, durable=False)
    store.sync()
    fsynced: list[Path] = []
    monkeypatch.setattr(storage, "_fsync_path", fsynced.append)
    final = store.path_for(store.put(_same_folder_as(data)))
    assert fsynced == [final.parent]


def test_put_chunks_of_a_blob_written_unsynced_by_another_makes_it_durable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import helpdesk.storage as storage

    other = BlobStore(tmp_path)  # another process's store on the same folder
    digest = other.put(b"large part", durable=False)
    fsynced: list[Path] = []
    monkeypatch.setattr(storage, "_fsync_path", fsynced.append)
    assert BlobStore(tmp_path).put_chunks(iter([b"large ", b"part"])) == (digest, 10)
    final = other.path_for(digest)
    assert fsynced[-4:] == [final, final.parent, final.parent.parent, tmp_path]
