"""The picture: submissions per day, stacked by status, drawn on the server as inline SVG."""
import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from inbox_fixtures import add_submission, inbox_user, owner  # noqa: F401
import inbox_queries



@pytest.fixture
def config(config):
    config["TIMEZONE"] = "America/Los_Angeles"
    return config


def chart_of(page):
    return page[page.index("<svg"):page.index("</svg>")]


def test_chart_stacks_each_days_submissions_by_status(app, owner, db):
    received = datetime.now(timezone.utc) - timedelta(days=2)
    ids = [add_submission(db, app, received_at=received.isoformat(timespec="microseconds")) for _ in range(3)]
    inbox_queries.set_status(db, ids[:1], "answered", "owner@florist.example")
    add_submission(db, app, status="spam", queue_email=False, received_at=received.isoformat(timespec="microseconds"))
    chart = chart_of(owner.get("/admin/").get_data(as_text=True))
    day = received.astimezone(ZoneInfo("America/Los_Angeles")).date().isoformat()
    assert f"<title>{day}: 2 new, 1 answered, 1 spam</title>" in chart
    assert chart.count('class="bar-new"') == 1 and chart.count('class="bar-answered"') == 1
    assert chart.count('class="bar-spam"') == 1
    heights = {status: float(height) for status, height in re.findall(
        r'class="bar-(\w+)" x="[\d.]+" y="[\d.]+" width="\d+" height="([\d.]+)"', chart)}
    assert heights["new"] == 2 * heights["answered"] == 2 * heights["spam"]


@pytest.mark.parametrize("days", [30, 90])
def test_chart_covers_30_or_90_days(owner, days):
    chart = chart_of(owner.get(f"/admin/?days={days}").get_data(as_text=True))
    assert chart.count("<g>") == days
    today = datetime.now(ZoneInfo("America/Los_Angeles")).date()
    assert f"<title>{today.isoformat()}: none</title>" in chart
    assert f"<title>{(today - timedelta(days=days - 1)).isoformat()}: none</title>" in chart


def test_old_submissions_are_outside_the_chart(app, owner, db):
    add_submission(db, app, received_at=(datetime.now(timezone.utc) - timedelta(days=40)).isoformat())
    assert "Submissions per day, last 30 days (0)" in owner.get("/admin/").get_data(as_text=True)
    assert "Submissions per day, last 90 days (1)" in owner.get("/admin/?days=90").get_data(as_text=True)


def test_chart_needs_no_script_and_no_inline_style(owner):
    page = owner.get("/admin/").get_data(as_text=True)
    assert "<svg" in page and "<script" not in page and "style=" not in page
    assert "script-src 'self'" in owner.get("/admin/").headers["Content-Security-Policy"]
