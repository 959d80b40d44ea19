"""The ticket model teams expect: ``tickets.type``, ``ticket_links``, ``statuses``,
``organization_domains`` and ``agents.role``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 23:00:00

Every existing ticket keeps its status (tickets hold it by name) and gets the configured
default type (``[tickets] default_type``, "Other" unless set), which `helpdesk.schema`
hands over as the ``default_type`` attribute. A follow-up ticket's tie to the ticket it
follows up (``tickets.followup_of_id``) becomes a ``followup`` link, so every link is read
from one table. The ``statuses`` table is filled from the configured statuses (the
``statuses`` attribute; the six defaults without one), and from then on the admin keeps
it with ``helpdesk statuses``. Existing agents become ``agent``s. An organization may have
more mail domains than its own (``organization_domains``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from helpdesk.models import UTCDateTime

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    default_type = str(context.config.attributes.get("default_type") or "Other")
    with op.batch_alter_table('tickets') as batch:
        batch.add_column(sa.Column('type', sa.String(length=50), nullable=False,
                                   server_default=default_type))
        batch.create_index('ix_tickets_type', ['type'])
    with op.batch_alter_table('agents') as batch:
        batch.add_column(sa.Column('role', sa.String(length=20), nullable=False,
                                   server_default='agent'))
    op.create_table(
        'ticket_links',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('ticket_id', sa.Integer(), sa.ForeignKey('tickets.id'), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('other_ticket_id', sa.Integer(), sa.ForeignKey('tickets.id'),
                  nullable=True),
        sa.Column('url', sa.String(length=2000), nullable=True),
        sa.Column('title', sa.Text(), nullable=False, server_default=''),
        sa.Column('created_by', sa.String(length=400), nullable=False, server_default=''),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index('ix_ticket_links_ticket_id', 'ticket_links', ['ticket_id'])
    op.create_index('ix_ticket_links_other_ticket_id', 'ticket_links', ['other_ticket_id'])
    op.create_table(
        'organization_domains',
        sa.Column('domain', sa.String(length=255), primary_key=True),
        sa.Column('organization_id', sa.Integer(), sa.ForeignKey('organizations.id'),
                  nullable=False),
    )
    op.create_index('ix_organization_domains_organization_id', 'organization_domains',
                    ['organization_id'])
    statuses = op.create_table(
        'statuses',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('name', sa.String(length=50), nullable=False),
        sa.Column('status_class', sa.String(length=20), nullable=False),
        sa.Column('color', sa.String(length=20), nullable=False, server_default=''),
        sa.Column('position', sa.Integer(), nullable=False, server_default='0'),
        sa.UniqueConstraint('name', name=op.f('uq_statuses_name')),
    )
    from helpdesk.config import DEFAULT_STATUSES

    configured = context.config.attributes.get("statuses") or DEFAULT_STATUSES
    op.bulk_insert(statuses, [
        {"name": s.name, "status_class": s.status_class, "color": s.color, "position": i}
        for i, s in enumerate(configured)])
    op.execute(
        "INSERT INTO ticket_links (ticket_id, kind, other_ticket_id, title, created_by,"
        " created_at) SELECT id, 'followup', followup_of_id, '', 'system', created_at"
        " FROM tickets WHERE followup_of_id IS NOT NULL")


def downgrade() -> None:
    op.drop_table('statuses')
    op.drop_index('ix_organization_domains_organization_id', 'organization_domains')
    op.drop_table('organization_domains')
    op.drop_index('ix_ticket_links_other_ticket_id', 'ticket_links')
    op.drop_index('ix_ticket_links_ticket_id', 'ticket_links')
    op.drop_table('ticket_links')
    with op.batch_alter_table('agents') as batch:
        batch.drop_column('role')
    with op.batch_alter_table('tickets') as batch:
        batch.drop_index('ix_tickets_type')
        batch.drop_column('type')
