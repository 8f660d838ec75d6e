"""The autoresponder: one for a valid lead, none for spam, at most one per address a day, no visitor text."""
import threading
import time

import pytest

from app import create_app
from conftest import VALID, count_rows, deliver_all
from test_languages import t
import database
import followup
import outbox
import submissions


@pytest.fixture
def config(config):
    config["AUTOREPLY"] = True
    return config


def messages_to(smtp_server, address):
    return [m for m in smtp_server.messages if m["rcpt_tos"] == [address]]


def test_a_valid_lead_gets_one_autoreply_from_the_site(client, app, db, smtp_server):
    lead = {**VALID, "subject": "Rose rosse", "phone": "+39 06 1234 5678"}
    assert client.post("/contactus", data=lead).status_code == 303
    deliver_all(app, db)
    [autoreply] = messages_to(smtp_server, "anna@example.com")
    message = autoreply["message"]
    assert autoreply["mail_from"] == "forms@florist.example"
    assert message["From"].addresses[0].addr_spec == "forms@florist.example"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["In-Reply-To"] and message["References"] == message["In-Reply-To"]
    raw = autoreply["raw"].decode("utf-8", "replace")
    for typed in (lead["name"], "Anna", "Rossi", "rose", "Rose rosse", "1234"):
        assert typed not in raw, f"the autoreply repeats {typed!r}, which the visitor typed"
    assert len(messages_to(smtp_server, "owner@florist.example")) == 1
    assert "Mon–Fri 09:00–18:00" in message.get_content()


def test_spam_gets_no_autoreply(client, app, db, smtp_server):
    assert client.post("/contactus", data={**VALID, "_gotcha": "http://spam.example"}).status_code == 303
    deliver_all(app, db)
    assert count_rows(db, "outbox", "kind = 'autoreply'") == 0
    assert smtp_server.messages == []


def test_a_second_lead_from_the_same_address_within_a_day_gets_none(client, app, db, smtp_server):
    client.post("/contactus", data=VALID)
    client.post("/contactus", data={**VALID, "email": "ANNA@example.com", "message": "Anche dei tulipani."})
    deliver_all(app, db)
    assert len(messages_to(smtp_server, "anna@example.com")) == 1
    assert len(messages_to(smtp_server, "owner@florist.example")) == 2


def test_two_simultaneous_leads_from_one_address_give_one_autoreply(app, db):
    form = app.config["FORM_DEFINITIONS"]["contactus"]
    writer = app.extensions["postbox.writer"]
    start = threading.Barrier(2)

    def post_one():
        notifications = outbox.notifications_for(app.config, form)
        notifications += followup.autoreply_notifications(app.config, form, VALID["email"])
        start.wait()
        writer.save({"form": "contactus", **VALID}, notifications)

    threads = [threading.Thread(target=post_one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert count_rows(db, "outbox", "kind = 'autoreply'") == 1


def test_an_address_is_answered_again_after_a_day(app, db):
    form = app.config["FORM_DEFINITIONS"]["contactus"]
    first = submissions.save_submission(db, {"form": "contactus", **VALID}, [])
    now = time.time()
    for at in (now, now + 3600, now + 24 * 3600 + 1):
        with database.write_transaction(db):
            outbox.queue(db, first, followup.autoreply_notifications(app.config, form, VALID["email"]), at)
    assert count_rows(db, "outbox", "kind = 'autoreply'") == 2


def test_autoreply_is_off_unless_the_form_asks(config, tmp_path, smtp_server):
    config["AUTOREPLY"] = False
    app = create_app(config)
    app.test_client().post("/contactus", data=VALID)
    db = database.open_db(config["DATABASE"])
    try:
        assert count_rows(db, "outbox", "kind = 'autoreply'") == 0
    finally:
        db.close()


@pytest.mark.parametrize("lang", ["en", "ru", "it", "hy", "hi"])
def test_the_autoreply_is_in_the_visitors_language(client, app, db, smtp_server, lang):
    client.post("/contactus", data={**VALID, "_language": lang})
    deliver_all(app, db)
    [autoreply] = messages_to(smtp_server, "anna@example.com")
    assert autoreply["message"]["Subject"] == t(lang, "We have received your message")
    assert t(lang, "This is an automatic message: there is no need to answer it.") in autoreply["message"].get_content()


def test_the_owner_writes_the_autoreply_in_the_forms_file(config, tmp_path, smtp_server):
    forms = tmp_path / "forms.toml"
    forms.write_text('[forms.notary]\nowners = ["studio@notary.example"]\nautoreply = true\n'
                     'autoreply_subject = "Studio Notarile Bianchi: richiesta ricevuta"\n'
                     'autoreply_text = "Gentile cliente,\\nla richiamiamo entro un giorno lavorativo."\n',
                     encoding="utf-8")
    app = create_app({**config, "FORMS": str(forms), "AUTOREPLY": False})
    db = database.open_db(config["DATABASE"])
    try:
        app.test_client().post("/f/notary", data={**VALID, "_replyto": "other@example.com"})
        app.test_client().post("/contactus", data={**VALID, "email": "second@example.com"})
        deliver_all(app, db)
        [autoreply] = messages_to(smtp_server, "anna@example.com")
        assert autoreply["message"]["Subject"] == "Studio Notarile Bianchi: richiesta ricevuta"
        assert "la richiamiamo entro un giorno lavorativo." in autoreply["message"].get_content()
        assert messages_to(smtp_server, "other@example.com") == messages_to(smtp_server, "second@example.com") == []
    finally:
        db.close()
