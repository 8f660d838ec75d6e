"""Fixtures for the inbox's tests: a user, a logged-in client, submissions stored the way the form stores them."""
import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request

import pytest

import admin
import database
import inbox_queries
import outbox
import submissions

OWNER = "owner@florist.example"
PASSWORD = "correct horse battery staple"
# argon2id at 19 MiB takes tens of milliseconds: hash once for the whole run.
PASSWORD_HASH = admin.hash_password(PASSWORD)


def add_submission(db, app, queue_email=True, **fields):
    """Store a submission as contact.store does, by default with the owner's email queued; return its id."""
    record = {"form": "contactus", "name": "Anna Rossi", "email": "anna@example.com",
              "message": "Vorrei un mazzo di rose per sabato.", **fields}
    notifications = []
    if queue_email:
        notifications = outbox.notifications_for(app.config, app.config["FORM_DEFINITIONS"]["contactus"])
    return submissions.save_submission(db, record, notifications)


def csrf_token(client, path="/admin/"):
    """Read a CSRF token from one of the inbox's pages."""
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert match, page[:500]
    return match.group(1)


def log_in(client, email=OWNER, password=PASSWORD, **kwargs):
    token = csrf_token(client, "/admin/login")
    return client.post("/admin/login", data={"email": email, "password": password, "csrf_token": token}, **kwargs)


def log_in_over_http(url, email=OWNER, password=PASSWORD, headers=None):
    """Log in to a real server through its login page, as a browser would; the answer's status and headers."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
                                         NoRedirect)
    page = opener.open(urllib.request.Request(url + "/admin/login", headers=headers or {}), timeout=30).read()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.decode()).group(1)
    data = urllib.parse.urlencode({"email": email, "password": password, "csrf_token": token}).encode()
    try:
        with opener.open(urllib.request.Request(url + "/admin/login", data=data, headers=headers or {}),
                         timeout=60) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.headers


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Hand a redirect back as the answer: a good login's 302 is what a test looks at."""

    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture
def inbox_user(db):
    inbox_queries.create_user(db, OWNER, PASSWORD_HASH)
    return OWNER


@pytest.fixture
def owner(client, inbox_user):
    """A test client logged in to the inbox."""
    response = log_in(client)
    assert response.status_code == 302 and response.headers["Location"] == "/admin/", response.data
    return client


def post(client, path, data=None, **kwargs):
    """POST an inbox form with a valid CSRF token."""
    return client.post(path, data={**(data or {}), "csrf_token": csrf_token(client)}, **kwargs)


# Leads in the owner's scripts, some long enough to test wrapping: an unbroken address, a long first line.
LEADS = (
    {"name": "Иван Петров", "email": "ivan.petrov.very.long.address.for.testing@example-florist-shop.ru",
     "subject": "Букет", "message": "Нужен букет из двадцати пяти белых роз к субботе, доставка на Тверскую улицу, "
                                    "дом 12, после шести вечера.\nСпасибо!", "status": "new"},
    {"name": "प्रिया शर्मा", "email": "priya@example.in", "subject": "गुलदस्ता",
     "message": "नमस्ते, मुझे शनिवार के लिए गुलाबों का एक गुलदस्ता चाहिए।", "status": "in_progress"},
    {"name": "Արամ Պետրոսյան", "email": "aram@example.am", "message": "Բարև Ձեզ։ Կցանկանայի պատվիրել ծաղիկներ։",
     "status": "answered"},
    {"name": "Lucia Bianchi", "email": "lucia@example.it", "message": "Vorrei delle rose.", "status": "spam"},
)


def seed_inbox(path):
    """Give the database at path an inbox user and LEADS, each but the spam with an owner's email queued."""
    db = database.open_db(str(path))
    try:
        database.migrate(db)
        inbox_queries.create_user(db, OWNER, PASSWORD_HASH)
        for number, lead in enumerate(LEADS):
            notifications = [] if lead["status"] == "spam" else [
                {"kind": "lead", "channel": "email", "target": OWNER, "message_id": f"<seed{number}@florist.example>"}]
            submissions.save_submission(db, {"form": "contactus", **lead}, notifications)
    finally:
        db.close()


def log_in_browser(page, base_url):
    """Log in through the real login page, whatever its language."""
    page.goto(f"{base_url}/admin/login")
    page.fill("input[name=email]", OWNER)
    page.fill("input[name=password]", PASSWORD)
    page.press("input[name=password]", "Enter")
    page.wait_for_url(f"{base_url}/admin/")
