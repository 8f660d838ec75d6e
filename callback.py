"""The built-in callback form: the visitor leaves a number and a convenient time, the owner calls back then.

Served and embedded like the contact form (/callback, ?embed=1), under the same origin and CSP rules; a
request is a submission of the form "callback" with its day, slot and the moment that slot begins.
"""
from datetime import date, datetime, time, timezone
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, g, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import refresh

import contact
import spam
from forms import BadRequestBody, CallbackForm, Submission, read_body, validate_callback

bp = Blueprint("callback", __name__)
FORM_KEY = "callback"


def owner_today():
    return datetime.now(ZoneInfo(current_app.config["TIMEZONE"])).date()


def slot_start(day, slot):
    """The UTC ISO moment a slot ("09:00-11:00") of a day begins, in the owner's time zone."""
    zone = ZoneInfo(current_app.config["TIMEZONE"])
    start = datetime.combine(date.fromisoformat(day), time.fromisoformat(slot[:5]), tzinfo=zone)
    return start.astimezone(timezone.utc).isoformat(timespec="microseconds")


# /f/callback too: a fixed rule outranks contact's /f/<form_key>, which would show the contact form here.
@bp.get("/callback", provide_automatic_options=False)
@bp.get("/f/callback", provide_automatic_options=False)
def show_form():
    form = contact.form_settings(FORM_KEY)
    g.language = contact.choose_language(form)
    callback_form = CallbackForm(formdata=None, today=owner_today(), slots=current_app.config["CALLBACK_SLOTS"])
    return render_callback(form, callback_form, errors=[], status=200)


def render_callback(form, callback_form, errors, status):
    embed = request.args.get("embed") == "1"
    g.embed_form = form if embed else None
    g.form_action_origins = form.allowed_origins
    action = url_for("callback.submit", embed=1 if embed else None, lang=request.args.get("lang"))
    page = render_template("callback.html", form=form, callback_form=callback_form, errors=errors, embed=embed,
                           token=spam.form_token(form.key), action=action, today=owner_today().isoformat())
    return page, status


@bp.after_request
def cors_on_every_answer(response):
    if request.endpoint == "callback.submit":
        contact.with_cors(response, contact.form_settings(FORM_KEY))
    return response


@bp.post("/callback", provide_automatic_options=False)
@bp.post("/f/callback", provide_automatic_options=False)
def submit():
    """Take a callback request: the contact form's origin rules, body reading and answers, its own fields.

    Limited per address by POSTBOX_RATE_LIMIT, like the contact form: wired in app.create_app.
    """
    form = contact.form_settings(FORM_KEY)
    g.language = contact.choose_language(form)
    g.embed_form = form if request.args.get("embed") == "1" else None
    origin = contact.request_origin()
    if origin is not None and not contact.is_allowed_origin(form, origin):
        return contact.refuse(403, _("This form does not accept messages from %(origin)s. Its owner can add that "
                                     "site to the form's allowed origins.", origin=origin), "FORBIDDEN_ORIGIN")
    try:
        pairs = read_body(request)
    except BadRequestBody as error:
        return contact.refuse(error.status, error.message, error.code)
    if not pairs:
        return contact.refuse(400, _("The form is empty."), "EMPTY")
    language = contact.choose_language(form, {"_language": next((v for k, v in pairs if k == "_language"), None)})
    if language != g.language:
        g.language = language
        refresh()
    callback_form, special, errors = validate_callback(pairs, owner_today(), current_app.config["CALLBACK_SLOTS"])
    if errors:
        if contact.wants_json():
            return contact.invalid(form, callback_form, errors)
        return render_callback(form, callback_form, errors, status=400)
    submission = Submission(fields={"name": callback_form.name.data, "email": "", "phone": callback_form.phone.data,
                                    "subject": "", "message": (callback_form.note.data or "").strip()},
                            special=special)
    submission_id = store(form, submission, callback_form.day.data, callback_form.slot.data)
    return contact.accepted(form, submission, submission_id)


def store(form, submission, day, slot):
    """Save the request with its notifications queued (none for spam), then wake the delivery worker."""
    # The duplicate rule looks for the same message from the same email address; a callback has none.
    return contact.store(form, submission, duplicate_rule=False, columns={
        "callback_day": day, "callback_slot": slot, "callback_at": slot_start(day, slot)})
