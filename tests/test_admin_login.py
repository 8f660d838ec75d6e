"""Accounts: users made on the command line, argon2id hashes, login, logout, the session cookie and throttling."""
import pytest
from inbox_fixtures import OWNER, PASSWORD, PASSWORD_HASH, csrf_token, inbox_user, log_in, owner, post  # noqa: F401
import database
import inbox_queries



def test_create_user_reads_password_from_stdin_and_hashes_with_argon2id(runner, client, db):
    result = runner.invoke(args=["create-user", "Assistant@Florist.example"], input="a long enough secret\n")
    assert result.exit_code == 0, result.output
    assert "Created inbox user assistant@florist.example" in result.output
    user = inbox_queries.get_user(db, "assistant@florist.example")
    assert user["password_hash"].startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert "a long enough secret" not in user["password_hash"]
    response = log_in(client, "assistant@florist.example", "a long enough secret")
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"


def test_create_user_again_changes_the_password(runner, client, db, inbox_user):
    result = runner.invoke(args=["create-user", OWNER], input="a brand new password\n")
    assert result.exit_code == 0 and "Changed the password" in result.output
    assert inbox_queries.get_user(db, OWNER)["password_hash"] != PASSWORD_HASH
    assert log_in(client, OWNER, PASSWORD).status_code == 401
    assert log_in(client, OWNER, "a brand new password").status_code == 302


def test_several_users(runner, db, inbox_user):
    runner.invoke(args=["create-user", "assistant@florist.example"], input="another good secret\n")
    assert db.execute("SELECT COUNT(*) FROM users").scalar() == 2


@pytest.mark.parametrize("email, password, message", [
    ("not-an-email", "long enough password", "EMAIL"),
    ("a@florist.example", "short", "at least 10 characters"),
])
def test_create_user_refuses_bad_input(runner, db, email, password, message):
    result = runner.invoke(args=["create-user", email], input=password + "\n")
    assert result.exit_code != 0 and message in result.output
    assert db.execute("SELECT COUNT(*) FROM users").scalar() == 0


def test_login_page_has_the_fields(client):
    page = client.get("/admin/login").get_data(as_text=True)
    for name in ('name="email"', 'name="password"', 'name="csrf_token"'):
        assert name in page


@pytest.mark.parametrize("email, password", [(OWNER, "wrong password"), ("nobody@florist.example", PASSWORD),
                                             (OWNER, "")])
def test_bad_login_is_refused(client, inbox_user, email, password):
    response = log_in(client, email, password)
    assert response.status_code == 401
    assert "Wrong email or password" in response.get_data(as_text=True) or password == ""
    assert client.get("/admin/").status_code == 302


def test_login_without_csrf_token_is_refused(client, inbox_user):
    response = client.post("/admin/login", data={"email": OWNER, "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/admin/").status_code == 302


def test_login_rotates_the_session(client, inbox_user):
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    log_in(client)
    with client.session_transaction() as session:
        assert "planted" not in session and session["user_email"] == OWNER


def test_session_cookie_flags(client, inbox_user):
    cookie = log_in(client).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Expires=" in cookie
    assert "Secure" not in cookie


def test_session_cookie_is_secure_over_https(client, inbox_user):
    token = csrf_token(client, "/admin/login")
    response = client.post("/admin/login", data={"email": OWNER, "password": PASSWORD, "csrf_token": token},
                           base_url="https://localhost", headers={"Referer": "https://localhost/admin/login"})
    assert response.status_code == 302 and "Secure" in response.headers["Set-Cookie"]


def test_logout_ends_the_session(owner):
    assert owner.get("/admin/").status_code == 200
    response = post(owner, "/admin/logout")
    assert response.status_code == 302 and response.headers["Location"] == "/admin/login"
    assert owner.get("/admin/").status_code == 302


def test_login_redirects_only_inside_the_inbox(client, inbox_user):
    token = csrf_token(client, "/admin/login")
    data = {"email": OWNER, "password": PASSWORD, "csrf_token": token}
    assert client.post("/admin/login?next=https://evil.example/", data=data).headers["Location"] == "/admin/"
    client.post("/admin/logout", data={"csrf_token": csrf_token(client)})
    data["csrf_token"] = csrf_token(client, "/admin/login")
    assert client.post("/admin/login?next=/admin/s/1", data=data).headers["Location"] == "/admin/s/1"


def test_removed_user_loses_the_session(owner, db):
    with database.write_transaction(db):
        db.execute("DELETE FROM users")
    assert owner.get("/admin/").status_code == 302


class TestThrottling:
    @pytest.fixture
    def config(self, config):
        # The public form's limit is off: login throttling does not depend on it.
        config.update(RATE_LIMIT="off", LOGIN_RATE_LIMIT="3 per minute")
        return config

    def test_login_attempts_are_throttled(self, client, inbox_user):
        statuses = [log_in(client, OWNER, "wrong password").status_code for _ in range(4)]
        assert statuses == [401, 401, 401, 429]
        assert log_in(client).status_code == 429  # even the right password waits
