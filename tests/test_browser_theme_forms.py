"""Contact forms copied from real themes, written for Formspree or FormSubmit, with only their action changed.

Each is served from a second loopback port (another origin) and sent from Chromium to a real gunicorn.
"""
import functools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import ARTIFACTS, free_port
from playwright.sync_api import expect
from test_languages import t

import database

# Formspree's README and its Hugo theme: the address is _replyto, there is no name and no message.
FORMSPREE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Portfolio</title></head><body>
<h1>Get in touch</h1>
<form action="https://formspree.io/f/mqkrvzab" method="POST">
  <label>Your email: <input type="email" name="_replyto"></label>
  <input type="hidden" name="_subject" value="New lead from the portfolio">
  <input type="text" name="_gotcha" style="display:none">
  <button type="submit">Send</button>
</form></body></html>"""

# FormSubmit's documented form: a honeypot called _honey, a thank-you page in _next, and _captcha switched off.
FORMSUBMIT = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Studio</title></head><body>
<form action="https://formsubmit.co/studio@example.com" method="POST">
  <input type="text" name="name" placeholder="Name" required>
  <input type="email" name="email" placeholder="Email address" required>
  <textarea name="message" placeholder="Your message"></textarea>
  <input type="hidden" name="_subject" value="New submission from the studio site">
  <input type="hidden" name="_next" value="{site}/thanks.html">
  <input type="hidden" name="_captcha" value="false">
  <input type="text" name="_honey" style="display:none">
  <button type="submit">Send</button>
</form></body></html>"""

# A bare Jekyll theme's "call me back" form: name and email, nothing else.
BARE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Tutor</title></head><body>
<form action="https://formspree.io/f/xbjnqwer" method="post">
  <input type="text" name="name" placeholder="Name">
  <input type="email" name="email" placeholder="Email">
  <input type="hidden" name="_subject" value="Callback request">
  <input type="submit" value="Call me back">
</form></body></html>"""

THEMES = {"/formspree.html": (FORMSPREE, "https://formspree.io/f/mqkrvzab"),
          "/formsubmit.html": (FORMSUBMIT, "https://formsubmit.co/studio@example.com"),
          "/bare.html": (BARE, "https://formspree.io/f/xbjnqwer")}
THANKS = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Thanks</title></head>
<body><h1>Thanks, we will call you</h1></body></html>"""


class ThemeHandler(BaseHTTPRequestHandler):
    """Serve each theme's page with only its form's action pointed at Postbox."""

    def __init__(self, *args, site, **kwargs):
        self.site = site
        super().__init__(*args, **kwargs)

    def do_GET(self):
        if self.path == "/thanks.html":
            body = THANKS
        elif self.path in THEMES:
            markup, action = THEMES[self.path]
            body = markup.replace(action, self.site.action).replace("{site}", self.site.url)
        else:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class ThemeSite:
    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.action = ""
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), functools.partial(ThemeHandler, site=self))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site():
    site = ThemeSite()
    yield site
    site.stop()


@pytest.fixture
def postbox(site, live_server_factory, tmp_path):
    forms = tmp_path / "forms.toml"
    forms.write_text(f'[forms.portfolio]\ntitle = "Portfolio"\nallowed_origins = ["{site.url}"]\n'
                     'required = ["email"]\n', encoding="utf-8")
    server = live_server_factory(FORMS=str(forms))
    site.action = f"{server.url}/f/portfolio"
    return server


def open_page(browser, locale="en-US"):
    context = browser.new_context(viewport={"width": 390, "height": 800}, locale=locale)
    return context, context.new_page()


def stored_leads(database_url):
    db = database.open_db(database_url)
    try:
        return {row["mail_subject"]: dict(row) for row in db.execute("SELECT * FROM submissions").mappings()}
    finally:
        db.close()


def screenshot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"theme-{name}.png"), full_page=True)


