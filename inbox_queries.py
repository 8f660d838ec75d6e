"""The owner's inbox in SQL: users, search, the list, counts, handling, deletion and export rows."""
from datetime import datetime, timedelta

import replies
from database import STATUSES, utc_now_iso, write_transaction
from submissions import decode_submission

# A lead's notifications summed up, one word for the list and the export: pending while any waits, else sent
# when none failed, else how many of them failed.
DELIVERY_STATE = (
    "(SELECT CASE WHEN COUNT(*) = 0 THEN NULL WHEN COUNT(*) FILTER (WHERE state = 'pending') > 0 THEN 'pending'"
    " WHEN COUNT(*) FILTER (WHERE state = 'failed') = 0 THEN 'sent'"
    " WHEN COUNT(*) FILTER (WHERE state = 'failed') = COUNT(*) THEN 'failed'"
    " ELSE 'failed ' || COUNT(*) FILTER (WHERE state = 'failed') || ' of ' || COUNT(*) END"
    " FROM outbox WHERE outbox.submission_id = submissions.id AND kind = 'lead')")
DELETE_BATCH = 500


def create_user(db, email, password_hash):
    """Add an inbox user, or set a new password for an existing one; return True when the user is new."""
    with write_transaction(db):
        user = {"email": email, "password_hash": password_hash, "created_at": utc_now_iso()}
        if db.execute("UPDATE users SET password_hash = :password_hash WHERE email = :email", user).rowcount:
            return False
        db.execute("INSERT INTO users (email, password_hash, created_at) VALUES (:email, :password_hash,"
                   " :created_at)", user)
    return True


def get_user(db, email):
    row = db.execute("SELECT * FROM users WHERE email = :email", {"email": email}).mappings().first()
    return dict(row) if row else None


def set_user_language(db, email, language):
    """Keep the inbox language a user chose; '' means the browser's."""
    with write_transaction(db):
        db.execute("UPDATE users SET language = :language WHERE email = :email",
                   {"language": language, "email": email})


def search_query(db, text):
    """What the owner typed, as the store's search query ('' when nothing in it can be searched)."""
    return db.sql.search_terms(text)


def _where(db, filters, walk_by_time=False):
    """Build the WHERE clause and its parameters for the inbox's filters: q, status, form, since and before.

    walk_by_time: for a search with many matches, keep the planner from driving the query by the matches'
    ids, so it walks an index by time and keeps the matching rows instead of sorting every match.
    """
    clauses, params = [], {}
    if filters.get("q") and search_query(db, filters["q"]):
        matched_id = db.sql.unindexed("submissions.id") if walk_by_time else "submissions.id"
        clauses.append(f"{matched_id} IN ({db.sql.matching_ids()})")
        params["search"] = search_query(db, filters["q"])
    for name in ("status", "form"):
        if filters.get(name):
            clauses.append(f"submissions.{name} = :{name}")
            params[name] = filters[name]
    if filters.get("since"):
        clauses.append("submissions.received_at >= :since")
        params["since"] = filters["since"]
    if filters.get("before"):
        clauses.append("submissions.received_at < :before")
        params["before"] = filters["before"]
    return " AND ".join(clauses) or "TRUE", params


def list_submissions(db, filters, after=None, limit=50, many_matches=False):
    """Return one page of submissions, newest first, after the (received_at, id) cursor of the previous page.

    With a search that matches many rows, say many_matches=True: the page then walks the newest rows and keeps
    the matching ones, where otherwise it would fetch and sort every match.
    """
    where, params = _where(db, filters, walk_by_time=many_matches)
    if after:
        where += " AND (submissions.received_at, submissions.id) < (:after_received_at, :after_id)"
        params.update(after_received_at=after[0], after_id=after[1])
    rows = db.execute(
        f"SELECT submissions.*, {DELIVERY_STATE} AS delivery FROM submissions WHERE {where}"
        " ORDER BY submissions.received_at DESC, submissions.id DESC LIMIT :limit",
        {**params, "limit": limit},
    ).mappings()
    return [decode_submission(row) for row in rows]


