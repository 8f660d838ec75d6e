"""Secrets kept out of log lines: the tokens inside messenger and webhook URLs never reach a handler."""
import logging
import re

# Loggers of the libraries that can quote a URL they were given: Apprise, and urllib3 below requests.
LIBRARY_LOGGERS = ("apprise", "urllib3.connectionpool")
_secrets = set()


def secret_pieces(url):
    """The parts of a URL long enough to be a secret: tokens, passwords, chat ids, query values."""
    return {piece for piece in re.split(r"[/:@?&=#,]+", url) if len(piece) >= 6 and "." not in piece}


def scrub(text, secrets=None):
    """Replace every known secret in text with an ellipsis."""
    for piece in sorted(_secrets if secrets is None else secrets, key=len, reverse=True):
        text = text.replace(piece, "…")
    return text


class SecretFilter(logging.Filter):
    """Rewrite a library's log record with the secrets taken out, before any handler sees it."""

    def filter(self, record):
        if _secrets:
            record.msg, record.args = scrub(record.getMessage()), None
        return True


def protect(urls):
    """Remember the secrets in these URLs, and filter the libraries' loggers that could repeat them."""
    for url in urls:
        _secrets.update(secret_pieces(url))
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, SecretFilter) for existing in logger.filters):
            logger.addFilter(SecretFilter())
