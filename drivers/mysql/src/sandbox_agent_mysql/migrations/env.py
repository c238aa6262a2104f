"""Alembic environment of the MySQL/MariaDB store driver.

The driver runs these migrations itself (``open_store("mysql://...")``) and passes its
connection in ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context
from sandbox_agent_mysql.tables import TABLES

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("open the store with open_store('mysql://...') to run its migrations")

context.configure(connection=connection, target_metadata=TABLES.metadata)
with context.begin_transaction():
    context.run_migrations()
