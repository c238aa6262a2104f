"""Alembic environment of sandbox-agent's event store.

The store runs these migrations itself (``open_store``, ``sandbox-agent db upgrade URL``) and
passes its connection in ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context

from sandbox_agent.store.tables import tables_for

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `sandbox-agent db upgrade URL`")

context.configure(
    connection=connection,
    target_metadata=tables_for(connection.dialect.name).metadata,
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
