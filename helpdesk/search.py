"""Searching tickets: subjects, message texts, requester names and addresses, ranked.

The indexes are the database's own (migration 0006): FTS5 on SQLite, GIN over
``to_tsvector('simple', ...)`` on PostgreSQL. Both are written in the transaction that
writes the message, so a message is found as soon as it is committed: on PostgreSQL by
construction (a generated column), on SQLite by the ticket service, the one writer of
tickets and messages, calling `index_ticket` and `index_message` (migration 0011 dropped
the insert triggers). FTS5 writes its pending terms out as an index segment whenever a
statement of the transaction opens a savepoint (a trigger's does, and so do most updates
and inserts that can fail halfway), so indexed by a trigger each row made a segment of its
own, and then the merges. The service leaves the index rows to the end of its
transaction (`Tx.later(..., last=True)`: the gateway's batch writes them after all else),
where they make one segment, and `search` writes them out before it reads. Changes and
deletions keep their triggers: they are rare. Every word must
occur (in the subject or one message of the ticket, or the requester); a ticket ranks by
its best-matching message or subject, and a hit brings a snippet of that text with the
words marked.

Internal notes are searched: search is for agents and the admin. The portal has no
search and never calls this.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from helpdesk.config import Settings
from helpdesk.models import Contact, Ticket
from helpdesk.ticketquery import TicketQuery, statement
from helpdesk.tx import Tx, write_buffer

_WORD = re.compile(r"\w+", re.UNICODE)
MARK = ("[", "]")
"""How a snippet marks the words found (plain text: it goes into mail and terminals)."""


@dataclass(frozen=True)
class Hit:
    """One ticket found: where its best match is, how well, and the text around it."""

    ticket_id: int
    rank: float  # higher is better
    snippet: str
    where: str  # subject | public | internal | system | requester


_INDEX_TICKET = text("INSERT INTO ticket_search(rowid, subject) VALUES (:id, :subject)")
_INDEX_MESSAGE = text("INSERT INTO message_search(rowid, text) VALUES (:id, :text)")
_REBUILD = [text("INSERT INTO ticket_search(ticket_search) VALUES ('rebuild')"),
            text("INSERT INTO message_search(message_search) VALUES ('rebuild')")]


async def index_ticket(tx: Tx, ticket_id: int, subject: str) -> None:
    """A new ticket's subject into the search index (SQLite; PostgreSQL indexes itself)."""
    if (await tx.connection()).dialect.name == "sqlite":
        await tx.later(_INDEX_TICKET, {"id": ticket_id, "subject": subject}, last=True)


async def index_message(tx: Tx, message_id: int, text: str) -> None:
    """A new message's text into the search index (SQLite; PostgreSQL indexes itself)."""
    if (await tx.connection()).dialect.name == "sqlite":
        await tx.later(_INDEX_MESSAGE, {"id": message_id, "text": text}, last=True)


async def reindex(conn: AsyncConnection) -> None:
    """The SQLite index made again from the tables: for rows written around the ticket
    service (a bulk load); PostgreSQL's needs nothing."""
    if conn.dialect.name == "sqlite":
        for statement in _REBUILD:
            await conn.execute(statement)


def words_of(query: str) -> list[str]:
    """The words a query looks for (letters and digits; everything else separates)."""
    return [w.lower() for w in _WORD.findall(query)][:20]


async def search(session: AsyncSession, settings: Settings, query: str, *,
                 filters: TicketQuery | None = None, limit: int = 20) -> list[Hit]:
    """The tickets matching every word of ``query`` (and ``filters``), best first."""
    words = words_of(query)
    if not words:
        return []
    await write_buffer(session)  # a batch's new messages are indexed at its end
    base = statement(dataclasses.replace(filters or TicketQuery(), limit=None, offset=0),
                     settings)
    allowed = base.with_only_columns(Ticket.id).order_by(None).subquery()
    if session.get_bind().dialect.name == "postgresql":
        found = await _postgres(session, words, allowed, limit)
    else:
        found = await _sqlite(session, words, allowed, limit)
    return found


def _fts5_query(words: list[str]) -> str:
    """Each word quoted (so no word is read as an FTS5 operator), all of them required."""
    return " ".join('"' + w.replace('"', '""') + '"' for w in words)


async def _requester_hits(session: AsyncSession, words: list[str],
                          limit: int) -> list[tuple[int, str]]:
    """Tickets whose requester's name or address holds every word: the (few) contacts
    first, then their newest tickets by the requester index."""
    conditions = [or_(func.lower(Contact.name).contains(w, autoescape=True),
                      func.lower(Contact.email).contains(w, autoescape=True)) for w in words]
    people = {r.id: (f"{r.name} <{r.email}>" if r.name else r.email) for r in (
        await session.execute(select(Contact.id, Contact.name, Contact.email)
                              .where(*conditions).limit(limit)))}
    if not people:
        return []
    rows = await session.execute(
        select(Ticket.id, Ticket.requester_id).where(Ticket.requester_id.in_(list(people)))
        .order_by(Ticket.id.desc()).limit(limit))
    return [(r.id, people[r.requester_id]) for r in rows]


# Ranked first, without the text: a snippet costs, so only the hits shown get one.
_SQLITE_MESSAGES = text(
    "SELECT rowid AS id, -bm25(message_search) AS rank FROM message_search"
    " WHERE message_search MATCH :q ORDER BY bm25(message_search) LIMIT :n")
_SQLITE_MESSAGE_ROWS = text(
    "SELECT id, ticket_id, kind FROM messages WHERE id IN (SELECT value FROM json_each(:ids))")
