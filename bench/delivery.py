"""Scenario 3's two workloads, each run in a fresh process so neither inherits the other's warm state.

`python -m bench.delivery backlog DIR N`           store N submissions (each with its owner's email queued)
`python -m bench.delivery postbox DIR PORT`        drain that outbox with outbox.deliver_due, as `deliver --once` does
`python -m bench.delivery smtplib PORT N`          send N comparable messages with a plain smtplib loop, one connection
Each prints one JSON line.
"""
import json
import smtplib
import sys
import time
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import database  # noqa: E402
import outbox  # noqa: E402
import submissions  # noqa: E402

SUBMISSION = {"form": "contactus", "name": "Giulia Bianchi", "email": "giulia@example.com",
              "phone": "+39 055 123 4567", "subject": "Rose per sabato",
              "message": "Vorrei un mazzo di rose rosse per sabato mattina. Можно ли доставить к десяти часам?",
              "language": "it", "ip": "192.0.2.7", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)"}


def app_config(directory, smtp_port):
    return {"DATABASE": f"{directory}/postbox.sqlite3", "MAIL_DIR": f"{directory}/mail", "SECRET_KEY": "bench",
            "OWNER_EMAIL": "owner@florist.example", "MAIL_FROM": "forms@florist.example",
            "SMTP_HOST": "127.0.0.1", "SMTP_PORT": smtp_port, "SMTP_SECURITY": "none", "DELIVERY": "external"}


def store_backlog(directory, count):
    """Queue `count` owner's emails through submissions.save_submission, as the view does."""
    from app import create_app
    app = create_app(app_config(directory, 25))
    db = database.open_db(app.config["DATABASE"])
    form = app.config["FORM_DEFINITIONS"]["contactus"]
    for _ in range(count):
        submissions.save_submission(db, dict(SUBMISSION), outbox.notifications_for(app.config, form))
    return {"queued": db.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").scalar()}


def drain_outbox(directory, smtp_port):
    """Time deliver_due passes until nothing is due, like `flask --app app deliver --once`.

    Every message's outcome is its own commit (synchronous=NORMAL, as the worker runs), made right after the
    server's reply: the figure is per message committed, the price of repeating at most one after a kill.
    """
    from app import create_app
    app = create_app(app_config(directory, smtp_port))
    db = database.open_db(app.config["DATABASE"], synchronous="NORMAL")
    started = time.perf_counter()
    claimed = 0
    while count := outbox.deliver_due(app, db, "bench"):
        claimed += count
    seconds = time.perf_counter() - started
    sent = db.execute("SELECT COUNT(*) FROM outbox WHERE state = 'sent'").scalar()
    return {"claimed": claimed, "sent": sent, "seconds": seconds}


def comparable_message(number):
    """The owner's email a plain script would build: the same headers and a body of the same size."""
    message = EmailMessage()
    message["Subject"] = "Rose per sabato — Giulia Bianchi"
    message["From"] = Address(display_name="Giulia Bianchi", addr_spec="forms@florist.example")
    message["To"] = "owner@florist.example"
    message["Reply-To"] = Address(display_name="Giulia Bianchi", addr_spec="giulia@example.com")
    message["Date"] = formatdate()
    message["Message-ID"] = make_msgid(idstring="bench", domain="florist.example")
    message["X-Postbox-Submission"] = str(number)
    message.set_content("\n".join(f"{key}: {value}" for key, value in SUBMISSION.items()) + "\n")
    return message


def smtplib_loop(smtp_port, count):
    """Send `count` messages over one connection: the fastest a Python sender can go."""
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=15) as smtp:
        for number in range(count):
            smtp.send_message(comparable_message(number), from_addr="forms@florist.example",
                              to_addrs=["owner@florist.example"])
    return {"sent": count, "seconds": time.perf_counter() - started}


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "backlog":
        result = store_backlog(args[0], int(args[1]))
    elif command == "postbox":
        result = drain_outbox(args[0], int(args[1]))
    elif command == "smtplib":
        result = smtplib_loop(int(args[0]), int(args[1]))
    else:
        raise SystemExit(__doc__)
    print(json.dumps(result))
