"""The owner's email: building it from templates, sending it by SMTP, and the delivery worker."""
import logging
import os
import random
import re
import smtplib
import socket
import ssl
import threading
import time
import uuid
from datetime import datetime
from email.header import Header
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime, make_msgid
from zoneinfo import ZoneInfo

from flask import current_app, render_template
from flask_babel import force_locale
from flask_babel import gettext as _

import storage
from config import LOCALES

log = logging.getLogger("postbox.delivery")

# Python 3.11.7's email package lets a trailing newline through a header, so every
# visitor-supplied header value is forced onto one line here, where headers are made.
_CONTROL = {code: " " for code in range(32)} | {127: " "}
# A display name written as is: letters, digits and the atext symbols. Not "=" or "?", which could spell an
# RFC 2047 encoded word, nor the specials that would need quoting.
_PLAIN_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/^_`{|}~ -]*")
MAX_LINE = 78  # RFC 5322's recommended line length
# Raw header values are written as given, never re-parsed and refolded: a re-parse decodes encoded words.
MESSAGE_POLICY = default_policy.clone(refold_source="none")


def one_line(text, limit=200):
    """Make text safe for a mail header: one line, no control characters, bounded length."""
    joined = " ".join(str(text or "").splitlines()).translate(_CONTROL)
    return " ".join(joined.split())[:limit]


def encoded_text(header_name, text):
    """Return text ready to be a header's raw value: as is when plainly safe, else RFC 2047 encoded words.

    The email package decodes encoded words in a value it is given and writes what they decode to, CR LF
    included; so a visitor's "=?utf-8?q?...=0D=0A...?=" must never reach it as text. Encoded by us, it reaches
    the owner as the literal characters typed. Every line stays within MAX_LINE, so it is never refolded.
    """
    text = one_line(text, limit=250)
    if _PLAIN_PHRASE.fullmatch(text) and len(header_name) + 2 + len(text) <= MAX_LINE:
        return text
    # Every character, spaces included, goes inside the encoded words: a space left between two of them
    # is folding whitespace, which RFC 2047 decoders drop (CPython gh-92081's lost space).
    return Header(text, "utf-8", maxlinelen=MAX_LINE, header_name=header_name).encode(linesep="\n")


def mailbox(header_name, display_name, addr_spec):
    """Return a raw 'display name <address>' value, the display name encoded by encoded_text."""
    phrase = encoded_text(header_name, display_name)
    last_line = phrase.rpartition("\n")[2] if "\n" in phrase else f"{header_name}: {phrase}"
    separator = "\n " if len(last_line) + len(addr_spec) + 3 > MAX_LINE else " "
    return f"{phrase}{separator}<{addr_spec}>" if phrase else f"<{addr_spec}>"


def address_list(header_name, addresses):
    """Return a raw list of addresses, one per line when they do not fit on one."""
    joined = ", ".join(addresses)
    return joined if len(header_name) + 2 + len(joined) <= MAX_LINE else ",\n ".join(addresses)


def new_message_id():
    """Make the Message-ID a submission keeps across every retry."""
    domain = current_app.config["MAIL_FROM"].rpartition("@")[2] or "localhost"
    return make_msgid(idstring="postbox", domain=domain)


def build_owner_message(submission, notification, form):
    """Build the owner's email for a stored submission; needs an app context."""
    config = current_app.config
    received = datetime.fromisoformat(submission["received_at"])
    language = form.language or submission.get("language")
    with force_locale(LOCALES.get(language, LOCALES["en"])):
        context = {
            "submission": submission,
            "form": form,
            "fields": _listed_fields(submission, form),
            "received_local": received.astimezone(ZoneInfo(config["TIMEZONE"])),
            "labels": {"name": _("Name"), "email": _("Email"), "phone": _("Phone"), "subject": _("Subject")},
        }
        subject = render_template("email/owner_subject.txt", **context)
        body = render_template("email/owner_body.txt", **context)
    message = EmailMessage(policy=MESSAGE_POLICY)
    # Raw values, made safe above: no visitor text goes through the email package's header parser.
    message.set_raw("Subject", encoded_text("Subject", subject))
    message.set_raw("From", mailbox("From", submission["name"], config["MAIL_FROM"]))
    message.set_raw("To", address_list("To", notification["recipients"]))
    reply_to = submission.get("reply_to") or submission.get("email")
    if reply_to:
        message.set_raw("Reply-To", mailbox("Reply-To", submission["name"], reply_to))
    message.set_raw("Date", format_datetime(received))
    message.set_raw("Message-ID", notification["message_id"])
    message.set_raw("Auto-Submitted", "auto-generated")
    message.set_raw("X-Postbox-Submission", str(submission["id"]))
    message.set_content(body)
    return message


def _listed_fields(submission, form):
    fields = [("name", submission["name"]), ("email", submission["email"])]
    fields += [(name, submission[name]) for name in form.fields if submission.get(name)]
    fields += list(submission["extra"].items())
    return fields


# --- Transports ------------------------------------------------------------------------------

class SMTPTransport:
    """One SMTP connection, opened for a batch of messages."""

    def __init__(self, config):
        self.config = config
        self.smtp = None

    def __enter__(self):
        config = self.config
        timeout = config["SMTP_TIMEOUT"]
        host, port = config["SMTP_HOST"], config["SMTP_PORT"]
        if config["SMTP_SECURITY"] == "ssl":
            self.smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
        else:
            self.smtp = smtplib.SMTP(host, port, timeout=timeout)
            if config["SMTP_SECURITY"] == "starttls":
                self.smtp.starttls(context=ssl.create_default_context())
        if config["SMTP_USERNAME"]:
            self.smtp.login(config["SMTP_USERNAME"], config["SMTP_PASSWORD"])
        return self

    def send(self, message, sender, recipients):
        refused = self.smtp.send_message(message, from_addr=sender, to_addrs=list(recipients))
        return f"refused by the server: {refused}" if refused else ""

    def __exit__(self, *exc_info):
        try:
            self.smtp.quit()
        except (smtplib.SMTPException, OSError):
            self.smtp.close()

    def describe(self):
        return f"SMTP {self.config['SMTP_HOST']}:{self.config['SMTP_PORT']} ({self.config['SMTP_SECURITY']})"


class FileTransport:
    """Write each message as an .eml file: the pipeline runs end to end with no SMTP server."""

    def __init__(self, directory):
        self.directory = directory

    def __enter__(self):
        os.makedirs(self.directory, exist_ok=True)
        return self

    def send(self, message, sender, recipients):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = f"{stamp}-{message['X-Postbox-Submission']}-{uuid.uuid4().hex[:8]}.eml"
        path = os.path.join(self.directory, name)
        with open(path + ".tmp", "wb") as file:
            file.write(message.as_bytes())
            file.flush()
            os.fsync(file.fileno())
        os.replace(path + ".tmp", path)
        return path

    def __exit__(self, *exc_info):
        pass

    def describe(self):
        return f"files in {self.directory} (no POSTBOX_SMTP_HOST set)"


def transport_for(config):
    return SMTPTransport(config) if config["SMTP_HOST"] else FileTransport(config["MAIL_DIR"])


# --- Failures and retries ----------------------------------------------------------------------

class PermanentFailure(Exception):
    """The server refused the message for good (a 5xx reply)."""


def classify(error):
    """Say whether an SMTP error is worth retrying, with a line for the log."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        detail = "; ".join(f"{rcpt}: {code} {_text(msg)}" for rcpt, (code, msg) in error.recipients.items())
        return ("failed" if all(500 <= code < 600 for code in codes) else "retry"), f"recipients refused: {detail}"
    if isinstance(error, smtplib.SMTPAuthenticationError):
        # A login problem is the administrator's to fix; the lead must not be dropped meanwhile.
        return "retry", f"login refused: {error.smtp_code} {_text(error.smtp_error)}"
    if isinstance(error, smtplib.SMTPResponseException):
        kind = "failed" if 500 <= error.smtp_code < 600 else "retry"
        return kind, f"{error.smtp_code} {_text(error.smtp_error)}"
    if isinstance(error, (socket.timeout, TimeoutError)):
        return "retry", f"timed out: {error}"
    if isinstance(error, ssl.SSLCertVerificationError):
        return "retry", f"TLS certificate not trusted: {error.verify_message}"
    return "retry", f"{type(error).__name__}: {error}"


def _text(reply):
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def retry_delay(attempts, config):
    """Exponential backoff with jitter: about RETRY_FIRST_SECONDS, doubling up to RETRY_MAX_SECONDS."""
    base = min(config["RETRY_MAX_SECONDS"], config["RETRY_FIRST_SECONDS"] * 2 ** max(attempts - 1, 0))
    return base * random.uniform(0.8, 1.2) if base < config["RETRY_MAX_SECONDS"] else base * random.uniform(0.9, 1.0)


# --- The worker --------------------------------------------------------------------------------

def deliver_due(app, db, owner):
    """Send one batch of due messages over one connection; return how many were claimed."""
    config = app.config
    batch = storage.claim_due_messages(db, owner, time.time(), config["LEASE_SECONDS"], config["BATCH_SIZE"])
    if not batch:
        return 0
    outcomes = []
    # One commit for the batch's results, not one per message: a crash before it means those messages
    # are sent again after their lease, with the same Message-ID, never that one is lost.
    try:
        with app.app_context(), transport_for(config) as transport:
            _send_batch(app, db, transport, batch, outcomes)
    except (smtplib.SMTPException, OSError) as error:
        # The connection itself failed (connect, TLS, login, or a drop mid-batch).
        done = {outcome["outbox_id"] for outcome in outcomes}
        outcomes += [_failure(message, error, config) for message in batch if message["id"] not in done]
    finally:
        storage.record_outcomes(db, owner, outcomes)
    return len(batch)


def _send_batch(app, db, transport, batch, outcomes):
    forms = app.config["FORM_DEFINITIONS"]
    for message in batch:
        submission = storage.get_submission(db, message["submission_id"])
        if submission is None:
            outcomes.append({"outbox_id": message["id"], "outcome": "failed", "now": time.time(),
                             "detail": "the submission was deleted"})
            continue
        form = forms.get(submission["form"]) or forms["contactus"]
        email = build_owner_message(submission, message, form)
        try:
            detail = transport.send(email, app.config["MAIL_FROM"], message["recipients"])
        except (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused) as error:
            # The server answered: the connection is still good for the next message.
            outcomes.append(_failure(message, error, app.config))
        else:
            outcomes.append({"outbox_id": message["id"], "outcome": "sent", "now": time.time(), "detail": detail})
            log.info("sent submission %s to %s via %s", submission["id"], ", ".join(message["recipients"]),
                     transport.describe())


def _failure(message, error, config):
    """Decide what a failed attempt means: a retry at a later time, or a permanent failure."""
    kind, detail = classify(error)
    now = time.time()
    attempts = message["attempts"] + 1
    if kind == "retry" and now - message["created_at"] > config["GIVE_UP_SECONDS"]:
        kind, detail = "failed", f"gave up after {attempts} attempts; last error: {detail}"
    if kind == "failed":
        log.error("delivery of submission %s failed permanently: %s", message["submission_id"], detail)
        return {"outbox_id": message["id"], "outcome": "failed", "now": now, "detail": detail}
    delay = retry_delay(attempts, config)
    log.warning("delivery of submission %s failed (attempt %d), retrying in %.0f s: %s",
                message["submission_id"], attempts, delay, detail)
    return {"outbox_id": message["id"], "outcome": "retry", "now": now, "detail": detail,
            "next_attempt_at": now + delay}


class DeliveryWorker:
    """A thread that delivers the outbox: woken by new submissions, polling for retries."""

    def __init__(self, app):
        self.app = app
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.wakeup = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, name="postbox-delivery", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def wake(self):
        self.wakeup.set()

    def stop(self, timeout=10):
        self.stopping.set()
        self.wakeup.set()
        self.thread.join(timeout)

    def run(self):
        db = storage.open_db(self.app.config["DATABASE"])
        try:
            while not self.stopping.is_set():
                self.wakeup.clear()
                try:
                    if deliver_due(self.app, db, self.owner):
                        continue
                    self.wakeup.wait(self._idle_seconds(db))
                except Exception:
                    log.exception("delivery worker error; retrying shortly")
                    self.stopping.wait(self.app.config["POLL_SECONDS"])
        finally:
            db.close()

    def _idle_seconds(self, db):
        poll = self.app.config["POLL_SECONDS"]
        due = storage.next_due_at(db)
        return poll if due is None else max(0.0, min(poll, due - time.time()))


def start_worker(app):
    """Start this process's delivery thread (once) and return it."""
    worker = app.extensions.get("postbox.worker")
    if worker is None:
        worker = app.extensions["postbox.worker"] = DeliveryWorker(app).start()
        log.info("delivery worker %s started; mail goes to %s", worker.owner, transport_for(app.config).describe())
    return worker


def wake_worker(app):
    """Tell this process's delivery thread that a message is waiting."""
    worker = app.extensions.get("postbox.worker")
    if worker is not None:
        worker.wake()
