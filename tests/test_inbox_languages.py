"""The inbox in the owner's language: the browser's, or the one each user chose; the export stays English."""
import csv
import io

import pytest
from inbox_fixtures import add_submission, inbox_user, log_in, owner, post  # noqa: F401 (fixtures)
from test_languages import t

import inbox_queries

INBOX_TEXTS = ("Log out", "Export CSV", "With the selected:", "Email to owner")


# SQLite's migration m011 and its column as PRAGMA table_info reports it; PostgreSQL's table is schema.py's.
@pytest.mark.sqlite_only
def test_the_users_table_has_a_language_column(db):
    columns = {row["name"]: row for row in db.execute("PRAGMA table_info(users)").mappings()}
    assert columns["language"]["dflt_value"] == "''"
    assert "m011_user_language" in {row["name"] for row in db.execute("SELECT name FROM _sqlite_migrations").mappings()}


def test_a_new_user_has_no_language_of_their_own(db):
    inbox_queries.create_user(db, "new@florist.example", "hash")
    assert inbox_queries.get_user(db, "new@florist.example")["language"] == ""


@pytest.mark.parametrize("lang", ["ru", "it", "hy", "hi"])
def test_inbox_follows_the_browser_language(owner, db, app, lang):
    add_submission(db, app)
    page = owner.get("/admin/", headers={"Accept-Language": lang}).get_data(as_text=True)
    assert f'<html lang="{lang}">' in page
    for text in INBOX_TEXTS:
        assert t(lang, text) in page, text
    assert f'>{t(lang, "new")}</span>' in page  # the status badge
    detail = owner.get("/admin/s/1", headers={"Accept-Language": lang}).get_data(as_text=True)
    assert t(lang, "Save status") in detail and t(lang, "Delete…") in detail


def test_a_users_own_language_wins_over_the_browser(owner, db):
    response = post(owner, "/admin/language", {"language": "hi", "back": "/admin/?status=new"},
                    headers={"Accept-Language": "ru"})
    assert response.status_code == 302 and response.headers["Location"] == "/admin/?status=new"
    assert inbox_queries.get_user(db, "owner@florist.example")["language"] == "hi"
    page = owner.get("/admin/", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    assert '<html lang="hi">' in page and t("hi", "Language saved.") in page

    post(owner, "/admin/language", {"language": ""})  # back to the browser's
    page = owner.get("/admin/", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    assert '<html lang="ru">' in page


def test_an_unknown_language_is_refused(owner):
    assert post(owner, "/admin/language", {"language": "xx"}).status_code == 400


def test_flash_messages_are_translated(owner, db, app):
    submission_id = add_submission(db, app)
    post(owner, f"/admin/s/{submission_id}/status", {"status": "answered"}, headers={"Accept-Language": "it"})
    page = owner.get(f"/admin/s/{submission_id}", headers={"Accept-Language": "it"}).get_data(as_text=True)
    assert t("it", "Marked as %(status)s.", status=t("it", "answered")) in page.replace("&#34;", '"')


def test_export_headers_stay_english_in_a_russian_inbox(owner, db, app):
    add_submission(db, app, extra={"Город": "Москва"})
    post(owner, "/admin/language", {"language": "ru"})
    data = owner.get("/admin/export.csv").get_data(as_text=True).lstrip("\ufeff")
    header = next(csv.reader(io.StringIO(data)))
    assert header[:5] == ["id", "form", "status", "received_at", "name"] and header[-2:] == ["delivery", "first_answer_hours"]
    assert all(text not in data for text in ("Статус", "Получено", "новые"))
    assert ",new," in data


def test_delete_asks_first(owner, db, app):
    submission_id = add_submission(db, app)
    page = owner.get(f"/admin/s/{submission_id}").get_data(as_text=True)
    # The only delete button sits inside a closed <details>: a second, deliberate press.
    details = page[page.index('<details class="confirm">'):page.index("</details>")]
    assert 'class="danger"' in details and page.count('class="danger"') == 1
    listing = owner.get("/admin/").get_data(as_text=True)
    assert 'value="delete"' in listing[listing.index('<details class="confirm">'):]


@pytest.fixture
def config(config):
    config["LOGIN_RATE_LIMIT"] = "2 per minute"
    return config


def test_login_lock_out_has_its_own_words(client, inbox_user):  # noqa: F811
    statuses = [log_in(client, password="wrong password", headers={"Accept-Language": "ru"}).status_code
                for _ in range(3)]
    assert statuses == [401, 401, 429]
    page = log_in(client, password="wrong password", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    assert t("ru", "Too many login attempts from your address. Please wait a minute and try again.") in page
    assert t("ru", "Your message was not sent") not in page
    assert "<title>" + t("ru", "Error: %(problem)s", problem=t("ru", "Please wait a little")) in page
