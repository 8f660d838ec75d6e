"""What Postbox's emails say, and headers that no visitor text can break out of."""
import hashlib
import re
from datetime import date, datetime
from email import contentmanager
from email.charset import BASE64, Charset
from email.header import Header
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime, make_msgid
from zoneinfo import ZoneInfo

from babel.dates import format_date, get_day_names
from flask import current_app, render_template
from flask_babel import force_locale, get_locale, get_translations
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


# The headers of a plain UTF-8 text body, parsed once: given as header objects, the email package stores them
# as they are, where a string is parsed again for every message and again whenever the message is written.
_TEXT_BODY = MESSAGE_POLICY.header_factory("Content-Type", 'text/plain; charset="utf-8"')
_MIME_VERSION = MESSAGE_POLICY.header_factory("MIME-Version", "1.0")
_TRANSFER_ENCODINGS = {name: MESSAGE_POLICY.header_factory("Content-Transfer-Encoding", name)
                       for name in ("7bit", "8bit", "quoted-printable", "base64")}
# How set_content encodes text; private to the email package, so its absence is allowed for.
_ENCODE_TEXT = getattr(contentmanager, "_encode_text", None)


def set_text_body(message, body):
    """Do what message.set_content(body) does for plain UTF-8 text, with its three headers parsed once.

    set_content parses every header it writes, Content-Type twice: a third of the CPU of building an owner's
    email. The body is encoded by the email package's own choice of 7bit, 8bit, quoted-printable or base64,
    and a test checks that the bytes equal set_content's.
    """
    if _ENCODE_TEXT is None:
        message.set_content(body)
        return
    transfer_encoding, payload = _ENCODE_TEXT(body, "utf-8", None, message.policy)
    message["Content-Type"] = _TEXT_BODY
    message["Content-Transfer-Encoding"] = _TRANSFER_ENCODINGS[transfer_encoding]
    message["MIME-Version"] = _MIME_VERSION
    message.set_payload(payload)


def new_message_id(mail_from):
    """Make the Message-ID a message keeps across every retry."""
    return make_msgid(idstring="postbox", domain=mail_from.rpartition("@")[2] or "localhost")


def build_message(row, submission, form):
    """Build the email of one outbox row: what it says depends on the row's kind."""
    builders = {"lead": build_owner_message, "autoreply": build_autoreply, "reminder": build_reminder,
                "reply": build_reply, "digest": build_digest}
    if row["kind"] not in builders:
        raise ValueError(f"no email is made for the kind {row['kind']!r}")
    return builders[row["kind"]](submission, form, row["message_id"], row)


def build_owner_message(submission, form, message_id, row=None):
    """Build the owner's email for a stored submission; needs an app context."""
    config = current_app.config
    received = datetime.fromisoformat(submission["received_at"])
    with force_locale(owner_language(submission, form)):
        gettext = catalogue_gettext()
        context = {
            "submission": submission,
            "form": form,
            "fields": _listed_fields(submission, form),
            "received_local": received.astimezone(ZoneInfo(config["TIMEZONE"])),
            "labels": {"name": gettext("Name"), "email": gettext("Email"), "phone": gettext("Phone"),
                       "subject": gettext("Subject")},
            "callback": callback_line(submission),
            "gettext": gettext,
        }
        subject = render("email/owner_subject.txt", **context)
        body = render("email/owner_body.txt", **context)
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
    set_text_body(message, body)
    return message


def catalogue_gettext():
    """The gettext of the locale in force for one message's text, its catalogue looked up once.

    flask_babel's gettext looks the catalogue up again at every string (about 5 µs): a tenth of the CPU of
    building an owner's email. Given to a template as `gettext`, it is what the i18n extension's _() calls,
    and like the newstyle gettext the templates are written for, it always %-formats.
    """
    translations = get_translations()
    return lambda string, **variables: translations.ugettext(string) % variables


def render(template, gettext=None, **context):
    """render_template for the text of a message, with catalogue_gettext (or the one given, to share it with
    the caller's own strings): call it inside force_locale."""
    return render_template(template, gettext=gettext or catalogue_gettext(), **context)


