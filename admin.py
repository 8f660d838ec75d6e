"""The owner's inbox under /admin: login, the list, one submission, handling, the chart, export and its commands."""
import csv
import functools
import hashlib
import io
import itertools
import json
import re
import sys
import time
from datetime import date, datetime, time as clock, timedelta, timezone
from urllib.parse import quote
from zoneinfo import ZoneInfo

import click
from flask import (Blueprint, Response, abort, current_app, flash, g, redirect, render_template, request, session,
                   stream_with_context, url_for)
from flask.cli import with_appcontext
from flask.sessions import SecureCookieSessionInterface
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import refresh
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFProtect
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired

import answer_times
import database
import emails
import health
import inbox_queries
import outbox
import passwords
import rate_limits
import replies
from config import LANGUAGES, LOCALES, form_for_key
from inbox_queries import EXPORT_COLUMNS, FORMULA_STARTS

bp = Blueprint("admin", __name__, url_prefix="/admin")
csrf = CSRFProtect()

PAGE_SIZE = 50
LOGIN_ACCOUNT_BUCKETS = 4096
# SQLite's integers are signed 64-bit: a larger id cannot name a row, and would overflow the query.
MAX_ID = 2 ** 63 - 1
ID_TEXT = re.compile(r"[0-9]{1,19}")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x20\x7f-\x9f\\]")
# A search's counts stop here ("1,000+"): counting every match of a common word would cost more than the page.
SEARCH_COUNT_LIMIT = 1000
CHART_DAYS = (30, 90)
CHART_HEIGHT = 120
CSV_FLUSH_ROWS = 200
# The export's columns: storage's order, extra fields after the message, the delivery state last.
BASE_COLUMNS = EXPORT_COLUMNS[:EXPORT_COLUMNS.index("message") + 1]
TAIL_COLUMNS = (*EXPORT_COLUMNS[len(BASE_COLUMNS):], "delivery", "first_answer_hours")
# Shown in the owner's language; the stored and exported statuses stay the keys.
STATUS_LABELS = {"new": _l("new"), "in_progress": _l("in progress"), "answered": _l("answered"), "spam": _l("spam")}


class LoginForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired()])
    password = PasswordField(_l("Password"), validators=[DataRequired()])


class HttpsAwareSessionInterface(SecureCookieSessionInterface):
    """Mark the session cookie Secure whenever the request came over HTTPS (directly or via a trusted proxy)."""

    def get_cookie_secure(self, app):
        return bool(app.config["SESSION_COOKIE_SECURE"] or (request and request.is_secure))


def init_app(app, limiter):
    """Register the inbox, its CSRF protection, login throttling, template filters and commands."""
    # Only the inbox's forms carry tokens: the public form endpoints take POSTs from other sites by design.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    app.config["WTF_CSRF_TIME_LIMIT"] = None  # the token lives as long as the session does
    csrf.init_app(app)
    app.session_interface = HttpsAwareSessionInterface()
    app.register_blueprint(bp)
    # Per client IP, and per account (many addresses guessing at one account are slowed as one).
    if app.config["LOGIN_RATE_LIMIT"]:
        rate_limits.limit_view(app, limiter, "admin.login", app.config["LOGIN_RATE_LIMIT"], methods=["POST"])
    if app.config["LOGIN_ACCOUNT_RATE_LIMIT"]:
        rate_limits.limit_view(app, limiter, "admin.login", app.config["LOGIN_ACCOUNT_RATE_LIMIT"], methods=["POST"],
                               key_func=login_account_key)
    app.add_template_filter(local_time)
    app.cli.add_command(create_user_command)
    app.cli.add_command(export_command)


# --- Time ----------------------------------------------------------------------------------------

def owner_zone():
    return ZoneInfo(current_app.config["TIMEZONE"])


def local_time(iso_text, pattern="%Y-%m-%d %H:%M"):
    """Show a stored UTC time (ISO text or epoch seconds) in the owner's time zone."""
    if iso_text in (None, ""):
        return ""
    if isinstance(iso_text, (int, float)):
        moment = datetime.fromtimestamp(iso_text, timezone.utc)
    else:
        moment = datetime.fromisoformat(iso_text)
    return moment.astimezone(owner_zone()).strftime(pattern)


