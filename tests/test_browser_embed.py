"""The florist's site on another origin sends through all three embeddings, in Debian's Chromium, to a real gunicorn."""
import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import ARTIFACTS, ROOT, count_rows, free_port
from playwright.sync_api import expect
import database


EXAMPLE = ROOT / "examples" / "business-card"
PLACEHOLDER = "http://localhost:8000"  # the Postbox address the example pages are written with


class ExampleSiteHandler(SimpleHTTPRequestHandler):
    """Serve the example folder, with the Postbox placeholder rewritten to the live server's address."""

    def __init__(self, *args, site, **kwargs):
        self.site = site
        super().__init__(*args, directory=str(EXAMPLE), **kwargs)

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        if path.is_dir():
            path = path / "index.html"
        if path.suffix != ".html" or not path.is_file():
            return super().do_GET()
        body = path.read_text(encoding="utf-8").replace(PLACEHOLDER, self.site.postbox_url).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class ExampleSite:
    """The business-card site on a second loopback port: the "other origin"."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.postbox_url = PLACEHOLDER
        handler = functools.partial(ExampleSiteHandler, site=self)
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site():
    site = ExampleSite()
    yield site
    site.stop()


@pytest.fixture
def postbox(site, live_server_factory):
    server = live_server_factory(ALLOWED_ORIGINS=site.url)
    site.postbox_url = server.url
    return server


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1000, "height": 900}, locale="en-US")
    page = context.new_page()
    page.csp_violations = []
    page.on("console", lambda message: "Content Security Policy" in message.text
            and page.csp_violations.append(message.text))
    yield page
    context.close()


def screenshot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"embed-{name}.png"), full_page=True)


def fill_article_form(scope, name="Maria Bianchi", email="maria@example.com", message="Twelve white roses, please."):
    scope.locator("[name=name]").fill(name)
    scope.locator("[name=email]").fill(email)
    scope.locator("[name=phone]").fill("+39 055 123 4567")
    scope.locator("[name=subject]").fill("Wedding bouquet")
    scope.locator("[name=message]").fill(message)


def stored(database_url):
    db = database.open_db(database_url)
    try:
        return count_rows(db, "submissions")
    finally:
        db.close()


# --- (a) the article's form, only its action changed -------------------------------------------

def test_plain_form_on_the_other_origin(page, site, postbox, smtp_server):
    page.goto(f"{site.url}/plain-action.html")
    assert page.locator("form").get_attribute("action") == f"{postbox.url}/contactus"
    fill_article_form(page)
    screenshot(page, "plain-filled")
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(f"{postbox.url}/contactus/thanks*")
    expect(page.get_by_role("heading", name="Thank you!")).to_be_visible()
    screenshot(page, "plain-thanks")
    [received] = smtp_server.wait_for(1)
    assert received["rcpt_tos"] == ["owner@florist.example"]
    body = received["message"].get_content()
    assert "Twelve white roses" in body and f"{site.url}/" in body  # the page it came from


def test_plain_form_with_next_comes_back_to_the_site(page, site, postbox, smtp_server):
    page.goto(f"{site.url}/")
    fill_article_form(page, message="Do you deliver on Sundays?")
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(f"{site.url}/thanks.html")
    expect(page.get_by_text("Your message is on its way to us")).to_be_visible()
    screenshot(page, "index-own-thanks")
    assert "Do you deliver on Sundays?" in smtp_server.wait_for(1)[0]["message"].get_content()


# --- (c) the same form with postbox.js ----------------------------------------------------------

def test_script_shows_errors_in_place_then_success(page, site, postbox, smtp_server, database_url):
    page.goto(f"{site.url}/script.html")
    page.locator("[name=name]").fill("Maria")
    page.locator("[name=email]").fill("maria-at-example")
    page.evaluate("""() => { const button = document.querySelector("form button"); window.sawDisabled = false;
        new MutationObserver(() => { if (button.disabled) window.sawDisabled = true; })
            .observe(button, {attributes: true}); }""")
    page.get_by_role("button", name="Send").click()

    summary = page.get_by_role("alert")
    expect(summary).to_be_visible()
    expect(summary).to_contain_text("Message")
    email = page.locator("[name=email]")
    expect(email).to_have_attribute("aria-invalid", "true")
    error_id = email.get_attribute("aria-describedby")
    expect(page.locator(f"#{error_id}")).to_contain_text("Please enter a valid email address.")
    expect(page.locator("[name=message]")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("[name=name]")).not_to_have_attribute("aria-invalid", "true")
    assert page.url == f"{site.url}/script.html"
    assert page.evaluate("window.sawDisabled") is True
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    screenshot(page, "script-errors")
    assert stored(database_url) == 0

    page.locator("[name=email]").fill("maria@example.com")
    page.locator("[name=message]").fill("A small bouquet for my mother, please.")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_contain_text("We will answer within a working day")
    expect(page.locator("form")).to_have_count(0)
    assert page.url == f"{site.url}/script.html"
    screenshot(page, "script-thanks")
    [received] = smtp_server.wait_for(1)
    assert "A small bouquet for my mother" in received["message"].get_content()
    assert stored(database_url) == 1


def test_script_form_carries_the_time_trap_token(page, site, live_server_factory, smtp_server, database_url):
    """A bot that runs the page's JavaScript and submits at once is kept as spam; the visitor sees success."""
    server = live_server_factory(ALLOWED_ORIGINS=site.url, SPAM_MIN_SECONDS=60)
    site.postbox_url = server.url
    page.goto(f"{site.url}/script.html")
    expect(page.locator("form [name=_token]")).to_have_count(1)
    fill_article_form(page)
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_be_visible()
    db = database.open_db(database_url)
    try:
        assert [tuple(row) for row in db.execute("SELECT status, spam_reason FROM submissions")] == [
            ("spam", "sent too fast after the form was served")]
        assert count_rows(db, "outbox") == 0
    finally:
        db.close()


