"""Every SQL statement Postbox runs: submissions, their outbox and its delivery log."""
import json
import queue
import sqlite3
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from flask import current_app
from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

BUSY_TIMEOUT_SECONDS = 30
STATUSES = ("new", "in_progress", "answered", "spam")
CORE_FIELDS = ("name", "email", "phone", "subject", "message")
SEARCHED_FIELDS = ("form", *CORE_FIELDS, "extra", "reply_to", "mail_subject", "page", "note", "spam_reason")

migrations = Migrations("postbox")


@migrations()
def m001_submissions_and_outbox(db):
    db["submissions"].create(
        {
            "id": int, "form": str, "received_at": str,
            "name": str, "email": str, "phone": str, "subject": str, "message": str,
            "extra": str, "reply_to": str, "mail_subject": str, "page": str, "ip": str, "user_agent": str, "language": str,
            "status": str, "spam_reason": str, "note": str, "status_by": str, "status_at": str,
        },
        pk="id",
        not_null={"form", "received_at", "status"},
        defaults={"status": "new", "extra": "{}"},
    )
    db["submissions"].create_index(["received_at"])
    db["submissions"].create_index(["status", "received_at"])
    db["outbox"].create(
        {
            "id": int, "submission_id": int, "kind": str, "message_id": str, "recipients": str,
            "state": str, "attempts": int, "created_at": float, "next_attempt_at": float,
            "lease_until": float, "lease_owner": str, "last_error": str, "sent_at": float,
        },
        pk="id",
        not_null={"submission_id", "kind", "message_id", "recipients", "state"},
        defaults={"state": "pending", "attempts": 0, "lease_until": 0},
        foreign_keys=[("submission_id", "submissions", "id")],
    )
    db["outbox"].create_index(["state", "next_attempt_at"])
    db["outbox"].create_index(["submission_id"])
    db["delivery_log"].create(
        {"id": int, "outbox_id": int, "at": float, "outcome": str, "detail": str},
        pk="id",
        foreign_keys=[("outbox_id", "outbox", "id")],
    )
    db["delivery_log"].create_index(["outbox_id"])


@migrations()
def m002_users(db):
    db["users"].create(
        {"id": int, "email": str, "password_hash": str, "created_at": str},
        pk="id",
        not_null={"email", "password_hash", "created_at"},
    )
    db["users"].create_index(["email"], unique=True)


@migrations()
def m003_search_index(db):
    # An external-content FTS5 table: the text lives once, in submissions; triggers keep the index in step.
    columns = ", ".join(SEARCHED_FIELDS)
    new_values = ", ".join(f"new.{name}" for name in SEARCHED_FIELDS)
    old_values = ", ".join(f"old.{name}" for name in SEARCHED_FIELDS)
    remove_old = (f"INSERT INTO submissions_fts (submissions_fts, rowid, {columns})"
                  f" VALUES ('delete', old.id, {old_values});")
    add_new = f"INSERT INTO submissions_fts (rowid, {columns}) VALUES (new.id, {new_values});"
    # One execute() per statement: executescript() would commit the migration's transaction half-way.
    db.conn.execute(f"CREATE VIRTUAL TABLE submissions_fts USING fts5({columns}, content='submissions',"
                    " content_rowid='id', tokenize='unicode61 remove_diacritics 2')")
    db.conn.execute(f"CREATE TRIGGER submissions_fts_insert AFTER INSERT ON submissions BEGIN {add_new} END")
    db.conn.execute(f"CREATE TRIGGER submissions_fts_delete AFTER DELETE ON submissions BEGIN {remove_old} END")
    db.conn.execute(f"CREATE TRIGGER submissions_fts_update AFTER UPDATE OF {columns} ON submissions"
                    f" BEGIN {remove_old} {add_new} END")
    db.conn.execute("INSERT INTO submissions_fts (submissions_fts) VALUES ('rebuild')")


@migrations()
def m004_inbox_indexes(db):
    # Keyset pages walk (received_at, id) newest first; the rowid is every index's last column already.
    db["submissions"].create_index(["form", "received_at"])
    # Covers the chart's (received_at, status) reads: no table lookups for a quarter's submissions.
    db["submissions"].create_index(["received_at", "status"])


@migrations()
def m005_duplicate_check_index(db):
    # The duplicate rule looks up one address's recent messages: without this it scans minutes of traffic.
    db["submissions"].create_index(["email", "received_at"])


