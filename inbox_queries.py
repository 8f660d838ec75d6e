"""The owner's inbox in SQL: users, search, the list, counts, handling, deletion and export rows."""
import re
from datetime import datetime, timedelta

import replies
from database import STATUSES, utc_now_iso, write_transaction
from submissions import decode_submission

# A lead's notifications summed up, one word for the list and the export: pending while any waits, else sent
# when none failed, else how many of them failed.
DELIVERY_STATE = (
    "(SELECT CASE WHEN COUNT(*) = 0 THEN NULL WHEN SUM(state = 'pending') THEN 'pending'"
    " WHEN SUM(state = 'failed') = 0 THEN 'sent' WHEN SUM(state = 'failed') = COUNT(*) THEN 'failed'"
    " ELSE 'failed ' || SUM(state = 'failed') || ' of ' || COUNT(*) END"
    " FROM outbox WHERE outbox.submission_id = submissions.id AND kind = 'lead')")
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


UNSEARCHABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def set_user_language(db, email, language):
    """Keep the inbox language a user chose; '' means the browser's."""
    with write_transaction(db):
        db.conn.execute("UPDATE users SET language = ? WHERE email = ?", [language, email])


def search_query(text):
    """Turn what the owner typed into an FTS5 query: every word must match, as a prefix; no FTS syntax errors."""
    # FTS5 reads a NUL as the end of the query and a control character or lone surrogate as a syntax error.
    words = [word.replace('"', '""') for word in UNSEARCHABLE.sub(" ", str(text or "")).split()]
    return " ".join(f'"{word}"*' for word in words)


def _where(filters, walk_by_time=False):
    """Build the WHERE clause for the inbox's filters: q, status, form, since and before (UTC ISO bounds).

    walk_by_time: for a search with many matches, the unary + keeps SQLite from driving the query by the
    matches' ids, so it walks an index by time and keeps the matching rows instead of sorting every match.
    """
    clauses, params = [], []
    if filters.get("q") and search_query(filters["q"]):
        match = "submissions.id IN (SELECT rowid FROM submissions_fts WHERE submissions_fts MATCH ?)"
        clauses.append(f"+{match}" if walk_by_time else match)
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
    where, params = _where(filters, walk_by_time=many_matches)
    if after:
        where += " AND (submissions.received_at, submissions.id) < (?, ?)"
        params += [after[0], after[1]]
    rows = db.conn.execute(
        f"SELECT submissions.*, {DELIVERY_STATE} AS delivery FROM submissions WHERE {where}"
        " ORDER BY submissions.received_at DESC, submissions.id DESC LIMIT ?",
        [*params, limit],
    )
    return [decode_submission(row) for row in rows]


def search_first_page(db, filters, limit, at_most):
    """Answer a search's first page and its counts by status with one FTS query; return (counts, capped, rows).

    The newest at_most + 1 matches, by rowid (ids rise with time), are read once; counts and the page come
    from them. FTS5 builds a prefix query's merge once, where a count and a page asked separately build it
    twice. Only for a search without form or date filters: those could leave a capped page short.
    """
    ids = [row[0] for row in db.conn.execute(
        "SELECT rowid FROM submissions_fts WHERE submissions_fts MATCH ? ORDER BY rowid DESC LIMIT ?",
        [search_query(filters["q"]), at_most + 1])]
    # The counts need only each match's status; only the page's rows are read whole (and their delivery state).
    marks = ", ".join("?" for _ in ids) or "NULL"
    matches = db.conn.execute(f"SELECT id, status FROM submissions WHERE id IN ({marks})"
                              " ORDER BY received_at DESC, id DESC", ids).fetchall()
    counts = dict.fromkeys(STATUSES, 0)
    for match in matches:
        counts[match["status"]] += 1
    chosen = [match["id"] for match in matches
              if not filters.get("status") or match["status"] == filters["status"]][:limit]
    marks = ", ".join("?" for _ in chosen) or "NULL"
    rows = [decode_submission(row) for row in db.conn.execute(
        f"SELECT submissions.*, {DELIVERY_STATE} AS delivery FROM submissions WHERE id IN ({marks})"
        " ORDER BY received_at DESC, id DESC", chosen)]
    return counts, len(ids) > at_most, rows


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
    at = utc_now_iso()
    with write_transaction(db):
        cursor = db.conn.executemany(
            "UPDATE submissions SET status = ?, status_by = ?, status_at = ? WHERE id = ?",
            [(status, by, at, submission_id) for submission_id in submission_ids],
        )
        changed = cursor.rowcount
        if status != "new":
            replies.mark_first_answer(db, submission_ids, at)
    return changed


def set_note(db, submission_id, note):
    """Save the owner's note; a note counts as acting on the lead (its reminders stop)."""
    with write_transaction(db):
        changed = db.conn.execute("UPDATE submissions SET note = ? WHERE id = ?", [note, submission_id]).rowcount
        if note:
            replies.mark_first_answer(db, [submission_id], utc_now_iso())
    return changed


def _delete_ids(db, submission_ids):
    marks = ", ".join("?" for _ in submission_ids)
    db.conn.execute(f"DELETE FROM delivery_log WHERE outbox_id IN"
                    f" (SELECT id FROM outbox WHERE submission_id IN ({marks}))", submission_ids)
    db.conn.execute(f"DELETE FROM outbox WHERE submission_id IN ({marks})", submission_ids)
    db.conn.execute(f"DELETE FROM replies WHERE submission_id IN ({marks})", submission_ids)
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

    The cells are EXPORT_COLUMNS with the extra fields named after "message", then the delivery state and
    first_answer_at (raw: the caller turns it into working hours), every
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
    cells.append("submissions.first_answer_at")  # turned into working hours by the caller
    # SQLite's JSON functions cut a value at a NUL: such rows also bring their extra fields' JSON, for Python.
    cells.append("CASE WHEN instr(submissions.extra, '\\u0000') THEN submissions.extra END")
    cursor = db.conn.cursor()
    cursor.row_factory = None  # plain tuples: a million sqlite3.Row objects cost more than the query
    yield from cursor.execute(f"SELECT {', '.join(cells)} FROM submissions WHERE {where}"
                              " ORDER BY received_at, id", [*cell_params, *params])


def open_callbacks(db, limit=50):
    """Callback requests not yet done, by when their slot begins."""
    return [dict(row) for row in db.conn.execute(
        "SELECT id, name, phone, callback_day, callback_slot, callback_at, status FROM submissions"
        # The unary + keeps SQLite from walking every new lead by status: only callbacks have a callback_at.
        " WHERE callback_at > '' AND +status IN ('new', 'in_progress') ORDER BY callback_at, id LIMIT ?",
        [limit])]


def iter_submissions(db, filters):
    """Yield every matching submission, oldest first, with its delivery state, one row at a time."""
    where, params = _where(filters)
    rows = db.conn.execute(
        f"SELECT submissions.*, {DELIVERY_STATE} AS delivery FROM submissions WHERE {where}"
        " ORDER BY received_at, id", params)
    for row in rows:
        yield decode_submission(row)
