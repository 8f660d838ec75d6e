"""The list: newest first, the owner's time zone, full-text search, filters, counts and keyset pages."""
import re
from datetime import datetime, timedelta, timezone

import pytest
from inbox_fixtures import add_submission, inbox_user, owner  # noqa: F401
import inbox_queries



@pytest.fixture
def config(config):
    config["TIMEZONE"] = "Asia/Kolkata"
    return config


def ids_on(page):
    return [int(value) for value in re.findall(r'name="ids" value="(\d+)"', page)]


def test_list_shows_newest_first_with_its_columns(app, owner, db):
    older = add_submission(db, app, received_at="2026-01-10T08:00:00.000000+00:00", name="Old Lead")
    newer = add_submission(db, app, received_at="2026-01-10T20:15:00.000000+00:00", name="Иван Петров",
                           email="ivan@example.ru", subject="Букет", message="Первая строка\nвторая строка")
    page = owner.get("/admin/").get_data(as_text=True)
    assert ids_on(page) == [newer, older]
    for text in ("Иван Петров", "ivan@example.ru", "Букет", "Первая строка", "contactus", "pending", "new"):
        assert text in page
    assert "вторая строка" not in page  # the list shows the message's first line only
    assert "2026-01-11 01:45" in page  # 20:15 UTC in Asia/Kolkata (+05:30)


@pytest.mark.parametrize("query, expected", [
    ("Петров", ["ivan"]), ("ПЕТР", ["ivan"]), ("Հայաստան", ["armen"]), ("नमस्ते", ["priya"]),
    ("rosso", ["anna"]), ("+39", ["anna"]), ("example.ru", ["ivan"]), ("called back", ["priya"]),
    ('"unbalanced', []), ("AND OR NOT *", []), ("ivan@example.ru", ["ivan"]),
])
def test_search_covers_every_field_in_every_script(app, owner, db, query, expected):
    ids = {
        "ivan": add_submission(db, app, name="Иван Петров", email="ivan@example.ru", message="Нужны розы"),
        "armen": add_submission(db, app, name="Armen", subject="Ծաղիկներ", message="Բարեւ, Հայաստանից եմ"),
        "priya": add_submission(db, app, name="Priya", message="नमस्ते, मुझे फूल चाहिए"),
        "anna": add_submission(db, app, name="Anna", phone="+39 333 1234567", extra={"colore": "rosso"}),
    }
    inbox_queries.set_note(db, ids["priya"], "called back on Monday")
    response = owner.get("/admin/", query_string={"q": query})
    assert response.status_code == 200
    assert sorted(ids_on(response.get_data(as_text=True))) == sorted(ids[name] for name in expected)


def test_filters_by_status_form_and_dates_in_the_owners_zone(app, owner, db):
    first = add_submission(db, app, received_at="2026-03-01T17:00:00.000000+00:00")  # 22:30 on 1 March in Kolkata
    second = add_submission(db, app, received_at="2026-03-01T19:00:00.000000+00:00")  # 00:30 on 2 March
    third = add_submission(db, app, received_at="2026-03-05T10:00:00.000000+00:00", form="shop")
    inbox_queries.set_status(db, [first], "answered", "owner@florist.example")

    def listed(**args):
        return sorted(ids_on(owner.get("/admin/", query_string=args).get_data(as_text=True)))

    assert listed(**{"from": "2026-03-01", "to": "2026-03-01"}) == [first]
    assert listed(**{"from": "2026-03-02"}) == [second, third]
    assert listed(status="answered") == [first]
    assert listed(status="new") == [second, third]
    assert listed(form="shop") == [third]
    assert listed(form="shop", status="answered") == []
    page = owner.get("/admin/", query_string={"from": "1 March"})
    assert page.status_code == 200 and "is not a date" in page.get_data(as_text=True)


def test_counts_per_status(app, owner, db):
    ids = [add_submission(db, app) for _ in range(5)]
    inbox_queries.set_status(db, ids[:2], "answered", "owner@florist.example")
    add_submission(db, app, status="spam", queue_email=False)
    assert inbox_queries.status_counts(db, {}) == {"new": 3, "in_progress": 0, "answered": 2, "spam": 1}
    page = owner.get("/admin/").get_data(as_text=True)
    assert "answered (2)" in page and "new (3)" in page and "spam (1)" in page and "all (6)" in page


