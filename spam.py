"""Spam signals: a submission that trips one is kept in the spam folder and never emailed."""
import re
import time
from datetime import datetime, timedelta, timezone

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

import submissions

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


def spam_reason(db, form_key, submission):
    """Return why the submission looks like spam, or an empty string."""
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
    if config["SPAM_DUPLICATE_MINUTES"]:
        since = datetime.now(timezone.utc) - timedelta(minutes=config["SPAM_DUPLICATE_MINUTES"])
        if submissions.recent_duplicate(db, form_key, submission.fields["email"], submission.fields["message"],
                                    since.isoformat(timespec="microseconds")):
            return "same message from the same address minutes ago"
    return ""
