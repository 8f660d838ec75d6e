"""Baseline: the schema sqlite-utils' migrations m001 to m011 built, for new and existing installations alike;
on PostgreSQL, the same schema from schema.py.

Revision ID: 0001
Revises:
"""
from alembic import op

import schema
import sqlite_schema

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    connection = op.get_bind()
    if connection.dialect.name == "postgresql":
        schema.create_postgresql(connection)  # a new database: today's schema at once, from schema.py
    else:
        sqlite_schema.apply(connection.connection.dbapi_connection)
