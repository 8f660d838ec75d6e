"""Each of the five languages in a real browser: the form, its errors in place, the thank-you page; a screenshot each."""
import pytest
from conftest import ARTIFACTS
from playwright.sync_api import expect
from test_languages import t

LANGUAGES = ("en", "ru", "it", "hy", "hi")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_language_renders_form_errors_and_thanks(browser, live_server_factory, smtp_server, lang):
    server = live_server_factory(SPAM_MIN_SECONDS=0)
    context = browser.new_context(viewport={"width": 420, "height": 900}, locale="en-US")  # a phone's width
    page = context.new_page()
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        page.goto(f"{server.url}/contactus?lang={lang}")
        assert page.locator("html").get_attribute("lang") == lang
        expect(page.locator("button[type=submit]")).to_have_text(t(lang, "Send"))
        expect(page.locator("label[for=name]")).to_contain_text(t(lang, "Your name"))
        page.screenshot(path=str(ARTIFACTS / f"language-{lang}-form.png"), full_page=True)

        page.locator("[name=name]").fill("Test")
        page.locator("button[type=submit]").click()
        summary = page.get_by_role("alert")
        expect(summary).to_contain_text(t(lang, "Please fill in this field."))
        expect(page.locator("#email")).to_have_attribute("aria-invalid", "true")
        page.screenshot(path=str(ARTIFACTS / f"language-{lang}-errors.png"), full_page=True)

        page.locator("[name=email]").fill("visitor@example.com")
        page.locator("[name=message]").fill("Привет · Բարև · नमस्ते · Ciao")
        page.locator("button[type=submit]").click()
        expect(page.get_by_text(t(lang, "Your message has been received. We will get back to you soon."))).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / f"language-{lang}-thanks.png"), full_page=True)
    finally:
        context.close()
    [received] = smtp_server.wait_for(1)
    assert "Привет · Բարև · नमस्ते · Ciao" in received["message"].get_content()
