"""The acknowledgement limits count from an index alone; a redundant outbox index goes.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 06:00:00

Each new ticket counts the acknowledgements of the last hour to the requester's mailbox
and domain. The indexes on (mailbox, created_at) and (domain, created_at) found the hour's
rows but not their kind, so every count read each of those rows from the table; with the
kind in the index (mailbox or domain, kind, created_at) the count is a range of the index.
``ix_outbox_to_addr`` is the first column of ``ix_outbox_to_addr_created``, which serves
every query it served, so each outbox insert updates one index fewer.
"""

from __future__ import annotations

from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_outbox_mailbox_created', 'outbox')
    op.drop_index('ix_outbox_domain_created', 'outbox')
    op.drop_index('ix_outbox_to_addr', 'outbox')
    op.create_index('ix_outbox_mailbox_kind_created', 'outbox',
                    ['to_mailbox', 'kind', 'created_at'])
    op.create_index('ix_outbox_domain_kind_created', 'outbox',
                    ['to_domain', 'kind', 'created_at'])


def downgrade() -> None:
    op.drop_index('ix_outbox_domain_kind_created', 'outbox')
    op.drop_index('ix_outbox_mailbox_kind_created', 'outbox')
    op.create_index('ix_outbox_to_addr', 'outbox', ['to_addr'])
    op.create_index('ix_outbox_domain_created', 'outbox', ['to_domain', 'created_at'])
    op.create_index('ix_outbox_mailbox_created', 'outbox', ['to_mailbox', 'created_at'])
