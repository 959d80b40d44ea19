"""Full-text search over message texts and ticket subjects, kept current by the database.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 23:00:00

SQLite: FTS5 tables over ``messages.text`` and ``tickets.subject`` (external content, so
the text is stored once) with triggers, so a message is searchable in the transaction
that adds it. PostgreSQL: a stored generated column ``search``,
``to_tsvector('simple', ...)`` of the same columns, with a GIN index: current by
construction, and ranked without parsing each text again. The ``simple`` configuration does not stem: mail comes
in every language, and a word is found as written.
"""

from __future__ import annotations

from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_SQLITE = [
    "CREATE VIRTUAL TABLE message_search USING fts5(text, content='messages',"
    " content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER message_search_insert AFTER INSERT ON messages BEGIN"
    " INSERT INTO message_search(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER message_search_delete AFTER DELETE ON messages BEGIN"
    " INSERT INTO message_search(message_search, rowid, text)"
    " VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER message_search_update AFTER UPDATE OF text ON messages BEGIN"
    " INSERT INTO message_search(message_search, rowid, text)"
    " VALUES ('delete', old.id, old.text);"
    " INSERT INTO message_search(rowid, text) VALUES (new.id, new.text); END",
    "INSERT INTO message_search(message_search) VALUES ('rebuild')",
    "CREATE VIRTUAL TABLE ticket_search USING fts5(subject, content='tickets',"
    " content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER ticket_search_insert AFTER INSERT ON tickets BEGIN"
    " INSERT INTO ticket_search(rowid, subject) VALUES (new.id, new.subject); END",
    "CREATE TRIGGER ticket_search_delete AFTER DELETE ON tickets BEGIN"
    " INSERT INTO ticket_search(ticket_search, rowid, subject)"
    " VALUES ('delete', old.id, old.subject); END",
    "CREATE TRIGGER ticket_search_update AFTER UPDATE OF subject ON tickets BEGIN"
    " INSERT INTO ticket_search(ticket_search, rowid, subject)"
    " VALUES ('delete', old.id, old.subject);"
    " INSERT INTO ticket_search(rowid, subject) VALUES (new.id, new.subject); END",
    "INSERT INTO ticket_search(ticket_search) VALUES ('rebuild')",
]
_POSTGRES = [
    # a stored column: ranking reads it instead of parsing every matching text again
    "ALTER TABLE messages ADD COLUMN search tsvector"
    " GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED",
    "CREATE INDEX ix_messages_search ON messages USING GIN (search)",
    "ALTER TABLE tickets ADD COLUMN search tsvector"
    " GENERATED ALWAYS AS (to_tsvector('simple', subject)) STORED",
    "CREATE INDEX ix_tickets_search ON tickets USING GIN (search)",
]


def upgrade() -> None:
    for statement in _SQLITE if op.get_bind().dialect.name == "sqlite" else _POSTGRES:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("message_search", "ticket_search"):
            for event in ("insert", "delete", "update"):
                op.execute(f"DROP TRIGGER IF EXISTS {name}_{event}")
            op.execute(f"DROP TABLE IF EXISTS {name}")
    else:
        op.execute("DROP INDEX IF EXISTS ix_messages_search")
        op.execute("DROP INDEX IF EXISTS ix_tickets_search")
        op.execute("ALTER TABLE messages DROP COLUMN IF EXISTS search")
        op.execute("ALTER TABLE tickets DROP COLUMN IF EXISTS search")
