"""The schema as SQLAlchemy tables: what PostgreSQL is created from, and what `copy-to` copies, table by table.

SQLite's files are built by their own migrations (they predate this module, and existing installations carry
their history); tests/test_schema.py compares the two, column by column, so they cannot drift.
"""
from sqlalchemy import (BigInteger, CheckConstraint, Column, Computed, Double, ForeignKey, Identity, Index,
                        Integer, MetaData, Table, Text, text)
from sqlalchemy.dialects.postgresql import TSVECTOR

metadata = MetaData()


def _id():
    return Column("id", BigInteger, Identity(), primary_key=True)


SEARCHED_FIELDS = ("form", "name", "email", "phone", "subject", "message", "extra", "reply_to", "mail_subject",
                   "page", "note", "spam_reason")
# PostgreSQL's search: one tsvector of every searched field, kept by the database itself (a stored generated
# column), read through a GIN index. 'postbox_search' is 'simple' (no stemming: five languages) with unaccent.
# Punctuation splits words, as SQLite's unicode61 tokenizer does: PostgreSQL's parser would keep an address
# (anna@example.ru) or a host name as one lexeme, which a search for "example" could not find.
SEARCH_WORDS = "regexp_replace({}, '[[:punct:]]+', ' ', 'g')"
SEARCH_DOCUMENT = "to_tsvector('postbox_search'::regconfig, {})".format(SEARCH_WORDS.format(
    " || ' ' || ".join(f"coalesce({name}, '')" for name in SEARCHED_FIELDS)))

submissions = Table(
    "submissions", metadata, _id(),
    Column("form", Text, nullable=False), Column("received_at", Text, nullable=False),
    *(Column(name, Text) for name in ("name", "email", "phone", "subject", "message")),
    Column("extra", Text, server_default="{}"),
    *(Column(name, Text) for name in ("reply_to", "mail_subject", "page", "ip", "user_agent", "language")),
    Column("status", Text, nullable=False, server_default="new"),
    *(Column(name, Text) for name in ("spam_reason", "note", "status_by", "status_at", "first_answer_at")),
    Column("reminders_sent", Integer, nullable=False, server_default="0"),
    *(Column(name, Text) for name in ("callback_day", "callback_slot", "callback_at")),
    Column("callback_reminded", Integer, nullable=False, server_default="0"),
    Column("search_vector", TSVECTOR, Computed(text(SEARCH_DOCUMENT), persisted=True)),
    Index("idx_submissions_received_at", "received_at"),
    Index("idx_submissions_status_received_at", "status", "received_at"),
    Index("idx_submissions_form_received_at", "form", "received_at"),
    Index("idx_submissions_received_at_status", "received_at", "status"),
    Index("idx_submissions_email_received_at", "email", "received_at"),
    Index("idx_submissions_callback_at", "callback_at"),
    Index("idx_submissions_search_vector", "search_vector", postgresql_using="gin"),
)

replies = Table(
    "replies", metadata, _id(),
    Column("submission_id", BigInteger, ForeignKey("submissions.id"), nullable=False),
    Column("author", Text), Column("body", Text, nullable=False), Column("created_at", Text, nullable=False),
    Column("message_id", Text),
    Index("idx_replies_submission_id", "submission_id"),
)

digests = Table(
    "digests", metadata, _id(),
    Column("day", Text, nullable=False), Column("created_at", Text, nullable=False),
    Column("new_leads", Integer), Column("unanswered", Integer), Column("oldest_id", BigInteger),
    Index("idx_digests_day", "day", unique=True),
)

outbox = Table(
    "outbox", metadata, _id(),
    Column("submission_id", BigInteger, ForeignKey("submissions.id"), nullable=False),
    Column("kind", Text, nullable=False), Column("message_id", Text, nullable=False),
    Column("state", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, server_default="0"),
    Column("created_at", Double), Column("next_attempt_at", Double),
    Column("lease_until", Double, server_default="0"),
    Column("claimant", Text), Column("last_error", Text), Column("sent_at", Double),
    Column("channel", Text, nullable=False, server_default="email"),
    Column("target", Text, nullable=False, server_default=""),
    Column("lease_token", Text), Column("reply", Text),
    Column("reply_id", BigInteger, ForeignKey("replies.id")),
    Column("digest_id", BigInteger, ForeignKey("digests.id")),
    Index("idx_outbox_state_next_attempt_at", "state", "next_attempt_at"),
    Index("idx_outbox_submission_id", "submission_id"),
    Index("idx_outbox_submission_id_kind_id_state", "submission_id", "kind", "id", "state"),
    Index("idx_outbox_channel_target_state", "channel", "target", "state"),
    Index("idx_outbox_kind_target_created_at", "kind", "target", "created_at"),
    Index("idx_outbox_waiting", "channel", "kind", "created_at", sqlite_where=text("state = 'pending'"),
          postgresql_where=text("state = 'pending'")),
)

delivery_log = Table(
    "delivery_log", metadata, _id(),
    Column("outbox_id", BigInteger, ForeignKey("outbox.id")),
    Column("at", Double), Column("outcome", Text), Column("detail", Text),
    Index("idx_delivery_log_outbox_id", "outbox_id"),
)

