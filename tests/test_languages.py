"""Languages: the public pages and the owner's email in en, ru, it, hy and hi, and the catalogs behind them.

Expected texts are read from translations/<lang>/LC_MESSAGES/messages.po (never hard-coded here), so these
tests check that the right catalog is chosen and used, and the catalog tests check the catalogs themselves.
"""
import functools
import html
import re
from collections import Counter
from pathlib import Path

import pytest
from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po

from conftest import ROOT, VALID, deliver_all

from config import LANGUAGES

TRANSLATED = ("ru", "it", "hy", "hi")
ALL = ("en",) + TRANSLATED
TRANSLATIONS = ROOT / "translations"
# The inbox is translated too (issue 12): no source file is exempt any more.
NOT_PUBLIC = ()
PLACEHOLDER = re.compile(r"%(?:\((\w+)\))?[-#0 +]*\d*(?:\.\d+)?([diouxXeEfFgGcrsa%])")

# What a visitor in each language might type: the owner's email must carry it intact.
VISITORS = {
    "en": {"name": "Anna Rossi", "subject": "Roses", "message": VALID["message"]},
    "ru": {"name": "Иван Петров", "subject": "Букет",
           "message": "Здравствуйте! Нужен букет из 25 роз к субботе — это возможно?"},
    "it": {"name": "Anna Rossi", "subject": "Mazzo di rose",
           "message": "Buongiorno, vorrei un mazzo di rose per sabato: è possibile?"},
    "hy": {"name": "Արամ Պետրոսյան", "subject": "Ծաղկեփունջ",
           "message": "Բարև Ձեզ։ Կցանկանայի պատվիրել վարդերի ծաղկեփունջ շաբաթ օրվա համար։"},
    "hi": {"name": "प्रिया शर्मा", "subject": "गुलदस्ता",
           "message": "नमस्ते! मुझे शनिवार के लिए गुलाबों का एक गुलदस्ता चाहिए।"},
}


# --- Reading the catalogs -------------------------------------------------------------------------

def po_path(lang):
    return TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po"


@functools.cache
def catalog(lang):
    with open(po_path(lang), "rb") as fh:
        return read_po(fh, locale=lang)


def t(lang, msgid, **params):
    """The text a page in `lang` shows for msgid: the msgid itself in English, else the catalog's msgstr."""
    if lang == "en":
        text = msgid
    else:
        message = catalog(lang).get(msgid)
        assert message is not None, f"{lang}: {msgid!r} is not in the catalog"
        assert message.string and not message.fuzzy, f"{lang}: {msgid!r} is untranslated or fuzzy"
        text = message.string
    return text % params if params else text


def page(response):
    """The response's HTML with entities decoded (Jinja escapes ' and \" in translated text)."""
    return html.unescape(response.get_data(as_text=True))


def is_public(message):
    """Used anywhere but the admin side (locations may be relative to ROOT or absolute)."""
    paths = [Path(path).resolve().relative_to(ROOT).as_posix() if Path(path).is_absolute() else path
             for path, _ in message.locations]
    return not paths or any(not path.startswith(NOT_PUBLIC) for path in paths)


def placeholders(text):
    return Counter(match.groups() for match in PLACEHOLDER.finditer(text))


@pytest.fixture(scope="module", autouse=True)
def compiled_catalogs():
    """The app reads the .mo files: they must exist and be newer than their .po (`make translations`)."""
    for lang in TRANSLATED:
        mo = po_path(lang).with_suffix(".mo")
        assert mo.exists() and mo.stat().st_mtime >= po_path(lang).stat().st_mtime, \
            f"{mo} is missing or older than its .po: run `make translations`"


def assert_language(text, lang):
    assert f'<html lang="{lang}">' in text


# --- The form page -----------------------------------------------------------------------------

def test_every_configured_language_has_a_catalog():
    assert set(LANGUAGES) == set(ALL)
    for lang in TRANSLATED:
        assert po_path(lang).exists()


@pytest.mark.parametrize("lang", ALL)
def test_form_page_in_each_language(client, lang):
    response = client.get(f"/contactus?lang={lang}", headers={"Accept-Language": "en"})
    assert response.status_code == 200
    text = page(response)
    assert_language(text, lang)
    assert f'<button type="submit">{t(lang, "Send")}</button>' in text
    for label in ("Your name", "Your email", "Phone", "Subject", "Message"):
        assert f">{t(lang, label)} <span" in text, label
    assert f'<span class="optional">({t(lang, "optional")})</span>' in text
    assert t(lang, "Leave this field empty") in text
    assert f'name="_language" value="{lang}"' in text
    if lang != "en":
        assert "<button type=\"submit\">Send</button>" not in text and ">Your name <" not in text


