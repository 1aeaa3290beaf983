"""Alembic environment: runs against the connection handed in by ``memory.migrate``."""

from alembic import context

from memory.db import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
