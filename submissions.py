"""The durable write path of a submission: one transaction with its outbox rows, shared by group commit."""
import json
import queue
import threading
import time

import outbox
from database import CALLBACK_COLUMNS, CORE_FIELDS, open_db, utc_now_iso, write_transaction


def init_app(app):
    """Prepare the group commit that every request's submission goes through."""
    app.extensions["postbox.writer"] = SubmissionWriter(app.config["DATABASE"])


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
    placeholders = ", ".join("?" for _ in row)
    cursor = db.conn.execute(f"INSERT INTO submissions ({columns}) VALUES ({placeholders})", list(row.values()))
    outbox.queue(db, cursor.lastrowid, notifications, time.time())
    return cursor.lastrowid


class _PendingSave:
    def __init__(self, submission, notifications):
        self.submission = submission
        self.notifications = notifications
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

    def save(self, submission, notifications=()):
        """Store the submission (and its outbox rows) durably; return its id once committed."""
        self._ensure_running()
        pending = _PendingSave(submission, notifications)
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
                ids = [_insert_submission(db, item.submission, item.notifications) for item in batch]
        except Exception:
            # One bad row must not fail its neighbours: commit each alone and report each its own outcome.
            for item in batch:
                try:
                    item.submission_id = save_submission(db, item.submission, item.notifications)
                except Exception as error:  # handed to the waiting request, which answers for it
                    item.error = error
                item.done.set()
            return
        for item, submission_id in zip(batch, ids):
            item.submission_id = submission_id
            item.done.set()


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
