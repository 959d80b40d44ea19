"""The daemon roles' event loop: uvloop where installed, asyncio's on request or without it."""

from __future__ import annotations

import asyncio
import sys

import pytest

from helpdesk import eventloop
from helpdesk.errors import ConfigError


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_auto_takes_uvloop_where_it_is_installed() -> None:
    assert eventloop.run(_loop_module(), "auto").startswith("uvloop")
    assert eventloop.run(_loop_module(), "uvloop").startswith("uvloop")


def test_asyncio_takes_the_standard_loop() -> None:
    assert eventloop.run(_loop_module(), "asyncio").startswith("asyncio")


def test_without_uvloop_auto_falls_back_and_uvloop_is_a_config_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    assert eventloop.run(_loop_module(), "auto").startswith("asyncio")
    with pytest.raises(ConfigError, match="uvloop is not installed"):
        eventloop.run(_loop_module(), "uvloop")
