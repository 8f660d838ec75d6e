"""Several forms from POSTBOX_FORMS: each site posts to its own form, each owner gets only their own mail."""
import subprocess
import sys

import pytest
from conftest import ROOT, VALID, count_rows, deliver_all

from app import create_app

FORMS = """
[forms.florist]
title = "Violet Lane Flowers"
owners = ["anna@violetlane.example"]
allowed_origins = ["https://www.violetlane.example"]
language = "it"
redirect = "https://www.violetlane.example/grazie.html"

[forms.notary]
title = "Studio notarile"
owners = ["notary@notary.example", "office@notary.example"]
allowed_origins = ["https://notary.example:8443"]
fields = ["phone"]
"""


@pytest.fixture
def config(config, tmp_path):
    path = tmp_path / "forms.toml"
    path.write_text(FORMS)
    config["FORMS"] = str(path)
    return config


def test_each_owner_gets_only_their_own_mail(client, app, db, smtp_server):
    assert client.post("/f/florist", data=VALID, headers={"Origin": "https://www.violetlane.example"}).status_code == 303
    notary = {**VALID, "message": "Vorrei un appuntamento per un rogito."}
    assert client.post("/f/notary", data=notary, headers={"Origin": "https://notary.example:8443"}).status_code == 303
    deliver_all(app, db)
    # Each owner address is its own delivery, with its own outcome; one email, one Message-ID, for both notaries.
    by_recipients = {tuple(m["rcpt_tos"]): m["message"] for m in smtp_server.messages}
    assert set(by_recipients) == {("anna@violetlane.example",), ("notary@notary.example",), ("office@notary.example",)}
    assert VALID["message"] in by_recipients[("anna@violetlane.example",)].get_content()
    notaries = [by_recipients[(address,)] for address in ("notary@notary.example", "office@notary.example")]
    assert all("rogito" in message.get_content() for message in notaries)
    assert notaries[0]["Message-ID"] == notaries[1]["Message-ID"]
    assert notaries[0]["To"] == "notary@notary.example, office@notary.example"
    assert "rogito" not in by_recipients[("anna@violetlane.example",)].get_content()


def test_a_site_cannot_post_to_another_sites_form(client, db):
    response = client.post("/f/notary", data=VALID, headers={"Origin": "https://www.violetlane.example"})
    assert response.status_code == 403
    assert count_rows(db, "submissions") == 0


def test_form_settings_shape_the_page_and_redirect(client):
    page = client.get("/f/notary").get_data(as_text=True)
    assert "Studio notarile" in page and 'name="phone"' in page and 'name="subject"' not in page
    response = client.post("/f/florist", data=VALID, headers={"Origin": "https://www.violetlane.example"})
    assert response.headers["Location"] == "https://www.violetlane.example/grazie.html"
    assert '<html lang="it">' in client.get("/f/florist").get_data(as_text=True)


def test_embed_frame_ancestors_are_the_forms_own_origins(client):
    csp = client.get("/f/notary?embed=1").headers["Content-Security-Policy"]
    assert "frame-ancestors https://notary.example:8443;" in csp
    assert "X-Frame-Options" not in client.get("/f/notary?embed=1").headers
    assert client.get("/f/notary").headers["X-Frame-Options"] == "DENY"


def test_default_form_still_comes_from_the_environment(client):
    assert client.get("/contactus").status_code == 200
    assert client.get("/f/nosuchform").status_code == 404


BAD_FILES = {
    "bad-toml": ("[forms.florist\ntitle = 1", "is not valid TOML"),
    "unknown-setting": ('[forms.florist]\nallowed_origin = ["https://a.example"]', "unknown setting 'allowed_origin'"),
    "unknown-field": ('[forms.florist]\nfields = ["phone", "fax"]', "unknown optional fields ['fax']"),
    "bad-origin": ('[forms.florist]\nallowed_origins = ["violetlane.example"]', "is not an origin"),
    "origin-with-path": ('[forms.florist]\nallowed_origins = ["https://a.example/contact"]', "is not an origin"),
    "bad-port": ('[forms.florist]\nallowed_origins = ["https://a.example:99999"]', "is not an origin"),
    "bad-owner": ('[forms.florist]\nowners = ["anna at example"]', "is not an email address"),
    "owner-needing-smtputf8": ('[forms.florist]\nowners = ["почта@цветы.рф"]', "beyond ASCII before the @"),
    "bad-language": ('[forms.florist]\nlanguage = "de"', "language must be one of"),
    "bad-key": ('[forms."a b"]\ntitle = "x"', "form key 'a b'"),
    "wrong-type": ('[forms.florist]\ntitle = 3', "title has the wrong type"),
    "not-a-table": ('forms.florist = "x"', "must be a table"),
    "stray-table": ('[form.florist]\ntitle = "x"', "must contain only [forms.KEY] tables"),
    "foreign-redirect": ('[forms.florist]\nallowed_origins = ["https://a.example"]\nredirect = "https://b.example/x"',
                         "is not on one of the form's allowed origins"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_forms_file_stops_with_one_line_naming_the_variable(config, tmp_path, name):
    text, expected = BAD_FILES[name]
    (tmp_path / "forms.toml").write_text(text)
    with pytest.raises(SystemExit) as stopped:
        create_app(config)
    message = str(stopped.value.code)
    assert "POSTBOX_FORMS" in message and expected in message, message
    assert "\n" not in message


def test_missing_forms_file(config, tmp_path):
    config["FORMS"] = str(tmp_path / "nope.toml")
    with pytest.raises(SystemExit, match=r"POSTBOX_FORMS: cannot read .*nope.toml"):
        create_app(config)


@pytest.mark.parametrize("value", ["example.com", "https://*.example.com", "https://a.example/?x=1",
                                   "https://user@a.example"])
def test_bad_allowed_origins_variable(config, value):
    config["FORMS"] = ""
    config["ALLOWED_ORIGINS"] = f"https://ok.example,{value}"
    with pytest.raises(SystemExit, match="POSTBOX_ALLOWED_ORIGINS: .* is not an origin"):
        create_app(config)


def test_default_ports_are_normalised(config):
    config["FORMS"] = ""
    config["ALLOWED_ORIGINS"] = "https://A.example:443, http://b.example:80/, http://c.example:8080"
    app = create_app(config)
    assert app.config["FORM_DEFINITIONS"]["contactus"].allowed_origins == (
        "https://a.example", "http://b.example", "http://c.example:8080")


def test_startup_with_a_bad_forms_file_prints_one_line(tmp_path):
    # What the administrator sees: one line naming the variable, no traceback.
    (tmp_path / "forms.toml").write_text("[forms.florist]\nowners = 3\n")
    result = subprocess.run(
        [sys.executable, "-c", "from app import create_app; create_app()"], cwd=ROOT, capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", "POSTBOX_FORMS": str(tmp_path / "forms.toml"),
             "POSTBOX_DATABASE": str(tmp_path / "db.sqlite3"), "POSTBOX_SECRET_KEY": "x"}, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("postbox: configuration error: POSTBOX_FORMS")
