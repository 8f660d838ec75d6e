"""The database: opening connections, the one-writer rule, and the schema's migrations."""
import functools
import itertools
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from urllib.parse import parse_qsl, quote

import alembic.command
import alembic.config
import sqlalchemy
from flask import current_app
from sqlalchemy import bindparam, event, text
from sqlalchemy.pool import NullPool

from dialect import DIALECTS

BUSY_TIMEOUT_SECONDS = 30
# The steps in which a write waits for another process's lock: SQLite's busy handler's, roughly.
OPEN_WAIT_SECONDS = 5
LOCK_POLL_SECONDS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
STATUSES = ("new", "in_progress", "answered", "spam")
CORE_FIELDS = ("name", "email", "phone", "subject", "message")
CALLBACK_COLUMNS = ("callback_day", "callback_slot", "callback_at")
SEARCHED_FIELDS = ("form", *CORE_FIELDS, "extra", "reply_to", "mail_subject", "page", "note", "spam_reason")

# SQLite's primary result codes that say the database as a whole cannot be written now (locked, full,
# read-only, gone), as opposed to one statement being wrong: every row of a batch would fail the same way.
STORAGE_DOWN_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_READONLY,
                                sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN,
                                sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


# PostgreSQL's SQLSTATE classes and codes that say the same: the server is gone, full, shutting down or
# read-only, or the write lock was not had in time (lock_timeout).
POSTGRESQL_DOWN_STATES = ("08", "53", "57P", "58", "25006", "55P03", "57014")
POSTGRESQL_LOCK_TIMEOUT = "55P03"
# The one write lock of a PostgreSQL database, as SQLite has one writer: pg_advisory_xact_lock's key.
POSTGRESQL_WRITE_LOCK = 0x706F7374626F78  # "postbox"


def is_postgresql(database):
    """Tell whether POSTBOX_DATABASE names a PostgreSQL database (a URL) rather than a SQLite file."""
    return str(database).startswith(("postgresql://", "postgresql+psycopg://", "postgres://"))


class StorageUnavailable(Exception):
    """The database cannot take a write now (locked too long, full, read-only, removed); try again later."""


def is_storage_down(error):
    """Tell whether a database error is about the whole database rather than one statement."""
    error = driver_error(error)
    state = getattr(error, "sqlstate", None)
    if state is not None or _is_psycopg_error(error):
        return state is None or state.startswith(POSTGRESQL_DOWN_STATES)  # no state: the connection is gone
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in STORAGE_DOWN_CODES


def _is_psycopg_error(error):
    return type(error).__module__.startswith("psycopg")


def is_busy(error):
    """Tell whether a database error says another connection holds the lock: worth waiting for, not a failure
    (on PostgreSQL, the write lock not had within lock_timeout).

    SQLite's extended codes count too: SQLITE_BUSY_RECOVERY comes while another process rebuilds the WAL index
    after the last connection closed, as a process that just took the lock and exited leaves it.
    """
    error = driver_error(error)
    if getattr(error, "sqlstate", None) == POSTGRESQL_LOCK_TIMEOUT:
        return True
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) == sqlite3.SQLITE_BUSY


def driver_error(error):
    """The driver's own error inside SQLAlchemy's: it has the code, and a message without the statement."""
    return error.orig if isinstance(error, sqlalchemy.exc.DBAPIError) else error


