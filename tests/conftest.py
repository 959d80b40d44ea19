"""Shared fixtures: settings on a temp dir, SQLite and PostgreSQL databases, a runtime.

A test that needs a server may skip on a laptop without it, never under CI=true.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpdesk.config import Settings, load_settings
from helpdesk.runtime import Runtime

pytest_plugins = ["tests.fixtures.dovecot", "tests.fixtures.smtp_sink", "tests.fixtures.browser"]

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
IN_CI = os.environ.get("CI") == "true"
PG_ADMIN_DSN = os.environ.get("HELPDESK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def require(condition: bool, reason: str) -> None:
    """Skip when a server or file is missing, but fail under CI, where everything must run."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def make_settings(tmp_path: Path, db_url: str, **sections: Any) -> Settings:
    """Settings for a test: a config file in ``tmp_path`` with overrides per section."""
    import tomllib  # noqa: F401 - documents the format we write

    data: dict[str, dict[str, Any]] = {
        "database": {"url": db_url},
        "storage": {"dir": str(tmp_path / "data")},
        "smtp": {"host": "127.0.0.1", "port": 0},
        "portal": {"secret_key": ["test-secret"]},
        "logging": {"level": "WARNING"},
    }
    for name, values in sections.items():
        if isinstance(values, list):
            data[name] = values  # type: ignore[assignment]
        else:
            data.setdefault(name, {}).update(values)
    path = tmp_path / "helpdesk.toml"
    path.write_text(_to_toml(data), encoding="utf-8")
    return load_settings(path, environ={})


def _to_toml(data: dict[str, Any]) -> str:
    import json

    lines = []
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    arrays = {k: v for k, v in data.items() if isinstance(v, list)}
    for name, values in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    for name, items in arrays.items():
        for item in items:
            lines.append(f"[[{name}]]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'helpdesk.db'}"


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    require(port_open("127.0.0.1", 5432), "PostgreSQL is not running on 127.0.0.1:5432")
    name = f"helpdesk_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_DSN.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0] \
            + f"/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Runs the test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return make_settings(tmp_path, db_url)


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    rt = await Runtime.open(settings)
    try:
        yield rt
    finally:
        await rt.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def broker_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """memory://, or a Redis database of its own (emptied before and after)."""
    if request.param == "memory":
        yield "memory://"
        return
    require(port_open("127.0.0.1", 6379), "Redis is not running on 127.0.0.1:6379")
    import redis

    number = random.randint(1, 15)
    client = redis.Redis(host="127.0.0.1", port=6379, db=number)
    client.flushdb()
    try:
        yield f"redis://127.0.0.1:6379/{number}"
    finally:
        client.flushdb()
        client.close()


@pytest.fixture(autouse=True)
def _structlog_defaults() -> None:
    """Every test starts on structlog's defaults.

    A test that runs a command in-process (click's CliRunner) configures logging for the
    whole process, at the WARNING level of the test settings; without this, a later
    test's ``capture_logs`` would never see the info events it looks for.
    """
    import structlog

    structlog.reset_defaults()


@pytest.fixture
def corpus() -> Path:
    require(CORPUS.is_dir(), f"the shared corpus is not at {CORPUS}")
    return CORPUS
