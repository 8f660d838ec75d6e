"""Rate limits shared by several nodes through Redis: exact across nodes, never a refused lead when Redis is down."""
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis
from conftest import VALID, RedisServer, free_port, rows

import config
from inbox_fixtures import log_in_over_http


def submit(url, index):
    """Post one message to a real server, as a site's script would; the answer's status and headers."""
    request = urllib.request.Request(
        url + "/contactus", data=json.dumps({**VALID, "message": f"Un mazzo di rose, richiesta {index}"}).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.headers


def stored(database_url):
    [(count,)] = rows(database_url, "SELECT COUNT(*) FROM submissions")
    return count


def log_lines(server, text):
    return [line for line in Path(server.log_path).read_text().splitlines() if text in line]


def assert_one_warning_about_redis(node):
    [warning] = log_lines(node, "Rate limit storage unreachable")
    assert "WARNING" in warning and "Traceback" not in Path(node.log_path).read_text()


def test_the_form_limit_holds_across_two_nodes_sharing_redis(live_server_factory, redis_url, database_url):
    nodes = [live_server_factory(RATE_LIMIT="5 per minute", RATELIMIT_STORAGE_URI=redis_url) for _ in range(2)]
    answers = [submit(nodes[index % 2].url, index) for index in range(12)]
    statuses = [status for status, _ in answers]
    assert statuses == [200] * 5 + [429] * 7
    assert all(int(headers["Retry-After"]) > 0 for status, headers in answers if status == 429)
    assert stored(database_url) == 5


@pytest.mark.parametrize(("limits", "address_of"), [
    ({"LOGIN_RATE_LIMIT": "3 per minute", "LOGIN_ACCOUNT_RATE_LIMIT": "off"}, lambda attempt: "203.0.113.7"),
    ({"LOGIN_RATE_LIMIT": "off", "LOGIN_ACCOUNT_RATE_LIMIT": "3 per minute"}, lambda attempt: f"203.0.113.{attempt}"),
], ids=["per-address", "per-account"])
def test_the_login_throttles_hold_across_two_nodes_sharing_redis(live_server_factory, redis_url, limits, address_of):
    nodes = [live_server_factory(RATELIMIT_STORAGE_URI=redis_url, PROXY_HOPS=1, **limits) for _ in range(2)]
    answers = [log_in_over_http(nodes[attempt % 2].url, password="wrong guess",
                                headers={"X-Forwarded-For": address_of(attempt)}) for attempt in range(8)]
    assert [status for status, _ in answers] == [401] * 3 + [429] * 5
    assert all(int(headers["Retry-After"]) > 0 for status, headers in answers if status == 429)


@pytest.fixture
def own_redis(tmp_path):
    """A Redis of this test's own, to stop and start again."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def test_while_redis_is_down_leads_are_accepted_and_counted_in_memory(live_server_factory, own_redis, database_url):
    """Every lead is taken while Redis is down, the same limit counted by the process; then it counts in Redis again."""
    node = live_server_factory(RATE_LIMIT="4 per minute", RATELIMIT_STORAGE_URI=own_redis.url)
    assert [submit(node.url, index)[0] for index in range(2)] == [200, 200]
    with redis.Redis.from_url(own_redis.url) as client:
        assert client.keys("LIMITS*"), "the node counts in Redis while it is up"
    own_redis.stop()

    statuses = [submit(node.url, index)[0] for index in range(2, 8)]
    # Redis's two counts are out of reach: this process counts afresh, with the same limit, in its memory.
    assert statuses == [200] * 4 + [429] * 2
    assert stored(database_url) == 6
    assert_one_warning_about_redis(node)

    own_redis.start()
    with redis.Redis.from_url(own_redis.url) as client:
        deadline = time.monotonic() + 30
        index = 8
        while not client.keys("LIMITS*"):
            assert time.monotonic() < deadline, "the node never went back to Redis"
            submit(node.url, index)
            index += 1
            time.sleep(0.2)


def test_a_redis_nobody_listens_on_never_refuses_a_lead(live_server_factory, database_url):
    node = live_server_factory(RATE_LIMIT="5 per minute", RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{free_port()}/0")
    assert submit(node.url, 1)[0] == 200
    assert stored(database_url) == 1
    assert_one_warning_about_redis(node)


UNSHARED = "rate limits are counted per process"


def test_several_processes_counting_in_memory_warn_once_at_start_up(live_server_factory):
    server = live_server_factory(workers=2)
    [warning] = log_lines(server, UNSHARED)
    assert "POSTBOX_RATELIMIT_STORAGE_URI" in warning and "2 web processes" in warning


def test_a_shared_redis_starts_without_the_warning(live_server_factory, redis_url):
    assert log_lines(live_server_factory(workers=2, RATELIMIT_STORAGE_URI=redis_url), UNSHARED) == []


@pytest.mark.sqlite_only  # one SQLite file is one machine: a single process counts every request
def test_a_single_process_on_sqlite_starts_without_the_warning(live_server_factory):
    assert log_lines(live_server_factory(workers=1), UNSHARED) == []


@pytest.mark.postgresql_only
def test_a_single_process_on_postgresql_warns_as_other_nodes_may_serve_too(live_server_factory):
    [warning] = log_lines(live_server_factory(workers=1), UNSHARED)
    assert "PostgreSQL" in warning and "POSTBOX_RATELIMIT_STORAGE_URI" in warning


def test_postgresql_means_other_nodes_so_memory_limits_warn_even_with_one_process():
    settings = {"RATELIMIT_STORAGE_URI": "memory://", "DATABASE": "postgresql+psycopg://postbox@db.example/postbox"}
    assert "PostgreSQL" in config.unshared_limits_warning(settings, web_processes=1)
    assert config.unshared_limits_warning({**settings, "RATELIMIT_STORAGE_URI": "redis://cache.example"}, 1) == ""
    assert config.unshared_limits_warning({**settings, "DATABASE": "/var/lib/postbox/postbox.sqlite3"}, 1) == ""