def file_identity(path):
    """The (device, inode) of the database file, or None when it is gone: a replaced file has another."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def check_writable(path):
    """Raise StorageUnavailable, in one line, when the database (a SQLite file and its directory, or a
    PostgreSQL database) cannot be written: a table is created and dropped, which needs every right a write does."""
    if is_postgresql(path):
        name = _without_password(path)
    else:
        name = path
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise StorageUnavailable(f"{directory} does not exist")
        # SQLite writes the -wal and -shm files beside the database: the directory must be writable too.
        for target in (directory, path):
            if os.path.exists(target) and not os.access(target, os.W_OK):
                raise StorageUnavailable(f"{target} is not writable by this process")
    try:
        db = open_db(path)
    except sqlalchemy.exc.DBAPIError as error:
        raise StorageUnavailable(f"{name} cannot be opened ({_one_line(error)})") from None
    try:
        with write_transaction(db):
            db.execute("CREATE TABLE IF NOT EXISTS postbox_write_check (x INTEGER)")
            db.execute("DROP TABLE postbox_write_check")
    except sqlalchemy.exc.DBAPIError as error:
        raise StorageUnavailable(f"{name} cannot be written ({_one_line(error)})") from None
    finally:
        db.close()


def _one_line(error):
    return " ".join(str(driver_error(error)).split())


def _without_password(url):
    return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)


class Database:
    """One connection to the database, held until close(): SQL with named parameters, rows by column name."""

    def __init__(self, engine):
        # Dropped without close() (a finished greenlet's get_db), it is closed once nothing uses it, results
        # included: SQLAlchemy's pool rolls back and closes a synchronous driver's connection on collection.
        self.connection = engine.connect()
        self.sql = DIALECTS[engine.dialect.name]

    def execute(self, sql, params=None, lists=()):
        """Run one statement (:name parameters, or a Core construct), or one per dict when params is a list of them.

        lists: the parameters whose value is a list, as in `id IN :ids`; each value becomes a parameter.
        """
        return self.connection.execute(_statement(sql, lists) if isinstance(sql, str) else sql, params)

    def close(self):
        self.connection.close()


@functools.lru_cache(maxsize=512)
def _statement(sql, expanding):
    # Made once per distinct statement: a new text() each time costs a stored submission about 130 µs more CPU
    # (bench/write_path_cpu.py), as SQLAlchemy then rebuilds the cache key its compiled statement is found by.
    return text(sql).bindparams(*(bindparam(name, expanding=True) for name in expanding))


def open_db(path, synchronous="FULL", uri=False):
    """Open the database file with the settings that make an acknowledged write durable.

    FULL: a commit is on disk before the visitor hears "thank you", even across power loss. The delivery
    worker may ask for NORMAL: in WAL mode its commits survive a killed process, and power loss can undo only
    its last outcomes, which means a message sent twice, never one lost.
    """
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
    if is_postgresql(path):
        return Database(_postgresql_engine(str(path), synchronous))
    if uri:
        filename, _, query = path.partition("?")
        url = sqlalchemy.URL.create("sqlite", database=filename, query={**dict(parse_qsl(query)), "uri": "true"})
    else:
        url = sqlalchemy.URL.create("sqlite", database=os.fspath(path))
    return Database(_engine(url, synchronous))


def open_existing(path, synchronous="FULL"):
    """Open the database Postbox runs on, never creating it: a SQLite file removed meanwhile stays missing
    (mode=rw), where creating an empty one would hide the loss. A PostgreSQL database is the server's."""
    if is_postgresql(path):
        return open_db(path, synchronous)
    return open_db(f"file:{quote(os.path.abspath(path))}?mode=rw", synchronous, uri=True)


@functools.lru_cache(maxsize=64)
def _engine(url, synchronous):
    """One engine per file and durability, so statements compiled once serve every connection to it.

    NullPool: each Database holds its connection for its whole life (a thread's, the writer's, the delivery
    worker's), so a pool would only keep idle connections open, and one reopened after the file was
    replaced must be a new connection to the new file, never a pooled one to the old.
    """
    engine = sqlalchemy.create_engine(
        url, poolclass=NullPool,
        # timeout=0: see _begin_immediate. isolation_level=None: the driver begins nothing on its own (SQLAlchemy's
        # pysqlite recipe), so BEGIN IMMEDIATE is ours to issue, and reads outside it see the latest commit.
        connect_args={"timeout": 0, "check_same_thread": False, "isolation_level": None})

    event.listen(engine, "connect", lambda dbapi_connection, record: configure_sqlite(dbapi_connection, synchronous))
    return engine