def utc_bound(day):
    """The UTC ISO time at which the given day begins in the owner's time zone."""
    start = datetime.combine(day, clock(), tzinfo=owner_zone())
    return start.astimezone(timezone.utc).isoformat(timespec="microseconds")


# --- Accounts and the session ------------------------------------------------------------------------

def hash_password(password):
    return passwords.hash_password(password)


@functools.cache
def unknown_user_hash():
    """A hash to check when the email is unknown, so a wrong address costs as long as a wrong password."""
    return hash_password("not anyone's password")


def authenticate(db, email, password):
    """Return the user whose email and password these are, or None; as slow for unknown emails as known ones.

    A good password's hash from before argon2id (scrypt) is replaced by an argon2id one there and then.
    """
    user = inbox_queries.get_user(db, email.strip().lower())
    password_ok = passwords.verify_password(user["password_hash"] if user else unknown_user_hash(), password)
    if not (user and password_ok):
        return None
    if passwords.needs_upgrade(user["password_hash"]):
        inbox_queries.create_user(db, user["email"], hash_password(password))
    return user


def login_account_key():
    """The per-account login limit's key: one of a fixed number of buckets of the email typed.

    A bucket, not the address: made-up addresses cannot add keys without bound, and a guess at an unknown
    address is limited exactly like one at a real account, so the limit does not tell which accounts exist.
    """
    email = request.form.get("email", "").strip().lower()
    digest = hashlib.sha256(email.encode("utf-8", "surrogatepass")).digest()
    return f"login-account:{int.from_bytes(digest[:4], 'big') % LOGIN_ACCOUNT_BUCKETS}"


@bp.before_request
def require_login():
    """Send anyone without a session to the login page, and check every POST's CSRF token."""
    g.user = session.get("user_email")
    if request.endpoint != "admin.login" and not g.user:
        return redirect(url_for("admin.login", next=request.full_path.rstrip("?") if request.method == "GET" else None))
    user = inbox_queries.get_user(database.get_db(), g.user) if g.user else None
    if g.user and user is None:
        session.clear()  # the account was removed: its sessions end too
        return redirect(url_for("admin.login"))
    # The user's own choice, else app.select_language takes ?lang= or the browser's.
    g.language = user["language"] if user and user["language"] in LANGUAGES else None
    if request.method == "POST":
        csrf.protect()


@bp.after_request
def no_store(response):
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Log the owner in. Its POSTs are limited per address and per account: wired in init_app."""
    form = LoginForm()
    if form.validate_on_submit():
        user = authenticate(database.get_db(), form.email.data, form.password.data)
        if user:
            session.clear()  # a fresh session at login: no fixation
            session["user_email"] = user["email"]
            session.permanent = True
            current_app.logger.info("inbox login: %s from %s", user["email"], request.remote_addr)
            return redirect(safe_next(request.args.get("next")))
        current_app.logger.warning("inbox login refused for %r from %s", form.email.data, request.remote_addr)
        flash(_("Wrong email or password."), "error")
    return render_template("admin/login.html", form=form), 200 if request.method == "GET" else 401


def safe_next(target):
    """Follow ?next= only to a page of the inbox itself, and never with a control character (a header split)."""
    if (target and target.startswith("/admin") and not target.startswith("/admin/login")
            and not CONTROL_CHARACTERS.search(target)):
        return target
    return url_for("admin.inbox")


@bp.post("/language")
def save_language():
    """Keep the user's inbox language; empty means the browser's."""
    language = request.form.get("language", "")
    if language and language not in LANGUAGES:
        abort(400, _("Unknown language %(language)s.", language=language))
    inbox_queries.set_user_language(database.get_db(), g.user, language)
    g.language = language or None
    refresh()  # this request's messages are already in the old language
    flash(_("Language saved."), "info")
    return redirect(safe_next(request.form.get("back")))


@bp.context_processor
def inbox_helpers():
    """The language menu (each language named in itself) and the delivery states in the owner's language."""
    return {"language_choices": [(language, LOCALES[language].get_display_name(LOCALES[language]).capitalize())
                                 for language in LANGUAGES],
            "delivery_label": delivery_label}


