"""Health for the person on call: GET /healthz, and the alarm when email to the owner has stopped.

/healthz answers 200 or 503 with its reasons, for an uptime monitor or a container's HEALTHCHECK. It names
channels, never targets or errors: an owner's address or a webhook's token must not reach a public page.
"""
import logging
import time

import sqlalchemy
from flask import Blueprint, current_app, jsonify

import database

bp = Blueprint("health", __name__)
log = logging.getLogger("postbox.health")


def init_app(app):
    app.register_blueprint(bp)


@bp.get("/healthz")
def healthz():
    """Answer 200 when Postbox can take and deliver messages, else 503; the body says why."""
    report = health_report(database.get_db(), time.time(), current_app.config["HEALTH_MAX_DELAY_SECONDS"])
    response = jsonify(report)
    response.status_code = 200 if report["ok"] else 503
    response.headers["Cache-Control"] = "no-store"
    return response


def health_report(db, now, max_delay):
    """Check the database, the outbox and every channel; return {"ok", "problems", "checks"}."""
    checks = {"database": database_check(db, now), "outbox": outbox_check(db, now, max_delay),
              "channels": channel_checks(db, now, max_delay)}
    problems = [check["problem"] for check in (checks["database"], checks["outbox"], *checks["channels"])
                if "problem" in check]
    return {"ok": not problems, "problems": problems, "checks": checks}


def database_check(db, now):
    """Write one row: proves the file, its directory and the disk all take writes."""
    try:
        with database.write_transaction(db):
            db.execute("INSERT INTO health_probe (id, at) VALUES (1, :now) ON CONFLICT (id) DO UPDATE"
                       " SET at = excluded.at", {"now": now})
    except sqlalchemy.exc.DBAPIError as error:
        return {"ok": False, "problem": f"the database does not take writes: {database.driver_error(error)}"}
    return {"ok": True}


def outbox_check(db, now, max_delay):
    """A message due longer than max_delay means nothing is delivering it: no worker, or its channel is down."""
    due, oldest = db.execute("SELECT COUNT(*), MIN(next_attempt_at) FROM outbox WHERE state = 'pending'"
                             " AND next_attempt_at <= :now", {"now": now}).one()
    waited = round(now - oldest, 1) if oldest is not None else 0
    check = {"ok": waited <= max_delay, "due": due, "oldest_due_seconds": waited}
    if not check["ok"]:
        check["problem"] = f"outbox: {due} message(s) due, the oldest for {waited:.0f} s (limit {max_delay:g} s)"
    return check


def channel_checks(db, now, max_delay):
    """Per channel: did its last attempt succeed, or how long ago did it fail and for how long has it failed."""
    rows = db.execute("SELECT channel, target, last_attempt_at, last_ok_at, last_error_at, off_at"
                      " FROM delivery_targets WHERE last_attempt_at IS NOT NULL ORDER BY channel").mappings().all()
    checks = []
    for channel in dict.fromkeys(row["channel"] for row in rows):
        mine = [row for row in rows if row["channel"] == channel]
        checks.append(_channel_check(db, channel, mine, now, max_delay))
    return checks


def _channel_check(db, channel, rows, now, max_delay):
    latest = max(rows, key=lambda row: row["last_attempt_at"])
    failing = [row for row in rows if row["off_at"] is None and _last_attempt_failed(row)]
    check = {"channel": channel, "ok": True, "last_attempt": "failed" if _last_attempt_failed(latest) else "ok",
             "last_attempt_seconds_ago": round(now - latest["last_attempt_at"], 1),
             "failing_targets": len(failing), "targets_turned_off": sum(row["off_at"] is not None for row in rows)}
    if failing:
        failing_for = max(now - _failing_since(db, row) for row in failing)
        check["failing_for_seconds"] = round(failing_for, 1)
        check["last_error_seconds_ago"] = round(now - max(row["last_error_at"] for row in failing), 1)
        if failing_for > max_delay:
            check["ok"] = False
            check["problem"] = (f"{channel}: failing for {failing_for:.0f} s (limit {max_delay:g} s), last error"
                                f" {check['last_error_seconds_ago']:.0f} s ago")
    return check


def _last_attempt_failed(row):
    return row["last_error_at"] is not None and row["last_error_at"] > (row["last_ok_at"] or 0)


def _failing_since(db, row):
    """Since the last success; for a target that never succeeded, since its oldest waiting message."""
    if row["last_ok_at"] is not None:
        return row["last_ok_at"]
    oldest = db.execute("SELECT MIN(created_at) FROM outbox WHERE state = 'pending' AND channel = :channel"
                        " AND (:target = '' OR target = :target)", row).scalar()
    return min(oldest, row["last_error_at"]) if oldest is not None else row["last_error_at"]


# --- Email to the owner has stopped ---------------------------------------------------------------------------

def mail_stopped(db, now, seconds):
    """Return {"waiting_since", "last_delivered_at"} when owner email has waited `seconds` with none delivered.

    "None delivered" reads the email channel's last success, so a message retried into a bounce still counts
    as waiting; None when mail flows.
    """
    oldest = db.execute("SELECT MIN(created_at) FROM outbox WHERE state = 'pending' AND channel = 'email'"
                        " AND kind = 'lead'").scalar()
    if oldest is None or now - oldest < seconds:
        return None
    last_delivered = db.execute("SELECT MAX(last_ok_at) FROM delivery_targets WHERE channel = 'email'").scalar()
    if last_delivered is not None and now - last_delivered < seconds:
        return None
    return {"waiting_since": oldest, "last_delivered_at": last_delivered}


class MailAlarm:
    """Says once, at ERROR, that email to the owner has stopped, and once, at INFO, that it flows again."""

    def __init__(self, app):
        self.seconds = app.config["MAIL_ALARM_SECONDS"]
        # Two small queries per check: every few seconds is soon enough for an alarm counted in minutes.
        self.check_every = min(5.0, self.seconds / 4)
        self.next_check_at = 0.0
        self.raised = False

    def check(self, db, now):
        if now < self.next_check_at:
            return
        self.next_check_at = now + self.check_every
        stopped = mail_stopped(db, now, self.seconds)
        if stopped and not self.raised:
            last = stopped["last_delivered_at"]
            log.error("ALARM: no owner email delivered %s while messages wait (the oldest for %.0f s); check the"
                      " SMTP settings and the errors above", f"for {now - last:.0f} s" if last else "since start",
                      now - stopped["waiting_since"])
        elif not stopped and self.raised:
            log.info("owner email is being delivered again")
        self.raised = bool(stopped)
