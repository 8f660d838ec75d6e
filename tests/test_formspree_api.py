"""A client written for Formspree's (or FormSubmit's) public API works by pointing it at Postbox /f/<key>."""
import pytest
from conftest import VALID, count_rows, deliver_all

SITE = "https://www.violetlane.example"
JSON = {"Accept": "application/json", "Origin": SITE}


@pytest.fixture
def config(config):
    config["ALLOWED_ORIGINS"] = SITE
    return config


def test_formdata_with_accept_json(client, app, db, smtp_server):
    # What `fetch(url, {method: "POST", body: new FormData(form), headers: {Accept: "application/json"}})` sends.
    response = client.post("/f/contactus", data=VALID, headers=JSON, content_type="multipart/form-data")
    assert response.status_code == 200
    assert response.json["ok"] is True
    assert response.json["next"] == "http://localhost/contactus/thanks?lang=en"
    assert response.headers["Access-Control-Allow-Origin"] == SITE
    assert count_rows(db, "submissions") == 1
    deliver_all(app, db)
    [received] = smtp_server.messages
    assert received["rcpt_tos"] == ["owner@florist.example"]
    assert VALID["message"] in received["message"].get_content()


def test_json_body(client, db):
    response = client.post("/f/contactus", json={**VALID, "_next": f"{SITE}/grazie"}, headers=JSON)
    assert response.status_code == 200
    assert response.json["ok"] is True and response.json["next"] == f"{SITE}/grazie"
    assert count_rows(db, "submissions") == 1


def test_f_contactus_and_contactus_are_the_same_form(client, db):
    client.post("/f/contactus", json=VALID, headers=JSON)
    client.post("/contactus", json={**VALID, "message": "Un altro messaggio."}, headers=JSON)
    assert [row["form"] for row in db.execute("SELECT form FROM submissions").mappings()] == ["contactus", "contactus"]


def test_unknown_form_key_is_404_json(client, db):
    response = client.post("/f/nosuchform", json=VALID, headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert response.json["errors"][0]["code"] == "NOT_FOUND"
    assert count_rows(db, "submissions") == 0


def test_field_errors_have_formspree_shape(client, db):
    response = client.post("/f/contactus", json={"name": "", "email": "not-an-address", "message": "Ciao"},
                           headers=JSON)
    assert response.status_code == 400
    errors = {error["field"]: error for error in response.json["errors"]}
    assert set(errors) == {"name", "email"}
    for error in errors.values():
        assert set(error) == {"field", "code", "message"} and error["message"]
    assert errors["name"]["code"] == "REQUIRED_FIELD_EMPTY"
    assert errors["email"]["code"] == "TYPE_EMAIL"
    assert count_rows(db, "submissions") == 0


def test_form_level_error_has_error_and_errors(client, db):
    response = client.post("/f/contactus", data="<xml/>", content_type="text/xml", headers=JSON)
    assert response.status_code == 415
    assert response.json["error"]
    assert response.json["errors"][0]["field"] is None
    assert count_rows(db, "submissions") == 0


def test_replyto_and_subject(client, app, db, smtp_server):
    client.post("/f/contactus", json={**VALID, "_replyto": "reply@example.org", "_subject": "Ordine\r\nBcc: x@y.z"},
                headers=JSON)
    deliver_all(app, db)
    message = smtp_server.messages[0]["message"]
    assert message["Reply-To"].addresses[0].addr_spec == "reply@example.org"
    assert message["Subject"] == "Ordine Bcc: x@y.z"
    assert message["Bcc"] is None


def test_bad_replyto_is_a_field_error(client, db):
    response = client.post("/f/contactus", json={**VALID, "_replyto": "nope"}, headers=JSON)
    assert response.status_code == 400
    assert response.json["errors"][0]["field"] == "_replyto"
    assert count_rows(db, "submissions") == 0


def test_next_for_a_plain_post(client):
    response = client.post("/f/contactus", data={**VALID, "_next": f"{SITE}/grazie.html"}, headers={"Origin": SITE})
    assert response.status_code == 303 and response.headers["Location"] == f"{SITE}/grazie.html"


@pytest.mark.parametrize("trap", ["_gotcha", "_honey"])  # Formspree's honeypot, FormSubmit's
def test_honeypots_keep_the_message_as_spam_without_email(client, app, db, smtp_server, trap):
    response = client.post("/f/contactus", json={**VALID, trap: "http://spam.example"}, headers=JSON)
    assert response.status_code == 200 and response.json["ok"] is True  # the bot learns nothing
    assert count_rows(db, "submissions", "status = 'spam'") == 1
    assert count_rows(db, "outbox") == 0
    deliver_all(app, db)
    assert smtp_server.messages == []


def test_visitor_cannot_choose_recipients(client, app, db, smtp_server):
    fields = {**VALID, "_cc": "victim1@example.net", "_bcc": "victim2@example.net", "_to": "victim3@example.net",
              "_template": "box", "_autoresponse": "Buy now", "_webhook": "http://127.0.0.1:9/"}
    response = client.post("/f/contactus", data=fields, headers={"Origin": SITE})
    assert response.status_code == 303
    deliver_all(app, db)
    [received] = smtp_server.messages
    assert received["rcpt_tos"] == ["owner@florist.example"]
    message = received["message"]
    assert message["Cc"] is None and message["Bcc"] is None
    assert message["To"] == "owner@florist.example"
    assert "victim" not in received["raw"].decode()
    assert "Buy now" not in received["raw"].decode()


def test_visitor_recipients_in_json_are_ignored_too(client, app, db, smtp_server):
    client.post("/f/contactus", json={**VALID, "_cc": "victim@example.net", "email": "visitor@example.com",
                                      "_replyto": "visitor@example.com"}, headers=JSON)
    deliver_all(app, db)
    assert [m["rcpt_tos"] for m in smtp_server.messages] == [["owner@florist.example"]]