def delivery_label(state):
    """A delivery state ('sent', 'failed 1 of 2', …) in the owner's language; the export keeps the English."""
    if not state:
        return "—"
    failed = re.fullmatch(r"failed (\d+) of (\d+)", state)
    if failed:
        return _("failed %(failed)s of %(total)s", failed=failed.group(1), total=failed.group(2))
    labels = {"pending": _("pending"), "sent": _("sent"), "failed": _("failed"), "off": _("turned off")}
    return labels.get(state, state)


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("admin.login"))


# --- The list --------------------------------------------------------------------------------------------

def read_filters(args):
    """Read the inbox's filters from the query string; a bad date is reported and ignored."""
    filters = {"q": args.get("q", "").strip(), "status": args.get("status", ""), "form": args.get("form", "")}
    if filters["status"] not in database.STATUSES:
        filters["status"] = ""
    for name, key, shift in (("from", "since", 0), ("to", "before", 1)):
        text = args.get(name, "").strip()
        filters[name] = text
        if not text:
            continue
        try:
            day = date.fromisoformat(text)
        except ValueError:
            flash(_("“%(text)s” is not a date; use YYYY-MM-DD.", text=text), "error")
            filters[name] = ""
            continue
        try:
            filters[key] = utc_bound(day + timedelta(days=shift))
        except OverflowError:
            pass  # 9999-12-31, or 0001-01-01 east of UTC: a bound beyond every stored time is no bound
    return filters


def query_args(filters, **changes):
    """The query string for the given filters, for links and the export."""
    args = {name: filters.get(name) for name in ("q", "status", "form", "from", "to")}
    args.update(changes)
    return {name: value for name, value in args.items() if value}


def read_id(text):
    """An id from a query string or form, or None when it is not a whole number SQLite can hold."""
    if text is None or not ID_TEXT.fullmatch(text) or int(text) > MAX_ID:
        return None
    return int(text)


def read_cursor(text):
    """The (received_at, id) a page starts after; a malformed cursor is the client's error (400)."""
    if not text:
        return None
    received_at, _, submission_id = text.rpartition("|")
    if not received_at or read_id(submission_id) is None:
        abort(400, f"{text!r} is not a page cursor of this inbox.")
    return received_at, int(submission_id)


@bp.url_value_preprocessor
def bounded_submission_id(endpoint, values):
    """An id in the path beyond SQLite's integers names no submission: 404, not an overflow."""
    if values and values.get("submission_id", 0) > MAX_ID:
        abort(404)


@bp.get("/")
def inbox():
    db = database.get_db()
    filters = read_filters(request.args)
    after = read_cursor(request.args.get("after"))
    counts, counts_capped, rows = first_page(db, filters, after)
    next_cursor = f"{rows[PAGE_SIZE - 1]['received_at']}|{rows[PAGE_SIZE - 1]['id']}" if len(rows) > PAGE_SIZE else None
    days = request.args.get("days", type=int)
    days = days if days in CHART_DAYS else CHART_DAYS[0]
    follow_up = follow_up_panels(db) if after is None else {}
    return render_template(
        "admin/inbox.html", rows=rows[:PAGE_SIZE], filters=filters, counts=counts, counts_capped=counts_capped,
        count_limit=SEARCH_COUNT_LIMIT, next_cursor=next_cursor,
        first_page=after is None, forms=inbox_queries.form_keys(db), query_args=query_args, days=days,
        chart=daily_chart(db, days) if after is None else None, chart_days=CHART_DAYS, statuses=database.STATUSES,
        labels=STATUS_LABELS, first_line=first_line, problems=outbox.channel_problems(db),
        mail_stopped=health.mail_stopped(db, time.time(), current_app.config["MAIL_ALARM_SECONDS"]), **follow_up,
    )


