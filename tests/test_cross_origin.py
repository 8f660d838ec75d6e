"""Cross-origin posts: allowed sites may send, others get 403 and store nothing; _next is never an open redirect."""
from urllib.parse import urlsplit

import pytest
from app import create_app
from conftest import VALID, count_rows

SITE = "https://www.violetlane.example"
OTHER = "https://shop.violetlane.example"
EVIL = "https://evil.example"


@pytest.fixture
def config(config):
    config["ALLOWED_ORIGINS"] = f"{SITE}, {OTHER.upper()}"
    return config


def post(client, headers=None, **fields):
    return client.post("/contactus", data={**VALID, **fields}, headers=headers or {})


# --- Who may post -----------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {"Origin": SITE},
    {"Origin": OTHER},
    {"Origin": SITE.upper()},
    {"Referer": f"{SITE}/contact.html"},
    {"Origin": "http://localhost", "Referer": "http://localhost/contactus"},  # the hosted form itself
    {},  # a server-side client: no browser, left to the spam defences
], ids=["origin", "second-origin", "origin-case", "referer-only", "own-origin", "no-headers"])
def test_allowed_origins_are_accepted(client, db, headers):
    response = post(client, headers)
    assert response.status_code == 303, response.data
    assert count_rows(db, "submissions") == 1
    assert count_rows(db, "outbox") == 1


@pytest.mark.parametrize("headers", [
    {"Origin": EVIL},
    {"Origin": "null"},  # a sandboxed frame or a file:// page
    {"Origin": "http://www.violetlane.example"},  # same host, other scheme
    {"Origin": "https://www.violetlane.example:8443"},  # same host, other port
    {"Origin": "https://www.violetlane.example.evil.example"},
    {"Referer": f"{EVIL}/page.html"},
    {"Origin": EVIL, "Referer": f"{SITE}/contact.html"},  # Origin wins over a forged-looking Referer
], ids=["evil", "null", "scheme", "port", "suffix", "referer-only", "origin-over-referer"])
def test_other_origins_are_refused_and_nothing_is_stored(client, db, headers):
    response = post(client, headers)
    assert response.status_code == 403
    assert "does not accept messages from" in response.get_data(as_text=True)
    assert "Access-Control-Allow-Origin" not in response.headers
    assert count_rows(db, "submissions") == 0
    assert count_rows(db, "outbox") == 0


def test_refusal_as_json_names_the_origin(client, db):
    response = client.post("/f/contactus", json=VALID, headers={"Origin": EVIL, "Accept": "application/json"})
    assert response.status_code == 403
    [error] = response.json["errors"]
    assert error["code"] == "FORBIDDEN_ORIGIN" and EVIL in error["message"]
    assert count_rows(db, "submissions") == 0


# --- Where the browser goes next --------------------------------------------------------------

THANKS = "http://localhost/contactus/thanks?lang=en"


@pytest.mark.parametrize("next_value, referer, expected", [
    (f"{SITE}/thanks.html", None, f"{SITE}/thanks.html"),
    (f"{OTHER}/merci", f"{SITE}/", f"{OTHER}/merci"),
    ("thanks.html", f"{SITE}/shop/contact.html", f"{SITE}/shop/thanks.html"),
    ("/thanks.html?from=form#top", f"{SITE}/shop/contact.html", f"{SITE}/thanks.html?from=form#top"),
    ("../thanks.html", f"{SITE}/a/b/contact.html", f"{SITE}/a/thanks.html"),
])
def test_next_goes_back_to_an_allowed_site(client, next_value, referer, expected):
    headers = {"Origin": SITE} | ({"Referer": referer} if referer else {})
    response = post(client, headers, _next=next_value)
    assert response.status_code == 303
    assert response.headers["Location"] == expected


@pytest.mark.parametrize("next_value", [
    f"{EVIL}/phish",
    "//evil.example/phish",
    "///evil.example/phish",
    "https:evil.example",
    "https:/evil.example",
    "http:\\\\evil.example",
    "\\\\evil.example",
    "/\\evil.example",
    "\\/evil.example",
    "https://evil.example\\@www.violetlane.example/",
    f"https://user@{SITE[8:]}/thanks.html",
    f"{SITE}@evil.example/",
    " //evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "\x01//evil.example",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "ftp://www.violetlane.example/",
    "http://www.violetlane.example/",  # allowed host, other scheme
])
def test_next_never_leaves_the_allowed_sites(client, db, next_value):
    response = post(client, {"Origin": SITE, "Referer": f"{SITE}/contact.html"}, _next=next_value)
    assert response.status_code == 303
    location = response.headers["Location"]
    # Either Postbox's thanks page or a path on the referring site ("https:evil.example" is one, as in browsers).
    assert location == THANKS or location.startswith(f"{SITE}/"), location
    assert urlsplit(location).hostname in ("localhost", "www.violetlane.example")
    assert count_rows(db, "submissions") == 1  # the message itself is fine; only the redirect is dropped


def test_relative_next_without_referer_goes_to_thanks(client):
    # Nothing trustworthy to resolve a path against: Postbox's own page, not a guess.
    response = post(client, {"Origin": SITE}, _next="/thanks.html")
    assert response.headers["Location"] == THANKS


