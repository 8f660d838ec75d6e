"""Alembic's environment: run the revisions on the connection database.migrate() hands over, in its transaction."""
from alembic import context

connection = context.config.attributes["connection"]
# The caller holds the write lock in an open transaction: Alembic runs inside it and commits nothing itself.
context.configure(connection=connection)
with context.begin_transaction():
    context.run_migrations()
