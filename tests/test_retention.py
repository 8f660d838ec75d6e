"""Retention deletes old submissions on a schedule (the worker, hourly) and on command (`flask purge`), never as
a side effect of starting Postbox or of another command."""
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
from conftest import ROOT, count_rows
from inbox_fixtures import add_submission, inbox_user, owner  # noqa: F401

from app import create_app
import outbox
import retention
import submissions


def days_ago(days):
    return (datetime.now(timezone.utc) - timedelta(days=days)).isoformat(timespec="microseconds")


class MovableClock:
    """The worker's clock, which a test can move forward."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self):
        return time.time() + self.offset


def wait_until(condition, timeout=10):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def config(config):
    config["RETENTION_DAYS"] = 30
    return config


def test_purge_command_deletes_old_submissions(app, db, runner):
    old = add_submission(db, app, received_at=days_ago(31))
    recent = add_submission(db, app, received_at=days_ago(29))
    result = runner.invoke(args=["purge"])
    assert result.exit_code == 0 and "Deleted 1 submission(s) older than 30 days" in result.output
    assert submissions.get_submission(db, old) is None and submissions.get_submission(db, recent) is not None
    assert count_rows(db, "outbox") == 1


def test_retention_off_deletes_nothing(app, db, runner):
    app.config["RETENTION_DAYS"] = 0
    old = add_submission(db, app, received_at=days_ago(5000))
    assert "nothing is deleted" in runner.invoke(args=["purge"]).output
    assert submissions.get_submission(db, old) is not None


def test_start_up_deletes_nothing(app, db, config):
    old = add_submission(db, app, received_at=days_ago(400))
    create_app(config)
    assert submissions.get_submission(db, old) is not None


def test_opening_the_inbox_deletes_nothing(app, db, owner):
    add_submission(db, app, received_at=days_ago(45), name="Expired Lead")
    assert "Expired Lead" in owner.get("/admin/").get_data(as_text=True)


def test_flask_export_deletes_nothing(app, db, tmp_path):
    """The real `flask export` in its own process, configured as an administrator would."""
    old = add_submission(db, app, received_at=days_ago(400), name="Old Lead")
    env = {key: value for key, value in os.environ.items() if not key.startswith("POSTBOX_")}
    env.update({f"POSTBOX_{key}": str(app.config[key]) for key in ("DATABASE", "MAIL_DIR", "SECRET_KEY")},
               POSTBOX_RETENTION_DAYS="30")
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "export", "--format", "json"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Old Lead" in result.stdout
    assert submissions.get_submission(db, old) is not None


def test_the_worker_purges_an_hour_after_it_starts_and_hourly_after(app, db, smtp_server):
    """Each delivered email proves a pass of the worker's loop ran its duties first, without sleeping."""
    clock = MovableClock()
    old = add_submission(db, app, received_at=days_ago(31), queue_email=False)
    add_submission(db, app)
    worker = outbox.DeliveryWorker(app, clock=clock).start()
    try:
        smtp_server.wait_for(1)
        assert submissions.get_submission(db, old) is not None, "purged at start-up"
        clock.offset = retention.PURGE_INTERVAL_SECONDS + 1
        wait_until(lambda: submissions.get_submission(db, old) is None)
        later = add_submission(db, app, received_at=days_ago(31), queue_email=False)
        add_submission(db, app)
        worker.wake()
        smtp_server.wait_for(2)
        assert submissions.get_submission(db, later) is not None, "purged again within the hour"
        clock.offset += retention.PURGE_INTERVAL_SECONDS
        wait_until(lambda: submissions.get_submission(db, later) is None)
    finally:
        worker.stop()


def test_hourly_purge_keeps_its_own_schedule(app, db):
    schedule = retention.HourlyPurge(started_at=1000.0, interval=3600)
    add_submission(db, app, received_at=days_ago(31), queue_email=False)
    assert schedule.run_if_due(app, db, now=1000.0 + 3599) == 0
    assert count_rows(db, "submissions") == 1
    assert schedule.run_if_due(app, db, now=time.time()) == 1
