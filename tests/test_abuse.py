"""Abuse: spam goes to the spam folder unsent, limits answer 429, bad bodies get a clear 4xx and store nothing."""
import time

import pytest
from conftest import VALID, count_rows, deliver_all

from app import create_app


def spam_rows(db):
    return db.execute("SELECT status, spam_reason FROM submissions").all()


def assert_kept_as_spam(db, app, smtp_server, reason_part):
    [(status, reason)] = spam_rows(db)
    assert status == "spam" and reason_part in reason
    assert count_rows(db, "outbox") == 0
    deliver_all(app, db)
    assert smtp_server.messages == []


@pytest.mark.parametrize("trap", ["_gotcha", "_honey"])
def test_honeypot_looks_like_success_but_is_kept_as_spam(client, db, app, smtp_server, trap):
    response = client.post("/contactus", data={**VALID, trap: "http://spam.example"})
    assert response.status_code == 303 and "/thanks" in response.headers["Location"]
    json_response = client.post("/f/contactus", json={**VALID, "message": "other", trap: "x"})
    assert json_response.status_code == 200 and json_response.json["ok"] is True
    assert [row[0] for row in spam_rows(db)] == ["spam", "spam"]
    deliver_all(app, db)
    assert smtp_server.messages == []


def hosted_token(client):
    page = client.get("/contactus").get_data(as_text=True)
    return page.split('name="_token" value="')[1].split('"')[0]


def test_time_trap_too_fast_is_spam(config, smtp_server):
    config["SPAM_MIN_SECONDS"] = 3
    app = create_app(config)
    client = app.test_client()
    client.post("/contactus", data={**VALID, "_token": hosted_token(client)})
    from database import open_db
    assert_kept_as_spam(open_db(app.config["DATABASE"]), app, smtp_server, "too fast")


def test_time_trap_forged_or_old_token_is_spam(config, smtp_server):
    config["SPAM_MAX_TOKEN_AGE"] = 1
    app = create_app(config)
    client = app.test_client()
    token = hosted_token(client)
    client.post("/contactus", data={**VALID, "_token": token[:-3] + "abc"})
    time.sleep(2.1)
    client.post("/contactus", data={**VALID, "message": "second", "_token": token})
    from database import open_db
    rows = open_db(app.config["DATABASE"]).execute("SELECT status, spam_reason FROM submissions").all()
    assert [tuple(row) for row in rows] == [("spam", "form token forged"), ("spam", "form token too old")]


def test_human_with_token_and_plain_form_without_token_are_not_spam(config, smtp_server):
    config["SPAM_MIN_SECONDS"] = 0.5
    app = create_app(config)
    client = app.test_client()
    token = hosted_token(client)
    time.sleep(0.6)
    client.post("/contactus", data={**VALID, "_token": token})
    client.post("/contactus", data={**VALID, "message": "no token at all"})
    from database import open_db
    assert [row[0] for row in open_db(app.config["DATABASE"]).execute("SELECT status FROM submissions")] == [
        "new", "new"]


def test_many_links_is_spam(client, db, app, smtp_server):
    links = " ".join(f"https://cheap{i}.example" for i in range(4))
    client.post("/contactus", data={**VALID, "message": f"Buy now {links}"})
    assert_kept_as_spam(db, app, smtp_server, "links")


def test_duplicate_within_minutes_is_spam(config, smtp_server):
    config["SPAM_DUPLICATE_MINUTES"] = 10
    app = create_app(config)
    client = app.test_client()
    client.post("/contactus", data=VALID)
    client.post("/contactus", data=VALID)
    from database import open_db
    rows = open_db(app.config["DATABASE"]).execute("SELECT status FROM submissions ORDER BY id").all()
    assert [row[0] for row in rows] == ["new", "spam"]


# --- Rate limits -----------------------------------------------------------------------------------

@pytest.fixture
def limited_app(config):
    config["RATE_LIMIT"] = "3 per minute"
    return create_app(config)


def test_rate_limit_answers_429_with_retry_after(limited_app):
    client = limited_app.test_client()
    for index in range(3):
        assert client.post("/contactus", data={**VALID, "message": f"m{index}"}).status_code == 303
    page = client.post("/contactus", data=VALID)
    assert page.status_code == 429 and int(page.headers["Retry-After"]) > 0
    assert "Too many messages" in page.get_data(as_text=True)
    api = client.post("/contactus", json=VALID)
    assert api.status_code == 429 and api.json["ok"] is False and int(api.headers["Retry-After"]) > 0