# A submission's quarter hour of UTC received_at, as text ("2026-02-20T01:30"): every time zone's days start on one.
QUARTER_OF = "substr({row}.received_at, 1, 14) || printf('%02d', substr({row}.received_at, 15, 2) / 15 * 15)"


@migrations()
def m006_inbox_counts(db):
    # Counts kept by triggers, so the inbox's counts and chart sum a few thousand rows, not every submission:
    # per form and status (the unfiltered counts), and per UTC quarter hour as well (date ranges, the chart).
    db.conn.execute("CREATE TABLE inbox_totals (form TEXT NOT NULL, status TEXT NOT NULL, n INTEGER NOT NULL,"
                    " PRIMARY KEY (form, status)) WITHOUT ROWID")
    db.conn.execute("CREATE TABLE inbox_quarters (quarter TEXT NOT NULL, form TEXT NOT NULL, status TEXT NOT NULL,"
                    " n INTEGER NOT NULL, PRIMARY KEY (quarter, form, status)) WITHOUT ROWID")
    count_new = (
        "INSERT INTO inbox_totals (form, status, n) VALUES (new.form, new.status, 1)"
        " ON CONFLICT (form, status) DO UPDATE SET n = n + 1;"
        f" INSERT INTO inbox_quarters (quarter, form, status, n) VALUES ({QUARTER_OF.format(row='new')},"
        " new.form, new.status, 1) ON CONFLICT (quarter, form, status) DO UPDATE SET n = n + 1;")
    old_quarter = f"quarter = {QUARTER_OF.format(row='old')} AND form = old.form AND status = old.status"
    uncount_old = (
        "UPDATE inbox_totals SET n = n - 1 WHERE form = old.form AND status = old.status;"
        f" UPDATE inbox_quarters SET n = n - 1 WHERE {old_quarter};"
        f" DELETE FROM inbox_quarters WHERE {old_quarter} AND n = 0;")
    db.conn.execute(f"CREATE TRIGGER inbox_counts_insert AFTER INSERT ON submissions BEGIN {count_new} END")
    db.conn.execute(f"CREATE TRIGGER inbox_counts_delete AFTER DELETE ON submissions BEGIN {uncount_old} END")
    db.conn.execute("CREATE TRIGGER inbox_counts_update AFTER UPDATE OF form, status, received_at ON submissions"
                    " WHEN old.form IS NOT new.form OR old.status IS NOT new.status"
                    f" OR old.received_at IS NOT new.received_at BEGIN {uncount_old} {count_new} END")
    db.conn.execute("INSERT INTO inbox_quarters (quarter, form, status, n)"
                    f" SELECT {QUARTER_OF.format(row='submissions')}, form, status, COUNT(*) FROM submissions"
                    " GROUP BY 1, 2, 3")
    db.conn.execute("INSERT INTO inbox_totals (form, status, n)"
                    " SELECT form, status, SUM(n) FROM inbox_quarters GROUP BY form, status")
    # Covers DELIVERY_STATE (the latest owner's email of a submission): the export reads it for every row.
    db["outbox"].create_index(["submission_id", "kind", "id", "state"])


def open_db(path):
    """Open the database file with the settings that make an acknowledged write durable."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before the visitor hears "thank you", even across power loss.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return Database(conn, execute_plugins=False)


_thread_connections = threading.local()
# One writer at a time inside a process: waiting here is woken at once, where SQLite's busy handler
# would sleep in growing steps. Between processes, SQLite's lock and busy timeout still arbitrate.
_write_lock = threading.RLock()


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
    if db is not None and db.conn.in_transaction:
        db.conn.rollback()


def init_app(app):
    """Migrate the database, end each request with no transaction open, and prepare the group commit."""
    app.teardown_appcontext(close_db)
    app.extensions["postbox.writer"] = SubmissionWriter(app.config["DATABASE"])
    db = open_db(app.config["DATABASE"])
    try:
        migrate(db)
    finally:
        db.close()


@contextmanager
def write_transaction(db):
    """Hold SQLite's write lock from the first read, so read-then-write never meets 'database is locked'."""
    with _write_lock:
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.conn.rollback()
            raise
        else:
            db.conn.commit()


def migrate(db):
    """Apply pending migrations; several processes starting at once apply each exactly once."""
    with write_transaction(db):
        migrations.apply(db)


def utc_now_iso():
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


# --- Submissions -------------------------------------------------------------------------

