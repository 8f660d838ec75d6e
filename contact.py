"""The public side: the hosted form, the POST endpoints (/contactus and Formspree's /f/<key>), thanks."""
import hashlib
import re
from urllib.parse import urljoin, urlsplit

from flask import (Blueprint, abort, current_app, g, jsonify, redirect, render_template, request, url_for)
from flask_babel import gettext as _
from flask_babel import refresh

import followup
import outbox
import spam
from config import LANGUAGES
from forms import BadRequestBody, ContactForm, is_honeypot_hit, read_body, validate_submission

bp = Blueprint("contact", __name__)

# Other services let the visitor choose recipients or templates; here that would make a spam relay. Ignored.
REFUSED_FIELDS = ("_cc", "_bcc", "_to", "_template", "_autoresponse", "_webhook")
UNSAFE_URL_CHARACTERS = re.compile(r"[\x00-\x20\x7f\\]")


# --- Which form, which language, which origin ---------------------------------------------------

def form_settings(form_key):
    form = current_app.config["FORM_DEFINITIONS"].get(form_key)
    if form is None:
        abort(404, _("There is no form called %(key)s here.", key=form_key))
    return form


def choose_language(form, special=None):
    """The form's own language, else ?lang= or _language, else the browser's preference."""
    for candidate in (request.args.get("lang"), (special or {}).get("_language"), form.language):
        if candidate in LANGUAGES:
            return candidate
    return request.accept_languages.best_match(LANGUAGES) or "en"


def origin_of(url):
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc.lower()}"


def own_origin():
    return origin_of(request.host_url)


def request_origin():
    """The page's origin: the Origin header, else the Referer's; None for a server-side client."""
    origin = request.headers.get("Origin")
    if origin:
        return origin.lower() if origin != "null" else "null"
    return origin_of(request.referrer) if request.referrer else None


def is_allowed_origin(form, origin):
    return origin == own_origin() or origin in form.allowed_origins


def wants_json():
    return request.is_json or request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json"


def with_cors(response, form):
    origin = request.headers.get("Origin", "").lower()
    if origin and origin in form.allowed_origins:
        response.headers["Access-Control-Allow-Origin"] = origin
    response.vary.add("Origin")
    return response


@bp.after_request
def cors_on_every_answer(response):
    """Let allowed sites read every answer of the cross-origin endpoints, errors included (413, 429, 404 too)."""
    if request.endpoint in ("contact.submit", "contact.preflight", "contact.time_trap_token"):
        form = current_app.config["FORM_DEFINITIONS"].get((request.view_args or {}).get("form_key"))
        if form is not None:
            with_cors(response, form)
    return response


# --- Pages ---------------------------------------------------------------------------------

@bp.get("/")
def index():
    return redirect(url_for("contact.show_form", form_key="contactus"))


# Flask's automatic OPTIONS answer would otherwise shadow the CORS preflight view below.
@bp.get("/contactus", defaults={"form_key": "contactus"}, provide_automatic_options=False)
@bp.get("/f/<form_key>", provide_automatic_options=False)
def show_form(form_key):
    form = form_settings(form_key)
    g.language = choose_language(form)
    return render_form(form, ContactForm(formdata=None), errors=[], status=200)


def render_form(form, contact_form, errors, status):
    embed = request.args.get("embed") == "1"
    g.embed_form = form if embed else None
    # CSP form-action also covers the redirect after the POST: _next may lead to an allowed site.
    g.form_action_origins = form.allowed_origins
    page = render_template(
        "form.html", form=form, contact_form=contact_form, errors=errors, embed=embed,
        token=spam.form_token(form.key), action=url_for("contact.submit", form_key=form.key, embed=1 if embed else None,
                                                        lang=request.args.get("lang")),
    )
    return page, status


@bp.get("/contactus/token", defaults={"form_key": "contactus"})
@bp.get("/f/<form_key>/token")
def time_trap_token(form_key):
    """Give postbox.js the time-trap token the hosted form carries, for a form on the owner's own page."""
    form = form_settings(form_key)
    response = jsonify(token=spam.form_token(form.key))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/contactus/thanks", defaults={"form_key": "contactus"})
@bp.get("/f/<form_key>/thanks")
def thanks(form_key):
    form = form_settings(form_key)
    g.language = choose_language(form)
    g.embed_form = form if request.args.get("embed") == "1" else None
    return render_template("thanks.html", form=form, embed=g.embed_form is not None)


