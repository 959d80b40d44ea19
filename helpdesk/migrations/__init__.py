"""Alembic migrations of the helpdesk schema; applied by `helpdesk init` and on first start."""
