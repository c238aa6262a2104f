"""The schema version of each stored event's payload (sandbox_agent.events.versions): 1 for
every event stored before.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One statement, so a cut-off run leaves the column either there or not (MySQL commits
    # each DDL statement by itself); the next run sees which.
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("events")}
    if "schema_version" not in columns:
        op.add_column(
            "events",
            sa.Column("schema_version", sa.Integer, nullable=False, server_default="1"),
        )


def downgrade() -> None:
    op.drop_column("events", "schema_version")
