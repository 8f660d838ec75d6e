"""Replying from the inbox: through the outbox to the visitor, threaded, From the site, Reply-To the owner."""
from conftest import count_rows, deliver_all
from inbox_fixtures import OWNER, add_submission, owner, inbox_user, post  # noqa: F401 (fixtures)
import emails
import submissions


def test_a_reply_reaches_the_visitor_threaded_and_the_lead_turns_answered(owner, app, db, smtp_server):
    lead = add_submission(db, app, subject="Rose rosse")
    deliver_all(app, db)
    response = post(owner, f"/admin/s/{lead}/reply", data={"body": "Buongiorno Anna,\nsì, a sabato!"})
    assert response.status_code == 302
    deliver_all(app, db)
    [reply] = [m for m in smtp_server.messages if m["rcpt_tos"] == ["anna@example.com"]]
    message = reply["message"]
    submission = submissions.get_submission(db, lead)
    thread = emails.thread_id(submission, "forms@florist.example")
    assert message["In-Reply-To"] == thread and message["References"] == thread
    assert message["From"].addresses[0].addr_spec == "forms@florist.example"
    assert message["Reply-To"].addresses[0].addr_spec == OWNER
    assert message["Subject"] == "Re: Rose rosse"
    assert message.get_content().replace("\r\n", "\n").strip() == "Buongiorno Anna,\nsì, a sabato!"
    assert submission["status"] == "answered" and submission["status_by"] == OWNER
    assert submission["first_answer_at"]


def test_the_reply_is_kept_in_the_history_and_the_mailto_link_stays(owner, app, db, smtp_server):
    lead = add_submission(db, app)
    post(owner, f"/admin/s/{lead}/reply", data={"body": "A sabato!"})
    page = owner.get(f"/admin/s/{lead}").get_data(as_text=True)
    assert "A sabato!" in page and "mailto:anna@example.com" in page
    assert f"{OWNER} replied at" in page
    assert "First answered 0.0 working hours after it arrived." in page


def test_two_replies_share_one_thread(owner, app, db, smtp_server):
    lead = add_submission(db, app, queue_email=False)
    post(owner, f"/admin/s/{lead}/reply", data={"body": "Prima risposta"})
    post(owner, f"/admin/s/{lead}/reply", data={"body": "Seconda risposta"})
    deliver_all(app, db)
    first, second = smtp_server.messages
    assert first["message"]["References"] == second["message"]["References"]
    assert first["message"]["Message-ID"] != second["message"]["Message-ID"]


def test_an_empty_reply_sends_nothing(owner, app, db, smtp_server):
    lead = add_submission(db, app, queue_email=False)
    post(owner, f"/admin/s/{lead}/reply", data={"body": "  "})
    assert count_rows(db, "outbox", "kind = 'reply'") == 0
    assert submissions.get_submission(db, lead)["status"] == "new"


def test_a_reply_needs_a_logged_in_owner(client, app, db):
    lead = add_submission(db, app, queue_email=False)
    assert client.post(f"/admin/s/{lead}/reply", data={"body": "x"}).status_code == 302
    assert count_rows(db, "outbox", "kind = 'reply'") == 0


def test_deleting_a_submission_deletes_its_replies(owner, app, db):
    lead = add_submission(db, app, queue_email=False)
    post(owner, f"/admin/s/{lead}/reply", data={"body": "Ciao"})
    post(owner, f"/admin/s/{lead}/delete")
    assert count_rows(db, "replies") == 0 and count_rows(db, "outbox") == 0