def thread_id(submission, mail_from):
    """The Message-ID the conversation about a submission hangs on: the same for every message, every retry."""
    digest = hashlib.sha256(f"{submission['id']} {submission['received_at']}".encode()).hexdigest()[:16]
    return f"<postbox.{submission['id']}.{digest}@{mail_from.rpartition('@')[2] or 'localhost'}>"


def owner_language(submission, form):
    """The owners' language for what we write to them: the form's, else the visitor's, else English."""
    return LOCALES.get(form.language or submission.get("language"), LOCALES["en"])


def visitor_language(submission, form):
    """The visitor's language for what we write to them: theirs, else the form's, else English."""
    return LOCALES.get(submission.get("language") or form.language, LOCALES["en"])


def _to_visitor(subject, body, form, row, submission):
    """A message to the visitor from the site's address, in the conversation about their submission."""
    config = current_app.config
    message = EmailMessage(policy=MESSAGE_POLICY)
    message.set_raw("Subject", encoded_text("Subject", subject))
    message.set_raw("From", mailbox("From", form.title or "", config["MAIL_FROM"]))
    message.set_raw("To", address_list("To", [row["target"]]))
    message.set_raw("Date", format_datetime(datetime.now().astimezone()))
    message.set_raw("Message-ID", row["message_id"])
    thread = thread_id(submission, config["MAIL_FROM"])
    message.set_raw("In-Reply-To", thread)
    message.set_raw("References", thread)
    message.set_raw("X-Postbox-Submission", str(submission["id"]))
    set_text_body(message, body)
    return message


def build_autoreply(submission, form, message_id, row):
    """The autoresponder: the owner's words or the default, and never a word the visitor typed."""
    config = current_app.config
    with force_locale(visitor_language(submission, form)):
        subject = form.autoreply_subject or _("We have received your message")
        body = render("email/autoreply.txt", form=form, text=form.autoreply_text,
                      hours=hours_text(config["SCHEDULE"]), answer_within=config["REMIND_AFTER"])
    message = _to_visitor(subject, body, form, row, submission)
    # RFC 3834: an automatic answer; other autoresponders must not answer it back.
    message.set_raw("Auto-Submitted", "auto-replied")
    return message


def build_reply(submission, form, message_id, row):
    """The owner's reply, From the site's address (DMARC) and Reply-To the owner who wrote it."""
    reply = row["owner_reply"]
    with force_locale(visitor_language(submission, form)):
        about = submission.get("subject") or submission.get("mail_subject") or form.title or _("Contact us")
        subject = f"Re: {about}"  # "Re:" is not translated: mail programs recognise it as it is
    message = _to_visitor(subject, reply["body"], form, row, submission)
    if reply.get("author"):
        message.set_raw("Reply-To", mailbox("Reply-To", "", reply["author"]))
    return message


def build_reminder(submission, form, message_id, row):
    """A reminder to the owners: a lead is still unanswered, or a callback is about to be due."""
    config = current_app.config
    with force_locale(owner_language(submission, form)):
        subject, text = reminder_text(submission, form, config["PUBLIC_URL"])
        body = render("email/reminder.txt", text=text, submission=submission)
    message = _to_owners(subject, body, form, message_id)
    reply_to = submission.get("reply_to") or submission.get("email")
    if reply_to:
        message.set_raw("Reply-To", mailbox("Reply-To", submission["name"], reply_to))
    message.set_raw("X-Postbox-Submission", str(submission["id"]))
    return message


def build_digest(submission, form, message_id, row):
    """The daily digest to the owners: how many leads came, how many wait, and the one waiting longest."""
    config = current_app.config
    with force_locale(LOCALES.get(form.language, LOCALES["en"])):
        subject, body = digest_text(row["digest"], config["PUBLIC_URL"])
    return _to_owners(subject, body, form, message_id)


def _to_owners(subject, body, form, message_id):
    """A message Postbox itself writes to the form's owners (a reminder, the digest)."""
    config = current_app.config
    message = EmailMessage(policy=MESSAGE_POLICY)
    message.set_raw("Subject", encoded_text("Subject", subject))
    message.set_raw("From", mailbox("From", "Postbox", config["MAIL_FROM"]))
    message.set_raw("To", address_list("To", form.owners))
    message.set_raw("Date", format_datetime(datetime.now().astimezone()))
    message.set_raw("Message-ID", message_id)
    message.set_raw("Auto-Submitted", "auto-generated")
    set_text_body(message, body)
    return message