@pytest.mark.parametrize("header, lang", [
    ("ru-RU,ru;q=0.9,en-US;q=0.8,en;q=0.7", "ru"),
    ("it-IT,it;q=0.9,en;q=0.5", "it"),
    ("hy-AM,hy;q=0.9,ru;q=0.8", "hy"),
    ("hi-IN,hi;q=0.9,en-IN;q=0.8", "hi"),
    ("fr-FR,fr;q=0.9,it;q=0.5", "it"),
    ("de-DE,de;q=0.9", "en"),
    ("en-GB,en;q=0.9", "en"),
])
def test_accept_language_chooses_the_language(client, header, lang):
    text = page(client.get("/contactus", headers={"Accept-Language": header}))
    assert_language(text, lang)
    assert f'<button type="submit">{t(lang, "Send")}</button>' in text


def test_lang_parameter_beats_accept_language(client):
    text = page(client.get("/contactus?lang=hi", headers={"Accept-Language": "ru"}))
    assert_language(text, "hi")
    assert t("hi", "Your name") in text and t("ru", "Your name") not in text


def test_unknown_lang_parameter_falls_back_to_accept_language(client):
    text = page(client.get("/contactus?lang=xx", headers={"Accept-Language": "it"}))
    assert_language(text, "it")


def test_form_language_setting_beats_the_browser(config, request):
    config["LANGUAGE"] = "hy"
    client = request.getfixturevalue("client")
    text = page(client.get("/contactus", headers={"Accept-Language": "ru"}))
    assert_language(text, "hy")
    assert t("hy", "Send") in text
    assert_language(page(client.get("/contactus?lang=it")), "it")


# --- Submitting ----------------------------------------------------------------------------------

INVALID = {"name": "", "email": "not-an-address", "message": "   "}


def assert_invalid_page(response, lang):
    assert response.status_code == 400
    text = page(response)
    assert_language(text, lang)
    assert t(lang, "Your message was not sent yet. Please check:") in text
    assert f'<a href="#name">{t(lang, "Your name")}</a>: {t(lang, "Please fill in this field.")}' in text
    assert f'<a href="#message">{t(lang, "Message")}</a>' in text
    # Our own sentence, whole: email_validator's English reason never reaches the visitor.
    assert f'<a href="#email">{t(lang, "Your email")}</a>: {t(lang, "Please enter a valid email address.")}</li>' in text
    assert "The email address is not valid" not in text and ".)." not in text
    assert f'<button type="submit">{t(lang, "Send")}</button>' in text
    if lang != "en":
        assert "Please fill in this field." not in text
    return text


@pytest.mark.parametrize("lang", ALL)
def test_invalid_post_from_the_hosted_form_is_translated(client, lang):
    # The hosted form posts back to its own address, ?lang= included.
    assert_invalid_page(client.post(f"/contactus?lang={lang}", data=INVALID), lang)


@pytest.mark.parametrize("lang", TRANSLATED)
def test_invalid_post_follows_accept_language(client, lang):
    assert_invalid_page(client.post("/contactus", data=INVALID, headers={"Accept-Language": lang}), lang)


@pytest.mark.parametrize("lang", ALL)
def test_other_validation_messages_are_translated(client, lang):
    data = {"name": "x" * 101, "email": "anna@example.com", "phone": "12", "subject": "a\x01b"}  # no message
    text = page(client.post(f"/contactus?lang={lang}", data=data))
    assert t(lang, "This field is required.") in text
    assert t(lang, "Please keep this under %(limit)d characters (now %(length)d).", limit=100, length=101) in text
    assert t(lang, "Please enter a phone number we can call.") in text
    assert t(lang, "This field contains control characters.") in text


