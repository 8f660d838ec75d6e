"""The inbox on a phone, in Chromium: cards below tablet width, nothing wider than the screen, actions under the thumb."""
import pytest
from conftest import ARTIFACTS
from inbox_fixtures import LEADS, log_in_browser, seed_inbox
from playwright.sync_api import expect
from test_languages import t

# 390 px: a common phone; 320 px: the narrowest; 640 px: a 1280 px window at 200 % zoom.
WIDTHS = (390, 320, 640)
LOCALES = {"ru": "ru-RU", "hi": "hi-IN"}

OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


@pytest.fixture
def postbox(database_url, live_server_factory):
    seed_inbox(database_url)
    return live_server_factory()


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("lang", sorted(LOCALES))
def test_inbox_is_cards_without_overflow_on_a_phone(browser, postbox, lang, width):
    context = browser.new_context(viewport={"width": width, "height": 740}, locale=LOCALES[lang], is_mobile=True,
                                  has_touch=True)
    page = context.new_page()
    try:
        log_in_browser(page, postbox.url)
        assert page.locator("html").get_attribute("lang") == lang
        cards = page.locator("table.submissions tbody tr")
        expect(cards).to_have_count(len(LEADS))
        assert page.evaluate(OVERFLOW) == 0
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"inbox-phone-{lang}-{width}.png"), full_page=True)

        for card in cards.all():
            assert card.evaluate("row => getComputedStyle(row).display") == "grid"
            box = card.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= width
            for part in ("col-name", "col-status", "col-when", "col-message", "col-delivery"):
                expect(card.locator(f".{part}")).to_be_visible()
            expect(card.locator(".col-form")).to_be_hidden()
            # A date is one unbroken line, whatever the width.
            assert card.locator("time").evaluate("time => time.getClientRects().length") == 1
        newest, oldest = cards.first, cards.last
        expect(newest.locator(".col-status")).to_have_text(t(lang, "spam"))
        expect(newest.locator(".col-message")).to_have_text(LEADS[-1]["message"])
        expect(oldest.locator(".col-name")).to_have_text(LEADS[0]["name"])
        expect(oldest.locator(".col-delivery")).to_contain_text(t(lang, "Email to owner"))

        # Once the cards are on screen, the bulk actions stay at its bottom, where the thumb is, big enough to hit.
        newest.evaluate("card => card.scrollIntoView({block: 'start'})")
        bulk = page.locator(".bulk").bounding_box()
        assert 740 / 2 < bulk["y"] and bulk["y"] + bulk["height"] <= 740
        summary = page.locator(".bulk summary").bounding_box()
        assert summary["height"] >= 44

        cards.nth(0).locator(".col-name a").click()
        page.wait_for_url(f"{postbox.url}/admin/s/*")
        assert page.evaluate(OVERFLOW) == 0
        for button in page.locator(".actions button:visible, .actions .button").all():
            assert button.bounding_box()["height"] >= 44
        page.screenshot(path=str(ARTIFACTS / f"inbox-phone-{lang}-{width}-detail.png"), full_page=True)
    finally:
        context.close()


def test_wide_screens_keep_the_table(browser, postbox):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        log_in_browser(page, postbox.url)
        expect(page.locator("table.submissions thead")).to_be_visible()
        assert page.locator("table.submissions tbody tr").first.evaluate("row => getComputedStyle(row).display") \
            == "table-row"
    finally:
        page.close()
