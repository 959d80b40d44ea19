"""Blob syncs that run behind the writes, so a batch rarely waits for its mails' bytes.

A mail's raw bytes and attachments are written unsynced (`BlobStore.put` with
``durable=False``) and must be durable before the transaction that points at them
commits. Syncing when a batch starts left the batch waiting: a ``syncfs`` takes longer
than applying the batch. Here a sync starts as soon as a mail is written, one at a time;
writes made while one runs are taken by the next, which starts as soon as it ends (group
commit for the blob store). A batch then waits only for the sync that covers the writes
made before it began, which by then has usually finished.
"""

from __future__ import annotations

import asyncio

import structlog

from helpdesk.storage import BlobStore

log = structlog.get_logger("mailgate.blobsync")


class BlobSyncer:
    """Counts unsynced writes and syncs them in rounds on a thread."""

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        self._written = 0  # unsynced writes noted so far
        self._synced = 0  # every write up to this count is durable
        self._round: asyncio.Task[None] | None = None

    @property
    def written(self) -> int:
        return self._written

    def note_write(self) -> None:
        """A blob was put without ``durable``: start syncing it now."""
        self._written += 1
        self._start()

    async def durable(self, upto: int) -> None:
        """Return once the first ``upto`` writes are durable.

        Raises:
            OSError: the sync that was to cover them failed (the store keeps them as
                unsynced, so the next round tries again).
        """
        while self._synced < upto:
            self._start()
            assert self._round is not None
            await asyncio.shield(self._round)

    def _start(self) -> None:
        if self._round is None or self._round.done():
            self._round = asyncio.ensure_future(self._sync())
            self._round.add_done_callback(_retrieve)

    async def _sync(self) -> None:
        target = self._written
        await asyncio.to_thread(self._store.sync)
        self._synced = max(self._synced, target)
        if self._written > target:  # written while this round ran: the next one starts now
            self._round = asyncio.ensure_future(self._sync())
            self._round.add_done_callback(_retrieve)


def _retrieve(task: asyncio.Task[None]) -> None:
    """A failed round nobody waited for is logged here, not as 'never retrieved'."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("blobsync.failed", error=str(exc))
