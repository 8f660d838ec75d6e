"""Callback requests: the phone number stored in E.164, errors in the visitor's language, the owner told when."""
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from app import create_app
from conftest import count_rows, deliver_all
from inbox_fixtures import owner, inbox_user  # noqa: F401 (fixtures)
from test_languages import page, t
import emails
import followup
import inbox_queries
import submissions

TOMORROW = (date.today() + timedelta(days=1)).isoformat()


@pytest.fixture
def config(config):
    config.update(PHONE_REGION="IT", TIMEZONE="Europe/Rome", NOTIFY="")
    return config


def request_callback(client, **fields):
    data = {"name": "Giulia Verdi", "phone": "06 1234 5678", "day": TOMORROW, "slot": "09:00-11:00",
            "note": "Per un matrimonio", **fields}
    return client.post("/callback", data=data)


def test_an_italian_number_is_stored_in_e164(client, app, db, smtp_server):
    assert request_callback(client, phone="+39 06 1234 5678").status_code == 303
    assert request_callback(client, phone="06 1234 5678").status_code == 303  # the owner's region by default
    stored = [row["phone"] for row in db.execute("SELECT phone FROM submissions ORDER BY id").mappings()]
    assert stored == ["+390612345678", "+390612345678"]


@pytest.mark.parametrize("lang", ["en", "ru", "it", "hy", "hi"])
def test_an_invalid_number_gets_a_field_error_in_the_visitors_language(client, db, lang):
    response = request_callback(client, phone="12", _language=lang)
    assert response.status_code == 400
    assert f'data-field-error="phone">{t(lang, "Please enter a phone number we can call.")}<' in page(response)
    assert count_rows(db, "submissions") == 0


def test_json_clients_get_the_phone_error_as_formspree_does(client):
    response = client.post("/callback", json={"name": "G", "phone": "abc", "day": TOMORROW, "slot": "09:00-11:00"},
                           headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert [error["field"] for error in response.get_json()["errors"]] == ["phone"]


@pytest.mark.parametrize("fields", [{"day": "2020-01-01"}, {"day": "tomorrow"}, {"slot": "03:00-04:00"},
                                    {"name": ""}])
def test_a_bad_day_slot_or_name_is_refused(client, db, fields):
    assert request_callback(client, **fields).status_code == 400
    assert count_rows(db, "submissions") == 0


def test_the_owners_email_leads_with_call_back_and_a_tel_link(client, app, db, smtp_server):
    request_callback(client, phone="+39 06 1234 5678")
    deliver_all(app, db)
    [email] = smtp_server.messages
    body = email["message"].get_content()
    first_line = body.splitlines()[0]
    assert first_line.startswith("Call back Giulia Verdi on ") and "between 09:00 and 11:00" in first_line
    assert body.splitlines()[1] == "tel:+390612345678"
    assert str(email["message"]["Subject"]).startswith("Call back Giulia Verdi on ")
    submission = submissions.get_submission(db, 1)
    assert submission["form"] == "callback" and submission["callback_slot"] == "09:00-11:00"


def test_the_form_is_embeddable_like_the_contact_form(config, tmp_path, smtp_server):
    app = create_app({**config, "ALLOWED_ORIGINS": "https://florist.example"})
    response = app.test_client().get("/callback?embed=1")
    assert "frame-ancestors https://florist.example" in response.headers["Content-Security-Policy"]
    refused = app.test_client().post("/callback", data={"name": "x"}, headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403


def test_the_inbox_lists_callbacks_by_when_they_are_due(owner, client, app, db):
    later = (date.today() + timedelta(days=2)).isoformat()
    request_callback(client, name="Later Caller", day=later, slot="09:00-11:00")
    request_callback(client, name="Sooner Caller", day=TOMORROW, slot="16:00-18:00")
    html = owner.get("/admin/").get_data(as_text=True)
    section = html[html.index('class="callbacks"'):]
    assert section.index("Sooner Caller") < section.index("Later Caller")
    assert 'href="tel:+390612345678"' in section


def test_a_callback_about_to_begin_and_not_done_reminds_once(app, db, smtp_server):
    rome = ZoneInfo("Europe/Rome")
    slot = datetime(2026, 3, 4, 14, 0, tzinfo=rome)
    done = None
    for name in ("Giulia Verdi", "Already Called"):
        done = submissions.save_submission(db, {
            "form": "callback", "name": name, "phone": "+390612345678", "callback_day": "2026-03-04",
            "callback_slot": "14:00-16:00", "callback_at": slot.astimezone(timezone.utc).isoformat(timespec="microseconds"),
            "received_at": datetime(2026, 3, 4, 12, 0, tzinfo=timezone.utc).isoformat(timespec="microseconds")}, [])
    inbox_queries.set_status(db, [done], "answered", "owner@florist.example")
    app.config["REMIND_AFTER"] = 0  # only the callback's own reminder here
    assert followup.schedule_due(app, db, datetime(2026, 3, 4, 13, 44, tzinfo=rome).timestamp()) == 0
    assert followup.schedule_due(app, db, datetime(2026, 3, 4, 13, 46, tzinfo=rome).timestamp()) == 1
    assert followup.schedule_due(app, db, datetime(2026, 3, 4, 13, 50, tzinfo=rome).timestamp()) == 0
    deliver_all(app, db)
    [reminder] = smtp_server.messages
    assert reminder["message"]["Subject"] == "Call back Giulia Verdi now"
    assert "tel:+390612345678" in reminder["message"].get_content()


def test_the_messenger_text_leads_with_call_back_and_a_tel_link(client, app, db):
    request_callback(client, phone="+39 06 1234 5678")
    submission = submissions.get_submission(db, 1)
    with app.app_context():
        _title, text = emails.lead_summary(submission, app.config["FORM_DEFINITIONS"]["callback"], "")
    first, second = text.splitlines()[:2]
    assert first.startswith("Call back Giulia Verdi on ") and "between 09:00 and 11:00" in first
    assert second == "tel:+390612345678"


def test_f_callback_is_the_callback_form_too(client, db):
    assert 'name="slot"' in client.get("/f/callback").get_data(as_text=True)
    assert client.post("/f/callback", data={"name": "G", "phone": "06 1234 5678", "day": TOMORROW,
                                            "slot": "09:00-11:00"}).status_code == 303
    assert db.execute("SELECT phone FROM submissions").scalar() == "+390612345678"


def test_the_submission_page_shows_when_to_call(owner, client, app, db):
    request_callback(client)
    html = owner.get("/admin/s/1").get_data(as_text=True)
    assert f"Call back on {TOMORROW} between 09:00–11:00:" in html and 'href="tel:+390612345678"' in html
