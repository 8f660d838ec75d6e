"""The outbox engine: queueing notifications, claiming them under fenced leases, recording each outcome as
soon as it is known, and the delivery worker that runs it.

Every notification is one row per channel target. A worker claims a batch with a lease and a token; before
each message it makes sure the lease outlasts that message's worst case, extending it when it would not (a
worker whose lease was taken finds out there and sends nothing more), and right after the other side answers
it commits the outcome, so a killed worker repeats at most the one message it had in flight. On SQLite that
commit goes to the delivery's own journal, and reaches the outbox a batch at a time (outcome_journal.py).
"""
import logging
import os
import random
import socket
import threading
import time
import uuid
from contextlib import ExitStack

from channels import CHANNELS
from channels.base import ChannelDown, Permanent, Retry, TargetOff
from config import ConfigError, form_for_key
from database import file_identity, open_existing, write_transaction
import delivery_process
import followup
import outcome_journal
import replies
import submissions
import upkeep

log = logging.getLogger("postbox.delivery")
DETAIL_LENGTH = 500
PAUSE_MAX_SECONDS = 300


def check_lease(config):
    """Refuse a lease too short for one message's worst case: a send outliving its lease could be repeated."""
    forms = config["FORM_DEFINITIONS"].values()
    worst = {name: channel.worst_case_seconds(config) for name, channel in CHANNELS.items()
             if any(channel(config).targets(form) for form in forms)}
    name, seconds = max(worst.items(), key=lambda item: item[1])
    if seconds >= config["LEASE_SECONDS"]:
        terms = {"email": "POSTBOX_SMTP_TIMEOUT × 8 + POSTBOX_SMTP_DATA_TIMEOUT",
                 "webhook": "POSTBOX_WEBHOOK_TIMEOUT × 4", "notify": "POSTBOX_NOTIFY_TIMEOUT × 6"}
        raise ConfigError("LEASE_SECONDS", f"must be longer than one {name} message's worst case, {seconds:g} s"
                                           f" ({terms.get(name, name)}), got {config['LEASE_SECONDS']:g}")


# --- Queueing -----------------------------------------------------------------------------------------------

def notifications_for(config, form, kind="lead", channels=None):
    """Return one notification per target of every channel the form uses (or of the named `channels`).

    A channel's targets share one message id: it is one message (one email to two owners, one event to
    two webhooks), and each target's copy keeps that id across every retry.
    """
    notifications = []
    for name, channel_class in CHANNELS.items():
        if channels is not None and name not in channels:
            continue
        channel = channel_class(config)
        targets = channel.targets(form)
        message_id = channel.new_message_id() if targets else ""
        notifications += [{"kind": kind, "channel": name, "target": target, "message_id": message_id}
                          for target in targets]
    return notifications


AUTOREPLY_EVERY_SECONDS = 24 * 3600
# Whether the row's target was turned off (a 410 from a webhook, say): its row is stored 'off', not sent.
TURNED_OFF = ("EXISTS (SELECT 1 FROM delivery_targets WHERE channel = :channel AND target = :target"
              " AND off_at IS NOT NULL)")


def queue(db, submission_id, notifications, now):
    """Insert a submission's outbox rows, inside the caller's transaction; a target turned off gets 'off'.

    An autoreply to an address that had one in the last 24 hours is left out. Checked here, inside the
    transaction that stores the submission, two posts at the same moment still give one autoreply.
    """
    rows = [{"reply_id": None, "digest_id": None, **notification, "submission_id": submission_id, "now": now}
            for notification in notifications
            if notification["kind"] != "autoreply" or not _autoreplied_recently(db, notification["target"], now)]
    if rows:
        db.execute(
            "INSERT INTO outbox (submission_id, kind, channel, target, message_id, state, created_at, next_attempt_at,"
            " last_error, reply_id, digest_id) VALUES (:submission_id, :kind, :channel, :target, :message_id,"
            f" CASE WHEN {TURNED_OFF} THEN 'off' ELSE 'pending' END, :now, :now,"
            f" CASE WHEN {TURNED_OFF} THEN 'this target was turned off' END, :reply_id, :digest_id)", rows)


