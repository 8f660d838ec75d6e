"""Delivery: the owner's email reaches a real SMTP server once, with the right headers, and survives failures."""
import time

import pytest
from conftest import VALID, count_rows, deliver_all
import outbox



def submit(client, **fields):
    response = client.post("/contactus", data={**VALID, **fields})
    assert response.status_code == 303, response.data
    return response


def test_message_reaches_owner_with_headers(client, app, db, smtp_server):
    submit(client, name="Иван Петров", subject="Букет", phone="+7 999 123-45-67", colour="красный")
    assert deliver_all(app, db) == 1
    [received] = smtp_server.messages
    message = received["message"]
    assert received["rcpt_tos"] == ["owner@florist.example"]
    assert received["mail_from"] == "forms@florist.example"
    assert message["From"].addresses[0].addr_spec == "forms@florist.example"
    assert message["From"].addresses[0].display_name == "Иван Петров"
    assert message["Reply-To"].addresses[0].addr_spec == "anna@example.com"
    assert message["To"] == "owner@florist.example"
    assert "Букет" in message["Subject"] and "Иван Петров" in message["Subject"]
    assert message["Message-ID"] and message["Date"]
    body = message.get_content()
    for text in ("Иван Петров", "anna@example.com", "+7 999 123-45-67", "colour: красный", VALID["message"]):
        assert text in body
    assert body.index("Иван Петров") < body.index("colour") < body.index(VALID["message"])


def test_special_subject_and_replyto(client, app, db, smtp_server):
    submit(client, _subject="Nuovo ordine", _replyto="other@example.org")
    deliver_all(app, db)
    message = smtp_server.messages[0]["message"]
    assert message["Subject"] == "Nuovo ordine"
    assert message["Reply-To"].addresses[0].addr_spec == "other@example.org"


def test_temporary_failure_is_retried_with_same_message_id(client, app, db, smtp_server):
    smtp_server.handler.replies = ["451 4.3.0 Try again later"]
    submit(client)
    deliver_all(app, db)
    assert smtp_server.messages == []
    [row] = db.execute("SELECT * FROM outbox").mappings().all()
    assert row["state"] == "pending" and row["attempts"] == 1 and "451" in row["last_error"]
    assert row["next_attempt_at"] > time.time()
    assert deliver_all(app, db) == 0  # not due yet
    deliver_all(app, db, clock=lambda: row["next_attempt_at"] + 0.01)
    [received] = smtp_server.messages
    assert received["message"]["Message-ID"] == row["message_id"]
    assert count_rows(db, "outbox", "state = 'sent'") == 1


def test_permanent_failure_is_kept_with_reason(client, app, db, smtp_server):
    smtp_server.handler.replies = ["550 5.1.1 Mailbox unavailable"]
    submit(client)
    deliver_all(app, db)
    [row] = db.execute("SELECT * FROM outbox").mappings().all()
    assert row["state"] == "failed" and "550" in row["last_error"]
    assert count_rows(db, "submissions") == 1
    assert [entry["outcome"] for entry in outbox.notifications_of(db, row["submission_id"])[0]["log"]] == ["failed"]


def test_refused_recipient_5xx_is_permanent(client, app, db, smtp_server):
    smtp_server.handler.rcpt_replies["owner@florist.example"] = "550 5.1.1 No such user"
    submit(client)
    deliver_all(app, db)
    assert db.execute("SELECT state FROM outbox").scalar() == "failed"


def test_server_down_then_up(client, app, db, smtp_server):
    smtp_server.stop()
    for index in range(3):
        submit(client, message=f"message {index}")
    deliver_all(app, db)
    # The connection failed, not a message: the channel pauses, and no message is charged an attempt.
    assert count_rows(db, "outbox", "state = 'pending' AND attempts = 0") == 3
    [paused] = db.execute("SELECT * FROM delivery_targets WHERE channel = 'email' AND target = ''").mappings().all()
    assert paused["failures"] == 1 and paused["paused_until"] > time.time() and "ConnectionRefused" in paused["last_error"]
    smtp_server.start()
    worker = outbox.start_worker(app)
    smtp_server.wait_for(3)
    worker.stop()
    time.sleep(0.1)
    assert len(smtp_server.messages) == 3
    assert count_rows(db, "outbox", "state = 'sent'") == 3


