"""Blob syncs behind the writes (`mailgate._blobsync`), over a real blob store on disk."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from helpdesk.storage import BlobStore
from mailgate._blobsync import BlobSyncer


class GatedStore(BlobStore):
    """A real store whose syncs can be held open, to see which writes each one covers."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate = threading.Event()
        self.gate.set()
        self.rounds: list[int] = []  # how many unsynced blobs each sync found
        self.fail_next = False

    def sync(self) -> None:
        self.rounds.append(len(self._unsynced))
        self.gate.wait(5)
        if self.fail_next:
            self.fail_next = False
            raise OSError(28, "No space left on device")
        super().sync()


async def test_a_sync_starts_at_the_first_write_before_anyone_waits(tmp_path: Path) -> None:
    store = GatedStore(tmp_path)
    syncer = BlobSyncer(store)
    store.put(b"one", durable=False)
    syncer.note_write()
    for _ in range(100):
        if store.rounds:
            break
        await asyncio.sleep(0.01)
    assert store.rounds == [1]
    await syncer.durable(syncer.written)
    assert store._unsynced == set()


async def test_writes_made_during_a_sync_are_taken_by_the_next_round(tmp_path: Path) -> None:
    store = GatedStore(tmp_path)
    syncer = BlobSyncer(store)
    store.gate.clear()  # the first round holds
    store.put(b"first", durable=False)
    syncer.note_write()
    first = syncer.written
    while not store.rounds:  # the first round has looked at what it owes
        await asyncio.sleep(0.01)
    for body in (b"second", b"third"):
        store.put(body, durable=False)
        syncer.note_write()
    waiter = asyncio.ensure_future(syncer.durable(syncer.written))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    store.gate.set()
    await asyncio.wait_for(syncer.durable(first), 5)
    await asyncio.wait_for(waiter, 5)  # only after a round that began after the third write
    assert store.rounds[0] == 1 and len(store.rounds) == 2  # a second round was started
    assert store._unsynced == set()


async def test_a_failed_sync_reaches_the_waiter_and_the_next_round_retries(
        tmp_path: Path) -> None:
    store = GatedStore(tmp_path)
    syncer = BlobSyncer(store)
    store.fail_next = True
    store.put(b"kept", durable=False)
    syncer.note_write()
    with pytest.raises(OSError, match="No space left"):
        await syncer.durable(syncer.written)
    assert len(store._unsynced) == 1  # still owed
    await syncer.durable(syncer.written)
    assert store._unsynced == set() and store.rounds == [1, 1]


async def test_nothing_written_needs_no_sync(tmp_path: Path) -> None:
    store = GatedStore(tmp_path)
    await BlobSyncer(store).durable(0)
    assert store.rounds == []