def _autoreplied_recently(db, address, now):
    row = db.execute("SELECT 1 FROM outbox WHERE kind = 'autoreply' AND target = :address AND created_at > :since"
                     " LIMIT 1", {"address": address, "since": now - AUTOREPLY_EVERY_SECONDS}).first()
    return row is not None


# --- Claims and leases --------------------------------------------------------------------------------------

def claim(db, claimant, now, lease_seconds, limit):
    """Lease up to `limit` due messages of channels that are not paused; return (token, rows)."""
    token = uuid.uuid4().hex
    with write_transaction(db):
        rows = db.execute(
            "UPDATE outbox SET lease_until = :until, claimant = :claimant, lease_token = :token WHERE id IN ("
            " SELECT outbox.id FROM outbox LEFT JOIN delivery_targets AS connection"
            " ON connection.channel = outbox.channel AND connection.target = ''"
            " WHERE outbox.state = 'pending' AND outbox.next_attempt_at <= :now AND outbox.lease_until <= :now"
            " AND coalesce(connection.paused_until, 0) <= :now ORDER BY outbox.next_attempt_at LIMIT :limit"
            f"{db.sql.skip_locked('outbox')}) RETURNING *",
            {"until": now + lease_seconds, "claimant": claimant, "token": token, "now": now, "limit": limit},
        ).mappings().all()
    return token, sorted((dict(row) for row in rows), key=lambda row: (row["next_attempt_at"], row["id"]))


def renew(db, row, token, until):
    """Extend one claimed message's lease before sending it; False when another worker holds it now."""
    with write_transaction(db):
        renewed = db.execute("UPDATE outbox SET lease_until = :until WHERE id = :id AND lease_token = :token"
                             " AND state = 'pending'", {"until": until, "id": row["id"], "token": token}).rowcount
    return renewed == 1


def release(db, outbox_ids, token):
    """Give back claimed messages untouched and due now, for the next worker."""
    with write_transaction(db):
        db.execute("UPDATE outbox SET lease_until = 0, claimant = NULL, lease_token = NULL"
                   " WHERE id = :id AND lease_token = :token", [{"id": outbox_id, "token": token}
                                                                for outbox_id in outbox_ids])


# --- Outcomes -------------------------------------------------------------------------------------------------

_OUTCOMES = {
    "sent": "state = 'sent', sent_at = :now, reply = :detail, last_error = NULL",
    "retry": "next_attempt_at = :next_attempt_at, last_error = :detail",
    "failed": "state = 'failed', last_error = :detail",
    "off": "state = 'off', last_error = :detail",
}


def record(db, row, token, outcome, now, detail, next_attempt_at=None):
    """Commit one message's outcome, if this worker still holds its lease; return whether it was recorded."""
    with write_transaction(db):
        return _apply(db, row, token, outcome, now, detail, next_attempt_at)


def _apply(db, row, token, outcome, now, detail, next_attempt_at=None):
    """Write one message's outcome inside the caller's transaction, if its lease is still held under `token`."""
    params = {"id": row["id"], "token": token, "now": now, "detail": detail[:DETAIL_LENGTH],
              "next_attempt_at": next_attempt_at, "outcome": outcome}
    updated = db.execute(
        f"UPDATE outbox SET {_OUTCOMES[outcome]}, attempts = attempts + 1, lease_until = 0, claimant = NULL,"
        " lease_token = NULL WHERE id = :id AND lease_token = :token", params).rowcount
    if updated == 0:
        return False
    db.execute("INSERT INTO delivery_log (outbox_id, at, outcome, detail) VALUES (:id, :now, :outcome,"
               " :detail)", params)
    _note_target(db, row, outcome, now, params["detail"])
    return True


def _apply_journaled(db, outcome):
    row = {"id": outcome["outbox_id"], "channel": outcome["channel"], "target": outcome["target"]}
    return _apply(db, row, outcome["token"], outcome["outcome"], outcome["at"], outcome["detail"],
                  outcome["next_attempt_at"])


