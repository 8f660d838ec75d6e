"""The same work as Postbox, done minimally: the fair anchor of `make bench`.

Parse the JSON, validate with email-validator, run the duplicate rule, commit the submission and its outbox row
in one group-committed `synchronous=FULL` transaction, answer; a delivery thread sends each message with smtplib
and commits each outcome on its own. No templates, translations, spam rules, limiter, CORS or leases: what is
left is the work no design can skip. Served by gunicorn.conf.py like Postbox:
`gunicorn -c gunicorn.conf.py "bench.anchor_app:create_app()"`, with BENCH_DATABASE and BENCH_SMTP_PORT set.
"""
import json
import os
import queue
import smtplib
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from email_validator import EmailNotValidError, validate_email
from flask import Flask, jsonify, request

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS submissions (id INTEGER PRIMARY KEY, received_at TEXT NOT NULL, name TEXT,"
    " email TEXT, phone TEXT, subject TEXT, message TEXT, status TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS submissions_email ON submissions (email, received_at)",
    "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY, submission_id INTEGER NOT NULL, state TEXT NOT NULL,"
    " sent_at REAL)",
    "CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state)",
)


def connect(path, synchronous):
    conn = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


class GroupCommit:
    """One writer thread commits whatever requests are waiting as one FULL transaction, then answers each."""

    def __init__(self, path):
        self.path = path
        self.waiting = queue.SimpleQueue()
        # Started once, here, in the worker that serves (the app is made after gunicorn forks): a check per
        # request with Thread.is_alive() under a lock yields under gevent and made queued requests wait seconds.
        threading.Thread(target=self.run, daemon=True).start()

    def save(self, row):
        item = {"row": row, "done": threading.Event()}
        self.waiting.put(item)
        item["done"].wait()
        return item["id"]

    def run(self):
        conn = connect(self.path, "FULL")
        while True:
            batch = [self.waiting.get()]
            while not self.waiting.empty() and len(batch) < 200:
                batch.append(self.waiting.get())
            conn.execute("BEGIN IMMEDIATE")
            for item in batch:
                row = item["row"]
                since = (datetime.now(timezone.utc) - timedelta(minutes=10)).isoformat()
                duplicate = conn.execute("SELECT 1 FROM submissions WHERE email = ? AND message = ? AND received_at >= ?",
                                         [row["email"], row["message"], since]).fetchone()
                item["id"] = conn.execute(
                    "INSERT INTO submissions (received_at, name, email, phone, subject, message, status)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [datetime.now(timezone.utc).isoformat(), row["name"], row["email"], row.get("phone", ""),
                     row.get("subject", ""), row["message"], "spam" if duplicate else "new"]).lastrowid
                if not duplicate:
                    conn.execute("INSERT INTO outbox (submission_id, state) VALUES (?, 'pending')", [item["id"]])
            conn.execute("COMMIT")
            for item in batch:
                item["done"].set()
            if DELIVERY is not None:
                DELIVERY.set()


DELIVERY = None


def deliver_forever(path, smtp_port, wake):
    """Send each pending message over one connection; commit each outcome right after the server's reply."""
    conn = connect(path, "NORMAL")
    smtp = None
    while True:
        wake.wait(1)
        wake.clear()
        rows = conn.execute("SELECT outbox.id, name, email, subject, message FROM outbox JOIN submissions"
                            " ON submissions.id = outbox.submission_id WHERE state = 'pending' LIMIT 50").fetchall()
        for outbox_id, name, email, subject, message_text in rows:
            if smtp is None:
                smtp = smtplib.SMTP("127.0.0.1", smtp_port, timeout=15)
            message = EmailMessage()
            message["Subject"] = f"{subject} ({name})"
            message["From"] = "forms@florist.example"
            message["To"] = "owner@florist.example"
            message["Reply-To"] = email
            message["Date"] = formatdate()
            message["Message-ID"] = make_msgid(domain="florist.example")
            message.set_content(f"{name} <{email}>\n\n{message_text}\n")
            smtp.send_message(message)
            conn.execute("UPDATE outbox SET state = 'sent', sent_at = ? WHERE id = ?", [time.time(), outbox_id])
        if rows:
            wake.set()


def create_app():
    """Create the anchor app; POSTBOX_DELIVERY is external so gunicorn.conf.py's hook starts nothing of Postbox's."""
    global DELIVERY
    app = Flask(__name__)
    app.config["DELIVERY"] = "external"
    path = os.environ["BENCH_DATABASE"]
    conn = connect(path, "FULL")
    for statement in SCHEMA:
        conn.execute(statement)
    conn.close()
    writer = GroupCommit(path)
    DELIVERY = threading.Event()
    threading.Thread(target=deliver_forever, args=(path, int(os.environ["BENCH_SMTP_PORT"]), DELIVERY),
                     daemon=True).start()

    @app.get("/contactus")
    def form():
        return "<form method=post><input name=name></form>"

    @app.post("/contactus")
    def submit():
        try:
            fields = json.loads(request.get_data())
        except ValueError:
            return jsonify(ok=False, error="not JSON"), 400
        if not isinstance(fields, dict) or not all(str(fields.get(name, "")).strip()
                                                   for name in ("name", "email", "message")):
            return jsonify(ok=False, error="name, email and message are required"), 400
        try:
            fields["email"] = validate_email(fields["email"], check_deliverability=False).normalized
        except EmailNotValidError as error:
            return jsonify(ok=False, error=str(error)), 400
        return jsonify(ok=True, id=writer.save(fields))

    return app