# --- Submitting ------------------------------------------------------------------------------

@bp.route("/contactus", methods=["OPTIONS"], defaults={"form_key": "contactus"})
@bp.route("/f/<form_key>", methods=["OPTIONS"])
def preflight(form_key):
    """Answer a CORS preflight, for allowed origins only."""
    form = form_settings(form_key)
    origin = request.headers.get("Origin", "").lower()
    if origin not in form.allowed_origins:
        return jsonify(ok=False, error=_("This site may not send to this form.")), 403
    if request.headers.get("Access-Control-Request-Method", "POST") != "POST":
        # Browsers never show a preflight's body: the status is the whole answer.
        return current_app.response_class(status=405, headers={"Allow": "POST, OPTIONS"})
    response = current_app.response_class(status=204)
    response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "Content-Type, Accept, Accept-Language, X-Requested-With, Idempotency-Key"
    response.headers["Access-Control-Max-Age"] = "600"
    return response


@bp.post("/contactus", defaults={"form_key": "contactus"}, provide_automatic_options=False)
@bp.post("/f/<form_key>", provide_automatic_options=False)
def submit(form_key):
    """Take a submission. Limited per address and form by POSTBOX_RATE_LIMIT, wired in app.create_app."""
    form = form_settings(form_key)
    g.language = choose_language(form)
    # Error pages answering an embedded form must still show inside the owner's iframe.
    g.embed_form = form if request.args.get("embed") == "1" else None
    origin = request_origin()
    if origin is not None and not is_allowed_origin(form, origin):
        return refuse(403, _("This form does not accept messages from %(origin)s. Its owner can add that "
                                   "site to the form's allowed origins.", origin=origin), "FORBIDDEN_ORIGIN")
    try:
        pairs = read_body(request)
    except BadRequestBody as error:
        return refuse(error.status, error.message, error.code)
    if not pairs:
        return refuse(400, _("The form is empty."), "EMPTY")
    # _language must be known before validating: the messages are translated as they are made.
    language = choose_language(form, {"_language": next((v for k, v in pairs if k == "_language"), None)})
    if language != g.language:
        g.language = language
        refresh()  # flask-babel cached the locale the first time _() ran in this request
    submission, contact_form, errors = validate_submission(pairs, form.required)
    if errors and is_honeypot_hit(pairs):
        # Field errors would tell the bot what to fix: it gets the visitor's success, and nothing is stored.
        current_app.logger.info("form %s: honeypot filled in an invalid post; answered as a success", form.key)
        return accepted(form, submission, None)
    if errors:
        return invalid(form, contact_form, errors)
    refused = sorted({name for name, _value in pairs if name in REFUSED_FIELDS})
    if refused:
        current_app.logger.info("form %s: ignored visitor-supplied %s (recipients come from the form's settings)",
                                form.key, ", ".join(refused))
    submission_id = store(form, submission)
    return accepted(form, submission, submission_id)


def store(form, submission, columns=None, duplicate_rule=True):
    """Save the submission with one notification per channel target queued, then wake the delivery worker.

    columns: what a built-in form stores besides the fields (a callback's day and slot). duplicate_rule: the
    same message from the same address minutes ago is spam; off for a form that asks for no address.
    Returns the submission's id: the first one's, when this is a repeat of a named submission.
    Raises database.StorageUnavailable when it cannot be stored within POSTBOX_STORE_TIMEOUT.
    """
    reason = spam.spam_reason(form.key, submission)
    record = dict(
        submission.fields, form=form.key, extra=submission.extra,
        reply_to=submission.special.get("_replyto") or "", mail_subject=submission.special.get("_subject") or "",
        page=page_url(), ip=request.remote_addr or "", user_agent=request.user_agent.string[:300],
        language=g.language, status="spam" if reason else "new", spam_reason=reason, **(columns or {}),
    )
    notifications = () if reason else [
        *outbox.notifications_for(current_app.config, form),
        *followup.autoreply_notifications(current_app.config, form, submission.fields["email"])]
    saved = current_app.extensions["postbox.writer"].save(
        record, notifications, key=idempotency_key(form, submission),
        duplicate_since=spam.duplicate_since() if duplicate_rule else None)
    if saved.repeated:
        current_app.logger.info("form %s: a repeat of submission %s, answered as the first", form.key, saved.id)
    elif saved.status == "spam":
        current_app.logger.info("submission %s to form %s kept as spam: %s", saved.id, form.key, saved.spam_reason)
    else:
        outbox.wake_worker(current_app)
    return saved.id