def test_server_that_never_answers_times_out_and_retries(client, app, db, smtp_server):
    app.config["SMTP_DATA_TIMEOUT"] = 1
    smtp_server.handler.delay = 2
    submit(client)
    deliver_all(app, db)
    row = db.execute("SELECT * FROM outbox").mappings().first()
    assert row["state"] == "pending" and row["attempts"] == 1
    assert "timed out" in row["last_error"] or "Disconnected" in row["last_error"]


def test_worker_is_woken_by_a_submission(app, client, smtp_server):
    app.config["POLL_SECONDS"] = 30  # only the wake-up can deliver in time
    worker = outbox.start_worker(app)
    time.sleep(0.2)
    submit(client)
    smtp_server.wait_for(1, timeout=3)
    worker.stop()


def test_expired_lease_is_taken_over(client, app, db, smtp_server):
    submit(client)
    # A worker claims the message and dies (kill -9) before sending it.
    claimed_at = time.time()
    outbox.claim(db, "dead-worker", claimed_at, lease_seconds=30, limit=10)
    assert deliver_all(app, db, claimant="live-worker") == 0
    assert deliver_all(app, db, claimant="live-worker", clock=lambda: claimed_at + 30.01) == 1
    assert len(smtp_server.messages) == 1


def test_gives_up_after_the_configured_time(client, app, db, smtp_server):
    app.config["GIVE_UP_SECONDS"] = 0
    smtp_server.stop()
    submit(client)
    deliver_all(app, db)
    row = db.execute("SELECT * FROM outbox").mappings().first()
    assert row["state"] == "failed" and row["last_error"].startswith("gave up; the email channel is down")


def test_batch_reuses_one_connection(client, app, db, smtp_server):
    for index in range(5):
        submit(client, message=f"message {index}")
    deliver_all(app, db)
    assert len(smtp_server.messages) == 5 and len(smtp_server.handler.sessions) == 1


def test_retry_delay_grows_to_the_maximum():
    config = {"RETRY_FIRST_SECONDS": 10, "RETRY_MAX_SECONDS": 3600}
    first = outbox.retry_delay(1, config)
    assert 8 <= first <= 12 <= 15
    assert outbox.retry_delay(5, config) > outbox.retry_delay(2, config)
    assert 3240 <= outbox.retry_delay(20, config) <= 3600


def test_resend_after_giving_up_gets_a_fresh_retry_window(client, app, db, smtp_server):
    app.config["GIVE_UP_SECONDS"] = 1
    smtp_server.handler.replies = ["550 5.7.1 Rejected"]
    submit(client)
    deliver_all(app, db)
    [row] = db.execute("SELECT * FROM outbox").mappings().all()
    assert row["state"] == "failed"
    later = time.time() + 2  # older than the give-up window now
    smtp_server.handler.replies = ["451 4.3.0 Busy"]
    outbox.resend(db, row["submission_id"], later)
    deliver_all(app, db, clock=lambda: later + 0.1)
    assert db.execute("SELECT state FROM outbox").scalar() == "pending"  # retried, not given up


@pytest.mark.parametrize("kind", ["html form", "form accepting json", "json body"])
def test_each_client_kind_is_stored_and_delivered_exactly_once(client, app, db, smtp_server, kind):
    if kind == "html form":
        response = client.post("/contactus", data=VALID)
        assert response.status_code == 303
    elif kind == "form accepting json":
        response = client.post("/contactus", data=VALID, headers={"Accept": "application/json"})
        assert response.status_code == 200 and response.json["ok"]
    else:
        response = client.post("/contactus", json=VALID)
        assert response.status_code == 200 and response.json["ok"]
    assert count_rows(db, "submissions") == 1
    worker = outbox.start_worker(app)
    smtp_server.wait_for(1)
    time.sleep(0.5)  # a second delivery would arrive now
    worker.stop()
    [received] = smtp_server.messages
    message = received["message"]
    assert received["rcpt_tos"] == ["owner@florist.example"]
    assert message["From"].addresses[0].addr_spec == "forms@florist.example"
    assert message["Reply-To"].addresses[0].addr_spec == VALID["email"]
    assert VALID["name"] in message["Subject"] and message["Message-ID"] and message["Date"]
    assert VALID["message"] in message.get_content()
    assert count_rows(db, "outbox", "state = 'sent'") == 1
