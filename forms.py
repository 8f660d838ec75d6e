"""What a valid submission is: reading the body, the contact form's fields, extra and special fields."""
import json
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from urllib.parse import parse_qsl

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
import phonenumbers
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData
from wtforms import EmailField, SelectField, StringField, TelField, TextAreaField
from wtforms.validators import StopValidation, ValidationError

from config import REQUIRED_FIELDS

# Formspree's special fields, FormSubmit's _honey, and our own _language and _token (the time trap).
SPECIAL_FIELDS = ("_replyto", "_subject", "_next", "_gotcha", "_honey", "_language", "_token")
MAX_EXTRA_FIELDS = 50
MAX_EXTRA_LENGTH = 5000
MAX_FIELD_NAME_LENGTH = 100
# A chunked body over the limit is read up to this many times the limit before the 413 (see _raw_body).
DRAIN_FACTOR = 16


class BadRequestBody(Exception):
    """The body cannot be read as a submission at all: wrong type, malformed, or too big."""

    def __init__(self, status, message, code="INVALID_BODY"):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


class Problem(str):
    """A validation message that also carries Formspree's error code."""

    def __new__(cls, message, code):
        problem = super().__new__(cls, message)
        problem.code = code
        return problem


# --- Reading the body ------------------------------------------------------------------------

# Text that no encoding can carry honestly: UTF-16 halves on their own (a JSON "\ud800" escape) and Unicode's
# non-characters (U+FDD0..U+FDEF, and the last two code points of every plane).
NOT_TEXT = re.compile("[\ud800-\udfff\ufdd0-\ufdef%s]" % "".join(
    chr(plane * 0x10000 + 0xFFFE) + chr(plane * 0x10000 + 0xFFFF) for plane in range(17)))


def read_body(request):
    """Return the body's fields as (name, text) pairs in the order sent, or raise BadRequestBody."""
    mimetype = request.mimetype
    if mimetype == "application/json":
        pairs = _json_pairs(_raw_body(request))
    elif mimetype == "application/x-www-form-urlencoded":
        pairs = _urlencoded_pairs(_raw_body(request))
    elif mimetype == "multipart/form-data":
        pairs = _multipart_pairs(_raw_body(request), request.mimetype_params.get("boundary", ""))
    elif not mimetype and not request.content_length:
        pairs = []
    else:
        raise BadRequestBody(415, _("Send the form as application/x-www-form-urlencoded, "
                                    "multipart/form-data or application/json."), "UNSUPPORTED_MEDIA_TYPE")
    if len(pairs) > current_app.config["MAX_FORM_PARTS"]:
        raise BadRequestBody(413, _("The form has too many fields."), "TOO_MANY_FIELDS")
    for name, value in pairs:
        if "\x00" in name or "\x00" in value:
            raise BadRequestBody(400, _("The form contains a NUL character, which is not text."), "INVALID_TEXT")
        if NOT_TEXT.search(name) or NOT_TEXT.search(value):
            raise BadRequestBody(400, _("The form contains characters that are not valid text."), "INVALID_TEXT")
    return pairs


def _raw_body(request):
    """The whole body, or 413 when it is over the limit: with a Content-Length, and chunked too.

    Werkzeug reads a chunked body only up to the limit and hands that over as if it were whole: a lead would
    be stored cut short. Here one byte more than the limit is read, to tell.
    """
    try:
        if request.content_length is not None or not request.environ.get("wsgi.input_terminated"):
            return request.get_data(cache=True)
        limit = request.max_content_length
        stream = request.environ["wsgi.input"]
        chunks, size = [], 0
        while size <= limit and (chunk := stream.read(min(65536, limit + 1 - size))):
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            # Read on a little, so the client is still listening when the 413 comes: closing a connection with
            # unread data resets it, and the answer is lost.
            while size <= DRAIN_FACTOR * limit and stream.read(65536):
                size += 65536
            raise RequestEntityTooLarge()
    except HTTPException:
        raise
    except Exception:  # the server's stream says why (a bad chunk size, a cut connection); its types are its own
        raise BadRequestBody(400, _("The request body could not be read."), "INVALID_BODY") from None
    return b"".join(chunks)


def _json_pairs(raw):
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequestBody(400, _("The request body is not valid UTF-8.")) from None
    except (ValueError, RecursionError):
        raise BadRequestBody(400, _("The request body is not valid JSON.")) from None
    if not isinstance(document, dict):
        raise BadRequestBody(400, _("The JSON body must be an object of field names and values."))
    pairs = []
    for name, value in document.items():
        if value is None:
            value = ""
        elif isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (int, float)):
            value = json.dumps(value)
        elif not isinstance(value, str):
            raise BadRequestBody(400, _("The field %(name)s must be text, not a list or an object.",
                                        name=NOT_TEXT.sub("\ufffd", name[:MAX_FIELD_NAME_LENGTH])))
        pairs.append((name, value))
    return pairs


