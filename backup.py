"""Backups and restores of the database, and the lock that keeps a restore away from a running server.

A backup is SQLite's online backup API reading one snapshot: consistent while the server writes, WAL
included, where `cp` of the main file alone can miss every acknowledged row still in postbox.sqlite3-wal.

Every server process (gunicorn's master, `flask deliver`) holds a shared lock on `<database>.lock` for its
life; a restore needs the lock exclusively, so it is refused while any of them runs, and a server does not
start while a restore runs. The kernel drops the lock when a process dies, even by kill -9.
"""
import fcntl
import os
import sqlite3
import tempfile

import click
from flask import current_app
from flask.cli import with_appcontext

import database


class BackupError(RuntimeError):
    """A copy that must not be trusted."""


def init_app(app):
    app.cli.add_command(backup_command)
    app.cli.add_command(restore_command)


# --- The server's lock ------------------------------------------------------------------------------------------

def lock_path(database_path):
    return f"{database_path}.lock"


def hold_server_lock(app):
    """Hold the database's lock, shared, until this process ends; stop start-up while a restore runs.

    Nothing on PostgreSQL: its backups are the server's own (pg_dump, base backups), never `flask restore`.
    """
    if database.is_postgresql(app.config["DATABASE"]):
        return None
    path = lock_path(app.config["DATABASE"])
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SystemExit(f"postbox: a restore of {app.config['DATABASE']} is running; start when it has finished")
    # Kept open on purpose: closing the descriptor would drop the lock. Forked workers share it.
    app.extensions["postbox.server_lock"] = fd
    return fd


def _take_exclusive_lock(database_path):
    """Return the descriptor holding the lock exclusively, or None when a server or worker holds it."""
    fd = os.open(lock_path(database_path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


# --- Copying and checking ---------------------------------------------------------------------------------------

def table_counts(conn):
    """Count the rows of every table: the measure a copy is compared by."""
    names = [row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    return {name: conn.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0] for name in names}


def integrity_problems(conn):
    """Return PRAGMA integrity_check's complaints; empty when the file is sound."""
    rows = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    return [] if rows == ["ok"] else rows


def copy_database(source_path, target_path):
    """Copy one snapshot of source into target_path (replaced atomically), verify it, return its counts."""
    directory = os.path.dirname(os.path.abspath(target_path))
    fd, partial = tempfile.mkstemp(dir=directory, prefix=".postbox-backup-", suffix=".partial")
    os.close(fd)
    source = sqlite3.connect(source_path, timeout=database.BUSY_TIMEOUT_SECONDS, isolation_level=None)
    target = sqlite3.connect(partial, isolation_level=None)
    try:
        # One read transaction for the counts and the copy: both see the same snapshot while writers go on.
        source.execute("BEGIN")
        expected = table_counts(source)
        source.backup(target)
        source.execute("COMMIT")
        # The copy is one self-contained file, not a WAL database waiting for its -wal.
        target.execute("PRAGMA journal_mode=DELETE")
        verify(target, expected, partial)
        target.close()
        os.replace(partial, target_path)
    finally:
        source.close()
        target.close()
        if os.path.exists(partial):
            os.remove(partial)
    return expected


def verify(conn, expected, name):
    """Raise BackupError unless the copy passes integrity_check and holds the expected counts."""
    problems = integrity_problems(conn)
    if problems:
        raise BackupError(f"{name} fails integrity_check: {'; '.join(problems[:5])}")
    counts = table_counts(conn)
    if counts != expected:
        differing = sorted(name for name in set(counts) | set(expected) if counts.get(name) != expected.get(name))
        raise BackupError(f"{name} does not hold what the database held: tables {', '.join(differing)} differ")


def check_backup(path):
    """Verify a backup file before restoring it; return its counts."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        problems = integrity_problems(conn)
        if problems:
            raise BackupError(f"{path} fails integrity_check: {'; '.join(problems[:5])}")
        counts = table_counts(conn)
    except sqlite3.DatabaseError as error:
        raise BackupError(f"{path} is not a Postbox database: {error}") from None
    finally:
        conn.close()
    if "submissions" not in counts:
        raise BackupError(f"{path} is not a Postbox database: it has no submissions table")
    return counts


def restore_database(backup_path, database_path):
    """Write the backup's pages over the database (its -wal included), verify, return the counts."""
    expected = check_backup(backup_path)
    source = sqlite3.connect(f"file:{backup_path}?mode=ro", uri=True)
    target = database.connect_sqlite(database_path)
    try:
        source.backup(target)
        target.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        verify(target, expected, database_path)
    finally:
        source.close()
        target.close()
    return expected


def _summary(counts):
    return f"{counts.get('submissions', 0)} submission(s), {counts.get('outbox', 0)} notification(s)"


# --- Commands -------------------------------------------------------------------------------------------------

def _refuse_postgresql(command, tool):
    if database.is_postgresql(current_app.config["DATABASE"]):
        raise click.ClickException(f"{command} copies a SQLite file; on PostgreSQL use {tool} or the server's base"
                                   " backups (docs/SCALING.md)")


@click.command("backup")
@with_appcontext
@click.argument("path", type=click.Path(dir_okay=False, writable=True))
def backup_command(path):
    """Copy the database to PATH while Postbox runs, then verify the copy (integrity and row counts).

    Example: flask --app app backup /var/backups/postbox/postbox-$(date +%F).sqlite3
    """
    _refuse_postgresql("backup", "pg_dump")
    try:
        counts = copy_database(current_app.config["DATABASE"], path)
    except (BackupError, sqlite3.Error, OSError) as error:
        raise click.ClickException(f"backup failed: {error}") from None
    click.echo(f"Backed up {_summary(counts)} to {path}; integrity_check ok, counts match.")


@click.command("restore")
@with_appcontext
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--yes", is_flag=True, help="Replace the current database without asking.")
def restore_command(path, yes):
    """Replace the database with the backup at PATH; refused while a Postbox server or worker runs.

    Example: flask --app app restore /var/backups/postbox/postbox-2026-11-01.sqlite3
    """
    _refuse_postgresql("restore", "pg_restore")
    target = current_app.config["DATABASE"]
    lock = _take_exclusive_lock(target)
    if lock is None:
        raise click.ClickException(f"refused: a Postbox server or worker is using {target}; stop it first"
                                   " (systemctl stop postbox), then restore")
    try:
        if not yes:
            click.confirm(f"Replace {target} with {path}? Submissions received since that backup are lost",
                          abort=True)
        counts = restore_database(path, target)
    except (BackupError, sqlite3.Error) as error:
        raise click.ClickException(f"restore failed: {error}") from None
    finally:
        os.close(lock)
    click.echo(f"Restored {_summary(counts)} into {target}; integrity_check ok, counts match.")
