"""The schema as sqlite-utils migrations built it, m001 to m011: Alembic's baseline revision applies them.

Frozen: a later change to the schema is an Alembic revision in migrations/versions, never an m012 here.
Installations from before Alembic have these names in sqlite-utils' _sqlite_migrations table, so the
baseline applies only what each database lacks, and old and new databases end at the same schema.
"""
import json
import sqlite3

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from database import SEARCHED_FIELDS

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


@migrations()
def m007_channels(db):
    # One outbox row per channel target: each owner address, webhook and messenger has its own outcome.
    # "owner" now means only the site's owner: the process holding a lease is its claimant, and the
    # notification of a new lead is the kind "lead".
    db.conn.execute("ALTER TABLE outbox RENAME COLUMN lease_owner TO claimant")
    db.conn.execute("ALTER TABLE outbox ADD COLUMN channel TEXT NOT NULL DEFAULT 'email'")
    db.conn.execute("ALTER TABLE outbox ADD COLUMN target TEXT NOT NULL DEFAULT ''")
    db.conn.execute("ALTER TABLE outbox ADD COLUMN lease_token TEXT")
    db.conn.execute("ALTER TABLE outbox ADD COLUMN reply TEXT")
    db.conn.execute("UPDATE outbox SET kind = 'lead' WHERE kind = 'owner'")
    columns = ("submission_id", "kind", "message_id", "state", "attempts", "created_at", "next_attempt_at",
               "last_error", "sent_at", "channel")
    for row in db.conn.execute("SELECT id, recipients FROM outbox").fetchall():
        first, *others = json.loads(row["recipients"]) or [""]
        db.conn.execute("UPDATE outbox SET target = ? WHERE id = ?", [first, row["id"]])
        for address in others:
            db.conn.execute(f"INSERT INTO outbox ({', '.join(columns)}, target, recipients)"
                            f" SELECT {', '.join(columns)}, ?, '[]' FROM outbox WHERE id = ?", [address, row["id"]])
    db.conn.execute("DROP INDEX idx_outbox_submission_id_kind_id_state")
    db.conn.execute("ALTER TABLE outbox DROP COLUMN recipients")
    db["outbox"].create_index(["submission_id", "kind", "id", "state"])
    db["outbox"].create_index(["channel", "target", "state"])
    # Per channel target (target '' is the channel's connection): pauses, the last outcome, and "turned off".
    db.conn.execute(
        "CREATE TABLE delivery_targets (channel TEXT NOT NULL, target TEXT NOT NULL, paused_until REAL NOT NULL"
        " DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0, last_attempt_at REAL, last_ok_at REAL, last_error TEXT,"
        " last_error_at REAL, off_at REAL,"
        " PRIMARY KEY (channel, target)) WITHOUT ROWID")


@migrations()
def m008_follow_up(db):
    # When a lead first left "new" (a status change, a note or a reply): the clock of time to first answer,
    # and what stops its reminders; reminders_sent counts the reminder steps already taken.
    db.conn.execute("ALTER TABLE submissions ADD COLUMN first_answer_at TEXT")
    db.conn.execute("ALTER TABLE submissions ADD COLUMN reminders_sent INTEGER NOT NULL DEFAULT 0")
    db.conn.execute("UPDATE submissions SET first_answer_at = status_at WHERE status != 'new' AND status_at != ''")
    # Leads from before reminders existed were never promised one: reminding the owner of a month of them at
    # once, on upgrade, would be a flood. They still show as overdue in the inbox.
    db.conn.execute("UPDATE submissions SET reminders_sent = 1000 WHERE status = 'new'")
    # A callback request: the day and slot the visitor chose, and when that slot begins (UTC), for ordering.
    db.conn.execute("ALTER TABLE submissions ADD COLUMN callback_day TEXT")
    db.conn.execute("ALTER TABLE submissions ADD COLUMN callback_slot TEXT")
    db.conn.execute("ALTER TABLE submissions ADD COLUMN callback_at TEXT")
    db.conn.execute("ALTER TABLE submissions ADD COLUMN callback_reminded INTEGER NOT NULL DEFAULT 0")
    db["submissions"].create_index(["callback_at"])
    # The owner's replies, kept as history; the outbox row of a reply points here for its text.
    db["replies"].create(
        {"id": int, "submission_id": int, "author": str, "body": str, "created_at": str, "message_id": str},
        pk="id", not_null={"submission_id", "body", "created_at"},
        foreign_keys=[("submission_id", "submissions", "id")],
    )
    db["replies"].create_index(["submission_id"])
    db.conn.execute("ALTER TABLE outbox ADD COLUMN reply_id INTEGER REFERENCES replies(id)")
    # At most one autoreply per address per day is checked against this.
    db["outbox"].create_index(["kind", "target", "created_at"])
    # One row per daily digest (its local day is unique: a restart in the digest hour sends no second one),
    # with the figures it reports, and no visitor's data: the oldest lead is read when the digest is sent, so
    # deleting a submission leaves nothing of it here. Its outbox rows point here.
    db["digests"].create(
        {"id": int, "day": str, "created_at": str, "new_leads": int, "unanswered": int, "oldest_id": int},
        pk="id", not_null={"day", "created_at"},
    )
    db["digests"].create_index(["day"], unique=True)
    db.conn.execute("ALTER TABLE outbox ADD COLUMN digest_id INTEGER REFERENCES digests(id)")


@migrations()
def m009_idempotency(db):
    # One row per submission a client named (the hosted form's _token, an Idempotency-Key header): a repeat
    # within a day is answered with the first one's outcome instead of being stored and notified again.
    db.conn.execute("CREATE TABLE idempotency_keys (form TEXT NOT NULL, key TEXT NOT NULL,"
                    " submission_id INTEGER NOT NULL REFERENCES submissions (id) ON DELETE CASCADE,"
                    " created_at REAL NOT NULL, PRIMARY KEY (form, key)) WITHOUT ROWID")
    db.conn.execute("CREATE INDEX idx_idempotency_keys_created_at ON idempotency_keys (created_at)")
    db.conn.execute("CREATE INDEX idx_idempotency_keys_submission_id ON idempotency_keys (submission_id)")


@migrations()
def m010_health_probe(db):
    # /healthz proves the database writable by writing this one row: taking the write lock alone would miss a
    # full disk or a read-only file system.
    db.conn.execute("CREATE TABLE health_probe (id INTEGER PRIMARY KEY CHECK (id = 1), at REAL NOT NULL)")


@migrations()
def m011_user_language(db):
    # The inbox language each user chose; '' follows the browser's Accept-Language.
    db.conn.execute("ALTER TABLE users ADD COLUMN language TEXT NOT NULL DEFAULT ''")


def apply(connection, stop_before=None):
    """Apply the migrations this sqlite3 connection's database lacks, inside the caller's transaction."""
    row_factory, connection.row_factory = connection.row_factory, sqlite3.Row  # m007 reads rows by name
    try:
        migrations.apply(Database(connection, execute_plugins=False, recursive_triggers=False),
                         stop_before=stop_before)
    finally:
        connection.row_factory = row_factory
