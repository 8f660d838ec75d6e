"""SQLite's search index keeps the prefixes of 2, 3 and 4 characters of every word.

The inbox searches each word as a prefix ("rose" finds "roses"). Without these, FTS5 merges the whole list of
rows of every word that begins so before it can give the newest page: 5.5 ms for "rose" at a million
submissions, where the prefix's own list gives it in 0.2 ms. A longer prefix names few words, and is fast
already. The price: at a million rows the index is three times the size (150 → 440 MB, the file 1.1 → 1.4 GB);
an FTS5 insert takes 45-52 µs of CPU instead of 26, which bench/write_path_cpu.py sees as 0-15 µs more per
stored submission (about 330 µs), within its noise. PostgreSQL's GIN index has no such option and needs none.

FTS5 cannot change a table's options: the table is made again, with the same columns, and rebuilt from
submissions (about 20 s at a million rows, once). Its triggers belong to submissions and stay as they are.

Revision ID: 0003
Revises: 0002
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PREFIXES = "prefix='2 3 4'"


def upgrade():
    _remake_search_index(lambda definition: definition if PREFIXES in definition else f"{definition[:-1]}, {PREFIXES})")


def downgrade():
    _remake_search_index(lambda definition: definition.replace(f", {PREFIXES}", ""))


def _remake_search_index(change):
    connection = op.get_bind()
    if connection.dialect.name != "sqlite":
        return
    definition = connection.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE name = 'submissions_fts'").scalar_one()
    changed = change(definition)
    if changed == definition:
        return  # made so already (an installation migrated again from an older revision)
    connection.exec_driver_sql("DROP TABLE submissions_fts")
    connection.exec_driver_sql(changed)
    connection.exec_driver_sql("INSERT INTO submissions_fts (submissions_fts) VALUES ('rebuild')")
