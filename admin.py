"""The owner's inbox under /admin: login, the list, one submission, handling, the chart, export and its commands."""
import csv
import functools
import io
import itertools
import json
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
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFProtect
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired

import answer_times
import database
import inbox_queries
import outbox
import replies
from inbox_queries import EXPORT_COLUMNS, FORMULA_STARTS

bp = Blueprint("admin", __name__, url_prefix="/admin")
csrf = CSRFProtect()

# scrypt at N=2^17, r=8, p=1: OWASP's floor; Werkzeug's default N=2^15 is below it.
PASSWORD_METHOD = "scrypt:131072:8:1"
PAGE_SIZE = 50
# A search's counts stop here ("1,000+"): counting every match of a common word would cost more than the page.
SEARCH_COUNT_LIMIT = 1000
CHART_DAYS = (30, 90)
CHART_HEIGHT = 120
CSV_FLUSH_ROWS = 200
# The export's columns: storage's order, extra fields after the message, the delivery state last.
BASE_COLUMNS = EXPORT_COLUMNS[:EXPORT_COLUMNS.index("message") + 1]
TAIL_COLUMNS = (*EXPORT_COLUMNS[len(BASE_COLUMNS):], "delivery", "first_answer_hours")
STATUS_LABELS = {"new": "new", "in_progress": "in progress", "answered": "answered", "spam": "spam"}


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])


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
    app.view_functions["admin.login"] = limiter.limit(
        lambda: app.config["LOGIN_RATE_LIMIT"] or "1000000 per second", methods=["POST"],
        exempt_when=lambda: not app.config["LOGIN_RATE_LIMIT"])(app.view_functions["admin.login"])
    app.add_template_filter(local_time)
    app.cli.add_command(create_user_command)
    app.cli.add_command(export_command)
    app.cli.add_command(purge_command)
    if app.config["RETENTION_DAYS"]:
        db = database.open_db(app.config["DATABASE"])
        try:
            purge_expired(app, db)
        finally:
            db.close()


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
    return generate_password_hash(password, method=PASSWORD_METHOD)


@functools.cache
def unknown_user_hash():
    """A hash to check when the email is unknown, so a wrong address costs as long as a wrong password."""
    # Made on first use, not at import: one scrypt at N=2^17 holds 128 MB while it runs.
    return hash_password("not anyone's password")


def authenticate(db, email, password):
    """Return the user whose email and password these are, or None; as slow for unknown emails as known ones."""
    user = inbox_queries.get_user(db, email.strip().lower())
    password_ok = check_password_hash(user["password_hash"] if user else unknown_user_hash(), password)
    return user if user and password_ok else None


@bp.before_request
def require_login():
    """Send anyone without a session to the login page, and check every POST's CSRF token."""
    g.user = session.get("user_email")
    if request.endpoint != "admin.login" and not g.user:
        return redirect(url_for("admin.login", next=request.full_path.rstrip("?") if request.method == "GET" else None))
    if g.user and inbox_queries.get_user(database.get_db(), g.user) is None:
        session.clear()  # the account was removed: its sessions end too
        return redirect(url_for("admin.login"))
    if request.method == "POST":
        csrf.protect()


@bp.after_request
def no_store(response):
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/login", methods=["GET", "POST"])
def login():
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
        flash("Wrong email or password.", "error")
    return render_template("admin/login.html", form=form), 200 if request.method == "GET" else 401


def safe_next(target):
    """Follow ?next= only to a page of the inbox itself."""
    if target and target.startswith("/admin") and not target.startswith("/admin/login"):
        return target
    return url_for("admin.inbox")


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
            filters[key] = utc_bound(date.fromisoformat(text) + timedelta(days=shift))
        except ValueError:
            flash(f"{text!r} is not a date; use YYYY-MM-DD.", "error")
            filters[name] = ""
    return filters


def query_args(filters, **changes):
    """The query string for the given filters, for links and the export."""
    args = {name: filters.get(name) for name in ("q", "status", "form", "from", "to")}
    args.update(changes)
    return {name: value for name, value in args.items() if value}


def read_cursor(text):
    received_at, _, submission_id = (text or "").rpartition("|")
    return (received_at, int(submission_id)) if received_at and submission_id.isdigit() else None


@bp.get("/")
def inbox():
    db = database.get_db()
    if current_app.config["RETENTION_DAYS"]:
        purge_expired(current_app, db, at_most_every=3600)
    filters = read_filters(request.args)
    after = read_cursor(request.args.get("after"))
    counts = inbox_queries.status_counts(db, {**filters, "status": ""}, at_most=SEARCH_COUNT_LIMIT)
    counts_capped = bool(filters["q"]) and sum(counts.values()) > SEARCH_COUNT_LIMIT
    rows = inbox_queries.list_submissions(db, filters, after=after, limit=PAGE_SIZE + 1, many_matches=counts_capped)
    next_cursor = f"{rows[PAGE_SIZE - 1]['received_at']}|{rows[PAGE_SIZE - 1]['id']}" if len(rows) > PAGE_SIZE else None
    days = request.args.get("days", type=int)
    days = days if days in CHART_DAYS else CHART_DAYS[0]
    follow_up = follow_up_panels(db) if after is None else {}
    return render_template(
        "admin/inbox.html", rows=rows[:PAGE_SIZE], filters=filters, counts=counts, counts_capped=counts_capped,
        count_limit=SEARCH_COUNT_LIMIT, next_cursor=next_cursor,
        first_page=after is None, forms=inbox_queries.form_keys(db), query_args=query_args, days=days,
        chart=daily_chart(db, days) if after is None else None, chart_days=CHART_DAYS, statuses=database.STATUSES,
        labels=STATUS_LABELS, first_line=first_line, problems=outbox.channel_problems(db), **follow_up,
    )


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


