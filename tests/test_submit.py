"""Submitting the form: HTML and JSON clients, validation, what is stored and what is not."""
import json

import pytest
from conftest import VALID, count_rows, deliver_all


def test_form_page_has_labelled_fields(client):
    response = client.get("/contactus")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    for name in ("name", "email", "phone", "subject", "message"):
        assert f'id="{name}" name="{name}"' in page and f'<label for="{name}">' in page
    assert 'name="viewport"' in page and 'method="post"' in page
    assert "http://" not in page.replace("http://localhost", "") and "https://" not in page  # no external assets


def test_html_post_redirects_to_thanks_and_stores(client, db):
    response = client.post("/contactus", data=VALID)
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/contactus/thanks?lang=en")
    assert count_rows(db, "submissions") == 1 and count_rows(db, "outbox", "state = 'pending'") == 1
    thanks = client.get(response.headers["Location"])
    assert thanks.status_code == 200 and "Thank you" in thanks.get_data(as_text=True)


def test_form_post_accepting_json(client, db):
    response = client.post("/contactus", data=VALID, headers={"Accept": "application/json"})
    assert response.status_code == 200
    assert response.json["ok"] is True and response.json["id"] == 1
    assert response.json["next"].endswith("/contactus/thanks?lang=en")


def test_json_body(client, db, app, smtp_server):
    response = client.post("/contactus", json={**VALID, "budget": 120, "urgent": True})
    assert response.status_code == 200 and response.json["ok"] is True
    deliver_all(app, db)
    body = smtp_server.messages[0]["message"].get_content()
    assert "budget: 120" in body and "urgent: true" in body


def test_multipart_body(client, db):
    response = client.post("/contactus", data=VALID, content_type="multipart/form-data")
    assert response.status_code == 303 and count_rows(db, "submissions") == 1


def test_stored_values_read_back_exactly(client, db):
    fields = {"name": "Արամ Մելքոնյան", "email": "aram@example.am", "phone": "+374 10 123456",
              "subject": "संपर्क", "message": "Բարև ձեզ\nनमस्ते\r\n  spaced  "}
    client.post("/contactus", data={**fields, "Preferred time": "after 18:00"})
    row = db.execute("SELECT * FROM submissions").mappings().first()
    for name, value in fields.items():
        expected = value if name == "message" else value.strip()
        assert row[name] == expected.replace("\r\n", "\n") or row[name] == expected
    assert json.loads(row["extra"]) == {"Preferred time": "after 18:00"}


INVALID = [
    ({"email": "a@example.com", "message": "hi"}, "name", "REQUIRED_FIELD_MISSING"),
    ({"name": "  ", "email": "a@example.com", "message": "hi"}, "name", "REQUIRED_FIELD_EMPTY"),
    ({"name": "A", "email": "not-an-address", "message": "hi"}, "email", "TYPE_EMAIL"),
    ({"name": "A", "email": "a@example.com"}, "message", "REQUIRED_FIELD_MISSING"),
    ({"name": "A" * 101, "email": "a@example.com", "message": "hi"}, "name", "TOO_LONG"),
    ({"name": "A", "email": "a@example.com", "message": "m" * 5001}, "message", "TOO_LONG"),
    ({"name": "A", "email": "a@example.com", "subject": "s" * 201, "message": "hi"}, "subject", "TOO_LONG"),
    ({"name": "A", "email": "a@example.com", "phone": "call me", "message": "hi"}, "phone", "TYPE_PHONE"),
    ({**VALID, "_replyto": "nope"}, "_replyto", "TYPE_EMAIL"),
    ({**VALID, "notes": "x" * 5001}, "notes", "TOO_LONG"),
    ({**VALID, **{f"extra{i}": "x" for i in range(51)}}, None, "TOO_MANY_FIELDS"),
]


@pytest.mark.parametrize(("fields", "field", "code"), INVALID)
def test_invalid_json_submission_is_refused_and_nothing_stored(client, db, app, smtp_server, fields, field, code):
    response = client.post("/contactus", json=fields)
    assert response.status_code == 400
    assert response.json["ok"] is False
    assert {"field": field, "code": code} in [{"field": e["field"], "code": e["code"]} for e in response.json["errors"]]
    assert all(error["message"] for error in response.json["errors"])
    assert count_rows(db, "submissions") == 0 and count_rows(db, "outbox") == 0
    deliver_all(app, db)
    assert smtp_server.messages == []


@pytest.mark.parametrize(("fields", "field", "code"), INVALID[:8])
def test_invalid_html_submission_shows_form_again(client, db, fields, field, code):
    response = client.post("/contactus", data=fields)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert f'data-field-error="{field}"' in page and 'role="alert"' in page
    if fields.get("name", "").strip():
        assert f'value="{fields["name"]}"' in page  # what was typed is kept
    assert count_rows(db, "submissions") == 0


def test_empty_post_is_refused(client, db):
    response = client.post("/contactus", data={}, headers={"Accept": "application/json"})
    assert response.status_code == 400 and response.json["errors"][0]["code"] == "EMPTY"
    assert count_rows(db, "submissions") == 0


def test_reserved_fields_are_not_stored_as_data(client, db):
    client.post("/contactus", data={**VALID, "_next": "/x", "_language": "it", "_unknown": "y", "_cc": "a@b.c"})
    row = db.execute("SELECT extra FROM submissions").mappings().first()
    assert json.loads(row["extra"]) == {}


def test_visitor_cannot_add_recipients(client, db, app, smtp_server):
    client.post("/contactus", data={**VALID, "_cc": "victim@example.net", "_bcc": "victim@example.net",
                                    "_to": "victim@example.net", "to": "victim@example.net",
                                    "email": "anna@example.com"})
    deliver_all(app, db)
    [received] = smtp_server.messages
    assert received["rcpt_tos"] == ["owner@florist.example"]
    assert "victim" not in str(received["message"]["To"]) and received["message"]["Cc"] is None


def test_unknown_form_is_404(client):
    assert client.get("/f/nope").status_code == 404
    response = client.post("/f/nope", json=VALID)
    assert response.status_code == 404 and response.json["ok"] is False


LINE_BREAKS = ["\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("separator", LINE_BREAKS)
def test_line_breaks_never_reach_a_header(client, db, app, smtp_server, separator):
    evil = f"Eve{separator}Bcc: victim@example.net{separator}"
    response = client.post("/contactus", json={
        "name": evil, "email": "eve@example.com", "subject": evil, "_subject": evil, "message": "hello"})
    if response.status_code == 400:  # control characters in name/subject may be refused outright
        assert count_rows(db, "submissions") == 0
        response = client.post("/contactus", json={
            "name": "Eve", "email": "eve@example.com", "_subject": evil, "message": "hello"})
    assert response.status_code == 200
    deliver_all(app, db)
    [received] = smtp_server.messages
    assert received["rcpt_tos"] == ["owner@florist.example"]
    headers, _, _ = received["raw"].partition(b"\r\n\r\n")
    header_names = [line.split(b":")[0] for line in headers.split(b"\r\n") if line and not line[:1].isspace()]
    assert b"Bcc" not in header_names
    for name in ("Subject", "From", "Reply-To"):
        assert not any(ch in str(received["message"][name]) for ch in LINE_BREAKS)
