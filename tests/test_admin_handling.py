"""One submission and its handling: every field, delivery history, reply link, status, notes, bulk, delete,
resend."""
import time
from datetime import datetime, timedelta, timezone

import pytest
from conftest import count_rows, deliver_all
from inbox_fixtures import OWNER, add_submission, inbox_user, owner, post  # noqa: F401

import inbox_queries
import outbox
import submissions


def test_detail_shows_every_field_and_the_delivery_history(app, owner, db, smtp_server):
    submission_id = add_submission(
        db, app, name="Lucia Bianchi", email="lucia@example.it", phone="+39 06 1234", subject="Rose rosse",
        message="Buongiorno,\nvorrei 12 rose.", extra={"colore": "rosso", "consegna": "sabato"},
        page="https://fiori.example/contatti", ip="203.0.113.9", user_agent="Firefox/140", language="it")
    smtp_server.handler.replies.append("451 4.3.0 try later")
    deadline = time.monotonic() + 10
    while outbox.notifications_of(db, submission_id)[0]["state"] != "sent" and time.monotonic() < deadline:
        deliver_all(app, db)
        time.sleep(0.05)
    page = owner.get(f"/admin/s/{submission_id}").get_data(as_text=True)
    for text in ("Lucia Bianchi", "lucia@example.it", "+39 06 1234", "Rose rosse", "vorrei 12 rose.", "colore",
                 "rosso", "consegna", "sabato", "203.0.113.9", "Firefox/140", "it"):
        assert text in page
    assert 'href="https://fiori.example/contatti"' in page
    assert "sent" in page and "attempts: 2" in page and "451 4.3.0 try later" in page and "retry" in page
    assert 'href="mailto:lucia@example.it?subject=Re%3A%20Rose%20rosse"' in page


def test_reply_goes_to_reply_to_when_given(app, owner, db):
    submission_id = add_submission(db, app, reply_to="orders@example.it", subject="Ordine & consegna")
    page = owner.get(f"/admin/s/{submission_id}").get_data(as_text=True)
    assert "mailto:orders@example.it?subject=Re%3A%20Ordine%20%26%20consegna" in page


def test_only_web_pages_become_links(app, owner, db):
    submission_id = add_submission(db, app, page="javascript:alert(1)")
    page = owner.get(f"/admin/s/{submission_id}").get_data(as_text=True)
    assert 'href="javascript:' not in page


def test_missing_submission_is_404(owner):
    assert owner.get("/admin/s/999").status_code == 404


@pytest.mark.parametrize("status", ["in_progress", "answered", "spam", "new"])
def test_status_change_records_who_and_when(app, owner, db, status):
    submission_id = add_submission(db, app)
    response = post(owner, f"/admin/s/{submission_id}/status", {"status": status})
    assert response.status_code == 302
    submission = submissions.get_submission(db, submission_id)
    assert submission["status"] == status and submission["status_by"] == OWNER
    assert datetime.now(timezone.utc) - datetime.fromisoformat(submission["status_at"]) < timedelta(minutes=1)
    assert f"by {OWNER}" in owner.get(f"/admin/s/{submission_id}").get_data(as_text=True)


def test_unknown_status_is_refused(app, owner, db):
    submission_id = add_submission(db, app)
    assert post(owner, f"/admin/s/{submission_id}/status", {"status": "archived"}).status_code == 400
    assert submissions.get_submission(db, submission_id)["status"] == "new"


def test_note_is_saved_and_shown(app, owner, db):
    submission_id = add_submission(db, app)
    post(owner, f"/admin/s/{submission_id}/note", {"note": "Richiamata lunedì, preventivo inviato"})
    assert submissions.get_submission(db, submission_id)["note"] == "Richiamata lunedì, preventivo inviato"
    assert "Richiamata lunedì" in owner.get(f"/admin/s/{submission_id}").get_data(as_text=True)


def test_bulk_status_touches_only_the_selected_rows(app, owner, db):
    ids = [add_submission(db, app) for _ in range(4)]
    response = post(owner, "/admin/bulk", {"ids": [str(ids[0]), str(ids[2])], "action": "in_progress",
                                           "back": "/admin/?status=new"})
    assert response.status_code == 302 and response.headers["Location"] == "/admin/?status=new"
    assert [submissions.get_submission(db, i)["status"] for i in ids] == ["in_progress", "new", "in_progress", "new"]


def test_bulk_without_selection_changes_nothing(app, owner, db):
    add_submission(db, app)
    post(owner, "/admin/bulk", {"action": "delete"})
    assert count_rows(db, "submissions") == 1


def test_delete_removes_the_submission_its_email_and_log(app, owner, db, smtp_server):
    kept = add_submission(db, app)
    doomed = add_submission(db, app, name="Forget Me")
    deliver_all(app, db)
    assert post(owner, f"/admin/s/{doomed}/delete").status_code == 302
    assert submissions.get_submission(db, doomed) is None
    assert count_rows(db, "outbox", "submission_id = :id", {"id": doomed}) == 0
    assert count_rows(db, "delivery_log") == 1 and count_rows(db, "outbox") == 1
    assert submissions.get_submission(db, kept) is not None
    assert "Forget" not in owner.get("/admin/?q=forget").get_data(as_text=True).split("<table")[-1]


def test_bulk_delete(app, owner, db):
    ids = [add_submission(db, app) for _ in range(3)]
    post(owner, "/admin/bulk", {"ids": [str(ids[0]), str(ids[1])], "action": "delete"})
    assert [row["id"] for row in inbox_queries.iter_submissions(db, {})] == [ids[2]]
    assert count_rows(db, "outbox") == 1


def test_resend_sends_the_email_again(app, owner, db, smtp_server):
    submission_id = add_submission(db, app)
    deliver_all(app, db)
    smtp_server.wait_for(1)
    assert post(owner, f"/admin/s/{submission_id}/resend").status_code == 302
    assert outbox.notifications_of(db, submission_id)[0]["state"] == "pending"
    deliver_all(app, db)
    messages = smtp_server.wait_for(2)
    assert messages[0]["message"]["Message-ID"] == messages[1]["message"]["Message-ID"]


def test_resend_of_a_spam_submission_queues_its_first_email(app, owner, db, smtp_server):
    submission_id = add_submission(db, app, status="spam", queue_email=False)
    post(owner, f"/admin/s/{submission_id}/resend")
    deliver_all(app, db)
    assert smtp_server.wait_for(1)[0]["rcpt_tos"] == ["owner@florist.example"]
