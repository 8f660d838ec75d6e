"""The outbox engine keeps its promise when things break: a poison message, a lease outlived, a shutdown."""
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import pytest
from conftest import ROOT, VALID, base_config, count_rows, deliver_all

import database
import outbox
import submissions
from app import create_app


def submit(client, **fields):
    assert client.post("/contactus", data={**VALID, **fields}).status_code == 303


def test_a_message_that_raises_on_build_fails_alone(client, app, db, smtp_server, caplog):
    app.config["GIVE_UP_SECONDS"] = 60
    for index in range(4):
        submit(client, message=f"lead {index}")
    # A row no template can render: what a bug in a template, a translation or a library looks like.
    with database.write_transaction(db):
        db.execute("UPDATE submissions SET extra = '{not json' WHERE id = 1")
    # The worker's clock stands still: on a loaded machine the retry's backoff could pass while the other
    # three are sent, and the pass would try the poison again.
    now = time.time()
    deliver_all(app, db, clock=lambda: now)
    assert sorted(m["message"].get_content().split("lead ")[1].split()[0] for m in smtp_server.messages) == \
        ["1", "2", "3"]
    poison = db.execute("SELECT * FROM outbox WHERE submission_id = 1").mappings().first()
    assert poison["state"] == "pending" and poison["attempts"] == 1
    assert poison["last_error"].startswith("JSONDecodeError")
    later = poison["created_at"] + 61
    with caplog.at_level(logging.ERROR, logger="postbox.delivery"):
        deliver_all(app, db, clock=lambda: later)
    poison = db.execute("SELECT * FROM outbox WHERE submission_id = 1").mappings().first()
    assert poison["state"] == "failed" and poison["attempts"] == 2
    assert poison["last_error"].startswith("gave up after 2 attempts; last error: JSONDecodeError")
    assert len(smtp_server.messages) == 3


def test_a_batch_that_outlives_its_lease_sends_nothing_twice(client, app, smtp_server, caplog):
    # One message takes 1 s; the batch of 8 takes 8 s against a 4 s lease, with a second worker waiting.
    app.config.update(LEASE_SECONDS=4, SMTP_TIMEOUT=0.3, SMTP_DATA_TIMEOUT=1.5)
    outbox.check_lease(app.config)
    smtp_server.handler.delay = 1
    for index in range(8):
        submit(client, message=f"lead {index}")
    done = threading.Event()

    def work(claimant):
        db = database.open_db(app.config["DATABASE"], synchronous="NORMAL")
        while not done.is_set():
            if not outbox.deliver_due(app, db, claimant):
                time.sleep(0.05)
        db.close()

    with caplog.at_level(logging.WARNING, logger="postbox.delivery"):
        workers = [threading.Thread(target=work, args=(name,)) for name in ("first", "second")]
        for worker in workers:
            worker.start()
            time.sleep(0.2)  # the first worker claims the whole batch
        smtp_server.wait_for(8, timeout=30)
        done.set()
        for worker in workers:
            worker.join()
    ids = [received["message"]["Message-ID"] for received in smtp_server.messages]
    assert len(ids) == 8 and len(set(ids)) == 8
    assert any("lease passed to another worker" in record.getMessage() for record in caplog.records)
    db = database.open_db(app.config["DATABASE"])
    assert count_rows(db, "outbox", "state = 'sent'") == 8
    db.close()


def test_a_late_outcome_is_refused_and_logged(client, app, db, smtp_server, caplog):
    submit(client)
    now = time.time()
    token, [row] = outbox.claim(db, "slow-worker", now, lease_seconds=1, limit=10)
    other_token, [taken] = outbox.claim(db, "other-worker", now + 2, lease_seconds=900, limit=10)
    assert taken["id"] == row["id"]
    assert not outbox.renew(db, row, token, now + 3)
    assert not outbox.record(db, row, token, "sent", now + 3, "250 late")
    assert outbox.record(db, taken, other_token, "sent", now + 3, "250 on time")
    assert db.execute("SELECT reply FROM outbox").scalar() == "250 on time"


def test_a_lease_shorter_than_one_message_stops_start_up(config, capsys):
    with pytest.raises(SystemExit) as stopped:
        create_app({**config, "LEASE_SECONDS": 60, "SMTP_TIMEOUT": 15, "SMTP_DATA_TIMEOUT": 600})
    message = str(stopped.value)
    assert message.count("\n") == 0
    assert "POSTBOX_LEASE_SECONDS" in message and "POSTBOX_SMTP_DATA_TIMEOUT" in message


