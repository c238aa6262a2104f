"""The schema version of each stored event's payload (events/versions.py): 1 for every event
stored before.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A constant default: SQLite adds the column without rewriting the table, Postgres (11+)
    # without touching the rows.
    op.add_column(
        "events",
        sa.Column("schema_version", sa.Integer, nullable=False, server_default="1"),
    )


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("schema_version")