def save_submission(db, submission, notification=None):
    """Store a submission and, unless it is spam, its owner's email in one transaction."""
    with write_transaction(db):
        return _insert_submission(db, submission, notification)


def _insert_submission(db, submission, notification):
    row = {name: submission.get(name) or "" for name in CORE_FIELDS}
    row.update(
        form=submission["form"],
        received_at=submission.get("received_at") or utc_now_iso(),
        extra=json.dumps(submission.get("extra") or {}, ensure_ascii=False),
        reply_to=submission.get("reply_to") or "",
        mail_subject=submission.get("mail_subject") or "",
        page=submission.get("page") or "",
        ip=submission.get("ip") or "",
        user_agent=submission.get("user_agent") or "",
        language=submission.get("language") or "",
        status=submission.get("status") or "new",
        spam_reason=submission.get("spam_reason") or "",
    )
    columns = ", ".join(row)
    placeholders = ", ".join("?" for _ in row)
    cursor = db.conn.execute(f"INSERT INTO submissions ({columns}) VALUES ({placeholders})", list(row.values()))
    if notification is not None:
        _queue(db, cursor.lastrowid, notification)
    return cursor.lastrowid


class _PendingSave:
    def __init__(self, submission, notification):
        self.submission = submission
        self.notification = notification
        self.done = threading.Event()
        self.submission_id = None
        self.error = None


class SubmissionWriter:
    """Group commit: concurrent requests' submissions share one transaction, and so one fsync.

    With synchronous=FULL every commit waits for the disk; committed one by one, requests queue behind each
    other's fsync. Here a writer thread commits whatever is waiting as one transaction, and each request is
    answered only after the commit that holds its row: as durable as before, many per fsync.
    """

    MAX_BATCH = 200

    def __init__(self, path):
        self.path = path
        self.queue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.thread = None

    def save(self, submission, notification=None):
        """Store the submission (and its outbox row) durably; return its id once committed."""
        self._ensure_running()
        pending = _PendingSave(submission, notification)
        self.queue.put(pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.submission_id

    def _ensure_running(self):
        with self.lock:
            # A forked process (a gunicorn worker) inherits the object but not the thread.
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="postbox-writer", daemon=True)
                self.thread.start()

    def _run(self):
        db = None
        while True:
            batch = [self.queue.get()]
            while len(batch) < self.MAX_BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                db = db or open_db(self.path)
                self._commit(db, batch)
            except Exception as error:  # e.g. the file cannot be opened: every waiter gets the error
                for item in batch:
                    if not item.done.is_set():
                        item.error = error
                        item.done.set()
                db = None

    def _commit(self, db, batch):
        try:
            with write_transaction(db):
                ids = [_insert_submission(db, item.submission, item.notification) for item in batch]
        except Exception:
            # One bad row must not fail its neighbours: commit each alone and report each its own outcome.
            for item in batch:
                try:
                    item.submission_id = save_submission(db, item.submission, item.notification)
                except Exception as error:  # handed to the waiting request, which answers for it
                    item.error = error
                item.done.set()
            return
        for item, submission_id in zip(batch, ids):
            item.submission_id = submission_id
            item.done.set()


def _queue(db, submission_id, notification):
    now = time.time()
    db.conn.execute(
        "INSERT INTO outbox (submission_id, kind, message_id, recipients, state, created_at, next_attempt_at)"
        " VALUES (?, ?, ?, ?, 'pending', ?, ?)",
        [submission_id, notification["kind"], notification["message_id"],
         json.dumps(list(notification["recipients"])), now, now],
    )


def get_submission(db, submission_id):
    row = db.conn.execute("SELECT * FROM submissions WHERE id = ?", [submission_id]).fetchone()
    return decode_submission(row) if row else None


def decode_submission(row):
    """Turn a submissions row into a dict with its extra fields as an ordered dict."""
    submission = dict(row)
    submission["extra"] = json.loads(submission.get("extra") or "{}")
    return submission


def recent_duplicate(db, form, email, message, since_iso):
    """Tell whether the same sender sent the same message to the same form since the given time."""
    row = db.conn.execute(
        "SELECT 1 FROM submissions WHERE form = ? AND email = ? AND message = ? AND received_at >= ? LIMIT 1",
        [form, email, message, since_iso],
    ).fetchone()
    return row is not None


# --- Outbox --------------------------------------------------------------------------------

