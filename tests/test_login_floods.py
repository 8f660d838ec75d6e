"""Logins that cannot exhaust memory or be spread over addresses, and a limiter that keeps keys for real forms only."""
import re
import threading
import uuid

from werkzeug.security import generate_password_hash

import database
import inbox_queries
from app import create_app
from conftest import VALID
from inbox_fixtures import OWNER, PASSWORD, PASSWORD_HASH, log_in, log_in_over_http

MB = 1024 * 1024


def test_an_old_scrypt_hash_is_upgraded_to_argon2id_at_the_next_good_login(client, db):
    inbox_queries.create_user(db, OWNER, generate_password_hash(PASSWORD, method="scrypt:131072:8:1"))
    assert log_in(client, OWNER, "wrong").status_code == 401
    assert inbox_queries.get_user(db, OWNER)["password_hash"].startswith("scrypt:")
    assert log_in(client, OWNER, PASSWORD).status_code == 302
    assert inbox_queries.get_user(db, OWNER)["password_hash"].startswith("$argon2id$")


def test_guesses_at_one_account_from_many_addresses_are_limited(config, db):
    config.update(LOGIN_RATE_LIMIT="5 per minute", LOGIN_ACCOUNT_RATE_LIMIT="8 per minute", PROXY_HOPS=1)
    app = create_app(config)
    inbox_queries.create_user(db, OWNER, PASSWORD_HASH)
    statuses = []
    for address in range(5):
        client = app.test_client()
        for _ in range(3):
            statuses.append(log_in(client, OWNER, "wrong", headers={"X-Forwarded-For": f"203.0.113.{address}"})
                            .status_code)
    assert statuses.count(401) == 8 and statuses.count(429) == 7
    other = log_in(app.test_client(), "someone.else@florist.example", "wrong",
                   headers={"X-Forwarded-For": "203.0.113.99"})
    assert other.status_code == 401  # another account (another bucket) is not locked with it


def limiter_keys(app):
    storage = app.extensions["postbox.limiter"].storage
    return len(storage.storage) + len(storage.expirations)


def test_posts_to_made_up_form_keys_add_no_limiter_keys(config):
    config.update(RATE_LIMIT="10000 per minute")
    app = create_app(config)
    client = app.test_client()
    assert client.post("/contactus", data=VALID).status_code == 303
    before = limiter_keys(app)
    for _ in range(10_000):
        assert client.post(f"/f/{uuid.uuid4().hex}", data=VALID).status_code == 404
    assert limiter_keys(app) == before


def worker_pid(server):
    children = open(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read().split()
    return int(children[0])


def peak_rss(pid):
    status = open(f"/proc/{pid}/status").read()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024


def test_32_concurrent_wrong_logins_keep_the_worker_under_300_mb(live_server_factory, database_url):
    server = live_server_factory(LOGIN_RATE_LIMIT="off", LOGIN_ACCOUNT_RATE_LIMIT="off")
    db = database.open_db(database_url)
    try:
        inbox_queries.create_user(db, OWNER, PASSWORD_HASH)  # waits for the lock, as the server's worker may hold it
    finally:
        db.close()
    baseline = peak_rss(worker_pid(server))
    statuses = []
    threads = [threading.Thread(target=lambda: statuses.append(log_in_over_http(server.url, password="wrong guess")[0]))
               for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert statuses == [401] * 32
    peak = peak_rss(worker_pid(server))
    print(f"worker peak RSS: {baseline / MB:.0f} MB before, {peak / MB:.0f} MB after 32 concurrent wrong logins")
    assert peak < 300 * MB
