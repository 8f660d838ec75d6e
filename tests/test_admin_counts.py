"""The inbox's counts and chart come from tables kept by triggers: they stay exact whatever happens to a row."""
from datetime import datetime, timedelta, timezone

import pytest
from inbox_fixtures import add_submission, inbox_user, owner  # noqa: F401
import database
import inbox_queries



def counted_by_table(db, where="TRUE", params=None):
    counts = dict.fromkeys(database.STATUSES, 0)
    counts.update(db.execute(
        f"SELECT status, COUNT(*) FROM submissions WHERE {where} GROUP BY status", params).all())
    return counts


def assert_counts_exact(db):
    assert inbox_queries.status_counts(db, {}) == counted_by_table(db)
    for form in ("contactus", "wedding"):
        assert inbox_queries.status_counts(db, {"form": form}) == counted_by_table(db, "form = :form", {"form": form})
    since, before = "2026-02-01T05:45:00.000000+00:00", "2026-02-03T18:30:00.000000+00:00"
    assert inbox_queries.status_counts(db, {"since": since, "before": before}) == counted_by_table(
        db, "received_at >= :since AND received_at < :before", {"since": since, "before": before})
    quarters = db.execute("SELECT form, status, SUM(n) FROM inbox_quarters GROUP BY 1, 2").all()
    by_group = db.execute("SELECT form, status, COUNT(*) FROM submissions GROUP BY 1, 2").all()
    assert sorted(map(tuple, quarters)) == sorted(map(tuple, by_group))


@pytest.fixture
def spread(app, db):
    """Submissions every 7 minutes over three days from 2026-02-01, in two forms."""
    start = datetime(2026, 2, 1, tzinfo=timezone.utc)
    return [add_submission(db, app, form="wedding" if number % 3 == 0 else "contactus",
                           received_at=(start + timedelta(minutes=7 * number)).isoformat(timespec="microseconds"))
            for number in range(600)]


def test_counts_are_exact_after_inserts(db, spread):
    assert_counts_exact(db)


def test_counts_follow_a_status_change(db, spread):
    inbox_queries.set_status(db, spread[:50], "answered", "owner@florist.example")
    inbox_queries.set_status(db, spread[40:60], "spam", "owner@florist.example")
    assert_counts_exact(db)


def test_counts_follow_a_changed_form_and_time(db, spread):
    with database.write_transaction(db):
        db.execute("UPDATE submissions SET form = 'wedding', received_at = '2026-02-02T10:07:00.000000+00:00'"
                   " WHERE id = :id", {"id": spread[1]})
    assert_counts_exact(db)


def test_counts_follow_a_delete(db, spread):
    inbox_queries.delete_submissions(db, spread[::5])
    assert_counts_exact(db)


def test_counts_follow_a_purge(db, spread):
    inbox_queries.purge_received_before(db, "2026-02-02T12:00:00.000000+00:00")
    assert_counts_exact(db)
    assert db.execute("SELECT COUNT(*) FROM inbox_quarters WHERE n = 0").scalar() == 0


@pytest.mark.parametrize("since, before", [
    ("2026-02-01T05:50:00.000000+00:00", "2026-02-02T18:31:12.500000+00:00"),  # inside quarters
    ("2026-02-01T05:50:00.000000+00:00", "2026-02-01T05:59:00.000000+00:00"),  # inside one quarter
    (None, "2026-02-02T07:20:00.000000+00:00"),
    ("2026-02-02T07:20:00.000000+00:00", None),
])
def test_counts_between_bounds_inside_a_quarter_are_exact(db, spread, since, before):
    filters = {name: value for name, value in (("since", since), ("before", before)) if value}
    clauses = [clause for clause, value in (("received_at >= :since", since), ("received_at < :before", before))
               if value]
    assert inbox_queries.status_counts(db, filters) == counted_by_table(db, " AND ".join(clauses), filters)


# It rebuilds an installation from before Alembic: SQLite's own, with its sqlite-utils migrations table.
@pytest.mark.sqlite_only
def test_the_migration_counts_existing_rows(db, spread):
    with database.write_transaction(db):  # back to an installation from before m006, and before Alembic
        db.execute("DELETE FROM inbox_quarters")
        db.execute("DELETE FROM inbox_totals")
        db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm006_inbox_counts'")
        db.execute("DROP TABLE alembic_version")
        for name in ("inbox_totals", "inbox_quarters"):
            db.execute(f"DROP TABLE {name}")
        for name in ("insert", "delete", "update"):
            db.execute(f"DROP TRIGGER inbox_counts_{name}")
        db.execute("DROP INDEX idx_outbox_submission_id_kind_id_state")
        db.execute("DROP INDEX idx_outbox_waiting")  # Alembic's 0002, which came after
    database.migrate(db)
    assert_counts_exact(db)


def test_a_common_search_shows_capped_counts(app, owner, db, monkeypatch):
    import admin
    monkeypatch.setattr(admin, "SEARCH_COUNT_LIMIT", 5)
    ids = [add_submission(db, app, message=f"Roses number {number}") for number in range(8)]
    add_submission(db, app, message="Tulips")
    page = owner.get("/admin/?q=roses").get_data(as_text=True)
    assert "all (5+)" in page
    assert all(f"Roses number {number}" in page for number in range(8))  # the page itself is complete
    assert f'value="{ids[-1]}"' in page
