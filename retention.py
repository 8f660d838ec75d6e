"""Retention: deleting submissions older than POSTBOX_RETENTION_DAYS, on the worker's schedule or on command.

Deleting is never a side effect of starting Postbox or of another command (an export deletes nothing): it
happens in the delivery worker, an hour after it starts and hourly after that, and in `flask purge`.
"""
import time
from datetime import datetime, timedelta, timezone

import click
from flask import current_app
from flask.cli import with_appcontext

import database
import inbox_queries

PURGE_INTERVAL_SECONDS = 3600


def init_app(app):
    app.cli.add_command(purge_command)


def purge_expired(app, db, now):
    """Delete the submissions received more than RETENTION_DAYS before `now` (epoch seconds); return how many."""
    cutoff = datetime.fromtimestamp(now, timezone.utc) - timedelta(days=app.config["RETENTION_DAYS"])
    deleted = inbox_queries.purge_received_before(db, cutoff.isoformat(timespec="microseconds"))
    if deleted:
        app.logger.info("retention: deleted %d submission(s) received before %s", deleted, cutoff.isoformat())
    return deleted


class HourlyPurge:
    """The worker's retention schedule: the first purge an interval after the worker starts, not at start-up."""

    def __init__(self, started_at, interval=PURGE_INTERVAL_SECONDS):
        self.interval = interval
        self.next_at = started_at + interval

    def run_if_due(self, app, db, now):
        """Purge when the hour has come and retention is on; return how many submissions were deleted."""
        if now < self.next_at:
            return 0
        self.next_at = now + self.interval
        return purge_expired(app, db, now) if app.config["RETENTION_DAYS"] else 0


@click.command("purge")
@with_appcontext
def purge_command():
    """Delete submissions older than POSTBOX_RETENTION_DAYS now (the delivery worker also does it hourly).

    Example: POSTBOX_RETENTION_DAYS=365 flask --app app purge
    """
    app = current_app._get_current_object()
    if not app.config["RETENTION_DAYS"]:
        click.echo("POSTBOX_RETENTION_DAYS is 0 (off): nothing is deleted.")
        return
    db = database.open_db(app.config["DATABASE"])
    try:
        deleted = purge_expired(app, db, time.time())
    finally:
        db.close()
    click.echo(f"Deleted {deleted} submission(s) older than {app.config['RETENTION_DAYS']} days.")
