"""Reports: ``report_runs`` (one row per scheduled period sent) and the indexes the
report queries range over (tickets by creation and resolution, ratings by time).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 23:30:00

The row is inserted (insert-or-ignore on its period) in the transaction that queues the
report mail: of several daemons, the one whose insert lands sends it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from helpdesk.models import UTCDateTime

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'report_runs',
        sa.Column('period', sa.String(length=40), primary_key=True),
        sa.Column('sent_at', UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index('ix_tickets_created_at', 'tickets', ['created_at'])
    op.create_index('ix_tickets_resolved_at', 'tickets', ['resolved_at'])
    op.create_index('ix_csat_ratings_updated_at', 'csat_ratings', ['updated_at'])


def downgrade() -> None:
    op.drop_index('ix_csat_ratings_updated_at', 'csat_ratings')
    op.drop_index('ix_tickets_resolved_at', 'tickets')
    op.drop_index('ix_tickets_created_at', 'tickets')
    op.drop_table('report_runs')
