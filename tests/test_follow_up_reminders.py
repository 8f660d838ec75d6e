"""Reminders: a lead still new past REMIND_AFTER working hours reminds the owner, once per step, on its channels."""
import json
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from apprise.plugins.telegram import NotifyTelegram

from app import create_app
from conftest import WEBHOOK_SECRET, count_rows, deliver_all
from inbox_fixtures import OWNER
import database
import sqlite_schema
import followup
import inbox_queries
import outbox
import replies
import submissions

ROME = ZoneInfo("Europe/Rome")


@pytest.fixture
def config(config):
    config.update(TIMEZONE="Europe/Rome", BUSINESS_HOURS="Mon-Fri 09:00-18:00", REMIND_AFTER=2, REMIND_MAX=2,
                  PUBLIC_URL="https://postbox.florist.example")
    return config


def at(*args):
    """Epoch seconds of a wall-clock time in Rome: the injected `now`."""
    return datetime(*args, tzinfo=ROME).timestamp()


def lead_received(db, *args, **fields):
    received = datetime(*args, tzinfo=ROME).astimezone(timezone.utc).isoformat(timespec="microseconds")
    record = {"form": "contactus", "name": "Anna Rossi", "email": "anna@example.com",
              "message": "Vorrei un mazzo di rose per sabato.", "received_at": received, **fields}
    return submissions.save_submission(db, record, [])


def reminders(smtp_server):
    return [m for m in smtp_server.messages if "still waiting" in str(m["message"]["Subject"])]


def test_one_reminder_per_step_and_no_more_than_the_limit(app, db, smtp_server):
    lead = lead_received(db, 2026, 3, 4, 10, 0)  # a Wednesday
    assert followup.schedule_due(app, db, at(2026, 3, 4, 11, 59)) == 0
    assert followup.schedule_due(app, db, at(2026, 3, 4, 12, 0)) == 1
    assert followup.schedule_due(app, db, at(2026, 3, 4, 12, 30)) == 0
    deliver_all(app, db)
    [first] = reminders(smtp_server)
    assert first["rcpt_tos"] == ["owner@florist.example"]
    assert first["message"]["Subject"] == "Anna Rossi is still waiting for an answer"
    assert f"https://postbox.florist.example/admin/s/{lead}" in first["message"].get_content()
    assert followup.schedule_due(app, db, at(2026, 3, 4, 14, 0)) == 1
    assert followup.schedule_due(app, db, at(2026, 3, 5, 17, 0)) == 0  # REMIND_MAX is 2
    deliver_all(app, db)
    assert len(reminders(smtp_server)) == 2


def test_a_worker_that_was_down_sends_one_reminder_not_every_missed_step(app, db, smtp_server):
    lead_received(db, 2026, 3, 4, 10, 0)
    assert followup.schedule_due(app, db, at(2026, 3, 6, 10, 0)) == 1
    deliver_all(app, db)
    assert len(reminders(smtp_server)) == 1
    assert followup.schedule_due(app, db, at(2026, 3, 9, 10, 0)) == 0


@pytest.mark.parametrize("act", ["status", "note", "reply"])
def test_a_lead_acted_on_gets_no_reminder(app, db, smtp_server, act):
    lead = lead_received(db, 2026, 3, 4, 10, 0)
    if act == "status":
        inbox_queries.set_status(db, [lead], "in_progress", OWNER)
    elif act == "note":
        inbox_queries.set_note(db, lead, "Called her back, no answer")
    else:
        notification = {"kind": "reply", "channel": "email", "target": "anna@example.com",
                        "message_id": "<r1@florist.example>"}
        replies.save_reply(db, lead, OWNER, "Certo, a sabato!", notification, at(2026, 3, 4, 11, 0))
    assert followup.schedule_due(app, db, at(2026, 3, 5, 17, 0)) == 0
    deliver_all(app, db)
    assert reminders(smtp_server) == []


def test_a_reminder_waiting_to_be_sent_is_dropped_when_the_lead_is_answered(app, db, smtp_server):
    lead = lead_received(db, 2026, 3, 4, 10, 0)
    assert followup.schedule_due(app, db, at(2026, 3, 4, 12, 0)) == 1
    inbox_queries.set_status(db, [lead], "answered", OWNER)
    deliver_all(app, db)
    assert reminders(smtp_server) == []
    assert count_rows(db, "outbox", "kind = 'reminder' AND state = 'off'") == 1