def fold_outcomes(database):
    """Bring a SQLite database's journaled outcomes into its outbox now: before it is copied elsewhere, say."""
    if not os.path.exists(outcome_journal.journal_path(database)):
        return
    db = open_existing(database, synchronous="NORMAL")
    try:
        fold_journal(db, outcome_journal.for_database(database))
    finally:
        db.close()


def fold_journal(db, journal):
    """Bring the journal's outcomes into the outbox (see outcome_journal)."""
    for outcome in journal.fold(db, _apply_journaled):
        log.warning("outbox %s: outcome %r not applied: the message is no longer held under the token it was sent"
                    " with (applied already by a worker stopped before it forgot it, or its lease passed to another"
                    " worker)", outcome["outbox_id"], outcome["outcome"])


def _note_target(db, row, outcome, now, detail):
    """Keep each target's last outcome (for health and the inbox), and act on a success or a 410."""
    channel = CHANNELS.get(row["channel"])
    scope = "" if channel is not None and channel.shared_connection else row["target"]
    params = {"channel": row["channel"], "target": row["target"], "scope": scope, "now": now, "detail": detail}
    db.execute("INSERT INTO delivery_targets (channel, target) VALUES (:channel, :target), (:channel, :scope)"
               " ON CONFLICT DO NOTHING", params)
    if outcome == "sent":
        # A success after trouble: what waited for this channel (or this target) goes now, not after its backoff.
        # For a shared connection only a connection failure counts: a greylisted email is retried on its own time.
        troubled = db.execute(
            "SELECT 1 FROM delivery_targets WHERE channel = :channel AND target = :scope AND"
            " (failures > 0 OR (:scope != '' AND last_error_at > coalesce(last_ok_at, 0)))", params).first()
        if troubled:
            db.execute("UPDATE outbox SET next_attempt_at = :now WHERE state = 'pending' AND channel = :channel"
                       " AND (:scope = '' OR target = :scope) AND next_attempt_at > :now", params)
        db.execute("UPDATE delivery_targets SET last_attempt_at = :now, last_ok_at = :now, failures = 0,"
                   " paused_until = 0 WHERE channel = :channel AND target IN (:target, :scope)", params)
        return
    db.execute("UPDATE delivery_targets SET last_attempt_at = :now, last_error = :detail, last_error_at = :now"
               " WHERE channel = :channel AND target = :target", params)
    if outcome == "off":
        db.execute("UPDATE delivery_targets SET off_at = :now WHERE channel = :channel AND target = :target", params)
        db.execute("UPDATE outbox SET state = 'off', last_error = :detail WHERE state = 'pending'"
                   " AND channel = :channel AND target = :target AND lease_token IS NULL", params)


def pause_channel(db, channel, now, detail, config):
    """Record a channel-wide failure and pause the channel with backoff; return when it resumes."""
    with write_transaction(db):
        params = {"channel": channel, "now": now, "detail": detail[:DETAIL_LENGTH]}
        db.execute("INSERT INTO delivery_targets (channel, target) VALUES (:channel, '') ON CONFLICT DO NOTHING",
                   params)
        failures = db.execute(
            "UPDATE delivery_targets SET failures = failures + 1, last_attempt_at = :now, last_error = :detail,"
            " last_error_at = :now WHERE channel = :channel AND target = '' RETURNING failures", params).scalar_one()
        # Probe a down channel at least every PAUSE_MAX_SECONDS: a server back up must not wait out an hour.
        resume = now + min(retry_delay(failures, config), PAUSE_MAX_SECONDS)
        db.execute("UPDATE delivery_targets SET paused_until = :resume WHERE channel = :channel AND target = ''",
                   {"resume": resume, "channel": channel})
    return resume


def retry_delay(attempts, config):
    """Exponential backoff with jitter: about RETRY_FIRST_SECONDS, doubling up to RETRY_MAX_SECONDS."""
    base = min(config["RETRY_MAX_SECONDS"], config["RETRY_FIRST_SECONDS"] * 2 ** max(attempts - 1, 0))
    return base * random.uniform(0.8, 1.2) if base < config["RETRY_MAX_SECONDS"] else base * random.uniform(0.9, 1.0)


