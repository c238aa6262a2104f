"""Session leases of servers sharing a Postgres store (store/leases.py); nothing on SQLite.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sandbox_agent.store.tables import Timestamp

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return  # one server per SQLite store: nothing to lease
    op.create_table(
        "session_leases",
        sa.Column("session_id", sa.String(128), primary_key=True),
        sa.Column("server_id", sa.String(64), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("host", sa.String(256), nullable=False),
        sa.Column("since", Timestamp, nullable=False),
        sa.Column("acquired_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
    )
    op.create_index("ix_session_leases_server", "session_leases", ["server_id"])
    op.create_index("ix_session_leases_expires", "session_leases", ["expires_at"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    op.drop_table("session_leases")