def test_a_lead_on_friday_evening_is_reminded_on_monday_morning(app, db, smtp_server):
    lead_received(db, 2026, 3, 6, 19, 30)  # a Friday, after closing
    for saturday_hour in range(0, 24, 3):
        assert followup.schedule_due(app, db, at(2026, 3, 7, saturday_hour, 0)) == 0
    assert followup.schedule_due(app, db, at(2026, 3, 8, 23, 0)) == 0
    assert followup.schedule_due(app, db, at(2026, 3, 9, 10, 59)) == 0
    assert followup.schedule_due(app, db, at(2026, 3, 9, 11, 0)) == 1
    deliver_all(app, db)
    assert len(reminders(smtp_server)) == 1


def test_two_workers_that_read_the_same_lead_queue_one_reminder(app, db):
    lead = lead_received(db, 2026, 3, 4, 10, 0)
    row = db.execute("SELECT id, form, received_at, reminders_sent FROM submissions WHERE id = :id",
                     {"id": lead}).mappings().first()
    assert followup._queue_reminder(app.config, db, row, 1, at(2026, 3, 4, 12, 0))
    assert not followup._queue_reminder(app.config, db, row, 1, at(2026, 3, 4, 12, 0))
    assert count_rows(db, "outbox", "kind = 'reminder'") == 1


def test_spam_is_never_reminded(app, db):
    lead_received(db, 2026, 3, 4, 10, 0, status="spam", spam_reason="honeypot")
    assert followup.schedule_due(app, db, at(2026, 3, 5, 17, 0)) == 0


def test_the_delivery_worker_runs_the_reminders_on_its_clock(app, db, smtp_server):
    lead_received(db, 2026, 3, 4, 10, 0)
    worker = outbox.DeliveryWorker(app, clock=lambda: at(2026, 3, 4, 12, 5)).start()
    try:
        smtp_server.wait_for(1)
    finally:
        worker.stop()
    assert len(reminders(smtp_server)) == 1


def test_the_reminder_also_goes_to_the_messenger_but_not_to_webhooks(config, http_receiver, smtp_server, monkeypatch):
    monkeypatch.setattr(NotifyTelegram, "notify_url", f"{http_receiver.url}/bot")
    http_receiver.replies = [(200, {}, json.dumps({"ok": True, "result": {"message_id": 7}}).encode())]
    app = create_app({**config, "NOTIFY": "tgram://123456789:AAHsecretBotToken_xyz987/424242",
                      "WEBHOOKS": f"{http_receiver.url}/hook", "WEBHOOK_SECRET": WEBHOOK_SECRET,
                      "WEBHOOK_ALLOW_PRIVATE": True})
    db = database.open_db(config["DATABASE"])
    try:
        lead_received(db, 2026, 3, 4, 10, 0)
        assert followup.schedule_due(app, db, at(2026, 3, 4, 12, 0)) == 1
        deliver_all(app, db)
        [request] = http_receiver.requests
        assert "/sendMessage" in request["path"]
        assert "Anna Rossi is still waiting for an answer" in json.loads(request["body"])["text"]
        assert len(reminders(smtp_server)) == 1
    finally:
        db.close()


# An installation from before Alembic is a SQLite file: PostgreSQL's began at Alembic's baseline.
@pytest.mark.sqlite_only
def test_leads_from_before_the_upgrade_are_not_reminded_all_at_once(app, tmp_path):
    old = database.open_db(str(tmp_path / "old.sqlite3"))
    try:
        with database.write_transaction(old):  # an installation from before follow-up, and before Alembic
            sqlite_schema.apply(old.connection.connection.dbapi_connection, stop_before="m008_follow_up")
        received = datetime(2026, 3, 4, 10, 0, tzinfo=ROME).astimezone(timezone.utc).isoformat()
        with database.write_transaction(old):
            for status, status_at in (("new", None), ("answered", "2026-03-04T10:30:00+00:00")):
                old.execute("INSERT INTO submissions (form, received_at, name, email, message, status, status_at)"
                            " VALUES ('contactus', :received, 'Old Lead', 'old@example.com', 'm', :status, :status_at)",
                            {"received": received, "status": status, "status_at": status_at})
        database.migrate(old)
        assert followup.schedule_due(app, old, at(2026, 3, 5, 17, 0)) == 0
        answered = old.execute("SELECT first_answer_at FROM submissions WHERE status = 'answered'").scalar()
        assert answered == "2026-03-04T10:30:00+00:00"
    finally:
        old.close()