# --- What the owner and the administrator can do ------------------------------------------------------------

def resend(db, submission_id, now, outbox_id=None):
    """Send a submission's notifications again now, or just one of them; the give-up window restarts."""
    with write_transaction(db):
        resent = db.execute(
            "UPDATE outbox SET state = 'pending', next_attempt_at = :now, created_at = :now, lease_until = 0,"
            " claimant = NULL, lease_token = NULL WHERE submission_id = :submission"
            " AND ((CAST(:outbox AS BIGINT) IS NULL AND kind = 'lead') OR id = :outbox)",
            {"now": now, "submission": submission_id, "outbox": outbox_id}).rowcount
        if outbox_id is not None:
            # The owner asked for this target explicitly: a 410 is not the last word.
            db.execute("UPDATE delivery_targets SET off_at = NULL WHERE (channel, target) IN"
                       " (SELECT channel, target FROM outbox WHERE id = :id)", {"id": outbox_id})
    return resent


def queue_for(db, submission_id, notifications, now):
    """Queue notifications for a submission that has none yet (one kept as spam, then resent)."""
    with write_transaction(db):
        queue(db, submission_id, notifications, now)


def lift_pauses(db):
    """Let every paused channel be tried again now (a worker starting may run with a repaired configuration)."""
    with write_transaction(db):
        db.execute("UPDATE delivery_targets SET paused_until = 0 WHERE paused_until > 0")


def send_all_now(db, now):
    """Make every waiting message due now and lift every pause; return how many messages were waiting."""
    lift_pauses(db)
    with write_transaction(db):
        return db.execute("UPDATE outbox SET next_attempt_at = :now WHERE state = 'pending'"
                          " AND next_attempt_at > :now", {"now": now}).rowcount


def next_due_at(db):
    """Return when the earliest pending message is due (epoch seconds), pauses included, or None."""
    due = db.sql.greatest("outbox.next_attempt_at", "outbox.lease_until", "coalesce(connection.paused_until, 0)")
    return db.execute(
        f"SELECT MIN({due}) FROM outbox LEFT JOIN delivery_targets AS connection"
        " ON connection.channel = outbox.channel AND connection.target = '' WHERE outbox.state = 'pending'").scalar()


def notifications_of(db, submission_id):
    """Return a submission's notifications, one per channel target, each with its delivery log."""
    rows = [dict(row) for row in db.execute(
        "SELECT * FROM outbox WHERE submission_id = :id ORDER BY id", {"id": submission_id}).mappings()]
    for row in rows:
        row["log"] = [dict(entry) for entry in db.execute(
            "SELECT * FROM delivery_log WHERE outbox_id = :id ORDER BY id", {"id": row["id"]}).mappings()]
    return rows


def channel_problems(db):
    """Return the channels and targets whose last attempt failed, newest first."""
    return [dict(row) for row in db.execute(
        "SELECT * FROM delivery_targets WHERE last_error_at > coalesce(last_ok_at, 0) OR off_at IS NOT NULL"
        " ORDER BY last_error_at DESC").mappings()]


# --- The worker ------------------------------------------------------------------------------------------------

