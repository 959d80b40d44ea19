"""The mailbox and domain each outbox row goes to: ``outbox.to_mailbox``, ``outbox.to_domain``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 18:00:00

The acknowledgement limit counts per mailbox (``a+x@`` and ``a+y@`` are one mailbox) and
per domain, so an address rotating plus-tags or local parts cannot loop us. Rows written
before are filled in from ``to_addr`` (lowercase, plus-tag dropped).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.add_column(sa.Column('to_mailbox', sa.String(length=320), nullable=True))
        batch.add_column(sa.Column('to_domain', sa.String(length=255), nullable=True))
        batch.create_index('ix_outbox_mailbox_created', ['to_mailbox', 'created_at'])
        batch.create_index('ix_outbox_domain_created', ['to_domain', 'created_at'])
    outbox = sa.table('outbox', sa.column('id', sa.Integer), sa.column('to_addr', sa.String),
                      sa.column('to_mailbox', sa.String), sa.column('to_domain', sa.String))
    conn = op.get_bind()
    for row_id, to_addr in conn.execute(sa.select(outbox.c.id, outbox.c.to_addr)).all():
        local, _, domain = (to_addr or "").lower().partition("@")
        conn.execute(outbox.update().where(outbox.c.id == row_id).values(
            to_mailbox=f"{local.split('+', 1)[0]}@{domain}", to_domain=domain))


def downgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.drop_index('ix_outbox_domain_created')
        batch.drop_index('ix_outbox_mailbox_created')
        batch.drop_column('to_domain')
        batch.drop_column('to_mailbox')