def test_one_ip_cannot_exhaust_another_ips_limit(limited_app):
    client = limited_app.test_client()
    for index in range(4):
        client.post("/contactus", data={**VALID, "message": f"m{index}"}, environ_base={"REMOTE_ADDR": "203.0.113.9"})
    response = client.post("/contactus", data=VALID, environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert response.status_code == 303


def test_get_form_is_not_rate_limited(limited_app):
    client = limited_app.test_client()
    assert all(client.get("/contactus").status_code == 200 for _ in range(6))


def test_forwarded_for_is_trusted_only_for_configured_hops(config):
    config.update(RATE_LIMIT="2 per minute", PROXY_HOPS=1)
    client = create_app(config).test_client()
    # A client that forges extra X-Forwarded-For entries is still counted by the address the proxy saw.
    for forged in ("1.1.1.1", "2.2.2.2"):
        client.post("/contactus", data={**VALID, "message": forged},
                    headers={"X-Forwarded-For": f"{forged}, 203.0.113.5"})
    third = client.post("/contactus", data={**VALID, "message": "third"},
                        headers={"X-Forwarded-For": "3.3.3.3, 203.0.113.5"})
    assert third.status_code == 429
    other = client.post("/contactus", data=VALID, headers={"X-Forwarded-For": "203.0.113.6"})
    assert other.status_code == 303


# --- Size and shape ------------------------------------------------------------------------------

BAD_BODIES = [
    ("application/x-www-form-urlencoded", b"name=" + b"a" * 70000, 413),
    ("application/x-www-form-urlencoded", "&".join(f"f{i}=x" for i in range(200)).encode(), 413),
    ("application/x-www-form-urlencoded", b"name=An%00na&email=a%40example.com&message=hi", 400),
    ("application/x-www-form-urlencoded", b"name=%FF%FE&email=a%40example.com&message=hi", 400),
    ("application/json", b'{"name": "Anna", "email": "a@example.com", "message": "hi\\u0000"}', 400),
    ("application/json", b'{"name": "Anna", "email": ', 400),
    ("application/json", b'["name", "Anna"]', 400),
    ("application/json", b'{"name": {"first": "Anna"}, "email": "a@example.com", "message": "hi"}', 400),
    ("application/json", b'{"name": "\xff\xfe", "email": "a@example.com", "message": "hi"}', 400),
    ("application/json", b"[" * 100000, 413),
    ("text/plain", b"name=Anna", 415),
    ("application/xml", b"<name>Anna</name>", 415),
]


@pytest.mark.parametrize(("content_type", "body", "status"), BAD_BODIES)
@pytest.mark.parametrize("accept", ["application/json", "text/html"])
def test_bad_bodies_get_a_clear_4xx_and_store_nothing(client, db, content_type, body, status, accept):
    response = client.post("/contactus", data=body, content_type=content_type, headers={"Accept": accept})
    assert response.status_code == status
    if accept == "application/json" or content_type == "application/json":  # a JSON body always gets JSON
        assert response.json["ok"] is False and response.json["error"]
    else:
        assert "<html" in response.get_data(as_text=True)
    assert count_rows(db, "submissions") == 0


def test_multipart_invalid_utf8_and_file_uploads_are_refused(client, db):
    bad = client.post("/contactus", data={**VALID, "name": b"\xff\xfe".decode("latin-1")},
                      content_type="multipart/form-data")
    assert bad.status_code in (303, 400)  # latin-1 text re-encoded as UTF-8 is valid; raw bytes below are not
    boundary = "XyZ"
    raw = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n").encode() + b"\xff\xfe" + (
        f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\na@example.com"
        f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"message\"\r\n\r\nhi\r\n--{boundary}--\r\n").encode()
    before = count_rows(db, "submissions")
    response = client.post("/contactus", data=raw, content_type=f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 400 and count_rows(db, "submissions") == before
    import io
    upload = client.post("/contactus", data={**VALID, "file": (io.BytesIO(b"MZ"), "x.exe")},
                         content_type="multipart/form-data", headers={"Accept": "application/json"})
    assert upload.status_code == 400 and upload.json["errors"][0]["code"] == "NO_FILE_UPLOADS"
    assert count_rows(db, "submissions") == before


def test_wrong_method_is_405_not_500(client):
    assert client.put("/contactus", data=VALID).status_code == 405
    assert client.delete("/contactus").status_code == 405


# --- Headers ---------------------------------------------------------------------------------------

def test_security_headers_on_every_page(client):
    for path in ("/contactus", "/contactus/thanks", "/nope"):
        response = client.get(path)
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"]
        assert "Strict-Transport-Security" not in response.headers


def test_hsts_over_https(client):
    response = client.get("/contactus", base_url="https://forms.example")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_trusted_hosts_refuse_a_poisoned_host(config):
    config["TRUSTED_HOSTS"] = "forms.example"
    client = create_app(config).test_client()
    assert client.get("/contactus", base_url="http://forms.example").status_code == 200
    response = client.post("/contactus", data=VALID, base_url="http://evil.example",
                           headers={"Accept": "application/json"})
    assert response.status_code == 400


def test_token_endpoint_serves_a_valid_token_to_allowed_sites_only(config, smtp_server):
    config.update(ALLOWED_ORIGINS="https://florist.example", SPAM_MIN_SECONDS=0)
    client = create_app(config).test_client()
    allowed = client.get("/contactus/token", headers={"Origin": "https://florist.example"})
    assert allowed.status_code == 200 and allowed.headers["Access-Control-Allow-Origin"] == "https://florist.example"
    assert allowed.headers["Cache-Control"] == "no-store"
    other = client.get("/f/contactus/token", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    client.post("/contactus", data={**VALID, "_token": allowed.json["token"]})
    assert client.get("/nope/token").status_code == 404
    from database import open_db
    assert [row[0] for row in open_db(config["DATABASE"]).execute("SELECT status FROM submissions")] == ["new"]
