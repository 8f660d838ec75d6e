"""Reliability under real processes: two workers, two gunicorn workers, SMTP down, kill -9."""
import json
import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from conftest import ROOT, VALID, base_config, rows


def post_json(url, fields, timeout=10):
    request = urllib.request.Request(url + "/contactus", data=json.dumps(fields).encode(),
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, json.loads(response.read())


def assert_each_delivered_once(smtp_server, count, database_url):
    smtp_server.wait_for(count, timeout=30)
    time.sleep(1)  # anything sent twice would arrive now
    ids = [received["message"]["Message-ID"] for received in smtp_server.messages]
    assert len(ids) == count and len(set(ids)) == count
    assert rows(database_url, "SELECT COUNT(*) FROM outbox WHERE state = 'sent'") == [(count,)]


def test_parallel_submissions_on_two_gunicorn_workers(live_server_factory, smtp_server, database_url):
    server = live_server_factory(workers=2)
    with ThreadPoolExecutor(max_workers=40) as pool:
        results = list(pool.map(lambda i: post_json(server.url, {**VALID, "message": f"order {i}"}), range(40)))
    assert all(status == 200 and body["ok"] for status, body in results)
    assert len({body["id"] for _, body in results}) == 40
    assert_each_delivered_once(smtp_server, 40, database_url)
    messages = sorted(received["message"].get_content().split("order ")[1].split()[0]
                      for received in smtp_server.messages)
    assert messages == sorted(str(i) for i in range(40))


def test_two_separate_worker_processes_deliver_each_once(app, client, smtp_server, tmp_path, database_url):
    for index in range(60):
        assert client.post("/contactus", data={**VALID, "message": f"lead {index}"}).status_code == 303
    env = {**os.environ, **{f"POSTBOX_{key}": str(value) for key, value in base_config(tmp_path, smtp_server.port, database_url).items()}}
    workers = [subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "deliver"], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        assert_each_delivered_once(smtp_server, 60, app.config["DATABASE"])
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()


def test_smtp_down_submissions_accepted_then_all_delivered(live_server_factory, smtp_server, database_url):
    smtp_server.stop()
    server = live_server_factory()
    for index in range(5):
        # The timeout is the requirement itself: a visitor is answered in under 2 s while SMTP is down.
        status, body = post_json(server.url, {**VALID, "message": f"while down {index}"}, timeout=2)
        assert status == 200 and body["ok"]
    smtp_server.start()
    assert_each_delivered_once(smtp_server, 5, database_url)


def test_hanging_smtp_server_does_not_slow_the_request(live_server_factory, smtp_server, database_url):
    smtp_server.handler.delay = 30
    server = live_server_factory(SMTP_TIMEOUT=20)
    for index in range(3):
        status, body = post_json(server.url, {**VALID, "message": f"hanging {index}"}, timeout=2)
        assert status == 200
    assert rows(database_url, "SELECT COUNT(*) FROM outbox") == [(3,)]


def test_kill_9_loses_nothing_and_claimed_message_is_sent_later(live_server_factory, smtp_server, database_url):
    smtp_server.handler.delay = 5  # the worker is mid-send when it dies
    server = live_server_factory(LEASE_SECONDS=8, SMTP_TIMEOUT=0.5, SMTP_DATA_TIMEOUT=3)
    acknowledged = [post_json(server.url, {**VALID, "message": f"before kill {i}"})[1]["id"] for i in range(3)]
    deadline = time.monotonic() + 10
    while not rows(database_url, "SELECT COUNT(*) FROM outbox WHERE claimant IS NOT NULL")[0][0]:
        assert time.monotonic() < deadline, "the worker never claimed the messages"
        time.sleep(0.05)
    server.kill()
    stored = [row[0] for row in rows(database_url, "SELECT id FROM submissions ORDER BY id")]
    assert stored == acknowledged
    smtp_server.handler.delay = 0
    smtp_server.handler.messages.clear()
    live_server_factory(LEASE_SECONDS=8, SMTP_TIMEOUT=0.5, SMTP_DATA_TIMEOUT=3)
    # The aborted send may or may not have reached the server before the kill; all three arrive afterwards.
    smtp_server.wait_for(3, timeout=30)
    bodies = {received["message"].get_content().split("before kill ")[1].split()[0] for received in smtp_server.messages}
    assert bodies == {"0", "1", "2"}
    deadline = time.monotonic() + 10
    while rows(database_url, "SELECT COUNT(*) FROM outbox WHERE state = 'sent'") != [(3,)]:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_concurrent_requests_share_commits_and_each_is_stored_once(app, smtp_server):
    """Group commit: 50 simultaneous submissions, each answered with its own id, each row and outbox row stored."""
    def send(index):
        with app.test_client() as client:
            return client.post("/contactus", json={**VALID, "message": f"burst {index}"}).json["id"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        ids = list(pool.map(send, range(50)))
    assert sorted(ids) == list(range(1, 51))
    stored = rows(app.config["DATABASE"], "SELECT s.id, s.message, o.id FROM submissions s JOIN outbox o"
                                          " ON o.submission_id = s.id ORDER BY s.id")
    assert len(stored) == 50
    assert {message for _, message, _ in stored} == {f"burst {index}" for index in range(50)}
    by_id = dict((submission_id, message) for submission_id, message, _ in stored)
    assert all(by_id[submission_id] == f"burst {index}" for index, submission_id in enumerate(ids))