def claim_due_messages(db, owner, now, lease_seconds, limit):
    """Lease up to `limit` due messages to `owner`; no other worker gets them until the lease ends."""
    with write_transaction(db):
        rows = db.conn.execute(
            "UPDATE outbox SET lease_until = ?, lease_owner = ? WHERE id IN ("
            " SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= ? AND lease_until <= ?"
            " ORDER BY next_attempt_at LIMIT ?) RETURNING *",
            [now + lease_seconds, owner, now, now, limit],
        ).fetchall()
    messages = [dict(row) for row in rows]
    for message in messages:
        message["recipients"] = json.loads(message["recipients"])
    messages.sort(key=lambda message: message["next_attempt_at"])
    return messages


_OUTCOMES = {
    "sent": ("state = 'sent', sent_at = :now, attempts = attempts + 1, last_error = NULL"),
    "retry": ("attempts = attempts + 1, next_attempt_at = :next_attempt_at, last_error = :detail"),
    "failed": ("state = 'failed', attempts = attempts + 1, last_error = :detail"),
}


def record_outcomes(db, owner, outcomes):
    """Record a batch's results in one transaction; return the ids whose lease had passed to another worker.

    Each outcome is a dict: outbox_id, outcome ('sent', 'retry' or 'failed'), now, detail, and for a
    retry next_attempt_at.
    """
    lost = []
    with write_transaction(db):
        for item in outcomes:
            params = {"next_attempt_at": None, "detail": "", **item, "owner": owner}
            cursor = db.conn.execute(
                f"UPDATE outbox SET {_OUTCOMES[item['outcome']]}, lease_until = 0, lease_owner = NULL"
                " WHERE id = :outbox_id AND lease_owner = :owner", params)
            if cursor.rowcount:
                db.conn.execute("INSERT INTO delivery_log (outbox_id, at, outcome, detail)"
                                " VALUES (:outbox_id, :now, :outcome, :detail)", params)
            else:
                lost.append(item["outbox_id"])
    return lost


def _record_one(db, owner, **outcome):
    return not record_outcomes(db, owner, [outcome])


def mark_sent(db, outbox_id, owner, now, detail=""):
    """Record a delivery; returns False when the lease had passed to another worker."""
    return _record_one(db, owner, outbox_id=outbox_id, outcome="sent", now=now, detail=detail)


def schedule_retry(db, outbox_id, owner, now, next_attempt_at, error):
    """Record a temporary failure and when to try again."""
    return _record_one(db, owner, outbox_id=outbox_id, outcome="retry", now=now, detail=error,
                       next_attempt_at=next_attempt_at)


def mark_failed(db, outbox_id, owner, now, error):
    """Record a permanent failure; the submission stays, and the owner can resend it."""
    return _record_one(db, owner, outbox_id=outbox_id, outcome="failed", now=now, detail=error)


def release(db, outbox_ids, owner):
    """Give back leased messages untouched, for another pass."""
    with write_transaction(db):
        db.conn.executemany(
            "UPDATE outbox SET lease_until = 0, lease_owner = NULL WHERE id = ? AND lease_owner = ?",
            [(outbox_id, owner) for outbox_id in outbox_ids],
        )


def requeue(db, submission_id, now):
    """Send a submission's email again now (the owner's 'resend')."""
    with write_transaction(db):
        cursor = db.conn.execute(
            # created_at restarts too: the give-up window is counted from the owner's resend.
            "UPDATE outbox SET state = 'pending', next_attempt_at = ?, created_at = ?, lease_until = 0,"
            " lease_owner = NULL WHERE submission_id = ? AND kind = 'owner'",
            [now, now, submission_id],
        )
    return cursor.rowcount


def next_due_at(db):
    """Return when the earliest pending message is due (epoch seconds), or None."""
    row = db.conn.execute(
        "SELECT MIN(MAX(next_attempt_at, lease_until)) FROM outbox WHERE state = 'pending'"
    ).fetchone()
    return row[0]


def outbox_for(db, submission_id):
    """Return the submission's messages with their delivery log, oldest first."""
    messages = [dict(row) for row in db.conn.execute(
        "SELECT * FROM outbox WHERE submission_id = ? ORDER BY id", [submission_id])]
    for message in messages:
        message["recipients"] = json.loads(message["recipients"])
        message["log"] = [dict(row) for row in db.conn.execute(
            "SELECT * FROM delivery_log WHERE outbox_id = ? ORDER BY id", [message["id"]])]
    return messages


