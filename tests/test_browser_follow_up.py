"""A real browser against a real gunicorn: the owner sees the overdue lead first, replies, and it is no longer overdue."""
import time
from datetime import datetime, timedelta, timezone

import pytest
from playwright.sync_api import expect

from conftest import ARTIFACTS
from inbox_fixtures import OWNER, PASSWORD, PASSWORD_HASH
import database
import inbox_queries
import submissions


@pytest.fixture
def seeded_database(database_url):
    """An overdue lead (five hours old, every hour a working hour) and a fresh one."""
    db = database.open_db(database_url)
    database.migrate(db)
    inbox_queries.create_user(db, OWNER, PASSWORD_HASH)
    five_hours_ago = (datetime.now(timezone.utc) - timedelta(hours=5)).isoformat(timespec="microseconds")
    submissions.save_submission(db, {"form": "contactus", "name": "Giulia Verdi", "email": "giulia@example.com",
                                     "subject": "Bouquet da sposa", "message": "Per il 12 giugno",
                                     "received_at": five_hours_ago})
    submissions.save_submission(db, {"form": "contactus", "name": "Marco Neri", "email": "marco@example.com",
                                     "subject": "Tulipani", "message": "Quanto costano?"})
    db.close()


def test_owner_sees_the_overdue_lead_first_replies_and_it_leaves_the_list(seeded_database, live_server_factory,
                                                                          browser, smtp_server):
    server = live_server_factory(TIMEZONE="Europe/Rome", BUSINESS_HOURS="", REMIND_AFTER="2")
    page = browser.new_page()
    page.goto(f"{server.url}/admin/")
    page.fill("input[name=email]", OWNER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Log in')")
    overdue = page.locator("section.overdue")
    expect(overdue.locator("li")).to_have_count(1)
    expect(overdue.locator("li").first).to_contain_text("Giulia Verdi")
    # The overdue list comes before the list of every submission.
    assert page.locator("section.overdue, table.submissions").first.evaluate("e => e.tagName") == "SECTION"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin-overdue.png"), full_page=True)

    overdue.get_by_role("link", name="Giulia Verdi").click()
    expect(page.locator("h1")).to_have_text("Bouquet da sposa")
    page.fill("#reply-body", "Buongiorno Giulia, certo: le mando una proposta entro domani.")
    page.click("button:has-text('Send reply')")
    expect(page.locator(".flash")).to_contain_text("giulia@example.com")
    expect(page.locator(".reply-history")).to_contain_text("le mando una proposta")

    page.click("text=« Inbox")
    expect(page.locator("table.submissions tbody tr")).to_have_count(2)
    expect(page.locator("section.overdue")).to_have_count(0)
    reply = message_to(smtp_server, "giulia@example.com")
    assert reply["message"]["In-Reply-To"].startswith("<postbox.1.")


def message_to(smtp_server, address, timeout=15):
    """The first message the SMTP server got for `address` (the worker may send the owner a reminder as well)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in smtp_server.messages if m["rcpt_tos"] == [address]]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no message reached {address}")
