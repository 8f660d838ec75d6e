"""The daily digest: at the set local hour, once a day, new and unanswered leads and the one waiting longest."""
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from conftest import deliver_all
import followup
import submissions

ROME = ZoneInfo("Europe/Rome")


@pytest.fixture
def config(config):
    config.update(TIMEZONE="Europe/Rome", DIGEST_HOUR=8, REMIND_AFTER=0, PUBLIC_URL="https://pb.example")
    return config


def lead(db, *received, status="new"):
    at = datetime(*received, tzinfo=ROME).astimezone(timezone.utc).isoformat(timespec="microseconds")
    return submissions.save_submission(db, {"form": "contactus", "name": f"Lead {received[2]}", "email": "l@example.com",
                                            "message": "…", "received_at": at, "status": status}, [])


def at(*args):
    return datetime(*args, tzinfo=ROME).timestamp()


def test_the_digest_comes_once_at_the_local_hour_with_the_figures(app, db, smtp_server):
    oldest = lead(db, 2026, 3, 2, 10, 0)
    lead(db, 2026, 3, 4, 15, 0)
    lead(db, 2026, 3, 4, 16, 0, status="answered")
    lead(db, 2026, 3, 4, 17, 0, status="spam")
    assert followup.schedule_due(app, db, at(2026, 3, 5, 7, 59)) == 0
    assert followup.schedule_due(app, db, at(2026, 3, 5, 8, 0)) == 1
    assert followup.schedule_due(app, db, at(2026, 3, 5, 12, 0)) == 0
    deliver_all(app, db)
    [digest] = smtp_server.messages
    assert digest["message"]["Subject"] == "Postbox digest for 2026-03-05"
    text = digest["message"].get_content()
    assert "New leads in the last 24 hours: 2" in text
    assert "Waiting for an answer: 2" in text
    assert "Waiting longest: Lead 2, since 2026-03-02 10:00" in text
    assert f"https://pb.example/admin/s/{oldest}" in text
    assert followup.schedule_due(app, db, at(2026, 3, 6, 8, 0)) == 1


def test_no_digest_about_nothing(app, db, smtp_server):
    assert followup.schedule_due(app, db, at(2026, 3, 5, 9, 0)) == 0
