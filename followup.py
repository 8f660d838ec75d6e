"""Follow-up: the autoresponder's notification, reminders about unanswered leads and due callbacks.

The delivery worker calls schedule_due() about once a minute with its clock; everything here is decided from
that `now` (epoch seconds), never from the wall clock, so tests move time instead of waiting for it.
"""
import logging
from datetime import datetime, timedelta, timezone

import business_hours
import outbox
from config import form_for_key
from database import write_transaction

log = logging.getLogger("postbox.followup")
EVERY_SECONDS = 60
# A lead older than this is history, not a lead to remind about (an import, a restored backup).
REMIND_WITHIN_DAYS = 30
REMINDER_CHANNELS = ("email", "notify")


def autoreply_notifications(config, form, address):
    """The autoresponder's outbox row for a new lead, or none: off for the form, no address, or our own."""
    address = (address or "").strip().lower()
    own = {config["MAIL_FROM"].lower(), *(owner.lower() for owner in form.owners)}
    if not form.autoreply or not address or address in own:
        return []
    message_id = outbox.CHANNELS["email"](config).new_message_id()
    return [{"kind": "autoreply", "channel": "email", "target": address, "message_id": message_id}]


def reminder_due_at(schedule, received_at, remind_after, step):
    """When reminder number `step` (1, 2, …) of a lead received at `received_at` is due (UTC datetime)."""
    return business_hours.add(schedule, received_at, remind_after * step)


def steps_passed(schedule, received_at, remind_after, limit, now):
    """How many reminder steps have come due by `now`, at most `limit`."""
    step = 0
    while step < limit and reminder_due_at(schedule, received_at, remind_after, step + 1) <= now:
        step += 1
    return step


def schedule_due(app, db, now):
    """Queue every reminder that has come due by `now` (epoch seconds); return how many were queued."""
    config = app.config
    moment = datetime.fromtimestamp(now, timezone.utc)
    queued = 0
    if config["REMIND_AFTER"] and config["REMIND_MAX"] and any(config["SCHEDULE"].days):
        queued += _remind_unanswered(config, db, moment, now)
    if config["CALLBACK_REMIND_MINUTES"]:
        queued += _remind_callbacks(config, db, moment, now)
    if config["DIGEST_HOUR"] is not None:
        queued += _send_digest(config, db, moment, now)
    if queued:
        outbox.wake_worker(app)
    return queued


def _remind_unanswered(config, db, moment, now):
    """One reminder per step for each lead still new: a worker that was down sends one, not the missed ones.

    The working-hours arithmetic runs outside the write lock; each reminder is then queued by a conditional
    update, so several workers (one per web process) still queue exactly one per step.
    """
    since = (moment - timedelta(days=REMIND_WITHIN_DAYS)).isoformat(timespec="microseconds")
    # A working hour is at least an hour: nothing received later than this can be due yet.
    until = (moment - timedelta(hours=config["REMIND_AFTER"])).isoformat(timespec="microseconds")
    leads = db.execute(
        "SELECT id, form, received_at, reminders_sent FROM submissions WHERE status = 'new'"
        " AND first_answer_at IS NULL AND reminders_sent < :most AND received_at >= :since AND received_at <= :until",
        {"most": config["REMIND_MAX"], "since": since, "until": until}).mappings().all()
    queued = 0
    for lead in leads:
        received = datetime.fromisoformat(lead["received_at"])
        step = steps_passed(config["SCHEDULE"], received, config["REMIND_AFTER"], config["REMIND_MAX"], moment)
        if step > lead["reminders_sent"] and _queue_reminder(config, db, lead, step, now):
            log.info("submission %s still new after %g working hours: reminder %d queued", lead["id"],
                     config["REMIND_AFTER"] * step, step)
            queued += 1
    return queued


def _queue_reminder(config, db, lead, step, now):
    with write_transaction(db):
        taken = db.execute(
            "UPDATE submissions SET reminders_sent = :step WHERE id = :id AND reminders_sent < :step"
            " AND status = 'new' AND first_answer_at IS NULL", {"step": step, "id": lead["id"]}).rowcount
        if taken:
            outbox.queue(db, lead["id"], outbox.notifications_for(
                config, form_for_key(config, lead["form"]), kind="reminder", channels=REMINDER_CHANNELS), now)
    return taken == 1


