"""The embedding assets: postbox.js stays small, nothing needs an inline script, the hosted form works without JS."""
import gzip
import re

from conftest import ROOT, VALID

STATIC = ROOT / "static"
PAGES = [*sorted((ROOT / "templates").rglob("*.html")), *sorted((ROOT / "examples").rglob("*.html"))]


def test_postbox_js_is_under_3_kb_gzipped():
    assert len(gzip.compress((STATIC / "postbox.js").read_bytes(), compresslevel=9)) < 3 * 1024


def test_scripts_are_dependency_free():
    for name in ("postbox.js", "embed.js"):
        text = (STATIC / name).read_text()
        assert not re.search(r"\b(import|require)\s*\(|^\s*import\s", text, re.MULTILINE), name


def test_no_inline_scripts_or_handlers_anywhere():
    for path in PAGES:
        html = path.read_text()
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in tag, f"{path.name}: inline script {tag}"
        assert not re.search(r"\son[a-z]+\s*=", html), f"{path.name}: inline event handler"
        assert "javascript:" not in html, path.name


def test_hosted_form_loads_its_scripts_from_self(client):
    page = client.get("/contactus").get_data(as_text=True)
    assert '<script src="/static/postbox.js" defer></script>' in page
    assert "embed.js" not in page
    embedded = client.get("/contactus?embed=1").get_data(as_text=True)
    assert '<script src="/static/embed.js" defer></script>' in embedded
    assert "<h1>" not in embedded  # no page chrome
    csp = client.get("/contactus").headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_static_scripts_are_served_as_javascript(client):
    for name in ("postbox.js", "embed.js"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200
        assert response.mimetype in ("text/javascript", "application/javascript")


def test_hosted_form_without_javascript_posts_and_thanks(client, db):
    # The page's form is a plain POST form: the server answers with a redirect, not a JSON-only API.
    page = client.get("/contactus?embed=1").get_data(as_text=True)
    action = re.search(r'<form method="post" action="([^"]+)"', page).group(1)
    assert action == "/contactus?embed=1"
    response = client.post(action, data=VALID)
    assert response.status_code == 303
    assert "/contactus/thanks" in response.headers["Location"] and "embed=1" in response.headers["Location"]
    thanks = client.get(response.headers["Location"])
    assert "embed.js" in thanks.get_data(as_text=True)


def test_embedded_error_page_can_show_inside_the_frame(config):
    from app import create_app
    config["ALLOWED_ORIGINS"] = "https://www.violetlane.example"
    client = create_app(config).test_client()
    response = client.post("/contactus?embed=1", data="x", content_type="text/plain")
    assert response.status_code == 415
    assert "frame-ancestors https://www.violetlane.example;" in response.headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in response.headers
    assert 'class="embed"' in response.get_data(as_text=True)


def test_embed_message_shape_is_documented():
    shape = 'type: "postbox:height"'
    assert shape in (STATIC / "embed.js").read_text()
    assert '"postbox:height"' in (STATIC / "postbox.js").read_text()
    assert "postbox:height" in (ROOT / "docs" / "EMBEDDING.md").read_text()
