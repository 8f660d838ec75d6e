"""/healthz for an uptime monitor, and the alarm when email to the owner has stopped (log and inbox banner)."""
import json
import logging
import time
import urllib.error
import urllib.request

import pytest
from conftest import VALID, deliver_all
from inbox_fixtures import add_submission, inbox_user, owner  # noqa: F401

import database
import outbox


def get_health(url):
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_for_health(url, status, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        answer = get_health(url)
        if answer[0] == status:
            return answer[1]
        assert time.monotonic() < deadline, f"/healthz stayed {answer}"
        time.sleep(0.1)


def post_form(url, fields):
    request = urllib.request.Request(url + "/contactus", data=json.dumps(fields).encode(),
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_healthz_is_ok_on_a_fresh_install(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json["ok"] is True and response.json["problems"] == []
    assert response.json["checks"]["database"] == {"ok": True}
    assert response.headers["Cache-Control"] == "no-store"


def test_healthz_turns_503_while_smtp_is_down_past_the_threshold_and_200_after(live_server_factory, smtp_server):
    """A real gunicorn with its real delivery thread, a real SMTP server stopped and started again."""
    server = live_server_factory(HEALTH_MAX_DELAY_SECONDS=1.5)
    post_form(server.url, VALID)
    smtp_server.wait_for(1)
    assert wait_for_health(server.url, 200)["checks"]["channels"][0]["last_attempt"] == "ok"

    smtp_server.stop()
    post_form(server.url, {**VALID, "message": "Peonie per domenica, per favore."})
    report = wait_for_health(server.url, 503)
    assert any(problem.startswith(("outbox:", "email:")) for problem in report["problems"])
    email = next(check for check in report["checks"]["channels"] if check["channel"] == "email")
    assert email["last_attempt"] == "failed" and email["last_error_seconds_ago"] >= 0
    body = json.dumps(report)
    for personal in ("owner@florist.example", "anna@example.com", "Anna", "127.0.0.1:"):
        assert personal not in body, personal

    smtp_server.start()
    report = wait_for_health(server.url, 200)
    assert report["problems"] == [] and len(smtp_server.wait_for(2)) == 2


def test_a_target_that_never_worked_counts_as_failing_since_its_oldest_waiting_message(app, db, smtp_server):
    import health
    smtp_server.handler.replies.append("451 4.3.0 try later")
    add_submission(db, app)
    deliver_all(app, db)
    now = time.time()
    checks = health.channel_checks(db, now + 60, max_delay=30)
    assert checks[0]["failing_targets"] == 1 and checks[0]["ok"] is False
    assert health.channel_checks(db, now, max_delay=30)[0]["ok"] is True


# --- Email to the owner has stopped ----------------------------------------------------------------------------

@pytest.fixture
def config(config):
    config["MAIL_ALARM_SECONDS"] = 60
    return config


def age_waiting_messages(db, seconds):
    """Make the waiting messages older, as if they had waited that long."""
    with database.write_transaction(db):
        db.execute("UPDATE outbox SET created_at = created_at - :seconds, next_attempt_at = next_attempt_at - :seconds",
                   {"seconds": seconds})


def test_the_worker_logs_one_error_when_owner_email_has_stopped(app, db, smtp_server, caplog):
    smtp_server.stop()
    add_submission(db, app)
    age_waiting_messages(db, 120)
    caplog.set_level(logging.INFO, logger="postbox")
    worker = outbox.DeliveryWorker(app).start()
    try:
        deadline = time.monotonic() + 10
        while not any("ALARM" in record.message for record in caplog.records):
            assert time.monotonic() < deadline, "no alarm"
            time.sleep(0.05)
        smtp_server.start()
        outbox.send_all_now(db, time.time())
        worker.wake()
        smtp_server.wait_for(1)
        deadline = time.monotonic() + 10
        while not any("delivered again" in record.message for record in caplog.records):
            assert time.monotonic() < deadline, "no all-clear"
            time.sleep(0.05)
    finally:
        worker.stop()
    alarms = [record for record in caplog.records if "ALARM" in record.message]
    assert len(alarms) == 1 and alarms[0].levelno == logging.ERROR
    assert "owner@florist.example" not in alarms[0].message


def test_the_inbox_shows_a_banner_while_owner_email_has_stopped(app, db, owner, smtp_server):
    smtp_server.stop()
    add_submission(db, app)
    assert "Email to the owner has stopped" not in owner.get("/admin/").get_data(as_text=True)
    age_waiting_messages(db, 120)
    assert "Email to the owner has stopped" in owner.get("/admin/").get_data(as_text=True)
    smtp_server.start()
    deliver_all(app, db)
    assert "Email to the owner has stopped" not in owner.get("/admin/").get_data(as_text=True)


def test_the_banner_speaks_the_owners_language(app, db, owner, smtp_server):
    smtp_server.stop()
    add_submission(db, app)
    age_waiting_messages(db, 120)
    page = owner.get("/admin/?lang=ru", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    assert "Письма владельцу перестали доходить" in page


def health_without_writes(read_only):
    """The health report read through a connection that cannot write, closed after."""
    import health
    try:
        return health.health_report(read_only, time.time(), max_delay=900)
    finally:
        read_only.close()


@pytest.mark.sqlite_only
def test_a_database_that_takes_no_writes_makes_healthz_fail(app):
    """SQLite's own read-only mode stands in for a read-only file system (root ignores file modes)."""
    report = health_without_writes(database.open_db(f"file:{app.config['DATABASE']}?mode=ro", uri=True))
    assert report["ok"] is False
    assert report["problems"] == ["the database does not take writes: attempt to write a readonly database"]


@pytest.mark.postgresql_only
def test_a_postgresql_that_takes_no_writes_makes_healthz_fail(app):
    """A read-only session stands in for a server in recovery or a replica (SQLSTATE 25006 either way)."""
    read_only = database.open_db(app.config["DATABASE"])
    read_only.execute("SET default_transaction_read_only = on")
    report = health_without_writes(read_only)
    assert report["ok"] is False
    assert report["problems"] == ["the database does not take writes: cannot execute INSERT in a read-only transaction"]
