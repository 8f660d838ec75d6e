"""Baseline: the schema sqlite-utils' migrations m001 to m011 built, for new and existing installations alike.

Revision ID: 0001
Revises:
"""
from alembic import op

import sqlite_schema

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    connection = op.get_bind()
    if connection.dialect.name != "sqlite":
        raise NotImplementedError(f"no baseline schema for {connection.dialect.name} yet")
    sqlite_schema.apply(connection.connection.dbapi_connection)
