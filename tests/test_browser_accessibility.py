"""axe-core in Chromium: no WCAG 2.1 A or AA violation on any public page or inbox page, in all five languages."""
import pytest
from conftest import AXE
from inbox_fixtures import log_in_browser, seed_inbox
from test_browser_theme_forms import site  # noqa: F401 (the fixture: a theme's site on its own origin)

from config import LANGUAGES

LOCALES = {"en": "en-US", "ru": "ru-RU", "it": "it-IT", "hy": "hy-AM", "hi": "hi-IN"}
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.fixture
def postbox(tmp_path, database_url, site, live_server_factory):
    seed_inbox(database_url)
    forms = tmp_path / "forms.toml"
    forms.write_text(f'[forms.portfolio]\nallowed_origins = ["{site.url}"]\nrequired = ["email"]\n', encoding="utf-8")
    server = live_server_factory(FORMS=str(forms))
    site.action = f"{server.url}/f/portfolio"
    return server


def violations(page):
    """Run axe-core on the page as it is now; return its WCAG 2.1 AA violations, one line each."""
    assert AXE.exists(), "axe-core is missing: run make axe (make test does)"
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG_21_AA)
    return [f"{page.url}: {v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in result["violations"]]


def public_pages(page, postbox, site):
    """Visit each public page in turn, yielding after each: the form, its errors, thanks, not found, the way back."""
    page.goto(f"{postbox.url}/contactus")
    yield
    page.click("button[type=submit]")
    page.wait_for_selector("[data-postbox-summary], .summary")
    yield
    page.goto(f"{postbox.url}/contactus/thanks")
    yield
    page.goto(f"{postbox.url}/f/no-such-form")
    yield
    page.goto(f"{site.url}/bare.html")
    page.click("input[type=submit]")
    page.wait_for_url(f"{postbox.url}/f/portfolio")
    yield
    page.goto(f"{postbox.url}/admin/login")
    yield


def inbox_pages(page, postbox):
    """Visit each inbox page: the list, a filtered list, each submission, a flash message, the lock-out page."""
    log_in_browser(page, postbox.url)
    yield
    page.goto(f"{postbox.url}/admin/?q=nothing-matches-this")
    yield
    for submission_id in (1, 2, 3, 4):
        page.goto(f"{postbox.url}/admin/s/{submission_id}")
        yield
    page.locator("details.confirm summary").click()  # the delete confirmation, open
    yield
    page.locator(".actions form button[type=submit]").first.click()  # a flash message
    page.wait_for_selector(".flash")
    yield


@pytest.mark.parametrize("lang", LANGUAGES)
def test_no_wcag_violations_in_any_language(browser, postbox, site, lang):
    # bypass_csp: only so that axe itself can be injected; the pages are served with their real CSP.
    context = browser.new_context(viewport={"width": 1100, "height": 900}, locale=LOCALES[lang], bypass_csp=True)
    page = context.new_page()
    found = []
    try:
        for _ in public_pages(page, postbox, site):
            assert page.locator("html").get_attribute("lang") == lang, page.url
            found += violations(page)
        for _ in inbox_pages(page, postbox):
            assert page.locator("html").get_attribute("lang") == lang, page.url
            found += violations(page)
    finally:
        context.close()
    assert not found, "\n".join(found)


def test_no_wcag_violations_on_a_phone(browser, postbox):
    context = browser.new_context(viewport={"width": 320, "height": 700}, locale="hi-IN", is_mobile=True,
                                  bypass_csp=True)
    page = context.new_page()
    try:
        found = []
        for _ in inbox_pages(page, postbox):
            found += violations(page)
    finally:
        context.close()
    assert not found, "\n".join(found)


def test_the_check_itself_finds_a_known_violation(browser):
    """Guard against a silent pass: an unlabelled input and a grey-on-grey badge must be reported."""
    page = browser.new_page()
    try:
        page.set_content('<html lang="en"><title>t</title><body><main><input>'
                         '<span style="background:#c88a04;color:#fff">in progress</span></main></body></html>')
        found = " ".join(violations(page))
        assert "label" in found and "color-contrast" in found
    finally:
        page.close()
