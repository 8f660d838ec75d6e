"""What Postbox's emails say, and headers that no visitor text can break out of."""
import re
from datetime import datetime
from email.charset import BASE64, Charset
from email.header import Header
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime, make_msgid
from zoneinfo import ZoneInfo

from flask import current_app, render_template
from flask_babel import force_locale
from flask_babel import gettext as _

from config import LOCALES

# Python 3.11.7's email package lets a trailing newline through a header, so every
# visitor-supplied header value is forced onto one line here, where headers are made.
_CONTROL = {code: " " for code in range(32)} | {127: " "}
# A display name written as is: letters, digits and the atext symbols. Not "=" or "?", which could spell an
# RFC 2047 encoded word, nor the specials that would need quoting.
_PLAIN_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/^_`{|}~ -]*")
MAX_LINE = 78  # RFC 5322's recommended line length
# Raw header values are written as given, never re-parsed and refolded: a re-parse decodes encoded words.
MESSAGE_POLICY = default_policy.clone(refold_source="none")
# Our own UTF-8 with base64 in headers, never the shared "utf-8" entry: other libraries change that one
# (Apprise's email plugin makes it quoted-printable, which splits a short Cyrillic name into two words).
HEADER_CHARSET = Charset("utf-8")
HEADER_CHARSET.header_encoding = BASE64


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
    return Header(text, HEADER_CHARSET, maxlinelen=MAX_LINE, header_name=header_name).encode(linesep="\n")


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


def new_message_id(mail_from):
    """Make the Message-ID a message keeps across every retry."""
    return make_msgid(idstring="postbox", domain=mail_from.rpartition("@")[2] or "localhost")


def build_owner_message(submission, form, message_id):
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
    message.set_raw("To", address_list("To", form.owners))
    reply_to = submission.get("reply_to") or submission.get("email")
    if reply_to:
        message.set_raw("Reply-To", mailbox("Reply-To", submission["name"], reply_to))
    message.set_raw("Date", format_datetime(received))
    message.set_raw("Message-ID", message_id)
    message.set_raw("Auto-Submitted", "auto-generated")
    message.set_raw("X-Postbox-Submission", str(submission["id"]))
    message.set_content(body)
    return message


def _listed_fields(submission, form):
    fields = [("name", submission["name"]), ("email", submission["email"])]
    fields += [(name, submission[name]) for name in form.fields if submission.get(name)]
    fields += list(submission["extra"].items())
    return fields


def inbox_link(public_url, submission_id):
    """The submission's page in the inbox, when POSTBOX_PUBLIC_URL says where the inbox is."""
    return f"{public_url}/admin/s/{submission_id}" if public_url else ""


def lead_summary(submission, form, public_url):
    """A messenger's title and short text for a new lead: who wrote, the first line, and the inbox link."""
    language = form.language or submission.get("language")
    with force_locale(LOCALES.get(language, LOCALES["en"])):
        title = form.title or _("Contact us")
        text = render_template("notify/lead.txt", submission=submission, link=inbox_link(public_url, submission["id"]),
                               first_line=first_line(submission["message"]))
    return title, text


def first_line(text, limit=200):
    """The first non-empty line of a text, cut to limit characters."""
    line = next((line.strip() for line in str(text or "").splitlines() if line.strip()), "")
    return line if len(line) <= limit else line[:limit - 1] + "…"
