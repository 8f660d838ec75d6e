"""Property-based checks with Hypothesis: no 5xx for any body, safe headers, exact recipients, exact storage."""
import json
import os
import subprocess
import sys
import tempfile
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import pytest
from conftest import ROOT, base_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import create_app
from forms import SPECIAL_FIELDS
import database
import emails
import outbox
import submissions

FIELDS = ("name", "email", "phone", "subject", "message")
any_text = st.text(max_size=300)
field_names = st.one_of(st.sampled_from(FIELDS + SPECIAL_FIELDS + ("_cc", "_bcc", "to")), st.text(max_size=40))
bodies = st.dictionaries(field_names, any_text, max_size=12)
LINE_BREAKS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
OWNERS = ("owner@florist.example", "assistant@florist.example")


@pytest.fixture(scope="module")
def app():
    directory = Path(tempfile.mkdtemp())
    config = base_config(directory, 1)  # no SMTP is contacted here: messages are built, not sent
    config["OWNER_EMAIL"] = ",".join(OWNERS)
    return create_app(config)


@pytest.fixture(scope="module")
def db(app):
    return database.open_db(app.config["DATABASE"])


relaxed = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# The "no 5xx" properties: 1,000 examples each, as the hostile-input issue asks.
thorough = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@thorough
@given(body=bodies, as_json=st.booleans())
def test_any_body_never_gets_a_5xx(app, body, as_json):
    client = app.test_client()
    if as_json:
        response = client.post("/contactus", json=body)
    else:
        response = client.post("/contactus", data=body)
    assert response.status_code < 500


valid_names = st.text(min_size=1, max_size=100).filter(lambda s: s.strip() and len(s.strip()) <= 100)
messages = st.text(min_size=1, max_size=2000).filter(lambda s: s.strip())


@relaxed
@given(name=valid_names, subject=st.text(max_size=200), special_subject=st.text(max_size=200), message=messages,
       extra=st.dictionaries(st.text(min_size=1, max_size=30).filter(lambda s: not s.startswith("_") and s.strip()
                                                                     and s.strip() not in FIELDS),
                             st.text(max_size=100), max_size=5))
def test_built_message_has_safe_headers_and_exact_recipients(app, db, name, subject, special_subject, message, extra):
    client = app.test_client()
    body = {**extra, "name": name, "email": "visitor@example.com", "subject": subject, "message": message,
            "_subject": special_subject, "_cc": "victim@example.net"}
    response = client.post("/contactus", json=body)
    if response.status_code == 400:
        # Only control characters in one-line fields, and NUL anywhere, are refused.
        everything = "".join([message, special_subject, *extra, *extra.values()])
        assert any(ch < " " or ch == "\x7f" for ch in name + subject) or "\x00" in everything
        return
    assert response.status_code == 200
    submission_id = response.json["id"]
    notifications = outbox.notifications_of(db, submission_id)
    assert [(row["channel"], row["target"]) for row in notifications] == [("email", owner) for owner in OWNERS]
    with app.app_context():
        submission = submissions.get_submission(db, submission_id)
        built = emails.build_owner_message(submission, app.config["FORM_DEFINITIONS"]["contactus"],
                                           notifications[0]["message_id"])
    raw = built.as_bytes()
    head = raw.split(b"\n\n", 1)[0].decode("ascii")
    parsed = message_from_bytes(raw, policy=default_policy)
    for header in ("Subject", "From", "Reply-To", "To"):
        assert not any(ch in str(parsed[header]) for ch in LINE_BREAKS)
    assert [line.split(":")[0] for line in head.split("\n") if line and not line[0].isspace()].count("To") == 1
    assert parsed["Cc"] is None and parsed["Bcc"] is None
    assert [address.addr_spec for address in parsed["To"].addresses] == list(OWNERS)
    # Every stored value reads back exactly as submitted.
    assert submission["name"] == name.strip() and submission["message"] == message
    assert submission["subject"] == subject.strip()
    assert submission["extra"] == {key.strip()[:100]: value for key, value in extra.items()}


def test_routes_without_login_answer_no_data(app):
    """Every route `flask routes` lists: only the public ones answer 2xx without a login."""
    env = {**os.environ, "POSTBOX_DATABASE": app.config["DATABASE"], "POSTBOX_SECRET_KEY": "x"}
    listing = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "routes"], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=True).stdout
    public_prefixes = ("/contactus", "/f/", "/static/", "/favicon.ico", "/healthz", "/metrics", "/callback")
    client = app.test_client()
    checked = 0
    for rule in app.url_map.iter_rules():
        assert rule.rule in listing
        path = rule.rule
        for argument in rule.arguments:
            path = path.replace(f"<{argument}>", "1").replace(f"<int:{argument}>", "1")
            path = path.replace(f"<path:{argument}>", "postbox.css")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(path, method=method)
            checked += 1
            if path.startswith("/admin"):
                body = response.get_data(as_text=True)
                assert response.status_code in (302, 303, 400, 401, 403, 404, 405) or path == "/admin/login", (
                    f"{method} {path} answered {response.status_code}")
                assert "visitor@example.com" not in body
            else:
                assert path == "/" or path.startswith(public_prefixes), f"{method} {path} is public"
    assert checked >= 5