def postgresql_url(url):
    """A PostgreSQL URL for SQLAlchemy: postgresql:// (or postgres://) means psycopg 3, the driver Postbox installs,
    where SQLAlchemy alone would pick psycopg2."""
    url = sqlalchemy.engine.make_url(url)
    return url.set(drivername="postgresql+psycopg") if url.drivername in ("postgresql", "postgres") else url


@functools.lru_cache(maxsize=16)
def _postgresql_engine(url, synchronous):
    """One engine per database and durability; psycopg 3 (gevent-aware by itself) whatever the URL names.

    AUTOCOMMIT, as SQLite's connections: a read holds no transaction open, and write_transaction issues BEGIN.
    NullPool as for SQLite: each Database holds its connection for its life. NORMAL (the delivery worker) is
    synchronous_commit=off: a crash of the server may undo its last outcomes (a message sent twice), and a
    visitor's submission is always committed with the default, on.
    """
    engine = sqlalchemy.create_engine(postgresql_url(url), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    if synchronous == "NORMAL":
        event.listen(engine, "connect", lambda dbapi_connection, record: dbapi_connection.execute(
            "SET synchronous_commit = off"))
    return engine


def connect_sqlite(path, synchronous="FULL"):
    """A bare sqlite3 connection with the same settings, for what SQLite alone can do (backup.py's restore)."""
    connection = sqlite3.connect(path, timeout=0, check_same_thread=False, isolation_level=None)
    configure_sqlite(connection, synchronous)
    return connection


def configure_sqlite(dbapi_connection, synchronous):
    _set_wal_mode(dbapi_connection)
    dbapi_connection.execute(f"PRAGMA synchronous={synchronous}")
    dbapi_connection.execute("PRAGMA foreign_keys=ON")
    # As sqlite-utils set it on every connection before: a REPLACE conflict fires delete triggers.
    dbapi_connection.execute("PRAGMA recursive_triggers=ON")


def _set_wal_mode(conn, seconds=OPEN_WAIT_SECONDS):
    """Ask for WAL mode, waiting while another process holds a lock: a writer in the delivery process is the
    normal case."""
    while_busy(lambda: conn.execute("PRAGMA journal_mode=WAL"), time.monotonic() + seconds)


def while_busy(attempt, deadline, clock=time.monotonic):
    """Run attempt() again while SQLite says another connection holds the lock, until the deadline (a clock()
    value); then its "database is locked" is raised.

    Connections have no busy timeout: SQLite's own handler sleeps inside C, where the event loop of a gevent
    worker cannot serve anyone else meanwhile. Here the wait is in Python, in about the handler's steps.
    """
    for step in itertools.count():
        try:
            return attempt()
        except (sqlite3.OperationalError, sqlalchemy.exc.OperationalError) as error:
            remaining = deadline - clock()
            if not is_busy(error) or remaining <= 0:
                raise
            time.sleep(min(LOCK_POLL_SECONDS[min(step, len(LOCK_POLL_SECONDS) - 1)], remaining))


_thread_connections = threading.local()
# One writer at a time inside a process: waiting here is woken at once, where polling SQLite's lock would
# sleep in growing steps. Between processes, SQLite's lock and _begin_immediate's polling arbitrate.
_write_lock = threading.RLock()
# How many threads wait for _write_lock now: the one letting go of it yields only when someone does.
_writers_waiting = 0
_writers_waiting_lock = threading.Lock()


def get_db():
    """Return this thread's connection to the app's database, opened once and reused by its requests."""
    path = current_app.config["DATABASE"]
    connections = _thread_connections.__dict__.setdefault("by_path", {})
    db = connections.get(path)
    if db is None:
        db = connections[path] = open_db(path)
    return db


def close_db(exception=None):
    """End a request: leave no transaction open on the thread's connection."""
    db = _thread_connections.__dict__.get("by_path", {}).get(current_app.config["DATABASE"])
    if db is not None:
        db.connection.rollback()


def init_app(app):
    """Check the database can be written, migrate it, and end each request with no transaction open."""
    app.teardown_appcontext(close_db)
    try:
        check_writable(app.config["DATABASE"])
    except StorageUnavailable as error:
        raise SystemExit(f"postbox: database error: {error}") from None
    db = open_db(app.config["DATABASE"])
    try:
        migrate(db)
    finally:
        db.close()


@contextmanager
def write_transaction(db, deadline=None, clock=time.monotonic):
    """Hold SQLite's write lock from the first read, so read-then-write never meets 'database is locked'.

    Waiting for the lock ends at the deadline (a clock() value; BUSY_TIMEOUT_SECONDS from now by default)
    with StorageUnavailable (another thread of this process) or SQLite's "database is locked" (another process).
    """
    deadline = clock() + BUSY_TIMEOUT_SECONDS if deadline is None else deadline
    if not _take_write_lock(max(0.0, deadline - clock())):
        raise StorageUnavailable("another write in this process held the lock too long")
    try:
        _begin_immediate(db, deadline, clock)
        try:
            yield db
        except BaseException:
            db.connection.rollback()
            raise
        else:
            db.connection.commit()
    finally:
        _write_lock.release()
        # Let a writer waiting for the lock have it now. Under gevent a released lock goes to whoever asks
        # next, and the group commit asks again at once when its next batch is waiting: under a steady stream
        # of submissions, an inbox write or /healthz waited until the stream ended. Only when one waits: in
        # the delivery process, a real thread's sleep(0) cost about 20 µs of CPU for every message's outcome.
        if _writers_waiting:
            time.sleep(0)


def _take_write_lock(timeout):
    """Take the process's write lock, counted among its waiters while it is held by another thread."""
    global _writers_waiting
    if _write_lock.acquire(blocking=False):
        return True
    with _writers_waiting_lock:
        _writers_waiting += 1
    try:
        return _write_lock.acquire(timeout=timeout)
    finally:
        with _writers_waiting_lock:
            _writers_waiting -= 1


def _begin_immediate(db, deadline, clock):
    if db.sql.name == "postgresql":
        return _begin_postgresql(db, deadline, clock)
    while_busy(lambda: db.connection.exec_driver_sql("BEGIN IMMEDIATE"), deadline, clock)


def _begin_postgresql(db, deadline, clock):
    """BEGIN, then the database's one write lock, waited for until the deadline (lock_timeout, then 55P03).

    Every write of every node takes it, as SQLite has one writer: a rule that reads then writes (a duplicate,
    an idempotency key, one autoreply a day) holds across nodes exactly as on one, for milliseconds a write.
    """
    remaining_ms = max(1, int((deadline - clock()) * 1000))
    db.connection.exec_driver_sql("BEGIN")
    try:
        db.connection.exec_driver_sql(f"SET LOCAL lock_timeout = {remaining_ms}")
        db.connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({POSTGRESQL_WRITE_LOCK})")
    except BaseException:
        db.connection.rollback()
        raise


MIGRATIONS_DIRECTORY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")


def migrate(db, revision="head", command=alembic.command.upgrade):
    """Bring the schema to Alembic's head; several processes starting at once apply each revision once.

    The whole upgrade runs in one write transaction on this connection (handed to env.py): a second process
    waits for the lock, then finds the schema at head. A test may go to another revision, downgrades included.
    """
    config = alembic.config.Config()
    config.set_main_option("script_location", MIGRATIONS_DIRECTORY)
    with write_transaction(db):
        config.attributes["connection"] = db.connection
        command(config, revision)


def utc_now_iso():
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")