def test_pages_walk_every_row_once_even_with_equal_times(app, owner, db):
    start = datetime(2026, 2, 1, tzinfo=timezone.utc)
    for number in range(130):
        # Groups of three share a received time: the id breaks the tie.
        received = (start + timedelta(minutes=number // 3)).isoformat(timespec="microseconds")
        add_submission(db, app, received_at=received, name=f"Lead {number}", queue_email=False)
    seen, url = [], "/admin/?q=lead"
    while url:
        page = owner.get(url).get_data(as_text=True)
        seen += ids_on(page)
        match = re.search(r'rel="next" href="([^"]+)"', page)
        url = match.group(1).replace("&amp;", "&") if match else None
    assert len(seen) == 130 and len(set(seen)) == 130
    rows = {row["id"]: (row["received_at"], row["id"]) for row in inbox_queries.iter_submissions(db, {})}
    assert [rows[i] for i in seen] == sorted(rows.values(), reverse=True)


# SQLite's EXPLAIN QUERY PLAN: PostgreSQL's planner chooses by its statistics, a small table's by a scan.
@pytest.mark.sqlite_only
@pytest.mark.parametrize("filters", [{}, {"status": "new"}, {"form": "contactus"}])
def test_pages_are_read_from_an_index_not_sorted(db, filters):
    where, params = inbox_queries._where(db, filters)
    plan = " ".join(row[3] for row in db.execute(
        f"EXPLAIN QUERY PLAN SELECT id FROM submissions WHERE {where} AND (received_at, id) < ('9', 1)"
        " ORDER BY received_at DESC, id DESC LIMIT 51", params))
    assert "INDEX idx_submissions_" in plan and "TEMP B-TREE" not in plan, plan


ATTACKS = ['<script>alert("x")</script>', '" onmouseover="alert(1)', "<img src=x onerror=alert(1)>"]


@pytest.mark.parametrize("attack", ATTACKS)
def test_stored_markup_renders_as_text(app, owner, db, attack):
    submission_id = add_submission(
        db, app, name=attack, email=attack, phone=attack, subject=attack, message=attack, extra={attack: attack},
        reply_to=attack, mail_subject=attack, page="https://shop.example/" + attack, user_agent=attack, form=attack,
        language=attack, spam_reason=attack)
    inbox_queries.set_note(db, submission_id, attack)
    inbox_queries.set_status(db, [submission_id], "answered", attack)
    for url in ("/admin/", f"/admin/s/{submission_id}", "/admin/?q=alert"):
        page = owner.get(url).get_data(as_text=True)
        assert submission_id in ids_on(owner.get("/admin/").get_data(as_text=True))
        for dangerous in ("<script>alert", '" onmouseover=', "<img src=x", "onmouseover=\"alert"):
            assert dangerous not in page, (url, dangerous)
        assert "&lt;" in page or "&#34;" in page


@pytest.mark.parametrize("status", ["", "new", "answered"])
def test_a_searchs_one_query_first_page_equals_the_count_and_page_asked_separately(app, db, status):
    for index in range(30):
        submission_id = add_submission(db, app, name=f"Lead {index}", message=f"rose {index}" if index % 3 else "tulip",
                                       received_at=f"2026-02-{1 + index % 28:02d}T{index % 24:02d}:00:00.000000+00:00")
        if index % 4 == 0:
            inbox_queries.set_status(db, [submission_id], "answered", "owner@florist.example")
    filters = {"q": "ros", "status": status}
    counts, capped, rows = inbox_queries.search_first_page(db, filters, limit=11, at_most=1000)
    assert not capped
    assert counts == inbox_queries.status_counts(db, {**filters, "status": ""})
    assert [row["id"] for row in rows] == [row["id"] for row in inbox_queries.list_submissions(db, filters, limit=11)]
    counts, capped, rows = inbox_queries.search_first_page(db, filters, limit=11, at_most=5)
    assert capped and sum(counts.values()) == 6
