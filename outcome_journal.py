"""The delivery workers' outcome journal: a SQLite file beside the database, where each message's outcome is
durable as soon as the other side has answered, without waiting for the database's one write lock.

SQLite has one writer. At a thousand submissions a second the web's group commit holds the database's write
lock a quarter of the time, a few milliseconds a batch, and a worker that committed each outcome there waited
for it before every next message: about a third of its time, and the reason delivery fell behind
(docs/PERFORMANCE.md).
Each outcome goes to this file first, which only delivery workers write, and is folded into the outbox a batch
at a time, in one transaction of the database:
- by the worker, at the end of each pass and whenever its oldest outcome has waited FOLD_SECONDS;
- by every worker before it claims, so that the outcomes of a worker killed before its fold are in the outbox
  before anyone may claim those messages again, and none of them is sent twice.
A fold holds this file's write lock from reading the outcomes until it has forgotten them, so two workers never
fold the same outcome; one folded but not yet forgotten (a worker killed in between) is found again by the next
fold, whose outbox no longer holds its message under the token it was sent with: applying it changes nothing.

PostgreSQL does not use it: several nodes deliver there, and a file on one node is not seen by the others.
"""
import os
import sqlite3
import threading
import time
from contextlib import contextmanager

from database import BUSY_TIMEOUT_SECONDS, connect_sqlite, while_busy, write_transaction

# How long an outcome may stay in the journal while its worker goes on sending: the inbox and /healthz read
# the outbox, and see a message sent at most this much later.
FOLD_SECONDS = 1.0
# A worker sends a message only while its lease outlasts the send's worst case by this much more: its outcome
# is in the journal that long before anyone may claim the message, and every claim folds the journal first.
LEASE_MARGIN_SECONDS = 5

_SCHEMA = ("CREATE TABLE IF NOT EXISTS outcomes (seq INTEGER PRIMARY KEY, outbox_id INTEGER NOT NULL,"
           " token TEXT NOT NULL, channel TEXT NOT NULL, target TEXT NOT NULL, outcome TEXT NOT NULL,"
           " at REAL NOT NULL, detail TEXT NOT NULL, next_attempt_at REAL)")
# A worker thread delivers for one database: its journal stays open for it, and is closed for another.
_journals = threading.local()


def journal_path(database):
    """The journal of a SQLite database file: beside it, as its -wal and -shm are."""
    return f"{os.path.abspath(database)}-outcomes"


def for_database(database):
    """This thread's journal of the database file, made if missing."""
    path = journal_path(database)
    journal = getattr(_journals, "journal", None)
    if journal is None or journal.path != path:
        if journal is not None:
            journal.close()
        journal = _journals.journal = OutcomeJournal(path)
    return journal


class OutcomeJournal:
    """One worker thread's connection to the journal, and when its oldest outcome not yet folded was written."""

    def __init__(self, path):
        self.path = path
        # NORMAL: in WAL mode an outcome survives a killed process at once; power loss can undo the last ones,
        # which means a message sent twice, never one lost (as the outcomes in the database had it).
        self.connection = connect_sqlite(path, synchronous="NORMAL")
        self.connection.row_factory = sqlite3.Row
        self.connection.execute(_SCHEMA)
        self.oldest = None  # the time of this worker's oldest outcome not yet folded, on the worker's clock

    def add(self, row, token, outcome, at, detail, next_attempt_at=None):
        """Make one message's outcome durable; the fold applies it to the outbox."""
        with self._transaction():
            self.connection.execute(
                "INSERT INTO outcomes (outbox_id, token, channel, target, outcome, at, detail, next_attempt_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [row["id"], token, row["channel"], row["target"], outcome, at, detail, next_attempt_at])
        if self.oldest is None:
            self.oldest = at

    def fold_due(self, now):
        """Whether this worker's oldest outcome not yet folded has waited FOLD_SECONDS (`now` on its clock)."""
        return self.oldest is not None and now - self.oldest >= FOLD_SECONDS

    def fold(self, db, apply):
        """Apply every outcome in the journal, any worker's, in one transaction of the database, then forget
        them; return those apply() refused (their message no longer held under their token).

        apply(db, outcome) runs inside the database's transaction and says whether the outcome was applied.
        """
        # Every pass folds before it claims: an empty journal, the usual case, is read without taking its lock.
        # One written just after this read is for a message whose lease outlasts it by LEASE_MARGIN_SECONDS.
        if self.connection.execute("SELECT 1 FROM outcomes LIMIT 1").fetchone() is None:
            self.oldest = None
            return []
        with self._transaction():
            outcomes = self.connection.execute("SELECT * FROM outcomes ORDER BY seq").fetchall()
            refused = []
            if outcomes:
                with write_transaction(db):
                    refused = [outcome for outcome in outcomes if not apply(db, outcome)]
                self.connection.execute("DELETE FROM outcomes WHERE seq <= ?", [outcomes[-1]["seq"]])
        self.oldest = None
        return refused

    @contextmanager
    def _transaction(self):
        """BEGIN IMMEDIATE, waiting in Python while another worker writes the journal; COMMIT or ROLLBACK."""
        while_busy(lambda: self.connection.execute("BEGIN IMMEDIATE"), time.monotonic() + BUSY_TIMEOUT_SECONDS)
        try:
            yield
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        else:
            self.connection.execute("COMMIT")

    def close(self):
        self.connection.close()