_SQLITE_SUBJECTS = text(
    "SELECT rowid AS ticket_id, -bm25(ticket_search) AS rank FROM ticket_search"
    " WHERE ticket_search MATCH :q ORDER BY bm25(ticket_search) LIMIT :n")
_SQLITE_SNIPPET = text(
    "SELECT snippet(message_search, 0, '[', ']', '…', 16) FROM message_search"
    " WHERE message_search MATCH :q AND rowid = :id")
_SQLITE_SUBJECT_SNIPPET = text(
    "SELECT snippet(ticket_search, 0, '[', ']', '…', 16) FROM ticket_search"
    " WHERE ticket_search MATCH :q AND rowid = :id")


async def _sqlite(session: AsyncSession, words: list[str], allowed: Any,
                  limit: int) -> list[Hit]:
    import json

    q = _fts5_query(words)
    # enough candidates that a filter or several messages of one ticket still leave
    # ``limit`` tickets
    n = limit * 20
    hits: dict[int, Hit] = {}
    best: dict[int, int] = {}
    for row in await session.execute(_SQLITE_SUBJECTS, {"q": q, "n": n}):
        _keep(hits, Hit(row.ticket_id, float(row.rank) * 2, "", "subject"))
    ranked = {row.id: float(row.rank)
              for row in await session.execute(_SQLITE_MESSAGES, {"q": q, "n": n})}
    if ranked:
        for row in await session.execute(_SQLITE_MESSAGE_ROWS, {"ids": json.dumps(
                list(ranked))}):
            if _keep(hits, Hit(row.ticket_id, ranked[row.id], "", row.kind)):
                best[row.ticket_id] = row.id
    out = []
    for hit in await _finish(session, words, hits, allowed, limit):
        if hit.where == "subject":
            snippet = (await session.execute(_SQLITE_SUBJECT_SNIPPET,
                                              {"q": q, "id": hit.ticket_id})).scalar()
        elif hit.where != "requester":
            snippet = (await session.execute(_SQLITE_SNIPPET,
                                              {"q": q, "id": best[hit.ticket_id]})).scalar()
        else:
            snippet = hit.snippet
        out.append(Hit(hit.ticket_id, hit.rank, str(snippet or ""), hit.where))
    return out


_PG_MESSAGES = text(
    "SELECT m.ticket_id, m.kind, m.id,"
    " ts_rank(m.search, plainto_tsquery('simple', :q)) AS rank"
    " FROM messages m WHERE m.search @@ plainto_tsquery('simple', :q)"
    " ORDER BY rank DESC LIMIT :n")
_PG_SUBJECTS = text(
    "SELECT t.id AS ticket_id, ts_rank(t.search, plainto_tsquery('simple', :q)) AS rank"
    " FROM tickets t WHERE t.search @@ plainto_tsquery('simple', :q)"
    " ORDER BY rank DESC LIMIT :n")
_PG_HEADLINE = text(
    "SELECT ts_headline('simple', text, plainto_tsquery('simple', :q),"
    " 'StartSel=[, StopSel=], MaxWords=24, MinWords=8, FragmentDelimiter=…,"
    " MaxFragments=1') FROM messages WHERE id = :id")
_PG_SUBJECT_HEADLINE = text(
    "SELECT ts_headline('simple', subject, plainto_tsquery('simple', :q),"
    " 'StartSel=[, StopSel=]') FROM tickets WHERE id = :id")


async def _postgres(session: AsyncSession, words: list[str], allowed: Any,
                    limit: int) -> list[Hit]:
    q = " ".join(words)
    n = limit * 20
    hits: dict[int, Hit] = {}
    best_message: dict[int, int] = {}
    for row in await session.execute(_PG_SUBJECTS, {"q": q, "n": n}):
        _keep(hits, Hit(row.ticket_id, float(row.rank) * 2, "", "subject"))
    for row in await session.execute(_PG_MESSAGES, {"q": q, "n": n}):
        if _keep(hits, Hit(row.ticket_id, float(row.rank), "", row.kind)):
            best_message[row.ticket_id] = row.id
    found = await _finish(session, words, hits, allowed, limit)
    out = []
    for hit in found:  # headlines cost: only for the tickets shown
        if hit.where == "subject":
            snippet = (await session.execute(_PG_SUBJECT_HEADLINE,
                                              {"q": q, "id": hit.ticket_id})).scalar_one()
        elif hit.where != "requester":
            snippet = (await session.execute(_PG_HEADLINE, {
                "q": q, "id": best_message[hit.ticket_id]})).scalar_one()
        else:
            snippet = hit.snippet
        out.append(Hit(hit.ticket_id, hit.rank, " ".join(str(snippet).split()), hit.where))
    return out


def _keep(hits: dict[int, Hit], hit: Hit) -> bool:
    """Keep a ticket's best hit; True when ``hit`` is it."""
    old = hits.get(hit.ticket_id)
    if old is None or hit.rank > old.rank:
        hits[hit.ticket_id] = hit
        return True
    return False


async def _finish(session: AsyncSession, words: list[str], hits: dict[int, Hit],
                  allowed: Any, limit: int) -> list[Hit]:
    for ticket_id, who in await _requester_hits(session, words, limit):
        _keep(hits, Hit(ticket_id, 0.0 if ticket_id in hits else 1e-6, who, "requester"))
    if hits:  # the filters, and never a ticket in the trash
        keep = set((await session.execute(
            select(allowed.c.id).where(allowed.c.id.in_(bindparam("ids", expanding=True))),
            {"ids": list(hits)})).scalars())
        hits = {k: v for k, v in hits.items() if k in keep}
    return sorted(hits.values(), key=lambda h: (-h.rank, -h.ticket_id))[:limit]
