"""A real browser (Debian's Chromium, driven by Playwright) against a real gunicorn: the owner's day in the inbox."""
import csv
import io
from pathlib import Path

import pytest
from inbox_fixtures import OWNER, PASSWORD, PASSWORD_HASH
from conftest import ARTIFACTS
from playwright.sync_api import expect
import database
import inbox_queries
import submissions




@pytest.fixture
def seeded_database(database_url):
    """The live server's database with an inbox user and three submissions in three scripts."""
    db = database.open_db(database_url)
    database.migrate(db)
    inbox_queries.create_user(db, OWNER, PASSWORD_HASH)
    for name, message in (("Lucia Bianchi", "Vorrei delle rose"), ("Иван Петров", "Нужен букет к пятнице"),
                          ("प्रिया शर्मा", "नमस्ते, मुझे फूल चाहिए")):
        submissions.save_submission(db, {"form": "contactus", "name": name, "email": "lead@example.com",
                                     "subject": "Flowers", "message": message})
    db.close()


def test_owner_logs_in_finds_answers_and_exports(seeded_database, live_server_factory, browser, tmp_path):
    server = live_server_factory(TIMEZONE="Europe/Rome")
    page = browser.new_page(accept_downloads=True)
    page.goto(f"{server.url}/admin/")
    expect(page).to_have_url(f"{server.url}/admin/login?next=/admin/")
    page.fill("input[name=email]", OWNER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Log in')")
    expect(page).to_have_url(f"{server.url}/admin/")
    expect(page.locator("table.submissions tbody tr")).to_have_count(3)

    page.fill("input[name=q]", "петров")
    page.click("button:has-text('Search')")
    rows = page.locator("table.submissions tbody tr")
    expect(rows).to_have_count(1)
    rows.first.get_by_role("link", name="Иван Петров").click()
    expect(page.locator("h1")).to_have_text("Flowers")

    page.select_option("select[name=status]", "answered")
    page.click("button:has-text('Save status')")
    expect(page.locator(".flash")).to_have_text("Marked as answered.")
    expect(page.locator(".meta")).to_contain_text(f"by {OWNER}")

    page.click("text=« Inbox")
    expect(page.locator("svg.bars")).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin-inbox.png"), full_page=True)
    with page.expect_download() as download_info:
        page.click("text=Export CSV")
    download = download_info.value
    assert download.suggested_filename.startswith("postbox-") and download.suggested_filename.endswith(".csv")
    data = Path(download.path()).read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = {row["name"]: row for row in csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""))}
    assert set(rows) == {"Lucia Bianchi", "Иван Петров", "प्रिया शर्मा"}
    assert rows["Иван Петров"]["status"] == "answered" and rows["Lucia Bianchi"]["status"] == "new"