def digest_text(digest, public_url):
    """The digest's title and text in the current locale, for email and messengers alike."""
    oldest_local = ""
    if digest["oldest_received_at"]:
        received = datetime.fromisoformat(digest["oldest_received_at"])
        oldest_local = received.astimezone(ZoneInfo(current_app.config["TIMEZONE"])).strftime("%Y-%m-%d %H:%M")
    title = _("Postbox digest for %(day)s", day=digest["day"])
    text = render("notify/digest.txt", digest=digest, oldest_local=oldest_local,
                  link=inbox_link(public_url, digest["oldest_id"]) if oldest_local else public_url)
    return title, text


def reminder_text(submission, form, public_url):
    """A reminder's title and text, in the current locale: for email and messengers alike."""
    name = submission["name"] or submission.get("email") or "?"
    if submission.get("callback_at"):
        title = _("Call back %(name)s now", name=name)
    else:
        title = _("%(name)s is still waiting for an answer", name=name)
    text = render("notify/reminder.txt", submission=submission, title=title,
                  callback=callback_line(submission), link=inbox_link(public_url, submission["id"]),
                  first_line=first_line(submission["message"]))
    return title, text


def callback_line(submission):
    """ "Call back … on … between …" for a callback request, in the current locale; "" for other leads."""
    if not submission.get("callback_slot"):
        return ""
    start, _sep, end = submission["callback_slot"].partition("-")
    day = format_date(date.fromisoformat(submission["callback_day"]), format="full", locale=get_locale())
    return _("Call back %(name)s on %(day)s between %(start)s and %(end)s: %(phone)s",
             name=submission["name"], day=day, start=start, end=end, phone=submission["phone"])


def hours_text(schedule):
    """The working hours in words of the current locale ("lun–ven 09:00–18:00"), or "" when always open."""
    if not schedule.text:
        return ""
    names = get_day_names("abbreviated", locale=get_locale())
    groups = []
    for index, intervals in enumerate(schedule.days):
        if not intervals:
            continue
        if groups and groups[-1][2] == intervals and groups[-1][1] == index - 1:
            groups[-1][1] = index
        else:
            groups.append([index, index, intervals])
    parts = []
    for first, last, intervals in groups:
        days = names[first] if first == last else f"{names[first]}–{names[last]}"
        times = ", ".join(f"{start:%H:%M}–{'24:00' if end.hour == 23 and end.minute == 59 else f'{end:%H:%M}'}"
                          for start, end in intervals)
        parts.append(f"{days} {times}")
    return "; ".join(parts)


def _listed_fields(submission, form):
    fields = [("name", submission["name"]), ("email", submission["email"])]
    fields += [(name, submission[name]) for name in form.fields if submission.get(name)]
    fields += list(submission["extra"].items())
    return fields


def inbox_link(public_url, submission_id):
    """The submission's page in the inbox, when POSTBOX_PUBLIC_URL says where the inbox is."""
    return f"{public_url}/admin/s/{submission_id}" if public_url else ""


def lead_summary(submission, form, public_url, kind="lead", digest=None):
    """A messenger's title and short text for a new lead (or a reminder): who, the first line, the inbox link."""
    with force_locale(owner_language(submission, form)):
        if kind == "reminder":
            return reminder_text(submission, form, public_url)
        if kind == "digest":
            return digest_text(digest, public_url)
        title = form.title or _("Contact us")
        text = render("notify/lead.txt", submission=submission, link=inbox_link(public_url, submission["id"]),
                      first_line=first_line(submission["message"]), callback=callback_line(submission))
    return title, text


def first_line(text, limit=200):
    """The first non-empty line of a text, cut to limit characters."""
    line = next((line.strip() for line in str(text or "").splitlines() if line.strip()), "")
    return line if len(line) <= limit else line[:limit - 1] + "…"