def idempotency_key(form, submission):
    """The name the client gave this submission: an Idempotency-Key header, else the hosted form's _token.

    A token is made each time the form is served, so a double-click or a re-sent page repeats it. Hashed:
    the key is the client's text, of any length.
    """
    name = request.headers.get("Idempotency-Key", "").strip() or submission.special.get("_token", "").strip()
    if not name:
        return None
    return form.key, hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()


def page_url():
    """The page the form was on: the Referer, when it is a web address."""
    referrer = request.referrer or ""
    return referrer[:2000] if origin_of(referrer) else ""


def next_url(form, submission):
    """Where the browser goes after a success: _next or the form's redirect, if allowed; else our thanks page."""
    for candidate in (submission.special.get("_next"), form.redirect):
        target = safe_redirect(form, candidate)
        if target:
            return target
    return thanks_url(form, embed=request.args.get("embed") == "1")


# Thanks addresses already built, per app: the host is the client's to choose (unless POSTBOX_TRUSTED_HOSTS is
# set), so the store is emptied when it reaches this size.
THANKS_URLS_KEPT = 256


@bp.record_once
def keep_thanks_urls(state):
    state.app.extensions["postbox.thanks_urls"] = {}


def thanks_url(form, embed):
    """Our thanks page's absolute address, built once per scheme, host, root path (what ProxyFix made of them),
    form, language and embedding: url_for(_external=True) costs ~25 µs of CPU a request."""
    urls = current_app.extensions["postbox.thanks_urls"]
    key = (request.scheme, request.host, request.root_path, form.key, g.language, embed)
    url = urls.get(key)
    if url is None:
        if len(urls) >= THANKS_URLS_KEPT:
            urls.clear()
        url = urls[key] = url_for("contact.thanks", form_key=form.key, lang=g.language,
                                  embed=1 if embed else None, _external=True)
    return url


def safe_redirect(form, candidate):
    """Resolve a redirect target against the referring page; only allowed origins pass: no open redirect."""
    candidate = (candidate or "").strip()
    # Browsers drop tabs and newlines and read a backslash as a slash: such a URL is not what Python sees.
    if not candidate or UNSAFE_URL_CHARACTERS.search(candidate) or len(candidate) > 2000:
        return None
    referrer_origin = origin_of(request.referrer)
    if referrer_origin and is_allowed_origin(form, referrer_origin):
        base = request.referrer
    elif origin_of(candidate):
        base = request.host_url
    else:
        return None  # a path with nothing trustworthy to resolve it against
    target = urljoin(base, candidate)
    parts = urlsplit(target)
    if parts.username is not None or parts.password is not None:
        return None
    origin = origin_of(target)
    return target if origin and is_allowed_origin(form, origin) else None


def accepted(form, submission, submission_id):
    target = next_url(form, submission)
    if wants_json():
        return jsonify(ok=True, id=submission_id, next=target,
                       message=_("Your message has been received. We will get back to you soon."))
    return redirect(target, code=303)


def invalid(form, contact_form, errors):
    """Say what to fix: as JSON, on our hosted form, or, for the owner's own form, on a page leading back to it."""
    if wants_json():
        return jsonify(ok=False, error=_("Please correct the highlighted fields."), errors=errors), 400
    if posted_from_another_site():
        # Our hosted form in place of the owner's would drop what the theme's form holds (_replyto, _subject…).
        problems = [(field_label(contact_form, error["field"]), error["message"]) for error in errors]
        return render_template("error.html", status=400, message=_("Please check:"), problems=problems,
                               back=back_link()), 400
    return render_form(form, contact_form, errors, status=400)


def posted_from_another_site():
    origin = request_origin()
    return origin is not None and origin != own_origin()


def field_label(contact_form, name):
    if name == "_replyto":
        name = "email"
    return str(contact_form[name].label.text) if name in contact_form else name


def back_link():
    """The page the visitor came from, when it is another site's web page: the way back to what they typed."""
    referrer = request.referrer or ""
    origin = origin_of(referrer)
    return referrer[:2000] if origin and origin != own_origin() else None


def refuse(status, message, code):
    """Answer a request that cannot be a submission at all, as JSON or as a page."""
    if wants_json():
        return jsonify(ok=False, error=message, errors=[{"field": None, "code": code, "message": message}]), status
    return render_template("error.html", status=status, message=message, back=back_link()), status
