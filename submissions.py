"""The durable write path of a submission: one transaction with its outbox rows, shared by group commit."""
import json
import os
import queue
import threading
import time
from dataclasses import dataclass

import sqlalchemy

import outbox
import schema
from database import (CALLBACK_COLUMNS, CORE_FIELDS, StorageUnavailable, driver_error, file_identity, is_storage_down,
                      open_existing, utc_now_iso, write_transaction)


def init_app(app):
    """Prepare the group commit that every request's submission goes through."""
    app.extensions["postbox.writer"] = SubmissionWriter(app.config["DATABASE"], app.config["STORE_TIMEOUT"])


def save_submission(db, submission, notifications=()):
    """Store a submission and its notifications (none for spam) in one transaction."""
    with write_transaction(db):
        return _insert_submission(db, submission, notifications)


def _insert_submission(db, submission, notifications):
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
    # A callback request's day, slot and the moment the slot begins (the follow-up's columns).
    row.update({name: submission[name] for name in CALLBACK_COLUMNS if submission.get(name)})
    columns = ", ".join(row)
    placeholders = ", ".join(f":{name}" for name in row)
    submission_id = db.execute(f"INSERT INTO submissions ({columns}) VALUES ({placeholders}) RETURNING id",
                               row).scalar_one()
    outbox.queue(db, submission_id, notifications, time.time())
    return submission_id


# A repeat of a named submission (the hosted form's _token, an Idempotency-Key) within this time is the same one.
IDEMPOTENCY_SECONDS = 24 * 3600
DUPLICATE_REASON = "same message from the same address minutes ago"


@dataclass(frozen=True)
class Saved:
    """What became of a submission: its id, and whether it is the first one's repeat or kept as spam."""

    id: int
    status: str = "new"
    spam_reason: str = ""
    repeated: bool = False


def store_once(db, record, notifications=(), key=None, duplicate_since=None, now=None):
    """Store a submission inside the caller's write transaction, unless its key or its text was seen before.

    key: (form, client key) naming the submission; a repeat within a day gives back the first one.
    duplicate_since: the ISO time from which the same message from the same address is spam (None: no check).
    Both are read in the transaction that writes, so two identical posts at once cannot both pass.
    """
    now = time.time() if now is None else now
    if key is not None:
        first_id = db.execute("SELECT submission_id FROM idempotency_keys WHERE form = :form AND key = :key"
                              " AND created_at >= :since",
                              {"form": key[0], "key": key[1], "since": now - IDEMPOTENCY_SECONDS}).scalar()
        if first_id is not None:
            return Saved(first_id, repeated=True)
    if (duplicate_since and (record.get("status") or "new") == "new"
            and recent_duplicate(db, record["form"], record.get("email") or "", record.get("message") or "",
                                 duplicate_since)):
        record = {**record, "status": "spam", "spam_reason": DUPLICATE_REASON}
        notifications = ()
    submission_id = _insert_submission(db, record, notifications)
    if key is not None:
        # A key older than a day names a new submission: the row is taken over.
        db.execute("INSERT INTO idempotency_keys (form, key, submission_id, created_at)"
                   " VALUES (:form, :key, :submission_id, :now) ON CONFLICT (form, key)"
                   " DO UPDATE SET submission_id = excluded.submission_id, created_at = excluded.created_at",
                   {"form": key[0], "key": key[1], "submission_id": submission_id, "now": now})
    return Saved(submission_id, record.get("status") or "new", record.get("spam_reason") or "")


def forget_old_keys(db, now):
    db.execute("DELETE FROM idempotency_keys WHERE created_at < :before", {"before": now - IDEMPOTENCY_SECONDS})


class _PendingSave:
    """One request's submission on its way through the writer, and the hand-over of its outcome.

    The request stops waiting at its deadline only while the writer has not claimed the submission: once
    claimed (inside a transaction that holds the write lock), the outcome comes within a commit's time.
    """

    def __init__(self, record, notifications, key, duplicate_since, deadline):
        self.record = record
        self.notifications = notifications
        self.key = key
        self.duplicate_since = duplicate_since
        self.deadline = deadline
        self.done = threading.Event()
        self.saved = None
        self.error = None
        self._state = threading.Lock()
        self._claimed = False
        self._abandoned = False

    def claim(self):
        """Writer: take the submission into the transaction, unless its request has given up on it."""
        with self._state:
            self._claimed = not self._abandoned
            return self._claimed

    def abandon(self):
        """Request: give up on the submission, if the writer has not taken it yet."""
        with self._state:
            self._abandoned = not self._claimed
            return self._abandoned

    def finish(self, saved=None, error=None):
        self.saved, self.error = saved, error
        self.done.set()


