"""Prebuilt Core statements run straight on the writer's sqlite3 connection.

Why: the gateway runs about eight statements per mail on SQLite, and going through
``AsyncConnection.execute`` costs about 65 µs each (greenlet hop, compiled-cache lookup,
execution context, result set-up) where the statement itself takes 2-4 µs on the
``sqlite3`` connection underneath (`helpdesk.sqlite_inline`, which already runs it on the
event loop's thread). At the gateway's rate that was a sixth of its CPU per mail.

`run` compiles a statement once per set of parameter names with SQLAlchemy itself and
keeps what SQLAlchemy's execution would do per call: the bound literals, each type's bind
and result processors (UTC datetimes, JSON, booleans), Python-side column defaults, and
the DBAPI error wrapped as SQLAlchemy's. Rows are named tuples read by attribute like
Core rows. Everywhere else (PostgreSQL, the aiosqlite reader engine, a connection outside
a transaction, statements with expanding ``IN`` parameters or SQL-expression defaults) it
is ``conn.execute`` unchanged. What it skips: engine events (``echo`` logs neither), so it
is meant for the few module-level statements on the gateway's hot path, not general use.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, NoResultFound
from sqlalchemy.exc import MultipleResultsFound as _Many
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.schema import ColumnDefault
from sqlalchemy.types import DateTime, TypeEngine

from helpdesk.sqlite_inline import InlineConnection

Params = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


class Rows(Protocol):
    """The part of SQLAlchemy's ``Result`` that the callers of `run` use."""

    def all(self) -> Sequence[Any]: ...
    def first(self) -> Any: ...
    def one(self) -> Any: ...
    def one_or_none(self) -> Any: ...
    def scalar(self) -> Any: ...
    def scalar_one(self) -> Any: ...
    def scalar_one_or_none(self) -> Any: ...


class _Rows:
    __slots__ = ("_rows",)

    def __init__(self, rows: list[Any]) -> None:
        self._rows = rows

    def all(self) -> list[Any]:
        return self._rows

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one_or_none(self) -> Any:
        if len(self._rows) > 1:
            raise _Many("Multiple rows were found when one or none was required")
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        row = self.one_or_none()
        if row is None:
            raise NoResultFound("No row was found when one was required")
        return row

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one_or_none(self) -> Any:
        row = self.one_or_none()
        return None if row is None else row[0]

    def scalar_one(self) -> Any:
        return self.one()[0]


@dataclass(frozen=True)
class _Plan:
    """What SQLAlchemy would do for one statement and one set of parameter names."""

    sql: str
    # per positional parameter: its name, its type's bind processor, and what gives its
    # value when the caller does not (a literal bound in the statement, a Python-side
    # column default), or None when the caller must
    binds: tuple[tuple[str, Callable[[Any], Any] | None, Callable[[], Any] | None], ...]
    row: Any  # the named tuple type of a result row, or None without result columns
    results: tuple[Callable[[Any], Any] | None, ...]
    given: bool = False  # whether the caller's parameters name every bind
    names: tuple[str, ...] = ()  # of ``binds``, and (position, bind processor) of those
    processors: tuple[tuple[int, Callable[[Any], Any]], ...] = ()  # that have one

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(name for name, _, _ in self.binds))
        object.__setattr__(self, "processors", tuple(
            (i, proc) for i, (_, proc, _) in enumerate(self.binds) if proc is not None))


_PLANS: dict[tuple[Any, str, frozenset[str]], _Plan | None] = {}
_MAX_PLANS = 512  # a guard: callers pass module-level statements, a few dozen in all


async def run(conn: AsyncConnection, stmt: Executable, params: Params = None) -> Rows:
    """Execute ``stmt`` like ``conn.execute``; on the inline SQLite writer, directly."""
    raw = _inline_sqlite(conn)
    if raw is None:
        return await conn.execute(stmt, params)
    many = isinstance(params, Sequence)
    rows: Sequence[Mapping[str, Any]] = params if many else [params or {}]  # type: ignore[list-item,assignment]
    if not rows:
        return await conn.execute(stmt, params)
    keys = frozenset(rows[0])
    if many and any(frozenset(row) != keys for row in rows):
        return await conn.execute(stmt, params)
    plan = _plan(stmt, conn.dialect, keys)
    if plan is None or (many and plan.row is not None):  # sqlite3 returns no rows from many
        return await conn.execute(stmt, params)
    values = [_values(plan, row) for row in rows]
    try:
        if many:
            raw.executemany(plan.sql, values)
            return _Rows([])
        cursor = raw.execute(plan.sql, values[0])
        fetched = cursor.fetchall() if plan.row is not None else []
    except sqlite3.Error as exc:
        raise DBAPIError.instance(plan.sql, values[0] if not many else values, exc,
                                  sqlite3.Error, dialect=conn.dialect) from exc
    return _Rows([plan.row._make(_processed(plan.results, row)) for row in fetched])


_CONNECTION = "direct.connection"