def search_first_page(db, filters, limit, at_most):
    """Answer a search's first page and its counts by status with one FTS query; return (counts, capped, rows).

    The newest at_most + 1 matches, by id (ids rise with time), are read once; counts and the page come
    from them. FTS5 builds a prefix query's merge once, where a count and a page asked separately build it
    twice. Only for a search without form or date filters: those could leave a capped page short.
    """
    ids = db.execute(f"{db.sql.matching_ids(newest_first=True)} LIMIT :limit",
                     {"search": search_query(db, filters["q"]), "limit": at_most + 1}).scalars().all()
    # The counts need only each match's status; only the page's rows are read whole (and their delivery state).
    matches = db.execute("SELECT id, status FROM submissions WHERE id IN :ids ORDER BY received_at DESC, id DESC",
                         {"ids": ids}, lists=("ids",)).all()
    counts = dict.fromkeys(STATUSES, 0)
    for match in matches:
        counts[match.status] += 1
    chosen = [match.id for match in matches if not filters.get("status") or match.status == filters["status"]][:limit]
    rows = [decode_submission(row) for row in db.execute(
        f"SELECT submissions.*, {DELIVERY_STATE} AS delivery FROM submissions WHERE id IN :ids"
        " ORDER BY received_at DESC, id DESC", {"ids": chosen}, lists=("ids",)).mappings()]
    return counts, len(ids) > at_most, rows


def status_counts(db, filters, at_most=None):
    """Count the submissions matching the filters, by status.

    Without a search the counts come from the tables the triggers of m006 keep, whatever the table's size.
    A search counts its matches one by one; at_most stops after that many plus one, so a caller can say "1,000+".
    """
    counts = dict.fromkeys(STATUSES, 0)
    if filters.get("q") and search_query(db, filters["q"]):
        counts.update(_count_matches(db, filters, at_most))
        return counts
    for status, count in _kept_counts(db, filters):
        counts[status] = counts.get(status, 0) + count
    return counts


def _count_matches(db, filters, at_most):
    where, params = _where(db, {**filters, "q": ""})
    limit = "" if at_most is None else f" LIMIT {int(at_most) + 1}"
    # A join, not "id IN (...)": the matches stream from the index, so LIMIT stops the work early.
    rows = db.execute(
        f"SELECT status, COUNT(*) FROM (SELECT submissions.status FROM {db.sql.matches_joined()}"
        f" AND {where}{limit}) AS matches GROUP BY status",
        {**params, "search": search_query(db, filters["q"])})
    return dict(rows.all())


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
    kept, params = [], {}
    for name in ("status", "form"):
        if filters.get(name):
            kept.append(f"{name} = :{name}")
            params[name] = filters[name]
    since, before = filters.get("since"), filters.get("before")
    if not since and not before:
        where = " AND ".join(kept) or "TRUE"
        yield from db.execute(f"SELECT status, SUM(n) FROM inbox_totals WHERE {where} GROUP BY status",
                              params)
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
    ranges = [("quarter >= :first", first), ("quarter < :last", last)]
    where = " AND ".join(kept + [clause for clause, bound in ranges if bound]) or "TRUE"
    yield from db.execute(f"SELECT status, SUM(n) FROM inbox_quarters WHERE {where} GROUP BY status",
                          {**params, "first": first, "last": last})


def _counted_rows(db, kept, params, since, before):
    where = " AND ".join(kept + ["received_at >= :since", "received_at < :before"])
    yield from db.execute(f"SELECT status, COUNT(*) FROM submissions WHERE {where} GROUP BY status",
                          {**params, "since": since, "before": before})


def form_keys(db):
    """Return the forms that have submissions."""
    return db.execute("SELECT form FROM inbox_totals GROUP BY form HAVING SUM(n) > 0").scalars().all()


def get_submission_with_delivery(db, submission_id):
    row = db.execute(f"SELECT submissions.*, {DELIVERY_STATE} AS delivery FROM submissions WHERE id = :id",
                     {"id": submission_id}).mappings().first()
    return decode_submission(row) if row else None


def set_status(db, submission_ids, status, by):
    """Change the status of the given submissions, recording who did it and when; return how many changed."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
    at = utc_now_iso()
    if not submission_ids:
        return 0
    with write_transaction(db):
        changed = db.execute(
            "UPDATE submissions SET status = :status, status_by = :by, status_at = :at WHERE id = :id",
            [{"status": status, "by": by, "at": at, "id": submission_id} for submission_id in submission_ids],
        ).rowcount
        if status != "new":
            replies.mark_first_answer(db, submission_ids, at)
    return changed


def set_note(db, submission_id, note):
    """Save the owner's note; a note counts as acting on the lead (its reminders stop)."""
    with write_transaction(db):
        changed = db.execute("UPDATE submissions SET note = :note WHERE id = :id",
                             {"note": note, "id": submission_id}).rowcount
        if note:
            replies.mark_first_answer(db, [submission_id], utc_now_iso())
    return changed