def _urlencoded_pairs(raw):
    try:
        return parse_qsl(raw.decode("utf-8"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise BadRequestBody(400, _("The request body is not valid UTF-8.")) from None


def _multipart_pairs(raw, boundary):
    """Decode multipart fields strictly as UTF-8: Werkzeug's form parser would turn bad bytes into U+FFFD,
    which a visitor may also type. A part with no name is no field, as in a browser's own form data."""
    decoder = MultipartDecoder(boundary.encode("latin-1", "replace"),
                               max_form_memory_size=current_app.config["MAX_CONTENT_LENGTH"],
                               max_parts=current_app.config["MAX_FORM_PARTS"])
    pairs, part, chunks = [], None, []
    try:
        decoder.receive_data(raw)
        decoder.receive_data(None)
        while not isinstance(event := decoder.next_event(), (Epilogue, NeedData)):
            if isinstance(event, File) and event.filename:
                raise BadRequestBody(400, _("This form does not accept file uploads."), "NO_FILE_UPLOADS")
            if isinstance(event, (Field, File)):
                part, chunks = event, []
            elif isinstance(event, Data):
                chunks.append(event.data)
                if not event.more_data and isinstance(part, Field) and part.name:
                    pairs.append((part.name, b"".join(chunks).decode("utf-8")))
    except UnicodeDecodeError:
        raise BadRequestBody(400, _("The request body is not valid UTF-8.")) from None
    except ValueError:
        return []  # not multipart at all: answered as an empty form
    return pairs


# --- The contact form -------------------------------------------------------------------------

def required(form, field):
    """Require the field when the form's settings list it; otherwise an empty field ends its checks."""
    if field.name not in form.required_fields:
        if not (field.data or "").strip():
            raise StopValidation()
        return
    if not field.raw_data:
        raise StopValidation(Problem(_("This field is required."), "REQUIRED_FIELD_MISSING"))
    if not (field.data or "").strip():
        raise StopValidation(Problem(_("Please fill in this field."), "REQUIRED_FIELD_EMPTY"))


def max_length(limit):
    def validator(form, field):
        if len(field.data or "") > limit:
            raise StopValidation(Problem(_("Please keep this under %(limit)d characters (now %(length)d).",
                                           limit=limit, length=len(field.data)), "TOO_LONG"))
    return validator


def no_control_characters(form, field):
    if re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", field.data or ""):
        raise ValidationError(Problem(_("This field contains control characters."), "TYPE_TEXT"))


def email_address(form, field):
    if field.data:
        field.data = checked_email(field.data)


def checked_email(value):
    """Return the normalised address, or raise ValidationError with a message the visitor can act on."""
    try:
        result = validate_email(value.strip(), check_deliverability=current_app.config["CHECK_DELIVERABILITY"],
                                allow_smtputf8=False)
    except EmailNotValidError:
        # email-validator explains in English only, and in terms of RFCs: our own sentence, in the page's language.
        raise ValidationError(Problem(_("Please enter a valid email address."),
                                      "TYPE_EMAIL")) from None
    address = result.ascii_email or result.normalized
    if "=?" in address:
        # Valid by RFC 5322, but an RFC 2047 encoded word to many mail readers: it could decode into a header.
        raise ValidationError(Problem(_("Please enter a valid email address."), "TYPE_EMAIL"))
    return address


def phone_number(form, field):
    # Lenient on purpose: "+7 (999) 123-45-67, after 6 pm" is a lead, not an error.
    if field.data and len(re.findall(r"\d", field.data)) < 5:
        raise ValidationError(Problem(_("Please enter a phone number we can call."), "TYPE_PHONE"))


def strip(value):
    return value.strip() if isinstance(value, str) else value


class ContactForm(FlaskForm):
    """The feedback form of the source article; CSRF is off because a public form has no session to forge."""

    class Meta:
        csrf = False

    required_fields = REQUIRED_FIELDS  # the form's settings may ask for fewer

    name = StringField(_l("Your name"), [required, max_length(100), no_control_characters], filters=[strip])
    email = EmailField(_l("Your email"), [required, max_length(254), email_address], filters=[strip])
    phone = TelField(_l("Phone"), [required, max_length(50), no_control_characters, phone_number], filters=[strip])
    subject = StringField(_l("Subject"), [required, max_length(200), no_control_characters], filters=[strip])
    message = TextAreaField(_l("Message"), [required, max_length(5000)])


FIELD_NAMES = ("name", "email", "phone", "subject", "message")


# --- The callback request ----------------------------------------------------------------------

CALLBACK_DAYS_AHEAD = 60


def callable_phone(form, field):
    """Read the number as the visitor typed it, in the owner's region unless it starts with +; keep E.164."""
    region = current_app.config["PHONE_REGION"] or None
    try:
        number = phonenumbers.parse(field.data or "", region)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        message = _("Please enter a phone number we can call.") if region else \
            _("Please enter a phone number we can call, with its country code (such as +39).")
        raise StopValidation(Problem(message, "TYPE_PHONE"))
    field.data = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def day_ahead(form, field):
    """A day (YYYY-MM-DD, as a date input sends it) from today in the owner's zone up to CALLBACK_DAYS_AHEAD on."""
    try:
        day = date.fromisoformat(field.data or "")
    except ValueError:
        raise StopValidation(Problem(_("Please choose a day."), "TYPE_DATE")) from None
    today = form.today
    if not today <= day <= today + timedelta(days=CALLBACK_DAYS_AHEAD):
        raise StopValidation(Problem(_("Please choose a day from today to %(days)d days ahead.",
                                       days=CALLBACK_DAYS_AHEAD), "TYPE_DATE"))
    field.data = day.isoformat()


def offered_slot(form, field):
    if field.data not in form.slots:
        raise StopValidation(Problem(_("Please choose one of the times offered."), "TYPE_CHOICE"))


class CallbackForm(FlaskForm):
    """The callback request: who to call, the number, and when; the visitor's `today` is the owner's."""

    class Meta:
        csrf = False

    required_fields = ("name", "phone")
    name = StringField(_l("Your name"), [required, max_length(100), no_control_characters], filters=[strip])
    phone = TelField(_l("Your phone number"), [required, max_length(50), callable_phone], filters=[strip])
    day = StringField(_l("Which day?"), [day_ahead], filters=[strip])
    slot = SelectField(_l("At what time?"), [offered_slot], validate_choice=False)
    note = TextAreaField(_l("Anything we should know before calling?"), [max_length(2000), no_control_characters])

    def __init__(self, *args, today=None, slots=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.today = today
        self.slots = tuple(slots)
        self.slot.choices = [(slot, slot.replace("-", "–")) for slot in slots]


def validate_callback(pairs, today, slots):
    """Validate a callback request's pairs; return (bound CallbackForm, special fields, errors)."""
    names = ("name", "phone", "day", "slot", "note")
    form = CallbackForm(formdata=MultiDict([(n, v) for n, v in pairs if n in names]), today=today, slots=slots)
    form.validate()
    errors = [{"field": name, "code": getattr(message, "code", "INVALID"), "message": str(message)}
              for name, messages in form.errors.items() for message in messages]
    return form, _special_fields(pairs, errors), errors


@dataclass
class Submission:
    """A validated submission: the form's fields, the extra ones, and the special (_) ones."""

    fields: dict
    extra: dict = field(default_factory=dict)
    special: dict = field(default_factory=dict)


def validate_submission(pairs, required_fields=REQUIRED_FIELDS):
    """Validate body pairs; return (Submission, bound ContactForm, errors as [{field, code, message}])."""
    formdata = MultiDict([(name, value) for name, value in with_reply_to_as_email(pairs) if name in FIELD_NAMES])
    form = ContactForm(formdata=formdata)
    form.required_fields = required_fields
    form.validate()
    errors = [
        {"field": name, "code": getattr(message, "code", "INVALID"), "message": str(message)}
        for name, messages in form.errors.items() for message in messages
    ]
    special = _special_fields(pairs, errors)
    extra = _extra_fields(pairs, errors)
    submission = Submission(fields={name: form[name].data or "" for name in FIELD_NAMES}, extra=extra,
                            special=special)
    return submission, form, errors


def with_reply_to_as_email(pairs):
    """Formspree themes name the visitor's address _replyto and often send no email field: use it as the email."""
    has_email = any(name == "email" and value.strip() for name, value in pairs)
    reply_to = next((value for name, value in pairs if name == "_replyto" and value.strip()), None)
    if has_email or reply_to is None:
        return pairs
    return [(name, value) for name, value in pairs if name != "email"] + [("email", reply_to)]


def is_honeypot_hit(pairs):
    """A bot filled in Formspree's _gotcha or FormSubmit's _honey, which people never see (spam.py's rule too)."""
    return any(name in ("_gotcha", "_honey") and value for name, value in pairs)


def _special_fields(pairs, errors):
    special = {}
    for name, value in pairs:
        if name in SPECIAL_FIELDS and name not in special:
            special[name] = value
    if special.get("_replyto", "").strip() and not any(error["field"] == "email" for error in errors):
        try:
            special["_replyto"] = checked_email(special["_replyto"])
        except ValidationError as error:
            problem = error.args[0]
            errors.append({"field": "_replyto", "code": problem.code, "message": str(problem)})
    special["_subject"] = special.get("_subject", "")[:200]
    return special


def _extra_fields(pairs, errors):
    extra = {}
    for name, value in pairs:
        if name.startswith("_") or name in FIELD_NAMES:
            continue
        label = name.strip()[:MAX_FIELD_NAME_LENGTH]
        if not label:
            continue
        if label in extra:
            # Checkboxes send one name several times: keep every value.
            extra[label] = f"{extra[label]}, {value}"
        else:
            extra[label] = value
    if len(extra) > MAX_EXTRA_FIELDS:
        errors.append({"field": None, "code": "TOO_MANY_FIELDS",
                       "message": _("The form has more than %(limit)d extra fields.", limit=MAX_EXTRA_FIELDS)})
    for label, value in extra.items():
        if len(value) > MAX_EXTRA_LENGTH:
            errors.append({"field": label, "code": "TOO_LONG",
                           "message": _("Please keep this under %(limit)d characters (now %(length)d).",
                                        limit=MAX_EXTRA_LENGTH, length=len(value))})
    return extra