async def connection(session: AsyncSession) -> AsyncConnection:
    """``await session.connection()``, kept for the rest of the session's transaction.

    The hot path asks for it several times per mail, and each ask is a greenlet hop
    (~25 µs); the connection cannot change until the innermost transaction does, which
    the session tells without I/O. Innermost, not root: SQLAlchemy emits a nested
    transaction's SAVEPOINT only when that transaction first asks for its connection.
    """
    sync = session.sync_session
    transaction = sync.get_nested_transaction() or sync.get_transaction()
    cached = session.info.get(_CONNECTION)
    if transaction is not None and cached is not None and cached[0] is transaction:
        conn: AsyncConnection = cached[1]
        return conn
    conn = await session.connection()
    session.info[_CONNECTION] = (sync.get_nested_transaction() or sync.get_transaction(), conn)
    return conn


def _inline_sqlite(conn: AsyncConnection) -> sqlite3.Connection | None:
    """The sqlite3 connection under ``conn`` when it is the inline writer's, in a transaction."""
    sync = conn.sync_connection
    if sync is None or not sync.in_transaction():
        return None
    driver = sync.connection.driver_connection
    return driver.sqlite if isinstance(driver, InlineConnection) else None


def _values(plan: _Plan, params: Mapping[str, Any]) -> list[Any]:
    """The positional values of one row: a dozen per row, a dozen rows per mail."""
    if plan.given:
        values = [params[name] for name in plan.names]
    else:
        values = []
        for name, _, otherwise in plan.binds:
            if name in params:
                values.append(params[name])
            elif otherwise is not None:
                values.append(otherwise())
            else:
                raise KeyError(f"a value is required for bind parameter {name!r}")
    for i, proc in plan.processors:
        values[i] = proc(values[i])
    return values


def _processed(processors: tuple[Callable[[Any], Any] | None, ...], row: Any) -> list[Any]:
    return [value if proc is None else proc(value)
            for value, proc in zip(row, processors, strict=True)]


def _plan(stmt: Executable, dialect: Dialect, keys: frozenset[str]) -> _Plan | None:
    key = (stmt, dialect.name, keys)
    if key not in _PLANS:
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        _PLANS[key] = _compile(stmt, dialect, keys)
    return _PLANS[key]


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def _default_value(default: ColumnDefault) -> Callable[[], Any]:
    arg: Any = default.arg
    if default.is_scalar:
        return _constant(arg)
    return lambda: arg(None)  # SQLAlchemy wraps every callable default to take a context


_DATETIMES: dict[tuple[str, int], tuple[datetime, Any]] = {}  # (type, id) -> value, text
_MAX_DATETIMES = 256


def _bind_processor(type_: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    """The type's bind processor; for a datetime type, one that remembers what it made.

    A batch's rows carry each mail's ``now`` and a few deadlines in a dozen columns
    across several statements, and turning them into SQLite's text took a twentieth of
    the gateway's CPU per mail. A datetime is immutable and each remembered one stays
    referenced (so its id is not reused), so the same object gives the same text.
    """
    proc = type_.dialect_impl(dialect).bind_processor(dialect)
    if proc is None or type_._type_affinity is not DateTime:
        return proc
    kind = repr(type_)  # the class and its arguments

    def remembered(value: Any) -> Any:
        key = (kind, id(value))
        seen = _DATETIMES.get(key)
        if seen is not None and seen[0] is value:
            return seen[1]
        result = proc(value)
        if value is not None:
            if len(_DATETIMES) >= _MAX_DATETIMES:
                _DATETIMES.clear()
            _DATETIMES[key] = (value, result)
        return result

    return remembered


def _compile(stmt: Executable, dialect: Dialect, keys: frozenset[str]) -> _Plan | None:
    """SQLAlchemy's own compilation of ``stmt``, or None where `run` must not go direct."""
    compiled = stmt.compile(dialect=dialect, column_keys=sorted(keys))  # type: ignore[attr-defined]
    if not isinstance(compiled, SQLCompiler) or compiled.positiontup is None:
        return None
    if "POSTCOMPILE" in compiled.string or compiled.post_compile_params:
        return None  # expanding IN (...) parameters: rendered per call by SQLAlchemy
    defaults: dict[str, Callable[[], Any]] = {}
    prefetch = [(c, c.default) for c in compiled.insert_prefetch]
    prefetch += [(c, c.onupdate) for c in compiled.update_prefetch]
    for column, default in prefetch:
        if not isinstance(default, ColumnDefault) or not (default.is_scalar
                                                          or default.is_callable):
            return None  # a SQL expression or sequence: SQLAlchemy renders it per call
        defaults[column.key] = _default_value(default)
    if any(bind.callable is not None for bind in compiled.binds.values()):
        return None
    for name, bind in compiled.binds.items():
        if not bind.required and name not in defaults:  # a literal in the statement
            defaults[name] = _constant(bind.effective_value)
    binds = tuple((name, _bind_processor(compiled.binds[name].type, dialect), defaults.get(name))
                  for name in compiled.positiontup)
    given = keys.issuperset(compiled.positiontup)
    columns = list(getattr(stmt, "exported_columns", ()))
    if not columns:
        return _Plan(compiled.string, binds, None, (), given)
    row = namedtuple("Row", [c.key or f"c{i}" for i, c in enumerate(columns)],  # type: ignore[misc]
                     rename=True)
    results = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None)
                    for c in columns)
    return _Plan(compiled.string, binds, row, results, given)
