"""Share a number of bytes among coroutines: large messages take turns to be in memory.

Why: DATA past a threshold waits on disk (see `mailgate._dataspool`), but ingest needs the
whole message as ``bytes``; 40 senders ending 25 MB messages at the same moment would read
them back together (1.26 GB measured). Each reads back only once its size fits in what
the others leave; one larger than the whole budget goes alone. Waiters are served in
order, so a big message is not passed over for ever by smaller ones.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class ByteBudget:
    """At most ``total`` bytes held at once by those inside `hold` (0: no limit)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        """Wait until ``size`` bytes (at most the whole budget) are free; hold them inside."""
        size = min(size, self.total)
        if self._waiters or self.used + size > self.total:
            future = asyncio.get_running_loop().create_future()
            self._waiters.append((size, future))
            try:
                await future
            except BaseException:
                if future.done() and not future.cancelled():  # granted as it was cancelled
                    self._release(size)
                else:
                    if (size, future) in self._waiters:
                        self._waiters.remove((size, future))
                    self._wake()
                raise
        else:
            self.used += size
        try:
            yield
        finally:
            self._release(size)

    def _release(self, size: int) -> None:
        self.used -= size
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.used + self._waiters[0][0] <= self.total:
            size, future = self._waiters.popleft()
            if not future.done():
                self.used += size
                future.set_result(None)