@pytest.mark.parametrize("lang", TRANSLATED)
def test_language_field_in_post_chooses_thanks_page_and_email(client, app, db, smtp_server, lang):
    visitor = VISITORS[lang]
    data = {**VALID, "name": visitor["name"], "message": visitor["message"], "_language": lang}
    response = client.post("/contactus", data=data, headers={"Accept-Language": "en"})
    assert response.status_code == 303
    assert f"lang={lang}" in response.headers["Location"]
    text = page(client.get(response.headers["Location"], headers={"Accept-Language": "en"}))
    assert_language(text, lang)
    assert t(lang, "Thank you!") in text
    assert db.execute("SELECT language FROM submissions").scalar() == lang
    deliver_all(app, db)
    [received] = smtp_server.messages
    message = received["message"]
    # No subject field: the "new message" subject line, in the visitor's language.
    assert message["Subject"] == t(lang, "New message from %(name)s", name=visitor["name"])
    body = message.get_content().replace("\r\n", "\n")
    assert t(lang, "Reply to this email to answer them.") in body
    assert visitor["message"] in body


@pytest.mark.parametrize("lang", TRANSLATED)
def test_language_field_in_invalid_post_is_used(client, lang):
    # A hand-written form on another site: no ?lang=, only the hidden _language field.
    response = client.post("/contactus", data={**INVALID, "_language": lang}, headers={"Accept-Language": "en"})
    assert_invalid_page(response, lang)


@pytest.mark.parametrize("lang", TRANSLATED)
def test_json_errors_are_translated(client, lang):
    response = client.post("/contactus", json={"name": "", "email": "anna@example.com", "message": "Hi"},
                           headers={"Accept": "application/json", "Accept-Language": lang})
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == t(lang, "Please correct the highlighted fields.")
    assert body["errors"] == [{"field": "name", "code": "REQUIRED_FIELD_EMPTY",
                               "message": t(lang, "Please fill in this field.")}]


# --- Thanks and error pages ----------------------------------------------------------------------

@pytest.mark.parametrize("lang", ALL)
def test_thanks_page_is_translated(client, lang):
    text = page(client.get(f"/contactus/thanks?lang={lang}"))
    assert_language(text, lang)
    assert f"<title>{t(lang, 'Thank you')}</title>" in text
    assert f"<h1>{t(lang, 'Thank you!')}</h1>" in text
    assert t(lang, "Your message has been received. We will get back to you soon.") in text
    assert f'<a href="/contactus?lang={lang}">{t(lang, "Send another message")}</a>' in text


@pytest.mark.parametrize("lang", ALL)
def test_error_pages_are_translated(client, lang):
    response = client.get(f"/f/no-such-form?lang={lang}")
    assert response.status_code == 404
    text = page(response)
    assert_language(text, lang)
    assert f"<h1>{t(lang, 'Not found')}</h1>" in text
    assert t(lang, "There is no form called %(key)s here.", key="no-such-form") in text

    response = client.post(f"/contactus?lang={lang}", data={})
    assert response.status_code == 400
    text = page(response)
    assert f"<h1>{t(lang, 'Your message was not sent')}</h1>" in text
    assert t(lang, "The form is empty.") in text

    response = client.post(f"/contactus?lang={lang}", data="hello", content_type="text/plain")
    assert response.status_code == 415
    assert t(lang, "Send the form as application/x-www-form-urlencoded, multipart/form-data or "
                   "application/json.") in page(response)

    response = client.post(f"/contactus?lang={lang}", data={**VALID, "message": "x" * 70_000})
    assert response.status_code == 413
    assert t(lang, "The form is too large. Please shorten the message.") in page(response)


@pytest.mark.parametrize("lang", ALL)
def test_rate_limit_page_is_translated(config, request, lang):
    config["RATE_LIMIT"] = "1 per minute"
    client = request.getfixturevalue("client")
    statuses = []
    for _ in range(3):
        response = client.post(f"/contactus?lang={lang}", data=INVALID)
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
    assert statuses[-1] == 429, statuses
    text = page(response)
    assert_language(text, lang)
    assert t(lang, "Too many messages from your address. Please wait a little and try again.") in text


# --- The owner's email ---------------------------------------------------------------------------