def test_next_from_a_disallowed_referer_is_not_used_as_base(client):
    response = post(client, {"Referer": f"{SITE}/x"}, _next="https://evil.example/")
    assert response.headers["Location"] == THANKS


def test_thanks_page_is_on_the_address_each_request_came_to(config):
    config["PROXY_HOPS"] = 1
    client = create_app(config).test_client()
    proxied = {"X-Forwarded-Host": "forms.violetlane.example", "X-Forwarded-Proto": "https",
               "X-Forwarded-Prefix": "/postbox"}
    posts = [("/contactus", proxied, {}), ("/contactus", {}, {}), ("/contactus", proxied, {}),
             ("/contactus", {**proxied, "X-Forwarded-Proto": "http"}, {}),
             ("/contactus", {**proxied, "X-Forwarded-Prefix": "/forms"}, {}),
             ("/contactus", {**proxied, "X-Forwarded-Host": "contact.violetlane.example"}, {}),
             ("/contactus?embed=1", proxied, {}), ("/contactus", proxied, {"_language": "it"})]
    locations = [client.post(path, data={**VALID, **fields, "message": f"m{index}"}, headers=headers)
                 .headers["Location"] for index, (path, headers, fields) in enumerate(posts)]
    assert locations == ["https://forms.violetlane.example/postbox/contactus/thanks?lang=en", THANKS,
                         "https://forms.violetlane.example/postbox/contactus/thanks?lang=en",
                         "http://forms.violetlane.example/postbox/contactus/thanks?lang=en",
                         "https://forms.violetlane.example/forms/contactus/thanks?lang=en",
                         "https://contact.violetlane.example/postbox/contactus/thanks?lang=en",
                         "https://forms.violetlane.example/postbox/contactus/thanks?lang=en&embed=1",
                         "https://forms.violetlane.example/postbox/contactus/thanks?lang=it"]


def test_made_up_hosts_cannot_grow_the_thanks_addresses_without_bound(app):
    client = app.test_client()
    for index in range(300):
        response = client.post("/contactus", data={**VALID, "message": f"m{index}"},
                               base_url=f"http://h{index}.example")
        assert response.headers["Location"] == f"http://h{index}.example/contactus/thanks?lang=en"
    assert len(app.extensions["postbox.thanks_urls"]) <= 256


def test_json_client_is_never_redirected(client):
    response = client.post("/contactus", json={**VALID, "_next": f"{SITE}/thanks.html"}, headers={"Origin": SITE})
    assert response.status_code == 200
    assert response.json["ok"] is True and response.json["next"] == f"{SITE}/thanks.html"
    assert "Location" not in response.headers


def test_hosted_form_csp_lets_the_redirect_reach_allowed_sites(client):
    csp = client.get("/contactus").headers["Content-Security-Policy"]
    assert f"form-action 'self' {SITE} {OTHER.lower()};" in csp


# --- CORS for fetch ---------------------------------------------------------------------------

def test_json_answer_names_exactly_the_allowed_origin(client):
    response = client.post("/contactus", json=VALID, headers={"Origin": OTHER})
    assert response.headers["Access-Control-Allow-Origin"] == OTHER.lower()
    assert "Origin" in response.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_json_errors_are_readable_by_the_allowed_origin(client, db):
    response = client.post("/contactus", json={"name": "Anna"}, headers={"Origin": SITE})
    assert response.status_code == 400
    assert response.headers["Access-Control-Allow-Origin"] == SITE
    assert count_rows(db, "submissions") == 0


def test_same_origin_and_server_clients_get_no_cors_header(client):
    response = client.post("/contactus", json=VALID)
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Origin" in response.headers["Vary"]


def test_preflight_for_allowed_origin(client):
    response = client.options("/f/contactus", headers={
        "Origin": SITE, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, accept"})
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == SITE
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "content-type" in response.headers["Access-Control-Allow-Headers"].lower()
    assert "Origin" in response.headers["Vary"]


@pytest.mark.parametrize("headers", [
    {"Origin": EVIL, "Access-Control-Request-Method": "POST"},
    {"Access-Control-Request-Method": "POST"},
    {"Origin": "null", "Access-Control-Request-Method": "POST"},
])
def test_preflight_for_other_origins_is_refused(client, headers):
    response = client.options("/contactus", headers=headers)
    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response.headers


def test_preflight_for_another_method_is_refused(client):
    response = client.options("/contactus", headers={"Origin": SITE, "Access-Control-Request-Method": "DELETE"})
    assert response.status_code == 405
    assert "Access-Control-Allow-Methods" not in response.headers


def test_each_form_allows_only_its_own_origins(tmp_path, config):
    forms = tmp_path / "forms.toml"
    forms.write_text('[forms.bakery]\nowners = ["baker@bakery.example"]\nallowed_origins = ["https://bakery.example"]\n')
    config["FORMS"] = str(forms)
    from app import create_app
    client = create_app(config).test_client()
    assert client.post("/f/bakery", data=VALID, headers={"Origin": SITE}).status_code == 403
    assert client.post("/f/bakery", data=VALID, headers={"Origin": "https://bakery.example"}).status_code == 303
    assert client.post("/contactus", data=VALID, headers={"Origin": "https://bakery.example"}).status_code == 403
