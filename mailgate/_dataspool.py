"""Hold one SMTP DATA transfer while it arrives: in memory while small, then on disk.

Why: a connection stalled mid-DATA keeps what it sent until it times out, so with the
whole message in memory 40 connections of 25 MB each took the daemon to 1.3 GB. Past
``in_memory`` bytes the data moves to an unlinked temporary file (nothing is left behind
if the process dies), and only a finished message is read back, once, for ingest.

Like `tempfile.SpooledTemporaryFile`, but without its per-write Python bookkeeping: the
receiver writes one line at a time, and already counts the bytes it is given.
"""

from __future__ import annotations

import asyncio
import io
import tempfile
from collections.abc import Callable
from typing import IO


class DataSpool:
    """An append-only buffer in memory, moved to a file in ``folder`` by `roll_over`.

    ``write`` is the current sink's own (C) method, bound once: the receiver calls it for
    every line, and checks the size it counts anyway against ``in_memory`` to decide when
    to roll over.
    """

    def __init__(self, folder: str, in_memory: int) -> None:
        self.in_memory = in_memory
        self._folder = folder
        self._memory: io.BytesIO | None = io.BytesIO()
        self._file: IO[bytes] | None = None
        self.write: Callable[[bytes | memoryview], int] = self._memory.write

    @property
    def is_on_disk(self) -> bool:
        return self._file is not None

    @property
    def size(self) -> int:
        """The bytes written so far."""
        if self._file is not None:
            return self._file.tell()
        return self._memory.tell() if self._memory is not None else 0

    def roll_over(self) -> None:
        """Move what was written to an unlinked temporary file and write there from now on.

        Raises:
            OSError: the file cannot be made or written (folder gone, disk full).
        """
        if self._memory is None:
            return
        self._file = tempfile.TemporaryFile(dir=self._folder or None)  # noqa: SIM115 - closed by close()
        self._file.write(self._memory.getbuffer())
        self.write = self._file.write
        self._memory.close()
        self._memory = None

    async def value(self) -> bytes:
        """All bytes written, as one ``bytes``; read back in a thread when on disk."""
        if self._memory is not None:
            return self._memory.getvalue()
        assert self._file is not None
        return await asyncio.to_thread(self._read_file, self._file)

    @staticmethod
    def _read_file(file: IO[bytes]) -> bytes:
        file.flush()
        file.seek(0)
        return file.read()

    def close(self) -> None:
        """Drop the data; the file, unlinked from the start, goes with its descriptor."""
        if self._memory is not None:
            self._memory.close()
            self._memory = None
        if self._file is not None:
            self._file.close()
            self._file = None