def _delete_ids(db, submission_ids):
    ids = {"ids": list(submission_ids)}
    db.execute("DELETE FROM delivery_log WHERE outbox_id IN (SELECT id FROM outbox WHERE submission_id IN :ids)",
               ids, lists=("ids",))
    db.execute("DELETE FROM outbox WHERE submission_id IN :ids", ids, lists=("ids",))
    db.execute("DELETE FROM replies WHERE submission_id IN :ids", ids, lists=("ids",))
    return db.execute("DELETE FROM submissions WHERE id IN :ids", ids, lists=("ids",)).rowcount


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
            ids = db.execute("SELECT id FROM submissions WHERE received_at < :cutoff LIMIT :limit",
                             {"cutoff": cutoff, "limit": DELETE_BATCH}).scalars().all()
            if not ids:
                return deleted
            deleted += _delete_ids(db, ids)


def extra_field_names(db, filters):
    """Return the union of the matching submissions' extra field names, in first-seen order."""
    where, params = _where(db, filters)
    return db.execute(db.sql.extra_field_names(where), params).scalars().all()


# OWASP's CSV-injection rule: a spreadsheet reads a cell starting with one of these as a formula, so it gets a
# leading '. A leading ' is escaped too, so the rule reads back exactly: drop the first ' of a cell that has one.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\0", "'")
EXPORT_COLUMNS = ("id", "form", "status", "received_at", "name", "email", "phone", "subject", "message", "page",
                  "language", "reply_to", "mail_subject", "ip", "user_agent", "spam_reason", "note", "status_by",
                  "status_at")


def iter_export_rows(db, filters, extra_names):
    """Yield one tuple per matching submission, oldest first, for a spreadsheet.

    The cells are EXPORT_COLUMNS with the extra fields named after "message", then the delivery state and
    first_answer_at (raw: the caller turns it into working hours), every
    text cell made safe by OWASP's rule; received_at stays the stored UTC text. A last cell holds the extra
    fields' JSON when one of them has a NUL, which SQLite cannot extract; it is None otherwise.
    """
    where, params = _where(db, filters)
    cells = [name if name in ("id", "received_at") else
             db.sql.prefixed_when_first_char(f"submissions.{name}", FORMULA_STARTS) for name in EXPORT_COLUMNS]
    for place, name in enumerate(extra_names, start=EXPORT_COLUMNS.index("message") + 1):
        expression, params[f"extra_{place}"] = db.sql.extra_value(name, f"extra_{place}")
        cells.insert(place, db.sql.prefixed_when_first_char(expression, FORMULA_STARTS))
    cells.append(f"coalesce(nullif({DELIVERY_STATE}, ''),"
                 " CASE WHEN submissions.status = 'spam' THEN 'not sent (spam)' ELSE '' END)")
    cells.append("submissions.first_answer_at")  # turned into working hours by the caller
    # Rows whose extra fields the store's JSON functions cannot read whole also bring their JSON, for Python.
    cells.append(db.sql.extra_with_nul())
    yield from db.execute(f"SELECT {', '.join(cells)} FROM submissions WHERE {where} ORDER BY received_at, id",
                          params)


def open_callbacks(db, limit=50):
    """Callback requests not yet done, by when their slot begins."""
    return [dict(row) for row in db.execute(
        "SELECT id, name, phone, callback_day, callback_slot, callback_at, status FROM submissions"
        # Not by the status index, which would walk every new lead: only callbacks have a callback_at.
        f" WHERE callback_at > '' AND {db.sql.unindexed('status')} IN ('new', 'in_progress')"
        " ORDER BY callback_at, id LIMIT :limit", {"limit": limit}).mappings()]


def iter_submissions(db, filters):
    """Yield every matching submission, oldest first, with its delivery state, one row at a time."""
    where, params = _where(db, filters)
    rows = db.execute(
        f"SELECT submissions.*, {DELIVERY_STATE} AS delivery FROM submissions WHERE {where}"
        " ORDER BY received_at, id", params).mappings()
    for row in rows:
        yield decode_submission(row)
