"""Without a login every inbox route answers no data; with one, every POST needs a CSRF token."""
import pytest
from inbox_fixtures import add_submission, inbox_user, owner  # noqa: F401
import submissions


SECRET = "Marker-Zanzibar-4711"


def admin_requests(app):
    """Every (method, url) the inbox answers, with id 1 wherever a route takes a number."""
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin.") or rule.endpoint == "admin.login":
            continue
        url = rule.build({name: 1 for name in rule.arguments})[1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield method, url


def test_the_inbox_has_routes(app):
    urls = {url for _, url in admin_requests(app)}
    assert {"/admin/", "/admin/s/1", "/admin/export.csv", "/admin/bulk"} <= urls


def test_every_admin_route_needs_a_login(app, client, db):
    add_submission(db, app, name=SECRET, message=SECRET)
    requests = list(admin_requests(app))
    assert len(requests) >= 8
    for method, url in requests:
        response = client.open(url, method=method, data={"ids": "1", "status": "spam", "action": "delete"})
        assert response.status_code in (302, 401, 403), (method, url, response.status_code)
        if response.status_code == 302:
            assert response.headers["Location"].startswith("/admin/login"), (method, url)
        assert SECRET not in response.get_data(as_text=True), (method, url)
    submission = submissions.get_submission(db, 1)
    assert submission["status"] == "new" and submission["name"] == SECRET


def test_every_admin_post_needs_a_csrf_token(app, owner, db):
    add_submission(db, app)
    posts = [url for method, url in admin_requests(app) if method == "POST"]
    assert posts
    for url in posts:
        response = owner.post(url, data={"ids": "1", "status": "spam", "action": "delete", "note": "x"})
        assert response.status_code == 400, url
    submission = submissions.get_submission(db, 1)
    assert submission["status"] == "new" and not submission["note"]


def test_admin_pages_cannot_be_framed_or_cached(owner):
    response = owner.get("/admin/")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/contactus", "/f/contactus"])
def test_public_form_posts_need_no_csrf_token(client, path):
    response = client.post(path, data={"name": "Anna", "email": "anna@example.com", "message": "Ciao"})
    assert response.status_code == 303


@pytest.mark.parametrize("command", ["create-user", "export", "purge"])
def test_commands_have_help_with_an_example(runner, command):
    result = runner.invoke(args=[command, "--help"])
    assert result.exit_code == 0 and "Example: " in result.output and "flask --app app" in result.output