def first_page(db, filters, after):
    """The counts by status, whether a search's counts are capped, and the rows of the page (PAGE_SIZE + 1)."""
    searching = bool(inbox_queries.search_query(db, filters["q"]))
    if searching and after is None and not any(filters.get(name) for name in ("form", "since", "before")):
        counts, capped, rows = inbox_queries.search_first_page(db, filters, PAGE_SIZE + 1, SEARCH_COUNT_LIMIT)
        if not capped or len(rows) > PAGE_SIZE:
            return counts, capped, rows
    counts = inbox_queries.status_counts(db, {**filters, "status": ""}, at_most=SEARCH_COUNT_LIMIT)
    capped = searching and sum(counts.values()) > SEARCH_COUNT_LIMIT
    return counts, capped, inbox_queries.list_submissions(db, filters, after=after, limit=PAGE_SIZE + 1,
                                                          many_matches=capped)


ANSWER_WEEKS_CACHE_SECONDS = 300


def follow_up_panels(db):
    """What the first page shows above the list: overdue leads, callbacks by when they are due, answer times."""
    config = current_app.config
    now = datetime.now(timezone.utc)
    target = config["REMIND_AFTER"]
    overdue, more_overdue = answer_times.overdue(db, config["SCHEDULE"], target, now) if target else ([], False)
    return {"overdue": overdue, "more_overdue": more_overdue, "answer_weeks": answer_weeks(db, now),
            "answer_target": target, "callbacks": inbox_queries.open_callbacks(db)}


def answer_weeks(db, now):
    """The weekly answer times, computed at most every few minutes per process: at a hundred thousand leads
    a week the working-hours arithmetic takes seconds, and past weeks barely change."""
    cached = current_app.extensions.get("postbox.answer_weeks")
    if cached and time.monotonic() < cached[0]:
        return cached[1]
    config = current_app.config
    weeks = answer_times.weekly(db, config["SCHEDULE"], config["REMIND_AFTER"], now)
    current_app.extensions["postbox.answer_weeks"] = (time.monotonic() + ANSWER_WEEKS_CACHE_SECONDS, weeks)
    return weeks


def first_line(text):
    """A message's first line for the list, shorter than in a messenger's text."""
    return emails.first_line(text, limit=120)


# --- The chart ----------------------------------------------------------------------------------------

def daily_chart(db, days):
    """Count submissions per day in the owner's time zone over the last `days` days, and lay out stacked bars."""
    zone = owner_zone()
    today = datetime.now(zone).date()
    first = today - timedelta(days=days - 1)
    counts = {}
    for offset in range(days):
        day = first + timedelta(days=offset)
        bounds = {"since": utc_bound(day), "before": utc_bound(day + timedelta(days=1))}
        by_status = inbox_queries.status_counts(db, bounds)
        counts[day] = {status: by_status[status] for status in database.STATUSES}
    peak = max([sum(day.values()) for day in counts.values()] + [1])
    bar_width = 10
    bars = []
    for index, (day, by_status) in enumerate(counts.items()):
        top = CHART_HEIGHT
        segments = []
        for status in database.STATUSES:
            height = by_status[status] * CHART_HEIGHT / peak
            if height:
                top -= height
                segments.append({"status": status, "y": round(top, 2), "height": round(height, 2)})
        summary = ", ".join(_("%(count)d %(status)s", count=count, status=STATUS_LABELS[status])
                            for status, count in by_status.items() if count)
        bars.append({"x": index * bar_width, "day": day, "segments": segments, "width": bar_width - 2,
                     "title": f"{day.isoformat()}: {summary or _('none')}"})
    return {"bars": bars, "peak": peak, "width": days * bar_width, "height": CHART_HEIGHT,
            "first": first, "last": today, "total": sum(sum(day.values()) for day in counts.values())}


# --- One submission and its handling -------------------------------------------------------------------------

def load_submission(submission_id):
    submission = inbox_queries.get_submission_with_delivery(database.get_db(), submission_id)
    if submission is None:
        abort(404, _("There is no such submission; it may have been deleted."))
    return submission


