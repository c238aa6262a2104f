"""Consumers' checkpoints (sandbox_agent.store.checkpoints, sandbox_agent.consumers).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op
from sandbox_agent_mysql.tables import CheckpointTables, binary_collation

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    version = tuple(bind.dialect.server_version_info or ())
    tables = CheckpointTables(binary_collation(bind.dialect, version))
    # One table: MySQL commits DDL by itself, so a cut-off run leaves it all there or absent.
    tables.metadata.create_all(bind, checkfirst=True)


def downgrade() -> None:
    CheckpointTables().metadata.drop_all(op.get_bind())
