"""The pipe's one line names the real cause: real SQLite errors, wrapped as ingest wraps them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from helpdesk.errors import TransientError
from helpdesk.failures import CANNOT_OPEN, CORRUPT, LOCKED, READ_ONLY, describe_failure


def _fail(url: str, sql: str = "CREATE TABLE t (x)") -> BaseException:
    engine = create_engine(url, connect_args={"timeout": 0.05})
    try:
        with engine.begin() as conn:
            conn.execute(text(sql))
    except DBAPIError as exc:
        try:
            raise TransientError("database busy, retry later") from exc  # as ingest wraps it
        except TransientError as wrapped:
            return wrapped
    finally:
        engine.dispose()
    raise AssertionError("no failure")


def test_read_only_database_is_not_reported_as_busy(tmp_path: Path) -> None:
    db = tmp_path / "hd.db"
    sqlite3.connect(db).close()
    exc = _fail(f"sqlite:///file:{db}?mode=ro&uri=true")
    assert describe_failure(exc) == READ_ONLY


def test_locked_database(tmp_path: Path) -> None:
    db = tmp_path / "hd.db"
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        assert describe_failure(_fail(f"sqlite:///{db}")) == LOCKED
    finally:
        locker.execute("ROLLBACK")
        locker.close()


def test_corrupt_database(tmp_path: Path) -> None:
    db = tmp_path / "hd.db"
    db.write_bytes(b"not a database at all " * 300)
    assert describe_failure(_fail(f"sqlite:///{db}")) == CORRUPT


def test_database_in_a_missing_directory(tmp_path: Path) -> None:
    assert describe_failure(_fail(f"sqlite:///{tmp_path / 'gone' / 'hd.db'}")) == CANNOT_OPEN


@pytest.mark.parametrize(("exc", "expected"), [
    (PermissionError(13, "Permission denied", "/srv/helpdesk/data/blobs"),
     "permission denied: /srv/helpdesk/data/blobs"),
    (ConnectionRefusedError(111, "Connection refused"), "database server unreachable"),
    (OSError(28, "No space left on device"), "disk full"),
    (RuntimeError("something else"), "internal error (RuntimeError)"),
])
def test_other_causes(exc: BaseException, expected: str) -> None:
    try:
        raise TransientError("cannot store message") from exc
    except TransientError as wrapped:
        assert describe_failure(wrapped) == expected