def reply_link(submission):
    """A mailto: link addressed to the visitor, with "Re: subject"."""
    address = submission.get("reply_to") or submission.get("email")
    if not address:
        return None
    subject = submission.get("subject") or submission.get("mail_subject") or _("your message")
    return f"mailto:{quote(address, safe='@+')}?subject={quote('Re: ' + subject, safe='')}"


@bp.get("/s/<int:submission_id>")
def detail(submission_id):
    submission = load_submission(submission_id)
    page = submission["page"] if submission["page"].startswith(("https://", "http://")) else ""
    return render_template(
        "admin/detail.html", s=submission, messages=outbox.notifications_of(database.get_db(), submission_id),
        reply=reply_link(submission), page_link=page, statuses=database.STATUSES, labels=STATUS_LABELS,
        replies=replies.replies_of(database.get_db(), submission_id), visitor=visitor_address(submission),
        answer_hours=answer_times.hours_to_answer(current_app.config["SCHEDULE"], submission["received_at"],
                                                  submission["first_answer_at"]),
    )


def visitor_address(submission):
    return submission.get("reply_to") or submission.get("email") or ""


@bp.post("/s/<int:submission_id>/reply")
def send_reply(submission_id):
    """Answer the visitor from the inbox: the reply goes through the outbox and the lead turns answered."""
    submission = load_submission(submission_id)
    body = request.form.get("body", "").replace("\r\n", "\n").strip()[:20000]
    address = visitor_address(submission)
    if not body or not address:
        flash(_("Write the reply first.") if address else _("This visitor left no address to answer."), "error")
        return redirect(url_for("admin.detail", submission_id=submission_id))
    notification = replies.reply_notification(current_app.config, address)
    replies.save_reply(database.get_db(), submission_id, g.user, body, notification, time.time())
    outbox.wake_worker(current_app)
    flash(_("Your reply is on its way to %(address)s.", address=address), "info")
    return redirect(url_for("admin.detail", submission_id=submission_id))


@bp.post("/s/<int:submission_id>/status")
def change_status(submission_id):
    load_submission(submission_id)
    status = request.form.get("status", "")
    if status not in database.STATUSES:
        abort(400, _("Unknown status %(status)s.", status=status))
    inbox_queries.set_status(database.get_db(), [submission_id], status, g.user)
    flash(_("Marked as %(status)s.", status=STATUS_LABELS[status]), "info")
    return redirect(url_for("admin.detail", submission_id=submission_id))


@bp.post("/s/<int:submission_id>/note")
def save_note(submission_id):
    load_submission(submission_id)
    inbox_queries.set_note(database.get_db(), submission_id, request.form.get("note", "").strip()[:10000])
    flash(_("Note saved."), "info")
    return redirect(url_for("admin.detail", submission_id=submission_id))


@bp.post("/s/<int:submission_id>/resend")
def resend(submission_id):
    submission = load_submission(submission_id)
    db = database.get_db()
    outbox_id = read_id(request.form.get("outbox_id"))
    if not outbox.resend(db, submission_id, time.time(), outbox_id) and outbox_id is None:
        form = form_for_key(current_app.config, submission["form"])
        outbox.queue_for(db, submission_id, outbox.notifications_for(current_app.config, form), time.time())
    outbox.wake_worker(current_app)
    flash(_("The notification will be sent again now.") if outbox_id else _("Every notification will be sent again now."),
          "info")
    return redirect(url_for("admin.detail", submission_id=submission_id))


@bp.post("/deliver-now")
def deliver_now():
    """Send every waiting notification now: after the SMTP password or a webhook was fixed, say."""
    waiting = outbox.send_all_now(database.get_db(), time.time())
    outbox.wake_worker(current_app)
    flash(_("Waiting notifications sent now: %(count)d.", count=waiting), "info")
    return redirect(safe_next(request.form.get("back")))


@bp.post("/s/<int:submission_id>/delete")
def delete(submission_id):
    """Delete one submission; the page asks first, with a second button inside a closed <details>."""
    inbox_queries.delete_submissions(database.get_db(), [submission_id])
    flash(_("Submission %(id)d deleted.", id=submission_id), "info")
    return redirect(url_for("admin.inbox"))


