"""On SQLite each outcome is durable in the delivery's journal as soon as the other side answers, and reaches the
outbox a batch at a time: delivery never waits for the web's write lock, and no journaled message is sent twice."""
import logging
import sqlite3
import threading
import time

from conftest import VALID, base_config, count_rows, deliver_all

import database
import outbox
from app import create_app
from outcome_journal import OutcomeJournal, journal_path


def submit(client, **fields):
    assert client.post("/contactus", data={**VALID, **fields}).status_code == 303


def sqlite_app(tmp_path, smtp_server):
    return create_app(base_config(tmp_path, smtp_server.port))  # the journal is SQLite's alone


def test_sending_goes_on_while_the_web_holds_the_write_lock(tmp_path, smtp_server):
    """A committed outcome in the outbox waited for the database's one write lock, which the web's group commit
    holds a quarter of the time under load: the next message waited with it."""
    app = sqlite_app(tmp_path, smtp_server)
    client = app.test_client()
    for index in range(3):
        submit(client, message=f"lead {index}")
    smtp_server.handler.delay = 1  # the first message, while the test takes the lock
    db = database.open_db(app.config["DATABASE"], synchronous="NORMAL")
    passes = []
    worker = threading.Thread(target=lambda: passes.append(outbox.deliver_due(app, db, "worker")))
    worker.start()
    watcher = database.open_db(app.config["DATABASE"])
    deadline = time.monotonic() + 30
    while not count_rows(watcher, "outbox", "lease_token IS NOT NULL") and time.monotonic() < deadline:
        time.sleep(0.01)  # the batch is claimed: the first message is on its way
    writer = sqlite3.connect(app.config["DATABASE"], isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # the web's group commit, holding the lock
    smtp_server.handler.delay = 0
    try:
        assert len(smtp_server.wait_for(3, timeout=10)) == 3  # all three sent while the lock is held
        assert count_rows(watcher, "outbox", "state = 'sent'") == 0  # their outcomes wait in the journal
    finally:
        writer.execute("ROLLBACK")
    worker.join(30)
    assert passes == [3]
    assert count_rows(watcher, "outbox", "state = 'sent' AND attempts = 1") == 3
    assert count_rows(watcher, "delivery_log", "outcome = 'sent'") == 3
    watcher.close()
    db.close()


def test_a_worker_killed_before_it_folded_sends_nothing_twice(tmp_path, smtp_server):
    """Its outcome is only in the journal; its lease has ended, and the next worker folds before it claims."""
    app = sqlite_app(tmp_path, smtp_server)
    submit(app.test_client())
    db = database.open_db(app.config["DATABASE"])
    now = time.time()
    token, [row] = outbox.claim(db, "killed-worker", now, app.config["LEASE_SECONDS"], 50)
    killed = OutcomeJournal(journal_path(app.config["DATABASE"]))  # the killed worker's own connection
    killed.add(row, token, "sent", now + 1, "250 2.0.0 queued as K1LLED")
    killed.close()

    deliver_all(app, db, "next-worker", clock=lambda: now + app.config["LEASE_SECONDS"] + 60)
    assert smtp_server.messages == []
    sent = db.execute("SELECT * FROM outbox").mappings().one()
    assert (sent["state"], sent["attempts"], sent["reply"]) == ("sent", 1, "250 2.0.0 queued as K1LLED")
    assert sent["lease_token"] is None
    assert count_rows(db, "delivery_log") == 1
    db.close()


def test_an_outcome_folded_but_not_forgotten_counts_once(tmp_path, smtp_server, caplog):
    """A worker killed between the outbox's commit and the journal's: the next fold finds the outcome again."""
    app = sqlite_app(tmp_path, smtp_server)
    submit(app.test_client())
    db = database.open_db(app.config["DATABASE"])
    deliver_all(app, db)
    [log_row] = db.execute("SELECT outbox_id, at, outcome, detail FROM delivery_log").all()
    sent = db.execute("SELECT * FROM outbox").mappings().one()
    journal = OutcomeJournal(journal_path(app.config["DATABASE"]))
    assert journal.connection.execute("SELECT count(*) FROM outcomes").fetchone()[0] == 0  # forgotten
    # The same outcome again, under the token it was sent with, as the killed worker left it.
    token = db.execute("SELECT lease_token FROM outbox").scalar()
    assert token is None  # applying it cleared the token: nothing can match it again
    journal.add({"id": sent["id"], "channel": "email", "target": sent["target"]}, "the-old-token", "sent",
                time.time(), "250 again")
    with caplog.at_level(logging.WARNING, logger="postbox.delivery"):
        outbox.fold_journal(db, journal)
    assert "not applied" in caplog.text
    assert db.execute("SELECT outbox_id, at, outcome, detail FROM delivery_log").all() == [log_row]
    assert db.execute("SELECT attempts, reply FROM outbox").one() == (1, sent["reply"])
    assert journal.connection.execute("SELECT count(*) FROM outcomes").fetchone()[0] == 0
    journal.close()
    db.close()


def test_a_retry_is_journaled_and_folded_like_a_success(tmp_path, smtp_server):
    app = sqlite_app(tmp_path, smtp_server)
    smtp_server.handler.replies = ["451 4.3.0 Try again later"]
    submit(app.test_client())
    db = database.open_db(app.config["DATABASE"])
    now = time.time()
    deliver_all(app, db, clock=lambda: now)
    row = db.execute("SELECT * FROM outbox").mappings().one()
    assert (row["state"], row["attempts"], row["lease_token"]) == ("pending", 1, None)
    assert "451" in row["last_error"] and row["next_attempt_at"] > now
    deliver_all(app, db, clock=lambda: row["next_attempt_at"] + 0.01)
    assert db.execute("SELECT state, attempts FROM outbox").one() == ("sent", 2)
    assert db.execute("SELECT outcome FROM delivery_log ORDER BY id").scalars().all() == ["retry", "sent"]
    db.close()


def test_outcomes_reach_the_outbox_within_a_second_while_the_worker_goes_on(tmp_path, smtp_server):
    """The inbox and /healthz read the outbox: a long pass must not keep its outcomes from them."""
    app = sqlite_app(tmp_path, smtp_server)
    client = app.test_client()
    for index in range(3):
        submit(client, message=f"lead {index}")
    seen = []  # how many were sent, by the outbox, as each message reaches the server
    watcher = sqlite3.connect(app.config["DATABASE"], check_same_thread=False)
    receive = smtp_server.handler.handle_DATA

    async def handle_data(server, session, envelope):
        seen.append(watcher.execute("SELECT count(*) FROM outbox WHERE state = 'sent'").fetchone()[0])
        return await receive(server, session, envelope)

    smtp_server.handler.handle_DATA = handle_data
    start = time.time()
    db = database.open_db(app.config["DATABASE"], synchronous="NORMAL")
    # Each message takes the worker's clock a second further: at the second's end the first outcome has waited
    # a second, and both are folded before the third is sent.
    outbox.deliver_due(app, db, "worker", clock=lambda: start + len(smtp_server.messages))
    assert seen == [0, 0, 2]
    assert count_rows(db, "outbox", "state = 'sent'") == 3
    watcher.close()
    db.close()
