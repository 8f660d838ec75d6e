"""What the delivery worker does besides delivering: follow-up (reminders, the digest) every minute, retention
hourly, and the alarm when owner email stops.

The worker calls `run_due` once per pass of its loop (at least every POLL_SECONDS); each duty keeps its own
schedule, so a pass costs one comparison when nothing is due.
"""
import threading

import followup
import health
import retention


class Upkeep:
    """One app's schedule of duties, shared by the worker threads of that app."""

    def __init__(self, app, now):
        self.lock = threading.Lock()
        self.purge = retention.HourlyPurge(started_at=now)
        self.mail_alarm = health.MailAlarm(app)
        self.next_follow_up = now

    def run_due(self, app, db, now):
        with self.lock:
            if now >= self.next_follow_up:  # reminders and the digest: once a minute is on time
                self.next_follow_up = now + followup.EVERY_SECONDS  # a failing pass waits a minute too
                followup.schedule_due(app, db, now)
            self.purge.run_if_due(app, db, now)
            self.mail_alarm.check(db, now)


def run_due(app, db, now):
    """Run whichever of the worker's duties are due at `now` (epoch seconds, the worker's clock)."""
    upkeep = app.extensions.get("postbox.upkeep")
    if upkeep is None:
        upkeep = app.extensions.setdefault("postbox.upkeep", Upkeep(app, now))
    upkeep.run_due(app, db, now)