@bp.post("/bulk")
def bulk():
    """Apply a status or deletion to the rows ticked in the list."""
    ids = [read_id(value) for value in request.form.getlist("ids")]
    if None in ids:
        abort(400, "Each selected submission must be a number.")
    action = request.form.get("action", "")
    back = redirect(safe_next(request.form.get("back")))
    if not ids:
        flash(_("Select at least one submission first."), "error")
        return back
    db = database.get_db()
    if action == "delete":
        flash(_("Submissions deleted: %(count)d.", count=inbox_queries.delete_submissions(db, ids)), "info")
    elif action in database.STATUSES:
        flash(_("Marked as %(status)s: %(count)d.", status=STATUS_LABELS[action],
                count=inbox_queries.set_status(db, ids, action, g.user)), "info")
    else:
        abort(400, _("Unknown action %(action)s.", action=action))
    return back


# --- Export -----------------------------------------------------------------------------------------------------

def neutralise_formula(value):
    """Prefix a cell a spreadsheet would run as a formula with ', so it shows as text."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def export_record(submission, zone):
    """One submission as export data: received time ISO 8601 in the owner's zone, delivery state spelled out."""
    record = {name: "" if submission.get(name) is None else submission[name] for name in BASE_COLUMNS + TAIL_COLUMNS}
    record["received_at"] = datetime.fromisoformat(submission["received_at"]).astimezone(zone).isoformat()
    record["delivery"] = submission.get("delivery") or ("not sent (spam)" if submission["status"] == "spam" else "")
    record["first_answer_hours"] = answer_cell(current_app.config["SCHEDULE"], submission["received_at"],
                                               submission.get("first_answer_at"))
    record["extra"] = submission["extra"]
    return record


def csv_columns(extra_names):
    clashing = set(BASE_COLUMNS + TAIL_COLUMNS)
    return [*BASE_COLUMNS, *(f"extra:{name}" if name in clashing else name for name in extra_names), *TAIL_COLUMNS]


def export_time(zone):
    """Return a function showing a stored UTC ISO time in the zone, as ISO 8601 with its offset."""
    def convert(iso_text):
        return datetime.fromisoformat(iso_text).astimezone(zone).isoformat()
    if zone.key != "UTC":
        return convert

    def already_utc(iso_text):
        # Stored times are UTC already: only isoformat()'s dropping of zero microseconds is left to copy.
        if iso_text.endswith(".000000+00:00"):
            return iso_text[:-13] + "+00:00"
        return iso_text if iso_text.endswith("+00:00") else convert(iso_text)
    return already_utc


def extra_cells(extra_json, extra_names):
    extra = json.loads(extra_json)
    return [neutralise_formula(extra.get(name)) for name in extra_names]


def answer_cell(schedule, received_at, first_answer_at):
    """The export's time to first answer: working hours with two decimals, or "" while unanswered."""
    if not first_answer_at:
        return ""
    return f"{answer_times.hours_to_answer(schedule, received_at, first_answer_at):.2f}"


def with_answer_hours(rows, schedule):
    """Replace each export row's first_answer_at cell (second to last) by the working hours it took."""
    for row in rows:
        yield (*row[:-2], answer_cell(schedule, row[3], row[-2]), row[-1])