def deliver_process(tmp_path, smtp_port, database_url, *args, **overrides):
    env = {**os.environ, **{f"POSTBOX_{key}": str(value)
                            for key, value in {**base_config(tmp_path, smtp_port, database_url), **overrides}.items()}}
    return subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "deliver", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_until(condition, timeout, message):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def test_sigterm_mid_batch_hands_the_rest_to_another_worker_at_once(app, client, smtp_server, tmp_path,
                                                                    database_url):
    smtp_server.handler.delay = 0.3
    for index in range(20):
        submit(client, message=f"lead {index}")
    db = database.open_db(app.config["DATABASE"])
    first = deliver_process(tmp_path, smtp_server.port, database_url)
    try:
        wait_until(lambda: count_rows(db, "outbox", "claimant IS NOT NULL") >= 15 and smtp_server.messages, 20,
                   "the first worker never claimed the batch")
        second = deliver_process(tmp_path, smtp_server.port, database_url)
        time.sleep(1)  # the second worker runs, and finds everything leased to the first
        stopped_at = time.monotonic()
        first.send_signal(signal.SIGTERM)
        assert first.wait(10) == 0
        wait_until(lambda: count_rows(db, "outbox", "state = 'sent'") == 20, 10,
                   "the rest was not delivered within 10 s of SIGTERM")
        assert time.monotonic() - stopped_at < 10
    finally:
        for process in (first, locals().get("second")):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    ids = [received["message"]["Message-ID"] for received in smtp_server.messages]
    assert len(ids) == 20 and len(set(ids)) == 20
    db.close()


def test_deliver_now_lifts_pauses_and_backoff(app, client, db, smtp_server, runner):
    app.config.update(RETRY_FIRST_SECONDS=600, RETRY_MAX_SECONDS=3600)
    smtp_server.stop()
    submit(client)
    deliver_all(app, db)
    smtp_server.start()
    assert deliver_all(app, db) == 0  # paused
    result = runner.invoke(args=["deliver", "--once", "--now"])
    assert result.exit_code == 0, result.output
    assert "Claimed 1 message(s)." in result.output
    assert len(smtp_server.messages) == 1


def test_gunicorn_sigterm_gives_the_claim_back(live_server_factory, smtp_server, database_url):
    smtp_server.handler.delay = 0.5
    server = live_server_factory()
    for index in range(10):
        request = urllib.request.Request(server.url + "/contactus", data=urllib.parse.urlencode(
            {**VALID, "message": f"lead {index}"}).encode(), headers={"Accept": "application/json"})
        urllib.request.urlopen(request, timeout=10).read()
    db = database.open_db(database_url)
    wait_until(lambda: smtp_server.messages and count_rows(db, "outbox", "claimant IS NOT NULL") >= 5, 20,
               "the web process's delivery thread never claimed the batch")
    server.kill(signal.SIGTERM)
    # Everything not sent is given back at once, not after the 15-minute lease.
    assert count_rows(db, "outbox", "state = 'pending' AND (claimant IS NOT NULL OR lease_until > 0)") == 0
    assert count_rows(db, "outbox", "state = 'pending'") > 0
    db.close()


@pytest.mark.sqlite_only  # a file moved away under the worker: PostgreSQL's database is no file
def test_the_worker_stops_delivering_from_a_database_file_moved_away(app, client, smtp_server, caplog):
    worker = outbox.start_worker(app)
    submit(client, message="before")
    smtp_server.wait_for(1)
    path = app.config["DATABASE"]
    for suffix in ("", "-wal", "-shm"):  # what an administrator's mistake looks like to the running worker
        os.rename(path + suffix, path + ".moved" + suffix)
    moved = database.open_db(path + ".moved")
    with caplog.at_level(logging.ERROR, logger="postbox.delivery"):
        form = app.config["FORM_DEFINITIONS"]["contactus"]
        submissions.save_submission(moved, {"form": "contactus", **VALID, "message": "after"},
                                    outbox.notifications_for(app.config, form))
        worker.wake()
        wait_until(lambda: any("removed or replaced" in r.getMessage() for r in caplog.records), 10,
                   "the worker did not notice the database file was gone")
    time.sleep(0.5)  # a delivery from the moved file would arrive now
    outbox.stop_worker(app)
    moved.close()
    assert len(smtp_server.messages) == 1
