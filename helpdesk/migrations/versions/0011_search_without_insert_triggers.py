"""SQLite: new tickets and messages go into the search index from the ticket service.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 07:00:00

The insert triggers of migration 0006 go. A trigger's statement opens a savepoint on the
FTS5 table it writes, and FTS5 writes its pending terms out at every savepoint, so each
new row made an index segment of its own (and the merges that follow); the ticket
service, the one writer of tickets and messages, now inserts into ``ticket_search`` and
``message_search`` itself (`helpdesk.search.index_ticket`, `index_message`), and a
transaction's rows make one segment at commit. What is indexed is unchanged, so nothing
is rebuilt. The triggers for changed and deleted rows stay. PostgreSQL: nothing to do.
"""

from __future__ import annotations

from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS message_search_insert")
        op.execute("DROP TRIGGER IF EXISTS ticket_search_insert")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("CREATE TRIGGER message_search_insert AFTER INSERT ON messages BEGIN"
                   " INSERT INTO message_search(rowid, text) VALUES (new.id, new.text); END")
        op.execute("CREATE TRIGGER ticket_search_insert AFTER INSERT ON tickets BEGIN"
                   " INSERT INTO ticket_search(rowid, subject) VALUES (new.id, new.subject);"
                   " END")
