"""`flask --app app copy-to postgresql://…`: a SQLite installation moved into a real PostgreSQL, row for row."""
import math
import sqlite3
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

import outbox
import schema
from conftest import ROOT, deliver_all
from inbox_fixtures import LEADS, OWNER, add_submission, owner, inbox_user, post  # noqa: F401 (fixtures)
from outcome_journal import OutcomeJournal, journal_path

# The source of a copy is a SQLite installation by definition; its target is the postgres_url fixture.
pytestmark = pytest.mark.sqlite_only


def rows_of(connection_rows):
    """Rows as sorted tuples, floats compared to the microsecond (REAL and double precision agree to that)."""
    def same(value):
        return round(value, 6) if isinstance(value, float) and math.isfinite(value) else value
    return sorted(tuple(same(value) for value in row) for row in connection_rows)


def assert_identical(sqlite_path, postgres_url):
    engine = sa.create_engine(postgres_url)
    try:
        with sqlite3.connect(sqlite_path) as source, engine.connect() as target:
            for table in schema.metadata.sorted_tables:
                listed = ", ".join(column.name for column in table.columns if column.computed is None)
                # The counts are recomputed on PostgreSQL: a count SQLite's triggers took down to 0 is no row there.
                where = " WHERE n > 0" if table.name in schema.DERIVED_TABLES else ""
                in_source = rows_of(source.execute(f"SELECT {listed} FROM {table.name}{where}"))
                in_target = rows_of(target.execute(sa.text(f"SELECT {listed} FROM {table.name}{where}")))
                assert in_source == in_target, table.name
            # The copied ids go on: the next submission on PostgreSQL gets the next id, not a taken one.
            next_id = target.execute(sa.text("SELECT nextval(pg_get_serial_sequence('submissions', 'id'))")).scalar()
            assert next_id == source.execute("SELECT max(id) FROM submissions").fetchone()[0] + 1
    finally:
        engine.dispose()


def test_every_table_is_copied_row_for_row_and_a_repeat_gives_the_same(owner, app, db, runner, postgres_url):
    for lead in LEADS:
        add_submission(db, app, **{key: value for key, value in lead.items() if key != "status"})
    deliver_all(app, db)
    post(owner, "/admin/s/1/reply", data={"body": "Добрый день! Букет будет готов к субботе."})
    post(owner, "/admin/s/2/note", data={"note": "позвонить в пятницу"})
    post(owner, "/admin/s/3/status", data={"status": "spam"})
    deliver_all(app, db)
    result = runner.invoke(args=["copy-to", postgres_url])
    assert result.exit_code == 0, result.output
    assert "Copied: every count matches." in result.output
    assert_identical(app.config["DATABASE"], postgres_url)

    add_submission(db, app, name="Anna", email="anna@example.com", message="Ancora una domanda")
    result = runner.invoke(args=["copy-to", postgres_url])
    assert result.exit_code == 0, result.output
    assert_identical(app.config["DATABASE"], postgres_url)


def test_an_outcome_still_in_the_delivery_journal_is_copied_with_its_message(app, db, runner, postgres_url):
    """A delivery worker killed before it folded its outcomes: copied without them, the message would be sent
    again from PostgreSQL once its lease ran out."""
    add_submission(db, app)
    token, [row] = outbox.claim(db, "killed-worker", time.time(), app.config["LEASE_SECONDS"], 50)
    killed = OutcomeJournal(journal_path(app.config["DATABASE"]))
    killed.add(row, token, "sent", time.time(), "250 2.0.0 queued")
    killed.close()
    result = runner.invoke(args=["copy-to", postgres_url])
    assert result.exit_code == 0, result.output
    engine = sa.create_engine(postgres_url)
    with engine.connect() as target:
        copied = target.execute(sa.text("SELECT state, reply, lease_token FROM outbox")).one()
    engine.dispose()
    assert tuple(copied) == ("sent", "250 2.0.0 queued", None)
    assert_identical(app.config["DATABASE"], postgres_url)


def test_a_target_with_leads_the_source_never_had_is_not_replaced(app, db, runner, postgres_url):
    add_submission(db, app)
    assert runner.invoke(args=["copy-to", postgres_url]).exit_code == 0
    engine = sa.create_engine(postgres_url)
    with engine.begin() as target:  # a lead received on PostgreSQL after the move
        target.execute(schema.submissions.insert().values(form="contactus", received_at="2026-11-24T10:00:00+00:00",
                                                          name="New", email="new@example.com", message="after"))
    result = runner.invoke(args=["copy-to", postgres_url])
    assert result.exit_code != 0 and "1 submission(s) newer than the source's newest" in result.output
    with engine.connect() as target:
        assert target.execute(sa.text("SELECT count(*) FROM submissions")).scalar() == 2
    assert runner.invoke(args=["copy-to", postgres_url, "--replace-newer"]).exit_code == 0
    assert_identical(app.config["DATABASE"], postgres_url)
    engine.dispose()


def test_a_target_that_is_not_postgresql_is_refused_and_nothing_is_written(app, db, runner, tmp_path):
    add_submission(db, app)
    result = runner.invoke(args=["copy-to", f"sqlite:///{tmp_path / 'other.sqlite3'}"])
    assert result.exit_code != 0 and "must be a postgresql:// URL" in result.output
    assert not (tmp_path / "other.sqlite3").exists()


def test_100000_submissions_arrive_with_identical_counts_and_an_identical_export(tmp_path, postgres_url):
    path = tmp_path / "big.sqlite3"
    subprocess.run([sys.executable, "bench/make_big_db.py", str(path), "100000"], cwd=ROOT, check=True,
                   capture_output=True)
    env = {"POSTBOX_DATABASE": str(path), "POSTBOX_SECRET_KEY": "test-secret", "POSTBOX_MAIL_DIR": str(tmp_path / "mail"),
           "POSTBOX_OWNER_EMAIL": OWNER, "POSTBOX_MAIL_FROM": "forms@florist.example", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "copy-to", postgres_url], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ["submissions", "100,000", "100,000"] in [line.split() for line in result.stdout.splitlines()]
    engine = sa.create_engine(postgres_url)
    query = "SELECT form, status, count(*) FROM submissions GROUP BY form, status"
    with sqlite3.connect(path) as source, engine.connect() as target:
        assert sorted(source.execute(query)) == sorted(tuple(row) for row in target.execute(sa.text(query)))
        assert sorted(source.execute("SELECT state, count(*) FROM outbox GROUP BY state")) == sorted(
            tuple(row) for row in target.execute(sa.text("SELECT state, count(*) FROM outbox GROUP BY state")))
    engine.dispose()

    def export(database):
        """`flask export` (CSV, every submission) of an installation on this store, as its bytes."""
        exported = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "export", "--format", "csv"],
                                  cwd=ROOT, env={**env, "POSTBOX_DATABASE": database}, capture_output=True,
                                  timeout=600)
        assert exported.returncode == 0, exported.stderr.decode()[-2000:]
        return exported.stdout

    on_sqlite = export(str(path))
    assert on_sqlite.count(b"\n") > 100_000  # a header and every submission (some span lines)
    assert export(postgres_url) == on_sqlite