def csv_chunks(db, filters, zone, bom=False):
    """Yield the CSV export in chunks of rows: one row per submission, a column per field and extra field."""
    extra_names = inbox_queries.extra_field_names(db, filters)
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # the excel dialect: RFC 4180 quoting and CRLF line ends
    buffer.write("\ufeff" if bom else "")
    writer.writerow(csv_columns(extra_names))
    shown = export_time(zone)
    # SQLite made each cell spreadsheet-safe; only the received time is left to show in the owner's zone.
    base = len(BASE_COLUMNS)
    tail = base + len(extra_names)
    rows = ((row[0], row[1], row[2], shown(row[3]), *row[4:-1]) if row[-1] is None else
            (row[0], row[1], row[2], shown(row[3]), *row[4:base], *extra_cells(row[-1], extra_names), *row[tail:-1])
            for row in with_answer_hours(inbox_queries.iter_export_rows(db, filters, extra_names),
                                         current_app.config["SCHEDULE"]))
    while chunk := list(itertools.islice(rows, CSV_FLUSH_ROWS)):
        writer.writerows(chunk)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def json_chunks(db, filters, zone):
    """Yield the JSON export: an array of objects, one per submission, with extra fields under "extra"."""
    yield "["
    separator = "\n"
    for submission in inbox_queries.iter_submissions(db, filters):
        yield separator + json.dumps(export_record(submission, zone), ensure_ascii=False)
        separator = ",\n"
    yield "\n]\n"


def download_name(extension):
    return f"postbox-{datetime.now(owner_zone()).strftime('%Y%m%d-%H%M')}.{extension}"


def streamed_export(make_chunks):
    """Run an export on its own connection, held exactly as long as the download lasts."""
    db = database.open_db(current_app.config["DATABASE"])
    try:
        yield from make_chunks(db)
    finally:
        db.close()


@bp.get("/export.csv")
def export_csv():
    filters, zone = read_filters(request.args), owner_zone()
    # The BOM makes Excel read the file as UTF-8 rather than the system's code page.
    chunks = streamed_export(lambda db: csv_chunks(db, filters, zone, bom=True))
    return Response(stream_with_context(chunks), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{download_name("csv")}"'})


@bp.get("/export.json")
def export_json():
    filters, zone = read_filters(request.args), owner_zone()
    chunks = streamed_export(lambda db: json_chunks(db, filters, zone))
    return Response(stream_with_context(chunks), mimetype="application/json", headers={
        "Content-Disposition": f'attachment; filename="{download_name("json")}"'})


# --- Commands ------------------------------------------------------------------------------------------------

def read_new_password():
    """One line from standard input when it is not a terminal, else a prompt asked twice."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@click.command("create-user")
@with_appcontext
@click.argument("email")
def create_user_command(email):
    """Create an inbox user, or give one a new password (read from stdin, else prompted twice).

    Example: flask --app app create-user owner@example.com
    """
    from email_validator import EmailNotValidError, validate_email
    try:
        email = validate_email(email, check_deliverability=False).normalized.lower()
    except EmailNotValidError as error:
        raise click.BadParameter(str(error), param_hint="EMAIL") from None
    password = read_new_password()
    if len(password) < 10:
        raise click.ClickException("The password must have at least 10 characters.")
    db = database.open_db(current_app.config["DATABASE"])
    try:
        created = inbox_queries.create_user(db, email, hash_password(password))
    finally:
        db.close()
    click.echo(f"{'Created' if created else 'Changed the password of'} inbox user {email}.")


@click.command("export")
@with_appcontext
@click.option("--format", "file_format", type=click.Choice(["csv", "json"]), default="csv", show_default=True,
              help="CSV (one row per submission) or JSON (an array of objects).")
@click.option("--output", type=click.Path(dir_okay=False, writable=True), help="Write here instead of stdout.")
@click.option("--bom", is_flag=True, help="Start the CSV with a UTF-8 byte order mark, for Excel.")
def export_command(file_format, output, bom):
    """Export every submission, streamed, as CSV or JSON.

    Example: flask --app app export --format csv --output submissions.csv
    """
    db = database.open_db(current_app.config["DATABASE"])
    zone = ZoneInfo(current_app.config["TIMEZONE"])
    chunks = csv_chunks(db, {}, zone, bom=bom) if file_format == "csv" else json_chunks(db, {}, zone)
    # newline="": the csv module writes RFC 4180's CRLF itself.
    target = open(output, "w", encoding="utf-8", newline="") if output else io.TextIOWrapper(
        sys.stdout.buffer, encoding="utf-8", newline="", write_through=False)
    try:
        for chunk in chunks:
            target.write(chunk)
    finally:
        target.flush()
        if output:
            target.close()
        else:
            target.detach()
        db.close()