def deliver_due(app, db, claimant, clock=time.time, stopping=None):
    """Claim one batch of due messages and deliver it; return how many were claimed.

    `clock` gives the time (tests move it); `stopping`, an Event, makes the worker finish the message in
    flight and give back the rest of its claim.
    """
    config = app.config
    # On SQLite each outcome goes to the journal first, never waiting for the web's write lock; any outcome
    # there now (a worker killed before it folded) reaches the outbox before its message could be claimed again.
    journal = outcome_journal.for_database(config["DATABASE"]) if db.sql.name == "sqlite" else None
    if journal is not None:
        fold_journal(db, journal)
    token, batch = claim(db, claimant, clock(), config["LEASE_SECONDS"], config["BATCH_SIZE"])
    if not batch:
        return 0
    channels = {name: channel_class(config) for name, channel_class in CHANNELS.items()}
    sessions, down = {}, set()
    with app.app_context(), ExitStack() as stack:
        for index, row in enumerate(batch):
            if stopping is not None and stopping.is_set():
                release(db, [rest["id"] for rest in batch[index:]], token)
                log.info("stopping: gave back %d claimed message(s)", len(batch) - index)
                break
            if row["channel"] in down:
                release(db, [row["id"]], token)
                continue
            channel = channels.get(row["channel"])
            if not _lease_covers_one_send(db, row, token, channel, clock, config, journal):
                log.warning("outbox %s: the lease passed to another worker; not sending it", row["id"])
                continue
            try:
                if channel is None:
                    raise Permanent(f"unknown channel {row['channel']!r}")
                submission = submissions.get_submission(db, row["submission_id"])
                if submission is None:
                    raise Permanent("the submission was deleted")
                if row.get("reply_id"):
                    row["owner_reply"] = replies.get_reply(db, row["reply_id"])
                if row.get("digest_id"):
                    row["digest"] = followup.get_digest(db, row["digest_id"])
                if row["channel"] not in sessions:
                    sessions[row["channel"]] = stack.enter_context(channel.session())
                answer = channel.send(sessions[row["channel"]], row, submission, form_for_key(config, submission["form"]))
            except ChannelDown as error:
                down.add(row["channel"])
                _channel_down(db, row, token, str(error), clock, config, journal)
            except Exception as error:  # any one message's failure, a bug included, is that message's alone
                _failed_attempt(db, row, token, error, clock(), config, journal)
            else:
                _record(db, row, token, "sent", clock(), answer, journal=journal)
                log.info("sent %s %s of submission %s to %s, %s: %s", row["channel"], row["kind"],
                         row["submission_id"], row["target"], row["message_id"] or f"outbox {row['id']}", answer)
            if journal is not None and journal.fold_due(clock()):
                fold_journal(db, journal)
    if journal is not None:
        fold_journal(db, journal)
    return len(batch)


def _lease_covers_one_send(db, row, token, channel, clock, config, journal=None):
    """Make sure the lease outlasts this message's worst case, extending it (and checking it is still ours)
    only when the claim's own lease would not: most messages of a batch cost no extra commit.

    With the journal, by LEASE_MARGIN_SECONDS more: the outcome is in the journal that long before the lease
    ends, and a worker that may claim the message then folds the journal first.
    """
    worst = channel.worst_case_seconds(config) if channel is not None else 0
    if journal is not None:
        worst += outcome_journal.LEASE_MARGIN_SECONDS
    now = clock()
    if now + worst < row["lease_until"]:
        return True
    row["lease_until"] = now + config["LEASE_SECONDS"]
    return renew(db, row, token, row["lease_until"])


def _record(db, row, token, outcome, now, detail, next_attempt_at=None, journal=None):
    if journal is not None:
        journal.add(row, token, outcome, now, detail[:DETAIL_LENGTH], next_attempt_at)
    elif not record(db, row, token, outcome, now, detail, next_attempt_at):
        log.warning("outbox %s: outcome %r refused, another worker holds the message now (%s)",
                    row["id"], outcome, detail)


def _failed_attempt(db, row, token, error, now, config, journal=None):
    """Record a failed attempt: a retry with backoff, or failed for good (or the target off)."""
    if isinstance(error, TargetOff):
        outcome, detail = "off", str(error)
    elif isinstance(error, Permanent):
        outcome, detail = "failed", str(error)
    elif isinstance(error, Retry):
        outcome, detail = "retry", str(error)
    else:
        log.exception("outbox %s: building or sending it raised", row["id"])
        outcome, detail = "retry", f"{type(error).__name__}: {error}"
    attempts = row["attempts"] + 1
    if outcome == "retry" and now - row["created_at"] > config["GIVE_UP_SECONDS"]:
        outcome, detail = "failed", f"gave up after {attempts} attempts; last error: {detail}"
    next_attempt_at = None
    if outcome == "retry":
        delay = retry_delay(attempts, config)
        if getattr(error, "retry_after", None):
            delay = max(delay, min(error.retry_after, config["RETRY_MAX_SECONDS"]))
        next_attempt_at = now + delay
        log.warning("%s to %s for submission %s failed (attempt %d), retrying in %.0f s: %s", row["channel"],
                    row["target"], row["submission_id"], attempts, delay, detail)
    else:
        log.error("%s to %s for submission %s: %s (%s)", row["channel"], row["target"], row["submission_id"],
                  "failed for good" if outcome == "failed" else "target turned off", detail)
    _record(db, row, token, outcome, now, detail, next_attempt_at, journal)


