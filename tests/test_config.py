"""Configuration: POSTBOX_* variables, their checks, and a first run with no SMTP at all."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from conftest import ROOT, VALID, deliver_all

from app import create_app
import database
import sqlite_schema


def flask(args, tmp_path, **env):
    environment = {key: value for key, value in os.environ.items() if not key.startswith("POSTBOX_")}
    environment.update({"POSTBOX_DATABASE": str(tmp_path / "p.sqlite3"), "POSTBOX_SECRET_KEY": "k", **env})
    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=tmp_path,
                          env={**environment, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("name", "value", "says"), [
    ("SMTP_PORT", "abc", "must be a number"),
    ("SMTP_PORT", "70000", "between 1 and 65535"),
    ("SMTP_SECURITY", "tls", "must be one of starttls, ssl, none"),
    ("OWNER_EMAIL", "owner@florist.example, not-an-address", "is not an email address"),
    ("OWNER_EMAIL", "почта@цветы.рф", "beyond ASCII before the @"),
    ("SMTP_HELO", "цветы.рф", "its xn-- form"),
    ("SMTP_HELO", "mail florist.example", "no spaces"),
    ("TIMEZONE", "Mars/Olympus", "IANA time zone"),
    ("RETRY_FIRST_SECONDS", "-1", "at least 0"),
    ("STORE_TIMEOUT", "0", "between 0.1 and 60"),
    ("DELIVERY", "maybe", "process, thread, external"),
    ("ALLOWED_ORIGINS", "florist.example", "is not an origin"),
    ("RATELIMIT_STORAGE_URI", "memcached://127.0.0.1:11211", "a Redis address such as redis://127.0.0.1:6379/0"),
    ("RATELIMIT_STORAGE_URI", "127.0.0.1:6379", "a Redis address such as redis://127.0.0.1:6379/0"),
    ("RATELIMIT_STORAGE_URI", "redis://127.0.0.1:six/0", "port that is not a number"),
    ("RATELIMIT_STORAGE_URI", "redis://127.0.0.1:6379/zero", "a database number"),
    ("RATELIMIT_STORAGE_URI", "redis+unix://", "name Redis's socket"),
])
def test_wrong_value_stops_start_up_with_one_line(tmp_path, name, value, says):
    result = flask(["init-db"], tmp_path, **{f"POSTBOX_{name}": value})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"POSTBOX_{name}" in lines[0] and says in lines[0], result.stderr


def test_a_wrong_redis_address_is_refused_without_repeating_its_password(tmp_path):
    result = flask(["init-db"], tmp_path, POSTBOX_RATELIMIT_STORAGE_URI="redis://:hunter2-secret@cache.example:63x9/0")
    assert result.returncode != 0 and "POSTBOX_RATELIMIT_STORAGE_URI" in result.stderr
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize("uri", ["memory://", "redis://cache.example", "redis://:pw@10.0.0.5:6380/2",
                                 "rediss://cache.example:6380/0", "redis+unix:///run/redis/redis.sock"])
def test_memory_and_redis_addresses_are_accepted(tmp_path, uri):
    app = create_app({"DATABASE": str(tmp_path / "p.sqlite3"), "SECRET_KEY": "k", "RATELIMIT_STORAGE_URI": uri})
    assert app.config["RATELIMIT_STORAGE_URI"] == uri


def test_an_internationalized_domain_is_kept_in_the_form_smtp_carries(tmp_path):
    """info@цветы.рф as typed reached no one: smtplib writes commands in ASCII, so every message failed."""
    app = create_app({"DATABASE": str(tmp_path / "p.sqlite3"), "SECRET_KEY": "k",
                      "OWNER_EMAIL": "Info@Цветы.рф, owner@florist.example"})
    assert app.config["OWNER_EMAIL"] == ("info@xn--b1ag3bn2a.xn--p1ai", "owner@florist.example")
    assert app.config["MAIL_FROM"] == "info@xn--b1ag3bn2a.xn--p1ai"
    assert app.config["SMTP_HELO"] == "xn--b1ag3bn2a.xn--p1ai"


def test_smtp_host_without_owner_is_refused(tmp_path):
    result = flask(["init-db"], tmp_path, POSTBOX_SMTP_HOST="smtp.example")
    assert result.returncode != 0 and "POSTBOX_OWNER_EMAIL" in result.stderr


def test_init_db_says_where_the_form_is_and_where_mail_goes(tmp_path):
    result = flask(["init-db"], tmp_path, POSTBOX_OWNER_EMAIL="owner@florist.example", PORT="8123")
    assert result.returncode == 0, result.stderr
    assert "http://127.0.0.1:8123/contactus" in result.stdout
    assert "owner@florist.example" in result.stdout and "files in" in result.stdout


def test_env_file_is_read(tmp_path):
    (tmp_path / ".env").write_text("POSTBOX_OWNER_EMAIL=from-dotenv@florist.example\n")
    result = flask(["init-db"], tmp_path)
    assert "from-dotenv@florist.example" in result.stdout


def test_secret_key_is_generated_once_and_kept(tmp_path):
    config = {"DATABASE": str(tmp_path / "p.sqlite3")}
    first = create_app(config)
    second = create_app(config)
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"] and len(first.config["SECRET_KEY"]) == 64
    key_file = os.path.join(first.instance_path, "secret_key")
    assert oct(os.stat(key_file).st_mode & 0o777) == "0o600"


def test_without_smtp_messages_are_written_as_eml_files(tmp_path):
    app = create_app({"DATABASE": str(tmp_path / "p.sqlite3"), "MAIL_DIR": str(tmp_path / "mail"),
                      "SECRET_KEY": "k", "RATE_LIMIT": "off"})
    response = app.test_client().post("/contactus", data=VALID)
    assert response.status_code == 303
    db = database.open_db(app.config["DATABASE"])
    assert deliver_all(app, db) == 1
    [name] = os.listdir(tmp_path / "mail")
    content = (tmp_path / "mail" / name).read_text()
    assert name.endswith(".eml") and "To: owner@localhost" in content and VALID["message"] in content


def test_migrations_are_applied_once_and_are_idempotent(database_url):
    create_app({"DATABASE": database_url, "SECRET_KEY": "k"})
    create_app({"DATABASE": database_url, "SECRET_KEY": "k"})
    db = database.open_db(database_url)
    head = ScriptDirectory(database.MIGRATIONS_DIRECTORY).get_current_head()
    assert db.execute("SELECT version_num FROM alembic_version").scalars().all() == [head]
    db.close()


@pytest.mark.sqlite_only
def test_a_sqlite_file_keeps_its_sqlite_utils_migrations_and_wal(database_url):
    create_app({"DATABASE": database_url, "SECRET_KEY": "k"})
    create_app({"DATABASE": database_url, "SECRET_KEY": "k"})
    db = database.open_db(database_url)
    names = db.execute("SELECT name FROM _sqlite_migrations").scalars().all()
    assert names == [migration.name for migration in sqlite_schema.migrations._migrations]
    assert db.execute("PRAGMA journal_mode").scalar() == "wal"
    db.close()


def test_the_access_log_can_be_switched_off(live_server_factory):
    import urllib.request
    for setting, logged in (("on", True), ("off", False)):
        server = live_server_factory(ACCESS_LOG=setting)
        urllib.request.urlopen(server.url + "/contactus", timeout=10).read()
        time.sleep(0.2)  # the access log line is written after the answer
        assert ('"GET /contactus' in Path(server.log_path).read_text()) is logged
