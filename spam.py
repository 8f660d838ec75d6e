"""Spam signals: a submission that trips one is kept in the spam folder and never emailed."""
import re
import time
from datetime import datetime, timedelta, timezone

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

LINK = re.compile(r"https?://|www\.", re.IGNORECASE)


def _serializer():
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="postbox-form-served")


def form_token(form_key):
    """Sign the moment a form is served, for the time trap."""
    return _serializer().dumps({"form": form_key})


def _token_problem(token, form_key):
    """Say why a time-trap token is suspicious, or return None when it is fine."""
    config = current_app.config
    try:
        payload, signed_at = _serializer().loads(token, max_age=config["SPAM_MAX_TOKEN_AGE"], return_timestamp=True)
    except SignatureExpired:
        return "form token too old"
    except BadSignature:
        return "form token forged"
    if not isinstance(payload, dict) or payload.get("form") != form_key:
        return "form token for another form"
    if time.time() - signed_at.timestamp() < config["SPAM_MIN_SECONDS"]:
        return "sent too fast after the form was served"
    return None


def spam_reason(form_key, submission):
    """Return why the submission looks like spam, or an empty string.

    The duplicate rule is not here: it must read in the transaction that writes (see duplicate_since).
    """
    config = current_app.config
    special = submission.special
    if special.get("_gotcha") or special.get("_honey"):
        return "honeypot field filled in"
    if "_token" in special:
        # Plain cross-origin forms have no token and are not penalised for that.
        problem = _token_problem(special["_token"], form_key)
        if problem:
            return problem
    text = " ".join([submission.fields["message"], submission.fields["subject"], *submission.extra.values()])
    if len(LINK.findall(text)) > config["SPAM_MAX_LINKS"]:
        return f"more than {config['SPAM_MAX_LINKS']} links"
    return ""


def duplicate_since():
    """The time from which the same message from the same address is a duplicate, or None when the rule is off."""
    minutes = current_app.config["SPAM_DUPLICATE_MINUTES"]
    if not minutes:
        return None
    return (datetime.now(timezone.utc) - timedelta(minutes=minutes)).isoformat(timespec="microseconds")