users = Table(
    "users", metadata, _id(),
    Column("email", Text, nullable=False), Column("password_hash", Text, nullable=False),
    Column("created_at", Text, nullable=False), Column("language", Text, nullable=False, server_default=""),
    Index("idx_users_email", "email", unique=True),
)

inbox_totals = Table(
    "inbox_totals", metadata,
    Column("form", Text, primary_key=True), Column("status", Text, primary_key=True),
    Column("n", BigInteger, nullable=False),
)

inbox_quarters = Table(
    "inbox_quarters", metadata,
    Column("quarter", Text, primary_key=True), Column("form", Text, primary_key=True),
    Column("status", Text, primary_key=True), Column("n", BigInteger, nullable=False),
)

delivery_targets = Table(
    "delivery_targets", metadata,
    Column("channel", Text, primary_key=True), Column("target", Text, primary_key=True),
    Column("paused_until", Double, nullable=False, server_default="0"),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("last_attempt_at", Double), Column("last_ok_at", Double), Column("last_error", Text),
    Column("last_error_at", Double), Column("off_at", Double),
)

idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("form", Text, primary_key=True), Column("key", Text, primary_key=True),
    Column("submission_id", BigInteger, ForeignKey("submissions.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Double, nullable=False),
    Index("idx_idempotency_keys_created_at", "created_at"),
    Index("idx_idempotency_keys_submission_id", "submission_id"),
)

health_probe = Table(
    "health_probe", metadata,
    Column("id", Integer, CheckConstraint("id = 1"), primary_key=True, autoincrement=False),
    Column("at", Double, nullable=False),
)

# A submission's quarter hour of UTC received_at, as text ("2026-02-20T01:30"), as SQLite's QUARTER_OF.
PG_QUARTER_OF = "substr({row}.received_at, 1, 14) || lpad((substr({row}.received_at, 15, 2)::int / 15 * 15)::text, 2, '0')"

# What PostgreSQL needs beyond the tables: the search configuration (before the tables: the generated column
# names it), and the triggers that keep the inbox's counts, as migration m006 does on SQLite.
POSTGRESQL_BEFORE_TABLES = (
    "CREATE EXTENSION IF NOT EXISTS unaccent",
    "CREATE TEXT SEARCH CONFIGURATION postbox_search (COPY = simple)",
    "ALTER TEXT SEARCH CONFIGURATION postbox_search ALTER MAPPING FOR hword, hword_part, word WITH unaccent, simple",
)
POSTGRESQL_AFTER_TABLES = (
    f"""CREATE FUNCTION postbox_count_submissions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE inbox_totals SET n = n - 1 WHERE form = OLD.form AND status = OLD.status;
        UPDATE inbox_quarters SET n = n - 1
            WHERE quarter = {PG_QUARTER_OF.format(row='OLD')} AND form = OLD.form AND status = OLD.status;
        DELETE FROM inbox_quarters
            WHERE quarter = {PG_QUARTER_OF.format(row='OLD')} AND form = OLD.form AND status = OLD.status AND n = 0;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO inbox_totals (form, status, n) VALUES (NEW.form, NEW.status, 1)
            ON CONFLICT (form, status) DO UPDATE SET n = inbox_totals.n + 1;
        INSERT INTO inbox_quarters (quarter, form, status, n)
            VALUES ({PG_QUARTER_OF.format(row='NEW')}, NEW.form, NEW.status, 1)
            ON CONFLICT (quarter, form, status) DO UPDATE SET n = inbox_quarters.n + 1;
    END IF;
    RETURN NULL;
END $$""",
    "CREATE TRIGGER inbox_counts_insert_delete AFTER INSERT OR DELETE ON submissions"
    " FOR EACH ROW EXECUTE FUNCTION postbox_count_submissions()",
    "CREATE TRIGGER inbox_counts_update AFTER UPDATE OF form, status, received_at ON submissions FOR EACH ROW"
    " WHEN (OLD.form IS DISTINCT FROM NEW.form OR OLD.status IS DISTINCT FROM NEW.status"
    " OR OLD.received_at IS DISTINCT FROM NEW.received_at) EXECUTE FUNCTION postbox_count_submissions()",
)

# The inbox's counts, derived from submissions: what the triggers keep, computed at once (after a bulk copy).
DERIVED_TABLES = ("inbox_totals", "inbox_quarters")
POSTGRESQL_REBUILD_COUNTS = (
    "DELETE FROM inbox_quarters",
    "DELETE FROM inbox_totals",
    f"INSERT INTO inbox_quarters (quarter, form, status, n) SELECT {PG_QUARTER_OF.format(row='submissions')},"
    " form, status, count(*) FROM submissions GROUP BY 1, 2, 3",
    "INSERT INTO inbox_totals (form, status, n) SELECT form, status, sum(n) FROM inbox_quarters GROUP BY 1, 2",
)


def create_postgresql(connection):
    """Create the whole schema in an empty PostgreSQL database, inside the caller's transaction."""
    for statement in POSTGRESQL_BEFORE_TABLES:
        connection.exec_driver_sql(statement)
    metadata.create_all(connection)
    for statement in POSTGRESQL_AFTER_TABLES:
        connection.exec_driver_sql(statement)
