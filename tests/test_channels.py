"""Webhooks and messengers ride the same outbox: signed webhooks retried until a 2xx, turned off by a 410,
never sent to a private address by accident; messengers through Apprise, with no secret in any log line."""
import json
import logging
import time

import pytest
from apprise.plugins.telegram import NotifyTelegram
from conftest import VALID, WEBHOOK_SECRET, count_rows, deliver_all
from standardwebhooks import Webhook

import database
import inbox_queries
from app import create_app
from inbox_fixtures import OWNER, PASSWORD_HASH, log_in, post

BOT_TOKEN = "123456789:AAHsecretBotTokenNeverLogged_xyz987"
CHAT_ID = "424242"


@pytest.fixture
def channel_app(config, http_receiver):
    """An app whose form also posts to a webhook on the receiver (loopback allowed here)."""
    def make(**overrides):
        app = create_app({**config, "WEBHOOKS": f"{http_receiver.url}/hook", "WEBHOOK_SECRET": WEBHOOK_SECRET,
                          "WEBHOOK_ALLOW_PRIVATE": True, "PUBLIC_URL": "https://postbox.florist.example",
                          **overrides})
        return app, app.test_client(), database.open_db(config["DATABASE"])
    return make


def webhook_rows(db):
    return db.execute("SELECT * FROM outbox WHERE channel = 'webhook' ORDER BY id").mappings().all()


def test_webhook_retried_after_a_500_delivers_once_with_a_valid_signature(channel_app, http_receiver, smtp_server):
    app, client, db = channel_app()
    http_receiver.replies = [(500, {}, b"oops")]
    assert client.post("/contactus", data=VALID).status_code == 303
    deliver_all(app, db)
    [row] = webhook_rows(db)
    assert row["state"] == "pending" and row["attempts"] == 1 and "500" in row["last_error"]
    deliver_all(app, db, clock=lambda: row["next_attempt_at"] + 0.01)
    first, second = http_receiver.requests
    for request in (first, second):
        payload = Webhook(WEBHOOK_SECRET).verify(request["body"], request["headers"])
        assert payload["type"] == "submission.created"
        assert payload["data"]["name"] == VALID["name"] and payload["data"]["message"] == VALID["message"]
        assert payload["data"]["inbox_url"] == "https://postbox.florist.example/admin/s/1"
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"] == row["message_id"]
    [row] = webhook_rows(db)
    assert row["state"] == "sent" and row["reply"] == "200 OK"
    assert len(smtp_server.messages) == 1  # the email went its own way, once


def test_a_forged_signature_does_not_verify(channel_app, http_receiver):
    app, client, db = channel_app()
    assert client.post("/contactus", data=VALID).status_code == 303
    deliver_all(app, db)
    [request] = http_receiver.requests
    tampered = request["body"].replace(b"Anna", b"Eve ")
    with pytest.raises(Exception):
        Webhook(WEBHOOK_SECRET).verify(tampered, request["headers"])


def test_a_410_turns_the_webhook_off(channel_app, http_receiver):
    app, client, db = channel_app()
    http_receiver.replies = [(410, {}, b"gone")]
    assert client.post("/contactus", data=VALID).status_code == 303
    deliver_all(app, db)
    [row] = webhook_rows(db)
    assert row["state"] == "off" and "410" in row["last_error"]
    assert client.post("/contactus", data={**VALID, "message": "another lead"}).status_code == 303
    deliver_all(app, db)
    assert [row["state"] for row in webhook_rows(db)] == ["off", "off"]
    assert len(http_receiver.requests) == 1  # nothing more was sent to it


def test_retry_after_is_honoured(channel_app, http_receiver):
    app, client, db = channel_app(RETRY_MAX_SECONDS=3600)
    http_receiver.replies = [(429, {"Retry-After": "120"}, b"slow down")]
    assert client.post("/contactus", data=VALID).status_code == 303
    before = time.time()
    deliver_all(app, db)
    [row] = webhook_rows(db)
    assert row["next_attempt_at"] >= before + 120


def test_after_a_webhook_recovers_its_waiting_messages_go_at_once(channel_app, http_receiver):
    app, client, db = channel_app(RETRY_FIRST_SECONDS=600, RETRY_MAX_SECONDS=3600)
    http_receiver.replies = [(503, {}, b"down"), (503, {}, b"down")]
    for message in ("first", "second"):
        assert client.post("/contactus", data={**VALID, "message": message}).status_code == 303
    deliver_all(app, db)
    assert [row["state"] for row in webhook_rows(db)] == ["pending", "pending"]
    assert client.post("/contactus", data={**VALID, "message": "third"}).status_code == 303
    deliver_all(app, db)  # the third succeeds, and brings the two waiting ones forward
    assert [row["state"] for row in webhook_rows(db)] == ["sent", "sent", "sent"]