@pytest.mark.parametrize("lang", ALL)
def test_owner_email_in_the_form_language(config, request, smtp_server, lang):
    config["LANGUAGE"] = "" if lang == "en" else lang
    app, client, db = (request.getfixturevalue(name) for name in ("app", "client", "db"))
    visitor = VISITORS[lang]
    response = client.post("/contactus", data={**VALID, **visitor, "phone": "+7 999 123-45-67"},
                           headers={"Accept-Language": "en"})
    assert response.status_code == 303
    assert deliver_all(app, db) == 1
    [received] = smtp_server.messages
    message = received["message"]
    assert message["Subject"] == t(lang, "%(subject)s (from %(name)s)", subject=visitor["subject"],
                                   name=visitor["name"])
    assert message["From"].addresses[0].display_name == visitor["name"]
    body = message.get_content().replace("\r\n", "\n")
    assert t(lang, "%(name)s sent a message through the form “%(title)s”.", name=visitor["name"],
             title=app.config["FORM_TITLE"] or t(lang, "Contact us")) in body
    assert t(lang, "Reply to this email to answer them.") in body
    for label, value in (("Name", visitor["name"]), ("Email", VALID["email"]), ("Phone", "+7 999 123-45-67"),
                         ("Subject", visitor["subject"])):
        assert f"{t(lang, label)}: {value}\n" in body, label
    assert f"{t(lang, 'Message')}:\n{visitor['message']}\n" in body
    assert f"\n{t(lang, 'Received')}: " in body
    assert re.search(rf"\n{re.escape(t(lang, 'Submission'))}: #\d+", body)
    if lang != "en":
        assert "Reply to this email" not in body and "sent a message through" not in body


def test_owner_email_keeps_every_script_intact(client, app, db, smtp_server):
    mixed = " / ".join(VISITORS[lang]["message"] for lang in ("ru", "hy", "hi"))
    name = "Արամ Иванов शर्मा"
    response = client.post("/contactus", data={**VALID, "name": name, "subject": "Ծաղկեփունջ — букет — गुलदस्ता",
                                               "message": mixed, "_language": "hy"})
    assert response.status_code == 303
    deliver_all(app, db)
    message = smtp_server.messages[0]["message"]
    assert message["Subject"] == t("hy", "%(subject)s (from %(name)s)", subject="Ծաղկեփունջ — букет — गुलदस्ता",
                                   name=name)
    assert message["From"].addresses[0].display_name == name
    assert message["Reply-To"].addresses[0].display_name == name
    body = message.get_content().replace("\r\n", "\n")
    assert mixed in body and name in body
    assert t("hy", "Reply to this email to answer them.") in body


# --- The catalogs --------------------------------------------------------------------------------

@pytest.mark.parametrize("lang", TRANSLATED)
def test_catalog_is_complete_and_consistent(lang):
    cat = catalog(lang)
    assert not cat.fuzzy, f"{lang}: the catalog header is marked fuzzy"
    assert str(cat.locale) == lang
    problems = []
    for message in cat:
        if not message.id:
            continue
        msgid = message.id if isinstance(message.id, str) else message.id[0]
        strings = message.string if isinstance(message.string, (list, tuple)) else [message.string]
        if is_public(message):
            if message.fuzzy:
                problems.append(f"fuzzy: {msgid!r}")
            if not all(strings):
                problems.append(f"untranslated: {msgid!r}")
        for string in strings:
            if string and placeholders(string) != placeholders(msgid):
                problems.append(f"placeholders differ: {msgid!r} -> {string!r}")
    for message, errors in cat.check():
        problems += [f"{message.id!r}: {error}" for error in errors]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("lang, full_stop", [("hy", "։"), ("hi", "।")])
def test_sentences_end_with_the_scripts_own_full_stop(lang, full_stop):
    wrong = [(message.id, message.string) for message in catalog(lang)
             if message.id and message.string and is_public(message)
             and message.id.endswith(".") and not message.string.endswith(full_stop)]
    assert not wrong


def test_catalogs_cover_every_public_string_in_the_source(tmp_path):
    """Extract again with the project's command: a public string added since the last update must be translated."""
    pot = tmp_path / "messages.pot"
    status = CommandLineInterface().run([
        "pybabel", "-q", "extract", "-F", str(ROOT / "babel.cfg"), "-k", "_l", "-o", str(pot),
        "--ignore-dirs=.venv", "--ignore-dirs=tests", "--ignore-dirs=bench", "--ignore-dirs=.*", str(ROOT),
    ])
    assert status in (0, None)
    with open(pot, "rb") as fh:
        template = read_po(fh)
    public = {message.id for message in template if message.id and is_public(message)}
    assert "Send" in public and "Your name" in public  # the extraction saw both Python and templates
    for lang in TRANSLATED:
        missing = sorted(str(msgid) for msgid in public if t_missing(lang, msgid))
        assert not missing, f"{lang}: run pybabel update and translate: {missing}"


def t_missing(lang, msgid):
    message = catalog(lang).get(msgid)
    return message is None or not message.string or message.fuzzy
