"""Which asyncio event loop the long-running roles use: uvloop where it is installed.

Why: the gateway's rate is bounded by its one event loop's CPU, and a sixth of that went
to asyncio itself (selector, transports, stream reads, callbacks: py-spy over
`bench/ingest.py`). uvloop implements the same loop API in C on libuv; with it the
gateway spent 0.91 of the CPU per mail, medians of five interleaved rounds. It is a
dependency on Linux and macOS; ``[instance] event_loop = "asyncio"`` turns it off, and
a platform without it falls back to asyncio's own loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

from helpdesk.errors import ConfigError

T = TypeVar("T")
LoopName = Literal["auto", "asyncio", "uvloop"]


def run(main: Coroutine[Any, Any, T], loop: LoopName = "auto") -> T:
    """``asyncio.run(main)`` on the loop ``loop`` names ("auto": uvloop if installed)."""
    if loop != "asyncio":
        try:
            import uvloop
        except ImportError as exc:
            if loop == "uvloop":
                main.close()
                raise ConfigError('[instance] event_loop = "uvloop" but uvloop is not '
                                  "installed (pip install uvloop)") from exc
        else:
            return uvloop.run(main)
    return asyncio.run(main)