def first_line(text, limit=120):
    line = (text or "").strip().split("\n", 1)[0].strip()
    return line if len(line) <= limit else line[:limit - 1] + "…"


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
        summary = ", ".join(f"{count} {STATUS_LABELS[status]}" for status, count in by_status.items() if count)
        bars.append({"x": index * bar_width, "day": day, "segments": segments, "width": bar_width - 2,
                     "title": f"{day.isoformat()}: {summary or 'none'}"})
    return {"bars": bars, "peak": peak, "width": days * bar_width, "height": CHART_HEIGHT,
            "first": first, "last": today, "total": sum(sum(day.values()) for day in counts.values())}


# --- One submission and its handling -------------------------------------------------------------------------

def load_submission(submission_id):
    submission = inbox_queries.get_submission_with_delivery(database.get_db(), submission_id)
    if submission is None:
        abort(404, "There is no such submission; it may have been deleted.")
    return submission


def reply_link(submission):
    """A mailto: link addressed to the visitor, with "Re: subject"."""
    address = submission.get("reply_to") or submission.get("email")
    if not address:
        return None
    subject = submission.get("subject") or submission.get("mail_subject") or "your message"
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
        abort(400, f"Unknown status {status!r}.")
    inbox_queries.set_status(database.get_db(), [submission_id], status, g.user)
    flash(f"Marked as {STATUS_LABELS[status]}.", "info")
    return redirect(url_for("admin.detail", submission_id=submission_id))


@bp.post("/s/<int:submission_id>/note")
def save_note(submission_id):
    load_submission(submission_id)
    inbox_queries.set_note(database.get_db(), submission_id, request.form.get("note", "").strip()[:10000])
    flash("Note saved.", "info")
    return redirect(url_for("admin.detail", submission_id=submission_id))


@bp.post("/s/<int:submission_id>/resend")
def resend(submission_id):
    submission = load_submission(submission_id)
    db = database.get_db()
    outbox_id = request.form.get("outbox_id", type=int)
    if not outbox.resend(db, submission_id, time.time(), outbox_id) and outbox_id is None:
        forms = current_app.config["FORM_DEFINITIONS"]
        form = forms.get(submission["form"]) or forms["contactus"]
        outbox.queue_for(db, submission_id, outbox.notifications_for(current_app.config, form), time.time())
    outbox.wake_worker(current_app)
    flash("The notification will be sent again now." if outbox_id else "Every notification will be sent again now.",
          "info")
    return redirect(url_for("admin.detail", submission_id=submission_id))


@bp.post("/deliver-now")
def deliver_now():
    """Send every waiting notification now: after the SMTP password or a webhook was fixed, say."""
    waiting = outbox.send_all_now(database.get_db(), time.time())
    outbox.wake_worker(current_app)
    flash(f"{waiting} waiting notification(s) will be sent now.", "info")
    return redirect(safe_next(request.form.get("back")))


@bp.post("/s/<int:submission_id>/delete")
def delete(submission_id):
    inbox_queries.delete_submissions(database.get_db(), [submission_id])
    flash(f"Submission {submission_id} deleted.", "info")
    return redirect(url_for("admin.inbox"))


@bp.post("/bulk")
def bulk():
    """Apply a status or deletion to the rows ticked in the list."""
    ids = [int(value) for value in request.form.getlist("ids") if value.isdigit()]
    action = request.form.get("action", "")
    back = redirect(safe_next(request.form.get("back")))
    if not ids:
        flash("Select at least one submission first.", "error")
        return back
    db = database.get_db()
    if action == "delete":
        flash(f"Deleted {inbox_queries.delete_submissions(db, ids)} submission(s).", "info")
    elif action in database.STATUSES:
        flash(f"Marked {inbox_queries.set_status(db, ids, action, g.user)} submission(s) as {STATUS_LABELS[action]}.", "info")
    else:
        abort(400, f"Unknown action {action!r}.")
    return back


# --- Retention ------------------------------------------------------------------------------------------------

def purge_expired(app, db, at_most_every=0):
    """Delete submissions older than RETENTION_DAYS; with at_most_every, skip when this process purged recently."""
    last = app.extensions.get("postbox.last_purge", 0)
    if time.monotonic() - last < at_most_every and last:
        return 0
    app.extensions["postbox.last_purge"] = time.monotonic()
    cutoff = datetime.now(timezone.utc) - timedelta(days=app.config["RETENTION_DAYS"])
    deleted = inbox_queries.purge_received_before(db, cutoff.isoformat(timespec="microseconds"))
    if deleted:
        app.logger.info("retention: deleted %d submission(s) received before %s", deleted, cutoff.isoformat())
    return deleted


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


@click.command("purge")
@with_appcontext
def purge_command():
    """Delete submissions older than POSTBOX_RETENTION_DAYS; cron may run it daily.

    Example: POSTBOX_RETENTION_DAYS=365 flask --app app purge
    """
    app = current_app._get_current_object()
    if not app.config["RETENTION_DAYS"]:
        click.echo("POSTBOX_RETENTION_DAYS is 0 (off): nothing is deleted.")
        return
    db = database.open_db(app.config["DATABASE"])
    try:
        deleted = purge_expired(app, db)
    finally:
        db.close()
    click.echo(f"Deleted {deleted} submission(s) older than {app.config['RETENTION_DAYS']} days.")