class SubmissionWriter:
    """Group commit: concurrent requests' submissions share one transaction, and so one fsync.

    With synchronous=FULL every commit waits for the disk; committed one by one, requests queue behind each
    other's fsync. Here a writer thread commits whatever is waiting as one transaction, and each request is
    answered only after the commit that holds its row: as durable as before, many per fsync.

    Every wait is bounded by `timeout` seconds: a lock held elsewhere, a full disk or a read-only file fails
    the whole batch at once with StorageUnavailable, and nothing of it is stored. The database file's identity
    is checked after each commit: rows committed into a file that was removed or replaced are never acknowledged.
    """

    MAX_BATCH = 200

    def __init__(self, path, timeout=5.0, clock=time.monotonic):
        self.path = path
        self.timeout = timeout
        self.clock = clock
        self.identity = file_identity(path)
        self.queue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.running_in = None  # the process id the writer thread runs in; None once it has ended

    def save(self, record, notifications=(), key=None, duplicate_since=None):
        """Store the submission (and its outbox rows) durably; return its Saved outcome once committed.

        Raises StorageUnavailable when that cannot happen within the timeout; then nothing of it is stored.
        """
        self._ensure_running()
        pending = _PendingSave(record, notifications, key, duplicate_since, self.clock() + self.timeout)
        self.queue.put(pending)
        if not pending.done.wait(self.timeout) and pending.abandon():
            raise StorageUnavailable(f"not stored within {self.timeout:g} s")
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.saved

    def _ensure_running(self):
        # A forked process (a gunicorn worker) inherits the object but not the thread. Never Thread.is_alive()
        # here: under gevent it yields to the event loop, and with this lock held across that yield, requests
        # queued on the lock were overtaken by newer ones again and again (p99 of seconds under load).
        if self.running_in == os.getpid():
            return
        with self.lock:
            if self.running_in != os.getpid():
                self.running_in = os.getpid()
                threading.Thread(target=self._run, name="postbox-writer", daemon=True).start()

    def _run(self):
        db = None
        try:
            while True:
                batch = self._next_batch()
                try:
                    db = db or self._open()
                    self._commit(db, batch)
                except Exception as error:  # e.g. locked, full, read-only, removed: every waiter gets the error
                    if isinstance(error, sqlalchemy.exc.DBAPIError) and is_storage_down(error):
                        error = StorageUnavailable(str(driver_error(error)))
                    for item in batch:
                        if not item.done.is_set():
                            item.finish(error=error)
                    if db is not None:
                        db.close()
                    db = None  # reopened for the next batch: the lock, the disk or the permissions may be back
        finally:
            self.running_in = None  # ended (it should not): the next save starts another

    def _next_batch(self):
        batch = [self.queue.get()]
        while len(batch) < self.MAX_BATCH:
            try:
                batch.append(self.queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _open(self):
        self._check_file()
        return open_existing(self.path)

    def _check_file(self):
        if file_identity(self.path) != self.identity:
            raise StorageUnavailable(f"the database file {self.path} was removed or replaced while Postbox ran;"
                                     " no submission is acknowledged until Postbox is restarted")

    def _commit(self, db, batch):
        deadline = min(item.deadline for item in batch)
        now = time.time()
        try:
            with write_transaction(db, deadline, self.clock):
                claimed = [item for item in batch if item.claim()]
                outcomes = [store_once(db, item.record, item.notifications, item.key, item.duplicate_since, now)
                            for item in claimed]
                forget_old_keys(db, now)
        except sqlalchemy.exc.DBAPIError as error:
            if is_storage_down(error):
                raise
            # One bad row must not fail its neighbours: commit each alone and report each its own outcome.
            self._commit_one_by_one(db, [item for item in batch if item.claim()], now)
            return
        self._check_file()
        for item, saved in zip(claimed, outcomes):
            item.finish(saved)

    def _commit_one_by_one(self, db, items, now):
        for item in items:
            try:
                with write_transaction(db, item.deadline, self.clock):
                    saved = store_once(db, item.record, item.notifications, item.key, item.duplicate_since, now)
            except sqlalchemy.exc.DBAPIError as error:
                if is_storage_down(error):
                    raise
                item.finish(error=error)  # handed to the waiting request, which answers for it
                continue
            self._check_file()
            item.finish(saved)


# Its columns named, as a Core select: SQLAlchemy keeps the map of a result's columns with the compiled
# statement, where for "SELECT *" text it builds it again at every run (18 against 33 µs, per message sent).
# PostgreSQL's search vector is the store's own index, never part of a submission.
_SUBMISSION_BY_ID = sqlalchemy.select(
    *(column for column in schema.submissions.c if column.name != "search_vector")
).where(schema.submissions.c.id == sqlalchemy.bindparam("id"))


def get_submission(db, submission_id):
    row = db.execute(_SUBMISSION_BY_ID, {"id": submission_id}).mappings().first()
    return decode_submission(row) if row else None


def decode_submission(row):
    """Turn a submissions row into a dict with its extra fields as an ordered dict."""
    submission = dict(row)
    submission["extra"] = json.loads(submission.get("extra") or "{}")
    return submission


def recent_duplicate(db, form, email, message, since_iso):
    """Tell whether the same sender sent the same message to the same form since the given time."""
    row = db.execute(
        "SELECT 1 FROM submissions WHERE form = :form AND email = :email AND message = :message"
        " AND received_at >= :since LIMIT 1",
        {"form": form, "email": email, "message": message, "since": since_iso},
    ).first()
    return row is not None
