"""`flask --app app copy-to postgresql://…`: move a SQLite installation to PostgreSQL, every row of every table.

The copy reads one snapshot of the SQLite file (a read transaction: WAL lets Postbox keep running meanwhile)
and writes the target in one transaction, with PostgreSQL's COPY, so the target holds all of it or none.
Repeated, it replaces what an earlier copy wrote: the same source gives the same target. It refuses to
replace submissions the source does not have, which can only be leads the target received after a move.
"""
import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import with_appcontext

import database
import outbox
import schema


class CopyRefused(Exception):
    """The target holds data a copy would destroy, or cannot be copied into."""


def copy_to(source_path, target_url, replace_newer=False):
    """Copy the SQLite database at source_path into the PostgreSQL database at target_url.

    Return {table: (rows in the source, rows in the target)} and the submissions' counts per (form, status)
    on each side, as read back from the target after the commit.
    """
    if not database.is_postgresql(target_url):
        raise CopyRefused("the target must be a postgresql:// URL")
    _migrate(target_url)
    source_engine = sa.create_engine(f"sqlite:///file:{source_path}?mode=ro&uri=true",
                                     connect_args={"isolation_level": None})
    target_engine = sa.create_engine(database.postgresql_url(target_url))
    try:
        with source_engine.connect() as source, target_engine.connect() as target:
            source.exec_driver_sql("BEGIN")  # one snapshot of every table
            with target.begin():
                _refuse_newer(source, target, replace_newer)
                names = ", ".join(table.name for table in schema.metadata.sorted_tables)
                target.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY")
                # The inbox's counts are computed once at the end, not by a trigger per copied row.
                target.exec_driver_sql("ALTER TABLE submissions DISABLE TRIGGER USER")
                for table in schema.metadata.sorted_tables:
                    if table.name not in schema.DERIVED_TABLES:
                        _copy_table(source, target, table)
                for statement in schema.POSTGRESQL_REBUILD_COUNTS:
                    target.exec_driver_sql(statement)
                target.exec_driver_sql("ALTER TABLE submissions ENABLE TRIGGER USER")
            counts = {table.name: (_count(source, table), _count(target, table))
                      for table in schema.metadata.sorted_tables}
            by_status = (_by_form_and_status(source), _by_form_and_status(target))
            source.exec_driver_sql("COMMIT")
    finally:
        source_engine.dispose()
        target_engine.dispose()
    return counts, by_status


def _migrate(target_url):
    """Bring the target's schema to Alembic's head first, as a node starting on it would: an empty database gets
    every table, and the nodes later find it current."""
    db = database.open_db(target_url)
    try:
        database.migrate(db)
    finally:
        db.close()


def _refuse_newer(source, target, replace_newer):
    newest_copied = source.execute(sa.text("SELECT coalesce(max(id), 0) FROM submissions")).scalar()
    newer = target.execute(sa.text("SELECT count(*) FROM submissions WHERE id > :id"), {"id": newest_copied}).scalar()
    if newer and not replace_newer:
        raise CopyRefused(f"the target holds {newer} submission(s) newer than the source's newest (id"
                          f" {newest_copied}): leads it received after a move; --replace-newer drops them")


def _copy_table(source, target, table):
    columns = [column.name for column in table.columns if column.computed is None]
    listed = ", ".join(columns)
    rows = source.execute(sa.text(f"SELECT {listed} FROM {table.name}")).yield_per(5000)
    with target.connection.dbapi_connection.cursor() as cursor:
        with cursor.copy(f"COPY {table.name} ({listed}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    identity = table.c.get("id")
    if identity is not None and identity.identity is not None:
        target.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'),"
                               f" coalesce((SELECT max(id) FROM {table.name}), 0) + 1, false)"))


def _count(connection, table):
    return connection.execute(sa.select(sa.func.count()).select_from(table)).scalar()


def _by_form_and_status(connection):
    return dict(((form, status), count) for form, status, count in connection.execute(sa.text(
        "SELECT form, status, count(*) FROM submissions GROUP BY form, status")))


@click.command("copy-to")
@click.argument("target_url")
@click.option("--replace-newer", is_flag=True,
              help="Replace the target even where it holds submissions newer than this installation's.")
@with_appcontext
def copy_to_command(target_url, replace_newer):
    """Copy this SQLite installation into a PostgreSQL database: every submission, outbox row with its
    history, user, note and reply. Stop Postbox's nodes on the target first. Repeatable.

    Example: flask --app app copy-to postgresql://postbox@db.internal/postbox
    """
    source = current_app.config["DATABASE"]
    outbox.fold_outcomes(source)  # outcomes still in the delivery's journal are copied with their messages
    try:
        counts, (source_status, target_status) = copy_to(source, target_url, replace_newer)
    except CopyRefused as error:
        raise click.ClickException(str(error)) from None
    except sa.exc.SQLAlchemyError as error:
        raise click.ClickException(f"nothing was copied: {error.orig or error}") from None
    width = max(len(name) for name in counts)
    click.echo(f"{'table'.ljust(width)}  {'source':>9}  {'target':>9}")
    for name, (in_source, in_target) in counts.items():
        click.echo(f"{name.ljust(width)}  {in_source:>9,}  {in_target:>9,}")
    same = all(a == b for a, b in counts.values()) and source_status == target_status
    for (form, status), count in sorted(source_status.items()):
        click.echo(f"  {form} / {status}: {count:,} in the source, {target_status.get((form, status), 0):,} copied")
    if not same:
        raise click.ClickException("the counts differ: the target is not a copy of the source")
    click.echo("Copied: every count matches.")
