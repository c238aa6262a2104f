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

# 0001 builds the tables from tables.py as they are at this revision. The first revision that
# changes a table must first copy those definitions into this file.


def upgrade() -> None:
    bind = op.get_bind()
    version = tuple(bind.dialect.server_version_info or ())
    tables = Tables(binary_collation(bind.dialect, version))
    tables.metadata.create_all(bind)
    op.bulk_insert(tables.positions, [{"id": 1, "last_position": 0}])


def downgrade() -> None:
    Tables().metadata.drop_all(op.get_bind())