def test_a_private_address_is_refused_before_any_connection(config, http_receiver, smtp_server):
    with pytest.raises(SystemExit) as stopped:
        create_app({**config, "WEBHOOKS": f"{http_receiver.url}/hook", "WEBHOOK_SECRET": WEBHOOK_SECRET})
    assert "POSTBOX_WEBHOOKS" in str(stopped.value) and "WEBHOOK_ALLOW_PRIVATE" in str(stopped.value)
    # A name that resolves to loopback passes start-up, and is refused when resolved, before connecting.
    app = create_app({**config, "WEBHOOKS": f"http://localhost:{http_receiver.port}/hook",
                      "WEBHOOK_SECRET": WEBHOOK_SECRET})
    db = database.open_db(config["DATABASE"])
    assert app.test_client().post("/contactus", data=VALID).status_code == 303
    deliver_all(app, db)
    [row] = webhook_rows(db)
    assert row["state"] == "failed" and "loopback" in row["last_error"]
    assert http_receiver.requests == []
    assert len(smtp_server.messages) == 1


def test_webhooks_need_a_secret(config):
    with pytest.raises(SystemExit) as stopped:
        create_app({**config, "WEBHOOKS": "https://crm.example/hook"})
    assert "whsec_" in str(stopped.value)


@pytest.fixture
def telegram_api(http_receiver, monkeypatch):
    """A local server that speaks Telegram's Bot API; only Apprise's base URL is pointed at it."""
    monkeypatch.setattr(NotifyTelegram, "notify_url", f"{http_receiver.url}/bot")
    return http_receiver


def test_telegram_through_apprise_gets_the_lead_and_no_log_has_the_token(config, telegram_api, smtp_server,
                                                                           caplog, capfd):
    telegram_api.replies = [(200, {}, json.dumps({"ok": True, "result": {"message_id": 7}}).encode())]
    app = create_app({**config, "NOTIFY": f"tgram://{BOT_TOKEN}/{CHAT_ID}", "PUBLIC_URL": "https://pb.example"})
    db = database.open_db(config["DATABASE"])
    client = app.test_client()
    with caplog.at_level(logging.DEBUG):
        assert client.post("/contactus", data={**VALID, "name": "Лариса Фёдорова",
                                               "message": "Нужен букет к пятнице\nна 5000 рублей"}).status_code == 303
        deliver_all(app, db)
    [request] = telegram_api.requests
    assert request["path"] == f"/bot{BOT_TOKEN}/sendMessage"
    sent = json.loads(request["body"])
    assert str(sent["chat_id"]) == CHAT_ID
    assert "Лариса Фёдорова" in sent["text"] and "Нужен букет к пятнице" in sent["text"]
    assert "https://pb.example/admin/s/1" in sent["text"] and "5000 рублей" not in sent["text"]
    row = db.execute("SELECT * FROM outbox WHERE channel = 'notify'").mappings().first()
    assert row["state"] == "sent"
    secret = BOT_TOKEN.split(":")[1]
    logged = "\n".join(record.getMessage() for record in caplog.records) + capfd.readouterr().err
    assert secret not in logged
    assert secret not in json.dumps([dict(row) for row in db.execute("SELECT * FROM outbox").mappings()])
    assert secret not in json.dumps([dict(row) for row in db.execute("SELECT * FROM delivery_targets").mappings()])


def test_a_failing_messenger_is_retried_and_its_error_shows_no_token(config, telegram_api, smtp_server, caplog):
    telegram_api.replies = [(401, {}, json.dumps({"ok": False, "description": "Unauthorized"}).encode())]
    app = create_app({**config, "NOTIFY": f"tgram://{BOT_TOKEN}/{CHAT_ID}"})
    db = database.open_db(config["DATABASE"])
    with caplog.at_level(logging.DEBUG):
        assert app.test_client().post("/contactus", data=VALID).status_code == 303
        deliver_all(app, db)
    row = db.execute("SELECT * FROM outbox WHERE channel = 'notify'").mappings().first()
    assert row["state"] == "pending" and row["attempts"] == 1 and row["last_error"]
    assert BOT_TOKEN.split(":")[1] not in row["last_error"] + row["target"]
    assert BOT_TOKEN.split(":")[1] not in "\n".join(record.getMessage() for record in caplog.records)


def test_a_bad_notify_url_stops_start_up_without_repeating_it(config):
    with pytest.raises(SystemExit) as stopped:
        create_app({**config, "NOTIFY": "nosuchservice://s3cr3t-token-value"})
    assert "POSTBOX_NOTIFY" in str(stopped.value) and "s3cr3t" not in str(stopped.value)


def test_the_inbox_shows_every_notification_with_its_own_resend(channel_app, http_receiver, smtp_server):
    app, client, db = channel_app(RETRY_FIRST_SECONDS=600, RETRY_MAX_SECONDS=3600)
    http_receiver.replies = [(500, {}, b"oops")]
    assert client.post("/contactus", data=VALID).status_code == 303
    deliver_all(app, db)
    inbox_queries.create_user(db, OWNER, PASSWORD_HASH)
    owner = app.test_client()
    assert log_in(owner).status_code == 302
    page = owner.get("/admin/s/1").get_data(as_text=True)
    assert "Email" in page and "owner@florist.example" in page and "Webhook" in page and "500" in page
    assert page.count('name="outbox_id"') == 2
    listing = owner.get("/admin/").get_data(as_text=True)
    assert "failed" not in listing and "pending" in listing  # one sent, one waiting: the lead is pending
    webhook = webhook_rows(db)[0]
    before = webhook["next_attempt_at"]
    post(owner, "/admin/s/1/resend", {"outbox_id": webhook["id"]})
    assert webhook_rows(db)[0]["next_attempt_at"] < before - 300
    assert count_rows(db, "outbox", "channel = 'email' AND state = 'sent'") == 1
