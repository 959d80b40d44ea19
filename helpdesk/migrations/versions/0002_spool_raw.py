"""Raw messages in their spool row: ``inbound_spool.raw``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 19:30:00

Rows written before keep ``raw`` NULL; their bytes stay in the blob store by sha256.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('inbound_spool') as batch:
        batch.add_column(sa.Column('raw', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('inbound_spool') as batch:
        batch.drop_column('raw')