def test_script_finds_forms_by_their_action_alone(page, site, postbox, smtp_server):
    # The article's form has no data-postbox: postbox.js recognises its action instead.
    page.goto(f"{site.url}/plain-action.html")
    page.add_script_tag(url=f"{postbox.url}/static/postbox.js")
    fill_article_form(page, message="Found by the action.")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_contain_text("Your message has been received")
    assert page.url == f"{site.url}/plain-action.html"
    assert "Found by the action." in smtp_server.wait_for(1)[0]["message"].get_content()


def test_script_on_a_page_without_javascript_is_still_a_plain_form(browser, site, postbox, smtp_server):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{site.url}/script.html")
    fill_article_form(page, message="Sent without JavaScript.")
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(f"{postbox.url}/contactus/thanks*")
    assert "Sent without JavaScript." in smtp_server.wait_for(1)[0]["message"].get_content()
    context.close()


# --- (b) the hosted form in an iframe ------------------------------------------------------------

def frame_height(page):
    return page.evaluate("document.querySelector('iframe').getBoundingClientRect().height")


def content_height(frame):
    return frame.evaluate("document.documentElement.getBoundingClientRect().height")


def test_iframe_submits_inside_the_frame_and_fits_its_content(page, site, postbox, smtp_server):
    page.goto(f"{site.url}/iframe.html")
    frame_element = page.locator("iframe")
    frame = page.frame_locator("iframe")
    expect(frame.get_by_role("button", name="Send")).to_be_visible()
    inner = frame_element.element_handle().content_frame()
    page.wait_for_function("document.querySelector('iframe').style.height !== ''")
    assert abs(frame_height(page) - content_height(inner)) <= 2
    first_height = frame_height(page)
    assert first_height != 640  # the height written in the page was replaced by the form's own

    frame.get_by_role("button", name="Send").click()
    expect(frame.get_by_role("alert")).to_be_visible()
    page.wait_for_function(f"document.querySelector('iframe').getBoundingClientRect().height > {first_height}")
    assert abs(frame_height(page) - content_height(inner)) <= 2
    screenshot(page, "iframe-errors")

    fill_article_form(frame, message="Sent from inside the frame.")
    frame.get_by_role("button", name="Send").click()
    expect(frame.get_by_role("status")).to_contain_text("Your message has been received")
    page.wait_for_function(f"document.querySelector('iframe').getBoundingClientRect().height < {first_height}")
    assert page.url == f"{site.url}/iframe.html"
    assert inner.url.startswith(f"{postbox.url}/contactus?embed=1")  # still in the frame
    screenshot(page, "iframe-thanks")
    assert "Sent from inside the frame." in smtp_server.wait_for(1)[0]["message"].get_content()
    assert page.csp_violations == []


def test_iframe_without_javascript_keeps_the_thanks_page_in_the_frame(browser, site, postbox, smtp_server):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{site.url}/iframe.html")
    frame = page.frame_locator("iframe")
    fill_article_form(frame, message="Framed, no JavaScript.")
    frame.get_by_role("button", name="Send").click()
    expect(frame.get_by_role("heading", name="Thank you!")).to_be_visible()
    inner = page.locator("iframe").element_handle().content_frame()
    assert inner.url.startswith(f"{postbox.url}/contactus/thanks") and "embed=1" in inner.url
    assert page.url == f"{site.url}/iframe.html"
    screenshot(page, "iframe-no-js-thanks")
    assert "Framed, no JavaScript." in smtp_server.wait_for(1)[0]["message"].get_content()
    context.close()


# --- The hosted form itself, under its own CSP ------------------------------------------------

def test_hosted_form_with_postbox_js_under_its_csp(page, postbox, smtp_server):
    page.goto(f"{postbox.url}/contactus")
    fill_article_form(page, message="From the hosted form.")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_contain_text("Your message has been received")
    assert page.url == f"{postbox.url}/contactus"
    assert page.csp_violations == []
    assert "From the hosted form." in smtp_server.wait_for(1)[0]["message"].get_content()


# --- Refused origins -------------------------------------------------------------------------------

def test_fetch_from_a_disallowed_origin_fails(page, site, postbox, smtp_server, database_url):
    # localhost:PORT is another origin than the allowed 127.0.0.1:PORT, though it is the same server.
    page.goto(f"http://localhost:{site.port}/plain-action.html")
    outcome = page.evaluate("""async (url) => {
        const body = new FormData();
        for (const [name, value] of [["name", "Eve"], ["email", "eve@example.com"], ["message", "Hello"]])
            body.append(name, value);
        try {
            const response = await fetch(url, {method: "POST", body, headers: {Accept: "application/json"}});
            return "read " + response.status;
        } catch (error) { return "failed: " + error.message; }
    }""", f"{postbox.url}/f/contactus")
    assert outcome.startswith("failed"), outcome
    json_outcome = page.evaluate("""async (url) => {
        try { await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"}, body: "{}"});
              return "read"; } catch (error) { return "failed"; }
    }""", f"{postbox.url}/f/contactus")
    assert json_outcome == "failed"

    fill_article_form(page, message="From a site not on the list.")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("alert")).to_contain_text("does not accept messages from http://localhost")
    screenshot(page, "refused-origin")
    assert stored(database_url) == 0
    assert smtp_server.messages == []
