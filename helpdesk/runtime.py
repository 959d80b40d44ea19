"""The per-process bundle of settings, database, blob store and clock that roles share."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from helpdesk import db, schema
from helpdesk.config import Settings
from helpdesk.events import Listener
from helpdesk.models import utcnow
from helpdesk.storage import BlobStore


@dataclass
class Runtime:
    """Everything a role needs, built once in its entry point and passed down."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    store: BlobStore
    clock: Callable[[], datetime] = field(default=utcnow)
    read_engine: AsyncEngine | None = None
    listeners: list[Listener] = field(default_factory=list)
    """Called with every ticket event, in the change's transaction (see `listen`)."""

    @property
    def read_sessions(self) -> async_sessionmaker[AsyncSession]:
        """Sessions for reading only: on SQLite they never take the write lock."""
        if self.read_engine is None:
            return self.sessions
        if self._read_sessions is None:
            self._read_sessions = db.session_factory(self.read_engine)
        return self._read_sessions

    _read_sessions: async_sessionmaker[AsyncSession] | None = field(default=None, repr=False)

    @classmethod
    async def open(cls, settings: Settings, *, migrate: bool = True,
                   clock: Callable[[], datetime] = utcnow) -> Runtime:
        """Connect (and by default create or upgrade the schema) for ``settings``."""
        engine = db.create_engine(settings.database)
        reader = (db.create_engine(settings.database, writer=False)
                  if db.is_sqlite(settings.database.url) else None)
        if migrate:
            await schema.migrate(engine, reader=reader, settings=settings)
        Path(settings.storage.dir).mkdir(parents=True, exist_ok=True)
        rt = cls(settings, engine, db.session_factory(engine),
                 BlobStore(Path(settings.storage.dir) / "blobs"), clock, reader)
        # Imported here: both type their runtime, and this is where they are registered.
        from helpdesk.assignment import AutoAssigner
        from helpdesk.automation import Automations
        from helpdesk.notify import Acknowledger, Notifier

        await rt.refresh_statuses()
        rt.listen(Notifier(rt))
        rt.listen(AutoAssigner(rt))
        rt.listen(Automations(rt))
        rt.listen(Acknowledger(rt))
        return rt

    def reload_rules(self, settings: Settings) -> None:
        """Take the teams, assignment rules and automations of ``settings`` (a reload).

        Only the rules change: addresses, ports and the database stay as started. Each
        registered listener with a ``reload`` method rebuilds from the new rules.
        """
        self.settings = dataclasses.replace(
            self.settings, teams=settings.teams, assignment=settings.assignment,
            automations=settings.automations,
            automation_defaults=settings.automation_defaults)
        for listener in self.listeners:
            reload = getattr(listener, "reload", None)
            if callable(reload):
                reload()

    async def refresh_statuses(self) -> None:
        """Read the statuses the admin keeps in the database (at start and on reload)."""
        from helpdesk import statuses

        async with self.read_sessions() as session:
            found = await statuses.stored(session)
        self.settings = statuses.with_statuses(self.settings, found)

    def listen(self, listener: Listener) -> None:
        """Register ``listener`` for every ticket event of this process, at start-up.

        The notifier, the auto-assigner, the automations and the acknowledger are
        registered by `open`; a deployment's own listeners come after them.
        Every writer (gateway, agent commands, portal, CLI, SLA daemon) builds its
        `TicketService` with these, so a rule fires whichever way the change was made.
        """
        self.listeners.append(listener)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Signing secrets, newest last (rotation keeps older ones valid)."""
        return self.settings.portal.secret_key

    @property
    def mail_domain(self) -> str:
        return self.settings.outbound.sender.rpartition("@")[2] or "localhost"

    async def close(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not None:
            await self.read_engine.dispose()
