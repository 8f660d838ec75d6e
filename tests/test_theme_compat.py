"""Markup written for Formspree or FormSubmit: _replyto, per-form required fields, honeypots, and the way back."""
import subprocess
import sys

import pytest
from conftest import ROOT, VALID, count_rows, deliver_all

SITE = "http://theme.example"
FORMS = f"""
[forms.portfolio]
title = "Portfolio"
allowed_origins = ["{SITE}"]
required = ["email"]

[forms.anything]
title = "Guestbook"
allowed_origins = ["{SITE}"]
required = []
"""
FROM_SITE = {"Origin": SITE, "Referer": f"{SITE}/contact/"}


@pytest.fixture
def config(config, tmp_path):
    path = tmp_path / "forms.toml"
    path.write_text(FORMS)
    config["FORMS"] = str(path)
    config["ALLOWED_ORIGINS"] = SITE
    return config


def stored(db):
    return [dict(row) for row in db.execute("SELECT * FROM submissions ORDER BY id").mappings()]


# --- What a form requires -------------------------------------------------------------------------

def test_replyto_alone_is_the_visitors_address(client, db):
    response = client.post("/f/portfolio", data={"_replyto": "reader@example.com", "_subject": "From the blog"},
                           headers=FROM_SITE)
    assert response.status_code == 303, response.data
    [lead] = stored(db)
    assert (lead["email"], lead["reply_to"], lead["mail_subject"]) == ("reader@example.com", "reader@example.com",
                                                                      "From the blog")


def test_an_invalid_replyto_is_one_error_about_the_email(client, db):
    response = client.post("/f/portfolio", json={"_replyto": "not an address"},
                           headers={"Origin": SITE, "Accept": "application/json"})
    assert response.status_code == 400
    assert [(error["field"], error["code"]) for error in response.json["errors"]] == [("email", "TYPE_EMAIL")]
    assert response.json["errors"][0]["message"] == "Please enter a valid email address."


def test_a_form_may_require_nothing(client, db):
    assert client.post("/f/anything", data={"comment": "Lovely shop!"}, headers=FROM_SITE).status_code == 303
    [lead] = stored(db)
    assert lead["name"] == lead["email"] == lead["message"] == "" and '"comment": "Lovely shop!"' in lead["extra"]


def test_the_built_in_form_still_requires_name_email_and_message(client, db):
    response = client.post("/contactus", json={"_replyto": "reader@example.com"}, headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert {error["field"] for error in response.json["errors"]} == {"name", "message"}
    assert count_rows(db, "submissions") == 0


def test_hosted_page_marks_only_the_required_fields(client):
    page = client.get("/f/portfolio").get_data(as_text=True)
    assert page.count('<span class="required"') == 1  # the email; name and message say "(optional)"


@pytest.mark.parametrize("table, problem", [
    ('required = ["name", "fax"]', "unknown required fields ['fax']"),
    ('required = "email"', "required has the wrong type"),
])
def test_a_bad_required_list_is_a_configuration_error(tmp_path, table, problem):
    forms = tmp_path / "forms.toml"
    forms.write_text(f'[forms.shop]\nowners = ["a@example.com"]\n{table}\n')
    result = subprocess.run([sys.executable, "-c", "from app import create_app; create_app()"], cwd=ROOT,
                            env={"POSTBOX_FORMS": str(forms), "PATH": "/usr/bin:/bin",
                                 "POSTBOX_DATABASE": str(tmp_path / "db.sqlite3")},
                            capture_output=True, text=True)
    assert result.returncode != 0 and problem in result.stderr


# --- Honeypots ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("trap", ["_gotcha", "_honey"])
def test_a_filled_honeypot_gets_the_normal_success_even_when_invalid(client, db, trap):
    response = client.post("/contactus", data={"email": "not-an-address", trap: "http://spam.example"},
                           headers=FROM_SITE)
    assert response.status_code == 303 and "/contactus/thanks" in response.headers["Location"]
    response = client.post("/contactus", json={trap: "x"}, headers={"Accept": "application/json"})
    assert response.status_code == 200 and response.json["ok"] is True
    assert count_rows(db, "submissions") == 0 and count_rows(db, "outbox") == 0


# --- The way back to another site's form -----------------------------------------------------------------

def test_invalid_post_from_another_site_gets_a_page_leading_back(client, db):
    response = client.post("/f/portfolio", data={"name": "Sita"}, headers={**FROM_SITE, "Accept-Language": "it"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert '<html lang="it">' in page and "<title>Errore: " in page
    assert "<form" not in page  # never our own form in place of the owner's
    assert f'<a class="back" href="{SITE}/contact/" data-postbox-back>Torna al modulo</a>' in page
    assert "<strong>La tua email</strong>" in page and 'autofocus' in page
    assert count_rows(db, "submissions") == 0


def test_json_clients_keep_their_answers(client):
    response = client.post("/f/portfolio", json={"name": "Sita"}, headers={"Origin": SITE, "Accept": "application/json"})
    assert response.status_code == 400 and response.json["errors"][0]["code"] == "REQUIRED_FIELD_MISSING"


def test_the_hosted_form_still_shows_its_errors_in_place(client):
    response = client.post("/contactus", data={"name": "Sita"},
                           headers={"Origin": "http://localhost", "Referer": "http://localhost/contactus"})
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and "<form" in page and "<title>Error: Contact us</title>" in page
    assert 'role="alert" tabindex="-1" autofocus' in page


def test_an_unknown_form_key_leads_back_too(client):
    response = client.post("/f/xqkwzabc", data=VALID, headers={"Referer": f"{SITE}/contact/", "Accept-Language": "ru"})
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "Вернуться к форме" in page and f'href="{SITE}/contact/"' in page and "<title>Ошибка: " in page


# --- The owner's email when fields are missing -----------------------------------------------------------------

def test_owner_email_falls_back_when_name_email_and_message_are_missing(client, app, db, smtp_server):
    assert client.post("/f/anything", data={"comment": "Lovely shop!"}, headers=FROM_SITE).status_code == 303
    deliver_all(app, db)
    [received] = smtp_server.messages
    message = received["message"]
    assert message["Subject"] == "New message through the form “Guestbook”"
    assert "Reply-To" not in message
    body = message.get_content()
    assert body.startswith("Someone sent a message through the form “Guestbook”.")
    assert "this email cannot be answered by replying" in body and "comment: Lovely shop!" in body
    assert "Name:" not in body and "Message:" not in body


def test_owner_email_names_the_replyto_address_when_there_is_no_name(client, app, db, smtp_server):
    client.post("/f/portfolio", data={"_replyto": "reader@example.com"}, headers=FROM_SITE)
    deliver_all(app, db)
    message = smtp_server.messages[0]["message"]
    assert message["Subject"] == "New message from reader@example.com"
    assert message["Reply-To"].addresses[0].addr_spec == "reader@example.com"


# --- Small things -----------------------------------------------------------------------------------------

def test_favicon_and_description(client):
    assert client.get("/favicon.ico").status_code == 200
    page = client.get("/contactus").get_data(as_text=True)
    assert '<meta name="description"' in page and 'rel="icon"' in page


def test_login_page_shows_no_server_command(client):
    page = client.get("/admin/login").get_data(as_text=True)
    assert "create-user" not in page and "flask" not in page