def test_three_theme_forms_reach_the_owner_with_their_subjects(browser, site, postbox, smtp_server,
                                                               database_url):
    context, page = open_page(browser)
    try:
        page.goto(f"{site.url}/formspree.html")
        page.fill("[name=_replyto]", "reader@example.com")
        page.click("text=Send")
        page.wait_for_url(f"{postbox.url}/f/portfolio/thanks*")
        expect(page.get_by_role("heading", name="Thank you!")).to_be_visible()
        screenshot(page, "formspree-thanks")

        page.goto(f"{site.url}/formsubmit.html")
        page.fill("[name=name]", "Marco Neri")
        page.fill("[name=email]", "marco@example.com")
        page.fill("[name=message]", "A logo for my bakery, please.")
        page.click("text=Send")
        page.wait_for_url(f"{site.url}/thanks.html")
        expect(page.get_by_role("heading", name="Thanks, we will call you")).to_be_visible()

        page.goto(f"{site.url}/bare.html")
        page.fill("[name=name]", "Sita Rao")
        page.fill("[name=email]", "sita@example.com")
        page.click("text=Call me back")
        page.wait_for_url(f"{postbox.url}/f/portfolio/thanks*")
    finally:
        context.close()

    leads = stored_leads(database_url)
    assert set(leads) == {"New lead from the portfolio", "New submission from the studio site", "Callback request"}
    assert leads["New lead from the portfolio"]["email"] == "reader@example.com"
    assert leads["New lead from the portfolio"]["reply_to"] == "reader@example.com"
    assert leads["New submission from the studio site"]["message"] == "A logo for my bakery, please."
    assert json.loads(leads["New submission from the studio site"]["extra"]) == {}  # _captcha, _next are ours
    assert leads["Callback request"]["name"] == "Sita Rao"
    assert all(lead["status"] == "new" for lead in leads.values())

    received = {message["message"]["Subject"]: message["message"] for message in smtp_server.wait_for(3)}
    assert set(received) == set(leads)
    formspree = received["New lead from the portfolio"]
    assert formspree["Reply-To"].addresses[0].addr_spec == "reader@example.com"
    assert "reader@example.com sent a message through the form “Portfolio”." in formspree.get_content()
    assert "A logo for my bakery, please." in received["New submission from the studio site"].get_content()
    assert received["Callback request"]["Reply-To"].addresses[0].addr_spec == "sita@example.com"


@pytest.mark.parametrize("lang, locale", [("ru", "ru-RU"), ("hi", "hi-IN")])
def test_an_invalid_theme_post_leads_back_to_the_theme_in_the_visitors_language(
        browser, site, postbox, smtp_server, database_url, lang, locale):
    context, page = open_page(browser, locale=locale)
    try:
        page.goto(f"{site.url}/bare.html")
        page.fill("[name=name]", "Sita Rao")  # and no email: the portfolio form requires one
        page.click("text=Call me back")
        page.wait_for_url(f"{postbox.url}/f/portfolio")
        assert page.locator("html").get_attribute("lang") == lang
        assert page.title().startswith(t(lang, "Error: %(problem)s", problem=""))
        alert = page.get_by_role("alert")
        expect(alert).to_be_focused()
        expect(alert).to_contain_text(t(lang, "Your email"))
        expect(alert).to_contain_text(t(lang, "Please fill in this field."))
        expect(page.locator("form")).to_have_count(0)  # never our own form in place of the owner's
        screenshot(page, f"go-back-{lang}")

        # back.js is deferred: it runs before DOMContentLoaded, and until then the link is a plain link.
        page.wait_for_load_state("domcontentloaded")
        page.get_by_role("link", name=t(lang, "Go back to the form")).click()
        page.wait_for_url(f"{site.url}/bare.html")
        expect(page.locator("[name=name]")).to_have_value("Sita Rao")  # what they typed is still there
    finally:
        context.close()
    assert stored_leads(database_url) == {}


def test_an_unknown_form_key_leads_back_too(browser, site, postbox):
    site.action = f"{postbox.url}/f/mqkrvzab"  # the Formspree id left in the action
    context, page = open_page(browser, locale="it-IT")
    try:
        page.goto(f"{site.url}/formspree.html")
        page.fill("[name=_replyto]", "reader@example.com")
        page.click("text=Send")
        expect(page.get_by_role("heading", name=t("it", "Not found"))).to_be_visible()
        # back.js is deferred: it runs before DOMContentLoaded, and until then the link is a plain link.
        page.wait_for_load_state("domcontentloaded")
        page.get_by_role("link", name=t("it", "Go back to the form")).click()
        page.wait_for_url(f"{site.url}/formspree.html")
    finally:
        context.close()