def _channel_down(db, row, token, detail, clock, config, journal=None):
    """The channel, not this message, failed: pause the channel and charge no attempt, up to the give-up time."""
    now = clock()
    resume = pause_channel(db, row["channel"], now, detail, config)
    log.error("%s channel down, paused for %.0f s; messages wait, none is failed for it: %s",
              row["channel"], resume - now, detail)
    if now - row["created_at"] > config["GIVE_UP_SECONDS"]:
        _record(db, row, token, "failed", now, f"gave up; the {row['channel']} channel is down: {detail}",
                journal=journal)
    else:
        release(db, [row["id"]], token)


class DeliveryWorker:
    """A thread that delivers the outbox: woken by new submissions, polling for retries."""

    def __init__(self, app, clock=time.time):
        self.app = app
        self.clock = clock
        self.claimant = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.wakeup = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, name="postbox-delivery", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def wake(self):
        self.wakeup.set()

    def stop(self, timeout=10):
        """Finish the message in flight, give back the rest of the claim, and end the thread."""
        self.stopping.set()
        self.wakeup.set()
        self.thread.join(timeout)

    def run(self):
        db, identity, replaced = None, None, False
        try:
            while not self.stopping.is_set():
                self.wakeup.clear()
                try:
                    if db is None:
                        db, identity = self._open()
                        lift_pauses(db)  # a restart after fixing the SMTP password delivers the queue at once
                    if file_identity(self.app.config["DATABASE"]) != identity:
                        # Removed or replaced under us: what this connection sees is in no file that will last.
                        if not replaced:
                            log.error("the database file %s was removed or replaced; delivery stops until"
                                      " Postbox is restarted", self.app.config["DATABASE"])
                        replaced = True
                        self.stopping.wait(self.app.config["POLL_SECONDS"])
                        continue
                    upkeep.run_due(self.app, db, self.clock())  # follow-up, retention, the mail-stopped alarm
                    if deliver_due(self.app, db, self.claimant, self.clock, self.stopping):
                        continue
                    self.wakeup.wait(self._idle_seconds(db))
                except Exception:
                    log.exception("delivery worker error; reconnecting shortly")
                    if db is not None:
                        db.close()  # a connection opened while the file was read-only stays read-only
                    db = None
                    self.stopping.wait(self.app.config["POLL_SECONDS"])
        finally:
            if db is not None:
                db.close()

    def _open(self):
        """Open the existing database file (never create an empty one) and note which file it is."""
        path = self.app.config["DATABASE"]
        identity = file_identity(path)
        # NORMAL: an outcome survives a killed process; power loss can only undo the last ones (a duplicate).
        db = open_existing(path, synchronous="NORMAL")
        return db, identity

    def _idle_seconds(self, db):
        poll = self.app.config["POLL_SECONDS"]
        due = next_due_at(db)
        return poll if due is None else max(0.0, min(poll, due - self.clock()))


def start_worker(app):
    """Start this process's delivery thread (once) and return it."""
    worker = app.extensions.get("postbox.worker")
    if worker is None:
        worker = app.extensions["postbox.worker"] = DeliveryWorker(app).start()
        log.info("delivery worker %s started; email goes to %s", worker.claimant,
                 CHANNELS["email"](app.config).describe())
    return worker


def stop_worker(app):
    """Stop this process's delivery thread gracefully, if it runs."""
    worker = app.extensions.pop("postbox.worker", None)
    if worker is not None:
        worker.stop()


def wake_worker(app):
    """Tell the delivery worker that a message is waiting: this process's thread, or the delivery process."""
    worker = app.extensions.get("postbox.worker")
    if worker is not None:
        worker.wake()
    elif app.config["DELIVERY"] == "process":
        delivery_process.wake(app.config["DATABASE"])
