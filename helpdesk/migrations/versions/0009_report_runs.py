"""Scheduled reports: ``report_runs``, one row per period sent.

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


def downgrade() -> None:
    op.drop_table('report_runs')
