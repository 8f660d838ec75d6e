"""Time to first answer: working hours per lead, per week's median and 90th percentile, overdue leads, export."""
import csv
import io
import math
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from inbox_fixtures import owner, inbox_user  # noqa: F401 (fixtures)
import answer_times
import database
import inbox_queries
import submissions

ROME = ZoneInfo("Europe/Rome")
# (received, first answer) in Rome; None: still unanswered. Weekends, evenings and a night are in the mix.
SEEDED = [
    ((2026, 3, 2, 9, 15), (2026, 3, 2, 9, 45)),
    ((2026, 3, 2, 17, 30), (2026, 3, 3, 10, 0)),
    ((2026, 3, 3, 11, 0), (2026, 3, 3, 16, 20)),
    ((2026, 3, 4, 20, 0), (2026, 3, 5, 9, 5)),
    ((2026, 3, 5, 12, 0), (2026, 3, 6, 12, 0)),
    ((2026, 3, 6, 19, 30), (2026, 3, 9, 11, 10)),
    ((2026, 3, 7, 10, 0), (2026, 3, 7, 10, 30)),  # answered on a Saturday: zero working hours
    ((2026, 3, 6, 10, 0), None),
]


@pytest.fixture
def config(config):
    config.update(TIMEZONE="Europe/Rome", BUSINESS_HOURS="Mon-Fri 09:00-18:00", REMIND_AFTER=2)
    return config


def utc_iso(parts):
    return datetime(*parts, tzinfo=ROME).astimezone(timezone.utc).isoformat(timespec="microseconds")


def seed(db):
    for received, answered in SEEDED:
        lead = submissions.save_submission(db, {"form": "contactus", "name": "Lead", "email": "lead@example.com",
                                                "message": "…", "received_at": utc_iso(received)}, [])
        if answered:
            with database.write_transaction(db):
                db.execute("UPDATE submissions SET status = 'answered', first_answer_at = :at WHERE id = :id",
                           {"at": utc_iso(answered), "id": lead})


def working_minutes_by_counting(start, end):
    """An independent count: walk minute by minute, keeping those on a weekday between 09:00 and 18:00 in Rome."""
    minutes, moment = 0, datetime(*start, tzinfo=ROME)
    finish = datetime(*end, tzinfo=ROME)
    while moment < finish:
        if moment.weekday() < 5 and 9 <= moment.hour < 18:
            minutes += 1
        moment += timedelta(minutes=1)
    return minutes


def expected_week():
    hours = sorted(working_minutes_by_counting(received, answered) / 60 for received, answered in SEEDED if answered)
    n = len(hours)
    median = (hours[n // 2 - 1] + hours[n // 2]) / 2 if n % 2 == 0 else hours[n // 2]
    p90 = hours[math.ceil(0.9 * n) - 1]
    return {"leads": len(SEEDED), "answered": n, "median": median, "p90": p90,
            "within_target": sum(1 for value in hours if value <= 2)}


def test_time_to_first_answer_over_a_seeded_week_matches_an_independent_count(app, db):
    seed(db)
    now = datetime(2026, 3, 10, 12, 0, tzinfo=ROME)
    weeks = answer_times.weekly(db, app.config["SCHEDULE"], 2, now, weeks=2)
    assert [week["week"].isoformat() for week in weeks] == ["2026-03-09", "2026-03-02"]
    figures = {name: weeks[1][name] for name in ("leads", "answered", "median", "p90", "within_target")}
    expected = expected_week()
    assert figures["median"] == pytest.approx(expected.pop("median"))
    assert figures.pop("p90") == pytest.approx(expected.pop("p90"))
    figures.pop("median")
    assert figures == expected


def test_the_unanswered_lead_is_overdue_and_the_others_are_not(app, db):
    seed(db)
    now = datetime(2026, 3, 10, 12, 0, tzinfo=ROME)
    [lead], more = answer_times.overdue(db, app.config["SCHEDULE"], 2, now)
    assert not more
    assert lead["received_at"] == utc_iso((2026, 3, 6, 10, 0))
    assert lead["waiting_hours"] == pytest.approx(working_minutes_by_counting((2026, 3, 6, 10, 0),
                                                                              (2026, 3, 10, 12, 0)) / 60)


def test_the_csv_export_carries_the_working_hours_to_first_answer(owner, app, db):
    seed(db)
    data = owner.get("/admin/export.csv").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(data.lstrip("\ufeff"), newline="")))
    expected = [f"{working_minutes_by_counting(received, answered) / 60:.2f}" if answered else ""
                for received, answered in sorted(SEEDED)]
    assert [row["first_answer_hours"] for row in rows] == expected
    assert list(rows[0])[-2:] == ["delivery", "first_answer_hours"]


def test_the_json_export_carries_it_too(owner, app, db):
    seed(db)
    records = owner.get("/admin/export.json").get_json()
    assert records[0]["first_answer_hours"] == f"{working_minutes_by_counting(*SEEDED[0]) / 60:.2f}"


def test_a_status_change_records_the_first_answer_once(owner, app, db):
    lead = submissions.save_submission(db, {"form": "contactus", "name": "A", "email": "a@example.com",
                                            "message": "m"}, [])
    inbox_queries.set_status(db, [lead], "in_progress", "owner@florist.example")
    first = submissions.get_submission(db, lead)["first_answer_at"]
    inbox_queries.set_status(db, [lead], "answered", "owner@florist.example")
    assert first and submissions.get_submission(db, lead)["first_answer_at"] == first


def test_the_overdue_list_is_bounded_oldest_first(app, db):
    for day in (2, 3, 4):
        submissions.save_submission(db, {"form": "contactus", "name": f"Lead {day}", "email": "l@example.com",
                                         "message": "…", "received_at": utc_iso((2026, 3, day, 10, 0))}, [])
    leads, more = answer_times.overdue(db, app.config["SCHEDULE"], 2, datetime(2026, 3, 10, 12, 0, tzinfo=ROME),
                                       limit=2)
    assert [lead["name"] for lead in leads] == ["Lead 2", "Lead 3"] and more
