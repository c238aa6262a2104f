"""The event store on MySQL/MariaDB: sessions, events, positions, snapshots.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op
from sandbox_agent_mysql.tables import Tables, binary_collation

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# 0001 builds the tables from tables.py as they were at this revision: the events table without
# 0002's schema_version column.


def upgrade() -> None:
    bind = op.get_bind()
    version = tuple(bind.dialect.server_version_info or ())
    tables = Tables(binary_collation(bind.dialect, version), schema_versions=False)
    tables.metadata.create_all(bind)
    op.bulk_insert(tables.positions, [{"id": 1, "last_position": 0}])


def downgrade() -> None:
    Tables(schema_versions=False).metadata.drop_all(op.get_bind())
