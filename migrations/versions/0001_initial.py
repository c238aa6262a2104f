"""The event store: sessions, events, snapshots (and positions on Postgres).

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sandbox_agent.store.tables import Tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# 0001 builds the tables from store/tables.py as they were at this revision: later tables, such
# as 0002's session_leases, are left to their own revision, and the events table without 0003's
# schema_version column.


def _initial(tables: Tables) -> list[sa.Table]:
    return [
        t
        for t in (tables.sessions, tables.events, tables.positions, tables.snapshots)
        if t is not None
    ]


def upgrade() -> None:
    bind = op.get_bind()
    tables = Tables(bind.dialect.name, schema_versions=False)
    tables.metadata.create_all(bind, tables=_initial(tables))
    if tables.positions is not None:
        op.bulk_insert(tables.positions, [{"id": 1, "last_position": 0}])


def downgrade() -> None:
    bind = op.get_bind()
    tables = Tables(bind.dialect.name, schema_versions=False)
    tables.metadata.drop_all(bind, tables=_initial(tables))
