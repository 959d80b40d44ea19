"""Agents' availability and the assignment rotation: ``agents.away_until``,
``agents.last_assigned_at``, ``assignment_turns``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 21:00:00

Auto-assignment skips agents who are away, gives ties in load to whoever was assigned
least recently, and keeps each team's round-robin turn in a row that is locked while a
ticket is assigned, so two gateway processes never give two tickets the same turn.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from helpdesk.models import UTCDateTime

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('agents') as batch:
        batch.add_column(sa.Column('away_until', UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('last_assigned_at', UTCDateTime(timezone=True),
                                   nullable=True))
    op.create_table(
        'assignment_turns',
        sa.Column('team', sa.String(length=100), primary_key=True),
        sa.Column('last_agent_id', sa.Integer(), sa.ForeignKey('agents.id'), nullable=True),
        sa.Column('turns', sa.BigInteger(), nullable=False, server_default='0'),
    )


def downgrade() -> None:
    op.drop_table('assignment_turns')
    with op.batch_alter_table('agents') as batch:
        batch.drop_column('last_assigned_at')
        batch.drop_column('away_until')
