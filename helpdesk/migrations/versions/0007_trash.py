"""The trash: ``tickets.deleted_at``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 23:10:00

A deleted ticket stays in the database, out of every list, search and thread, until
``helpdesk tickets purge`` removes it; ``tickets restore`` brings it back before that.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from helpdesk.models import UTCDateTime

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # add_column, not a batch: on SQLite a batch would copy the table and drop the
    # search triggers of 0006
    op.add_column('tickets', sa.Column('deleted_at', UTCDateTime(timezone=True),
                                       nullable=True))
    op.create_index('ix_tickets_deleted_at', 'tickets', ['deleted_at'])


def downgrade() -> None:
    op.drop_index('ix_tickets_deleted_at', 'tickets')
    with op.batch_alter_table('tickets') as batch:
        batch.drop_column('deleted_at')