def _remind_callbacks(config, db, moment, now):
    """Remind once about each callback whose slot begins within CALLBACK_REMIND_MINUTES and is not done."""
    until = (moment + timedelta(minutes=config["CALLBACK_REMIND_MINUTES"])).isoformat(timespec="microseconds")
    since = (moment - timedelta(hours=1)).isoformat(timespec="microseconds")
    queued = 0
    with write_transaction(db):
        callbacks = db.execute(
            "SELECT id, form FROM submissions WHERE callback_at <= :until AND callback_at >= :since"
            f" AND callback_reminded = 0 AND {db.sql.unindexed('status')} IN ('new', 'in_progress')",
            {"until": until, "since": since}).mappings().all()
        for callback in callbacks:
            notifications = outbox.notifications_for(config, form_for_key(config, callback["form"]), kind="reminder",
                                                     channels=REMINDER_CHANNELS)
            outbox.queue(db, callback["id"], notifications, now)
            db.execute("UPDATE submissions SET callback_reminded = 1 WHERE id = :id", callback)
            queued += 1
    return queued


def _send_digest(config, db, moment, now):
    """Queue today's digest once the local digest hour has come: new leads, unanswered ones, the oldest.

    A day with nothing new and nothing waiting sends none. The digest hangs on a submission in the outbox
    (the oldest unanswered, else the newest), and goes to the default form's owners and messengers.
    """
    local = moment.astimezone(config["SCHEDULE"].zone)
    if local.hour < config["DIGEST_HOUR"]:
        return 0
    day_before = (moment - timedelta(days=1)).isoformat(timespec="microseconds")
    with write_transaction(db):
        day = local.date().isoformat()
        if db.execute("SELECT 1 FROM digests WHERE day = :day", {"day": day}).first():
            return 0
        new_leads = db.execute("SELECT COUNT(*) FROM submissions WHERE status != 'spam' AND received_at >= :since",
                               {"since": day_before}).scalar_one()
        waiting = "FROM submissions WHERE status = 'new' AND first_answer_at IS NULL"
        unanswered = db.execute(f"SELECT COUNT(*) {waiting}").scalar_one()
        oldest_id = db.execute(f"SELECT id {waiting} ORDER BY received_at, id LIMIT 1").scalar()
        newest_id = db.execute("SELECT id FROM submissions WHERE status != 'spam' AND received_at >= :since"
                               " ORDER BY received_at DESC, id DESC LIMIT 1", {"since": day_before}).scalar()
        anchor_id = oldest_id or newest_id
        if anchor_id is None:
            return 0
        digest_id = db.execute(
            "INSERT INTO digests (day, created_at, new_leads, unanswered, oldest_id)"
            " VALUES (:day, :created_at, :new_leads, :unanswered, :oldest_id) RETURNING id",
            {"day": day, "created_at": moment.isoformat(timespec="microseconds"), "new_leads": new_leads,
             "unanswered": unanswered, "oldest_id": oldest_id}).scalar_one()
        notifications = outbox.notifications_for(config, config["FORM_DEFINITIONS"]["contactus"], kind="digest",
                                                 channels=REMINDER_CHANNELS)
        outbox.queue(db, anchor_id, [{**notification, "digest_id": digest_id} for notification in notifications],
                     now)
    log.info("daily digest for %s queued: %d new, %d unanswered", local.date(), new_leads, unanswered)
    return 1


def get_digest(db, digest_id):
    """A digest's figures, with the oldest unanswered lead's name and arrival (gone if it was deleted)."""
    row = db.execute(
        "SELECT digests.*, coalesce(nullif(oldest.name, ''), oldest.email) AS oldest_name,"
        " oldest.received_at AS oldest_received_at FROM digests LEFT JOIN submissions AS oldest"
        " ON oldest.id = digests.oldest_id WHERE digests.id = :id", {"id": digest_id}).mappings().first()
    return dict(row) if row else None
