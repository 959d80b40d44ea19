"""The daily board: ``agents.notify_board`` and ``agents.board_sent_on``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 23:20:00

``board_sent_on`` is the local day an agent's board last went out: the daemon that moves
it (one conditional UPDATE) is the one that sends, so several daemons send one board.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('agents', sa.Column('notify_board', sa.Boolean(), nullable=False,
                                      server_default=sa.true()))
    op.add_column('agents', sa.Column('board_sent_on', sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('agents') as batch:
        batch.drop_column('board_sent_on')
        batch.drop_column('notify_board')
