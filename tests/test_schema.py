"""The schema as SQLAlchemy tables (schema.py) against SQLite's migrations, and built on a real PostgreSQL."""
import sqlite3

import pytest
import sqlalchemy as sa

import schema

# Columns only one store has: PostgreSQL keeps its search document in the table, SQLite in submissions_fts.
ONLY_POSTGRESQL = {("submissions", "search_vector")}
# SQLite's type affinity for each SQLAlchemy type the schema uses.
AFFINITY = {"TEXT": "TEXT", "INTEGER": "INTEGER", "BIGINT": "INTEGER", "DOUBLE": "REAL", "TSVECTOR": None}


def sqlite_columns(path, table):
    with sqlite3.connect(path) as conn:
        return {row[1]: (row[2] or "TEXT", bool(row[3]), row[5] > 0)
                for row in conn.execute(f"PRAGMA table_info({table})")}


@pytest.mark.sqlite_only
def test_the_tables_are_sqlites_tables_column_for_column(app):
    """No drift: every table and column of SQLite's migrated file is in schema.py, with its type and key."""
    path = app.config["DATABASE"]
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                                 " AND name NOT LIKE 'submissions_fts%' AND name NOT LIKE '\\_%' ESCAPE '\\'"
                                                 " AND name NOT LIKE 'sqlite%' AND name != 'alembic_version'")}
    assert tables == set(schema.metadata.tables)
    for table in schema.metadata.sorted_tables:
        on_sqlite = sqlite_columns(path, table.name)
        expected = {column.name: (AFFINITY[column.type.compile(dialect=sa.dialects.postgresql.dialect())
                                           .split("(")[0].replace(" PRECISION", "")],
                                  not column.nullable and not column.primary_key, column.primary_key)
                    for column in table.columns if (table.name, column.name) not in ONLY_POSTGRESQL}
        assert set(on_sqlite) == set(expected), table.name
        for name, (affinity, not_null, primary_key) in expected.items():
            sqlite_type, sqlite_not_null, sqlite_primary_key = on_sqlite[name]
            assert (sqlite_type, sqlite_primary_key) == (affinity, primary_key), (table.name, name)
            assert sqlite_not_null == not_null or primary_key, (table.name, name)


def test_postgresql_gets_the_whole_schema_and_keeps_the_inbox_counts(postgres_url):
    engine = sa.create_engine(postgres_url)
    with engine.begin() as connection:
        schema.create_postgresql(connection)
    submissions = schema.submissions
    with engine.begin() as connection:
        for minute, form in ((1, "default"), (20, "default"), (50, "callback")):
            connection.execute(submissions.insert().values(
                form=form, received_at=f"2026-11-24T09:{minute:02d}:00.000000+00:00", message="m"))
        connection.execute(submissions.update().where(submissions.c.id == 2).values(status="answered"))
        connection.execute(submissions.delete().where(submissions.c.id == 3))
        totals = set(connection.execute(sa.text("SELECT form, status, n FROM inbox_totals WHERE n > 0")))
        quarters = set(connection.execute(sa.text("SELECT quarter, form, status, n FROM inbox_quarters")))
    assert totals == {("default", "new", 1), ("default", "answered", 1)}
    assert quarters == {("2026-11-24T09:00", "default", "new", 1), ("2026-11-24T09:15", "default", "answered", 1)}
    inspector = sa.inspect(engine)
    assert set(inspector.get_table_names()) == set(schema.metadata.tables)
    indexes = {index["name"] for table in schema.metadata.tables for index in inspector.get_indexes(table)}
    assert {index.name for table in schema.metadata.sorted_tables for index in table.indexes} <= indexes
    engine.dispose()