@relaxed
@given(cells=st.lists(st.text(max_size=60), min_size=1, max_size=6))
def test_csv_cells_never_start_a_formula_and_read_back_equal(cells):
    import csv
    import io

    from admin import FORMULA_STARTS, neutralise_formula
    buffer = io.StringIO()
    csv.writer(buffer).writerow([neutralise_formula(cell) for cell in cells])
    [row] = list(csv.reader(io.StringIO(buffer.getvalue(), newline="")))
    assert not any(cell.startswith(FORMULA_STARTS[:-1]) for cell in row)
    assert [cell[1:] if cell.startswith("'") else cell for cell in row] == cells


# --- No 5xx from raw JSON escapes, multipart shapes, headers and the inbox's query strings -----------------

code_units = st.integers(min_value=0, max_value=0xFFFF)
json_escapes = st.lists(st.one_of(code_units.map(lambda unit: f"\\u{unit:04x}"),
                                  st.sampled_from(['\\"', "\\\\", "\\n", "x", "\u00e9", "\\ud83d\\ude00"])),
                        max_size=12).map("".join)


@thorough
@given(name=json_escapes, value=json_escapes, field=st.sampled_from(FIELDS + ("_replyto", "_next", "_token")))
def test_raw_json_escapes_never_get_a_5xx(app, name, value, field):
    body = f'{{"name": "Anna", "email": "anna@example.com", "message": "hi", "{field}": "{value}", "{name}": "x"}}'
    response = app.test_client().post("/contactus", data=body.encode(), content_type="application/json")
    assert response.status_code < 500


header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40)
part_shapes = st.lists(st.tuples(
    st.one_of(st.none(), st.sampled_from(FIELDS), header_text.filter(lambda text: '"' not in text)),
    st.one_of(st.none(), st.just(""), header_text.filter(lambda text: '"' not in text)),
    st.binary(max_size=80),
    st.sampled_from(["", "\r\nContent-Type: text/plain; charset=latin-1", "\r\nX-Other: \u00ff"]),
), max_size=6)


@thorough
@given(parts=part_shapes, boundary=st.sampled_from(["b0undary", "x" * 70, "é", ""]), epilogue=st.binary(max_size=20))
def test_any_multipart_shape_never_gets_a_5xx(app, parts, boundary, epilogue):
    body = b""
    for name, filename, value, more_headers in parts:
        disposition = "form-data"
        if name is not None:
            disposition += f'; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += (f"--{boundary}\r\nContent-Disposition: {disposition}{more_headers}\r\n\r\n"
                 .encode("utf-8") + value + b"\r\n")
    body += f"--{boundary}--\r\n".encode("utf-8") + epilogue
    response = app.test_client().post("/contactus", data=body,
                                      content_type=f"multipart/form-data; boundary={boundary}")
    assert response.status_code < 500


@thorough
@given(headers=st.dictionaries(st.sampled_from(["Accept", "Accept-Language", "Origin", "Referer", "Idempotency-Key",
                                                "Content-Type", "X-Requested-With", "User-Agent"]),
                               header_text, max_size=6), as_json=st.booleans())
def test_any_headers_never_get_a_5xx(app, headers, as_json):
    client = app.test_client()
    body = {"name": "Anna", "email": "anna@example.com", "message": "hi"}
    if as_json:
        response = client.post("/contactus", data=json.dumps(body), headers={"Content-Type": "application/json",
                                                                             **headers})
    else:
        response = client.post("/contactus", data=body, headers=headers)
    assert response.status_code < 500


numbers = st.one_of(st.integers(min_value=-2, max_value=2 ** 70).map(str), st.sampled_from(["²", "٣", "1e3", " 1", ""]))
dates = st.one_of(st.dates().map(str), st.sampled_from(["9999-12-31", "0001-01-01", "2026-02-30", "20260101", "x"]))
query_values = {
    "q": st.text(max_size=20), "status": st.sampled_from(["new", "spam", "x", ""]), "form": st.text(max_size=10),
    "from": dates, "to": dates, "days": numbers,
    "after": st.tuples(st.one_of(dates, st.text(max_size=10)), numbers).map("|".join) | st.text(max_size=10),
}


@pytest.fixture(scope="module")
def owner(app):
    """A client logged in to the inbox of the module's app."""
    import inbox_queries
    from inbox_fixtures import PASSWORD, PASSWORD_HASH, log_in
    db = database.open_db(app.config["DATABASE"])
    inbox_queries.create_user(db, "owner@florist.example", PASSWORD_HASH)
    db.close()
    client = app.test_client()
    assert log_in(client, "owner@florist.example", PASSWORD).status_code == 302
    return client


@thorough
@given(query=st.fixed_dictionaries({}, optional=query_values),
       path=st.sampled_from(["/admin/", "/admin/export.csv", "/admin/export.json"]))
def test_any_inbox_query_string_never_gets_a_5xx(owner, query, path):
    response = owner.get(path, query_string=query)
    assert response.status_code < 500, (path, query)
    response.close()