def outbox_counts(db):
    """Count messages by delivery state."""
    return {row[0]: row[1] for row in db.conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state")}


# --- The inbox -----------------------------------------------------------------------------

DELIVERY_STATE = ("(SELECT state FROM outbox WHERE outbox.submission_id = submissions.id AND kind = 'owner'"
                  " ORDER BY outbox.id DESC LIMIT 1)")
DELETE_BATCH = 500


def create_user(db, email, password_hash):
    """Add an inbox user, or set a new password for an existing one; return True when the user is new."""
    with write_transaction(db):
        cursor = db.conn.execute("UPDATE users SET password_hash = ? WHERE email = ?", [password_hash, email])
        if cursor.rowcount:
            return False
        db.conn.execute("INSERT INTO users (email, password_hash, created_at) VALUES (?, ?, ?)",
                        [email, password_hash, utc_now_iso()])
    return True


def get_user(db, email):
    row = db.conn.execute("SELECT * FROM users WHERE email = ?", [email]).fetchone()
    return dict(row) if row else None


def search_query(text):
    """Turn what the owner typed into an FTS5 query: every word must match, as a prefix; no FTS syntax errors."""
    words = [word.replace('"', '""') for word in str(text or "").split()]
    return " ".join(f'"{word}"*' for word in words)


def _where(filters):
    """Build the WHERE clause for the inbox's filters: q, status, form, since and before (UTC ISO bounds)."""
    clauses, params = [], []
    if filters.get("q") and search_query(filters["q"]):
        clauses.append("submissions.id IN (SELECT rowid FROM submissions_fts WHERE submissions_fts MATCH ?)")
        params.append(search_query(filters["q"]))
    for name in ("status", "form"):
        if filters.get(name):
            clauses.append(f"submissions.{name} = ?")
            params.append(filters[name])
    if filters.get("since"):
        clauses.append("submissions.received_at >= ?")
        params.append(filters["since"])
    if filters.get("before"):
        clauses.append("submissions.received_at < ?")
        params.append(filters["before"])
    return " AND ".join(clauses) or "1", params


def list_submissions(db, filters, after=None, limit=50, many_matches=False):
    """Return one page of submissions, newest first, after the (received_at, id) cursor of the previous page.

    With a search that matches many rows, say many_matches=True: the page then walks the newest rows and keeps
    the matching ones, where otherwise it would fetch and sort every match.
    """
    where, params = _where(filters)
    if many_matches:
        # The unary + keeps SQLite from driving the query by the matches' ids; it walks an index by time instead.
        where = where.replace("submissions.id IN (SELECT rowid", "+submissions.id IN (SELECT rowid", 1)
    if after:
        where += " AND (submissions.received_at, submissions.id) < (?, ?)"
        params += [after[0], after[1]]
    rows = db.conn.execute(
        f"SELECT submissions.*, {DELIVERY_STATE} AS delivery FROM submissions WHERE {where}"
        " ORDER BY submissions.received_at DESC, submissions.id DESC LIMIT ?",
        [*params, limit],
    )
    return [decode_submission(row) for row in rows]


def status_counts(db, filters, at_most=None):
    """Count the submissions matching the filters, by status.

    Without a search the counts come from the tables the triggers of m006 keep, whatever the table's size.
    A search counts its matches one by one; at_most stops after that many plus one, so a caller can say "1,000+".
    """
    counts = dict.fromkeys(STATUSES, 0)
    if filters.get("q") and search_query(filters["q"]):
        counts.update(_count_matches(db, filters, at_most))
        return counts
    for status, count in _kept_counts(db, filters):
        counts[status] = counts.get(status, 0) + count
    return counts


def _count_matches(db, filters, at_most):
    where, params = _where({**filters, "q": ""})
    limit = "" if at_most is None else f" LIMIT {int(at_most) + 1}"
    # A join, not "id IN (...)": the matches stream from the index, so LIMIT stops the work early.
    rows = db.conn.execute(
        "SELECT status, COUNT(*) FROM (SELECT submissions.status FROM submissions_fts"
        " JOIN submissions ON submissions.id = submissions_fts.rowid"
        f" WHERE submissions_fts MATCH ? AND {where}{limit}) GROUP BY status",
        [search_query(filters["q"]), *params])
    return {row[0]: row[1] for row in rows}


def quarter_of(iso_text):
    """The UTC quarter hour a UTC ISO time falls in, as m006's triggers write it."""
    return f"{iso_text[:14]}{int(iso_text[14:16]) // 15 * 15:02d}"


def _quarter_start(quarter):
    return f"{quarter}:00.000000+00:00"


def _next_quarter(quarter):
    start = datetime.fromisoformat(_quarter_start(quarter)) + timedelta(minutes=15)
    return start.isoformat(timespec="minutes")[:16]


def _kept_counts(db, filters):
    """Yield (status, count) pairs summing to the counts for the filters (no search) from m006's tables."""
    kept, params = [], []
    for name in ("status", "form"):
        if filters.get(name):
            kept.append(f"{name} = ?")
            params.append(filters[name])
    since, before = filters.get("since"), filters.get("before")
    if not since and not before:
        where = " AND ".join(kept) or "1"
        yield from db.conn.execute(f"SELECT status, SUM(n) FROM inbox_totals WHERE {where} GROUP BY status", params)
        return
    # Whole quarters come from inbox_quarters; a bound inside a quarter (no time zone has one today, but
    # history does) has the rest of its quarter counted row by row, which is one quarter's rows at most.
    first = None if not since else quarter_of(since) if since == _quarter_start(quarter_of(since)) \
        else _next_quarter(quarter_of(since))
    last = None if not before else quarter_of(before)
    if first and last and first >= last:
        yield from _counted_rows(db, kept, params, since, before)
        return
    if since and since < _quarter_start(first):
        yield from _counted_rows(db, kept, params, since, _quarter_start(first))
    if before and before > _quarter_start(last):
        yield from _counted_rows(db, kept, params, _quarter_start(last), before)
    ranges = [("quarter >= ?", first), ("quarter < ?", last)]
    where = " AND ".join(kept + [clause for clause, bound in ranges if bound])
    bounds = [bound for _, bound in ranges if bound]
    yield from db.conn.execute(f"SELECT status, SUM(n) FROM inbox_quarters WHERE {where} GROUP BY status",
                               [*params, *bounds])


def _counted_rows(db, kept, params, since, before):
    where = " AND ".join(kept + ["received_at >= ?", "received_at < ?"])
    yield from db.conn.execute(f"SELECT status, COUNT(*) FROM submissions WHERE {where} GROUP BY status",
                               [*params, since, before])


def form_keys(db):
    """Return the forms that have submissions."""
    return [row[0] for row in db.conn.execute("SELECT form FROM inbox_totals GROUP BY form HAVING SUM(n) > 0")]


def get_submission_with_delivery(db, submission_id):
    row = db.conn.execute(f"SELECT submissions.*, {DELIVERY_STATE} AS delivery FROM submissions WHERE id = ?",
                          [submission_id]).fetchone()
    return decode_submission(row) if row else None


def set_status(db, submission_ids, status, by):
    """Change the status of the given submissions, recording who did it and when; return how many changed."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
    with write_transaction(db):
        cursor = db.conn.executemany(
            "UPDATE submissions SET status = ?, status_by = ?, status_at = ? WHERE id = ?",
            [(status, by, utc_now_iso(), submission_id) for submission_id in submission_ids],
        )
    return cursor.rowcount


def set_note(db, submission_id, note):
    with write_transaction(db):
        cursor = db.conn.execute("UPDATE submissions SET note = ? WHERE id = ?", [note, submission_id])
    return cursor.rowcount


def queue_owner_message(db, submission_id, notification):
    """Queue a first owner's email for a submission that never had one (one kept as spam)."""
    with write_transaction(db):
        _queue(db, submission_id, notification)


def _delete_ids(db, submission_ids):
    marks = ", ".join("?" for _ in submission_ids)
    db.conn.execute(f"DELETE FROM delivery_log WHERE outbox_id IN"
                    f" (SELECT id FROM outbox WHERE submission_id IN ({marks}))", submission_ids)
    db.conn.execute(f"DELETE FROM outbox WHERE submission_id IN ({marks})", submission_ids)
    return db.conn.execute(f"DELETE FROM submissions WHERE id IN ({marks})", submission_ids).rowcount


def delete_submissions(db, submission_ids):
    """Delete submissions with their emails and delivery log, leaving no trace; return how many went."""
    submission_ids = [int(submission_id) for submission_id in submission_ids]
    deleted = 0
    for start in range(0, len(submission_ids), DELETE_BATCH):
        with write_transaction(db):
            deleted += _delete_ids(db, submission_ids[start:start + DELETE_BATCH])
    return deleted


def purge_received_before(db, cutoff):
    """Delete every submission received before the UTC ISO cutoff, in short transactions; return how many."""
    deleted = 0
    while True:
        with write_transaction(db):
            ids = [row[0] for row in db.conn.execute(
                "SELECT id FROM submissions WHERE received_at < ? LIMIT ?", [cutoff, DELETE_BATCH])]
            if not ids:
                return deleted
            deleted += _delete_ids(db, ids)


def extra_field_names(db, filters):
    """Return the union of the matching submissions' extra field names, in first-seen order."""
    where, params = _where(filters)
    # One pass in SQLite: each name's first sighting as (received_at, id, place in its object), sortable as text.
    rows = db.conn.execute(
        "SELECT fields.key, MIN(printf('%s %020d %010d', submissions.received_at, submissions.id, fields.id))"
        f" AS first_seen FROM submissions, json_each(submissions.extra) AS fields WHERE {where}"
        " AND submissions.extra != '{}' GROUP BY fields.key ORDER BY first_seen", params)
    return [row[0] for row in rows]


# OWASP's CSV-injection rule: a spreadsheet reads a cell starting with one of these as a formula, so it gets a
# leading '. A leading ' is escaped too, so the rule reads back exactly: drop the first ' of a cell that has one.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\0", "'")
# Compared as bytes, not text, because SQLite's text functions stop at a NUL, which is one of them.
FORMULA_FIRST_BYTES = ", ".join(f"X'{ord(char):02X}'" for char in FORMULA_STARTS)
EXPORT_COLUMNS = ("id", "form", "status", "received_at", "name", "email", "phone", "subject", "message", "page",
                  "language", "reply_to", "mail_subject", "ip", "user_agent", "spam_reason", "note", "status_by",
                  "status_at")


def _spreadsheet_safe(expression):
    return (f"CASE WHEN substr(CAST({expression} AS BLOB), 1, 1) IN ({FORMULA_FIRST_BYTES})"
            f" THEN '''' || {expression} ELSE {expression} END")


def _extra_value(name):
    if '"' in name or "\\" in name:
        # A name a JSON path cannot quote: look it up by key, slower but exact.
        return "(SELECT value FROM json_each(submissions.extra) WHERE key = ?)", [name]
    return "json_extract(submissions.extra, ?)", [f'$."{name}"']


def iter_export_rows(db, filters, extra_names):
    """Yield one tuple per matching submission, oldest first, for a spreadsheet.

    The cells are EXPORT_COLUMNS with the extra fields named after "message", then the delivery state, every
    text cell made safe by OWASP's rule; received_at stays the stored UTC text. A last cell holds the extra
    fields' JSON when one of them has a NUL, which SQLite cannot extract; it is None otherwise.
    """
    where, params = _where(filters)
    cells = [name if name in ("id", "received_at") else _spreadsheet_safe(f"submissions.{name}")
             for name in EXPORT_COLUMNS]
    cell_params = []
    for place, name in enumerate(extra_names, start=EXPORT_COLUMNS.index("message") + 1):
        expression, expression_params = _extra_value(name)
        cells.insert(place, _spreadsheet_safe(expression))
        cell_params += expression_params * 3
    cells.append(f"coalesce(nullif({DELIVERY_STATE}, ''),"
                 " CASE WHEN submissions.status = 'spam' THEN 'not sent (spam)' ELSE '' END)")
    # SQLite's JSON functions cut a value at a NUL: such rows also bring their extra fields' JSON, for Python.
    cells.append("CASE WHEN instr(submissions.extra, '\\u0000') THEN submissions.extra END")
    cursor = db.conn.cursor()
    cursor.row_factory = None  # plain tuples: a million sqlite3.Row objects cost more than the query
    yield from cursor.execute(f"SELECT {', '.join(cells)} FROM submissions WHERE {where}"
                              " ORDER BY received_at, id", [*cell_params, *params])


def iter_submissions(db, filters):
    """Yield every matching submission, oldest first, with its delivery state, one row at a time."""
    where, params = _where(filters)
    rows = db.conn.execute(
        f"SELECT submissions.*, {DELIVERY_STATE} AS delivery FROM submissions WHERE {where}"
        " ORDER BY received_at, id", params)
    for row in rows:
        yield decode_submission(row)
