"""The event store: sessions, events, snapshots (and positions on Postgres).

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

from sandbox_agent.store.tables import Tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# 0001 builds the tables from store/tables.py as they are at this revision. The first
# revision that changes a table must first copy those definitions into this file.


def upgrade() -> None:
    bind = op.get_bind()
    tables = Tables(bind.dialect.name)
    tables.metadata.create_all(bind)
    if tables.positions is not None:
        op.bulk_insert(tables.positions, [{"id": 1, "last_position": 0}])


def downgrade() -> None:
    bind = op.get_bind()
    Tables(bind.dialect.name).metadata.drop_all(bind)
