"""The storage layer: write transactions, the lock between processes, migrations when several start at once."""
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy
from alembic.script import ScriptDirectory

from conftest import ROOT
import database

HOLD_THE_LOCK = """
import sys
import database
db = database.open_db(sys.argv[1])
with database.write_transaction(db):
    db.execute("INSERT INTO t (x) VALUES ('other process')")
    print("locked", flush=True)
    sys.stdin.readline()
"""


def table_t(database_url):
    db = database.open_db(database_url)
    # An id in the order rows were written: SQLite's INTEGER PRIMARY KEY is its rowid, PostgreSQL's is SERIAL.
    key = "SERIAL" if db.sql.name == "postgresql" else "INTEGER"
    db.execute(f"CREATE TABLE t (id {key} PRIMARY KEY, x TEXT)")
    return db


def test_a_write_transaction_that_raises_leaves_nothing(database_url):
    db = table_t(database_url)
    with pytest.raises(ValueError):
        with database.write_transaction(db):
            db.execute("INSERT INTO t (x) VALUES ('half')")
            raise ValueError("a bug half-way")
    with database.write_transaction(db):
        db.execute("INSERT INTO t (x) VALUES ('whole')")
    assert database.open_db(database_url).execute("SELECT x FROM t").scalars().all() == ["whole"]


def test_a_thread_waiting_for_the_write_lock_is_counted_until_it_has_it(database_url):
    """The thread letting go of the lock yields only while one waits: the count must not stay up afterwards."""
    db, other_db = table_t(database_url), database.open_db(database_url)
    holding, done = threading.Event(), threading.Event()

    def hold():
        with database.write_transaction(db):
            db.execute("INSERT INTO t (x) VALUES ('first')")
            holding.set()
            done.wait(30)

    def wait_then_write():
        with database.write_transaction(other_db):
            other_db.execute("INSERT INTO t (x) VALUES ('second')")

    holder, waiter = threading.Thread(target=hold), threading.Thread(target=wait_then_write)
    holder.start()
    assert holding.wait(30)
    assert database._writers_waiting == 0  # the holder took a free lock: it never waited
    waiter.start()
    deadline = time.monotonic() + 30
    while database._writers_waiting != 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert database._writers_waiting == 1, "the waiting thread was never counted"
    done.set()
    holder.join(30)
    waiter.join(30)
    assert database._writers_waiting == 0
    assert database.open_db(database_url).execute("SELECT x FROM t ORDER BY id").scalars().all() == ["first", "second"]


def test_a_write_waits_for_another_process_and_then_sees_its_commit(database_url):
    db = table_t(database_url)
    other = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, database_url], cwd=ROOT, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert other.stdout.readline() == "locked\n"
        with pytest.raises(sqlalchemy.exc.OperationalError) as locked:
            with database.write_transaction(db, deadline=0):
                pass
        assert database.is_busy(locked.value) and database.is_storage_down(locked.value)
        seen = []
        entered = threading.Event()

        def write():
            with database.write_transaction(db):
                entered.set()
                seen.extend(db.execute("SELECT x FROM t").scalars())
                db.execute("INSERT INTO t (x) VALUES ('this process')")
        writing = threading.Thread(target=write)
        writing.start()
        assert not entered.wait(0.3)  # still the other process's turn
        other.stdin.write("done\n")
        other.stdin.flush()
        writing.join(10)
        assert seen == ["other process"]
        assert db.execute("SELECT x FROM t ORDER BY id").scalars().all() == ["other process", "this process"]
    finally:
        other.kill()
        other.wait()


def test_processes_starting_at_once_migrate_a_new_database_once(database_url, store):
    script = "import sys, database; database.migrate(database.open_db(sys.argv[1]))"
    starting = [subprocess.Popen([sys.executable, "-c", script, database_url], cwd=ROOT, stderr=subprocess.PIPE,
                                 text=True) for _ in range(4)]
    for process in starting:
        assert process.wait(60) == 0, process.stderr.read()
    db = database.open_db(database_url)
    head = ScriptDirectory(database.MIGRATIONS_DIRECTORY).get_current_head()
    assert db.execute("SELECT version_num FROM alembic_version").scalars().all() == [head]
    if store == "sqlite":  # sqlite-utils' migrations, which came before Alembic's baseline, each applied once
        assert db.execute("SELECT COUNT(*) FROM _sqlite_migrations").scalar() == 11
