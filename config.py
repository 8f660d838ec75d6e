"""Read and check Postbox's settings: POSTBOX_* environment variables and the forms file."""
import dataclasses
import ipaddress
import os
import re
import secrets
import tomllib
import zoneinfo
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import apprise
import phonenumbers
from babel import Locale
from email_validator import EmailNotValidError, validate_email
from standardwebhooks import Webhook

import business_hours
import database
import redaction

LANGUAGES = ("en", "ru", "it", "hy", "hi")
# Parsed once: Locale.parse looks on disk each time it is given a string.
LOCALES = {language: Locale.parse(language) for language in LANGUAGES}
OPTIONAL_FIELDS = ("phone", "subject")
FORM_FIELDS = ("name", "email", "phone", "subject", "message")
# The article's form needs a name, an address to answer and a message; markup written for Formspree may send none.
REQUIRED_FIELDS = ("name", "email", "message")
SMTP_SECURITY = ("starttls", "ssl", "none")
# What EHLO can name (RFC 5321 4.1.1.1): printable ASCII, one word; smtplib sends commands in ASCII.
EHLO_NAME = re.compile(r"[!-~]+")
DELIVERY_MODES = ("process", "thread", "external")
# Where Flask-Limiter counts: this process's memory, or a Redis that every process and node shares.
RATELIMIT_STORAGES = ("memory", "redis", "rediss", "redis+unix")

DEFAULTS = {
    "DATABASE": None,  # instance/postbox.sqlite3
    "SECRET_KEY": None,  # generated once into instance/secret_key
    "OWNER_EMAIL": "",
    "MAIL_FROM": "",
    "SMTP_HOST": "",  # empty: messages are written as .eml files under MAIL_DIR
    "SMTP_PORT": None,  # 587 for starttls, 465 for ssl, 25 for none
    "SMTP_USERNAME": "",
    "SMTP_PASSWORD": "",
    "SMTP_SECURITY": "starttls",
    "SMTP_TIMEOUT": 15,
    "SMTP_DATA_TIMEOUT": 600,  # RFC 5321's wait for the reply to the end of the data
    "SMTP_HELO": "",  # empty: the domain of MAIL_FROM
    "MAIL_DIR": None,  # instance/mail
    "RETRY_FIRST_SECONDS": 10,
    "RETRY_MAX_SECONDS": 3600,
    "GIVE_UP_SECONDS": 3 * 24 * 3600,
    "LEASE_SECONDS": 900,
    "POLL_SECONDS": 1,
    "BATCH_SIZE": 50,
    "ACCESS_LOG": True,  # gunicorn's line per request (read by gunicorn.conf.py)
    "DELIVERY": "process",  # process: beside the web process; thread: in each web process; external: none
    "WEBHOOKS": "",  # URLs every form posts its submissions to, unless its forms-file entry says otherwise
    "WEBHOOK_SECRET": "",  # whsec_…, signs every webhook (Standard Webhooks)
    "WEBHOOK_TIMEOUT": 15,
    "WEBHOOK_ALLOW_PRIVATE": False,  # let webhooks reach loopback, private and link-local addresses
    "NOTIFY": "",  # Apprise URLs (tgram://…, slack://…), separated by spaces or commas
    "NOTIFY_TIMEOUT": 10,
    "PUBLIC_URL": "",  # https://postbox.example: where links in notifications point
    "MAX_CONTENT_LENGTH": 64 * 1024,
    "MAX_FORM_PARTS": 120,
    "ALLOWED_ORIGINS": "",
    "FORMS": "",
    "LANGUAGE": "",  # empty: the visitor's Accept-Language
    "FORM_TITLE": "",  # empty: "Contact us" in the page's language
    "REDIRECT": "",
    "TIMEZONE": "UTC",
    "RATE_LIMIT": "10 per minute;100 per day",
    "LOGIN_RATE_LIMIT": "5 per minute;30 per hour",
    "LOGIN_ACCOUNT_RATE_LIMIT": "10 per minute;60 per hour",
    "RATELIMIT_STORAGE_URI": "memory://",  # redis://host:6379/0 shares the limits between processes and nodes
    "PROXY_HOPS": 0,
    "TRUSTED_HOSTS": "",
    "RETENTION_DAYS": 0,
    "CHECK_DELIVERABILITY": False,
    "SPAM_MIN_SECONDS": 3,
    "SPAM_MAX_TOKEN_AGE": 24 * 3600,
    "SPAM_MAX_LINKS": 3,
    "SPAM_DUPLICATE_MINUTES": 10,
    "SESSION_HOURS": 8,
    "HEALTH_MAX_DELAY_SECONDS": 900,  # a message due, or a channel failing, this long makes /healthz answer 503
    "MAIL_ALARM_SECONDS": 3600,  # no owner email delivered this long while one waits: ERROR in the log, inbox banner
    "METRICS_TOKEN": "",  # /metrics answers a request bearing this token…
    "METRICS_ALLOWED_IPS": "",  # …or coming from these addresses or networks; with neither, /metrics is off
    "STORE_TIMEOUT": 5,  # seconds a visitor waits for the database before hearing "try again in a moment"
    "BUSINESS_HOURS": "Mon-Fri 09:00-18:00",  # in TIMEZONE; empty: every hour counts
    "AUTOREPLY": False,  # the default form answers each visitor once a day (forms file: autoreply = true)
    "REMIND_AFTER": 2,  # working hours a lead may stay new before the owner is reminded; 0: never
    "REMIND_MAX": 3,  # reminders per lead at most, one every REMIND_AFTER working hours
    "CALLBACK_REMIND_MINUTES": 15,  # remind the owner this long before a callback's slot begins; 0: never
    "DIGEST_HOUR": "",  # a local hour (0-23) for the daily digest; empty: no digest
    "CALLBACK_SLOTS": "09:00-11:00, 11:00-13:00, 14:00-16:00, 16:00-18:00",  # what a callback request offers
    "PHONE_REGION": "",  # the region a callback's number without +country is read in (IT, RU, AM, IN…)
}


class ConfigError(ValueError):
    """A setting has a value Postbox cannot run with."""

    def __init__(self, name, problem):
        super().__init__(f"POSTBOX_{name}: {problem}")


@dataclass(frozen=True)
class FormSettings:
    """One contact form: who gets its messages and which sites may embed it."""

    key: str
    title: str
    owners: tuple
    allowed_origins: tuple = ()
    language: str = ""
    redirect: str = ""
    fields: tuple = OPTIONAL_FIELDS
    required: tuple = REQUIRED_FIELDS
    webhooks: tuple = ()
    webhook_secret: str = field(default="", repr=False)
    notify: tuple = field(default=(), repr=False)  # Apprise URLs carry tokens: kept out of reprs and logs
    extra: dict = field(default_factory=dict, compare=False)
    autoreply: bool = False
    autoreply_subject: str = ""  # empty: the default in the visitor's language
    autoreply_text: str = ""


def load(app, test_config=None):
    """Fill app.config from defaults, the environment (or test_config) and the forms file."""
    app.config.from_mapping(DEFAULTS)
    if test_config is None:
        app.config.from_prefixed_env("POSTBOX")
    else:
        app.config.from_mapping(test_config)
    config = app.config
    config["DATABASE"] = str(config["DATABASE"] or os.path.join(app.instance_path, "postbox.sqlite3"))
    config["MAIL_DIR"] = str(config["MAIL_DIR"] or os.path.join(app.instance_path, "mail"))
    config["SECRET_KEY"] = _secret_key(config["SECRET_KEY"], app.instance_path)
    _check_numbers(config)
    _check_mail(config)
    _check_misc(config)
    _check_follow_up(config)
    config["FORM_DEFINITIONS"] = _load_forms(config)


def _secret_key(value, instance_path):
    if value:
        return str(value)
    path = os.path.join(instance_path, "secret_key")
    try:
        with open(path, encoding="ascii") as file:
            return file.read().strip()
    except FileNotFoundError:
        key = secrets.token_hex(32)
        # O_EXCL: two workers starting at once must end up with one key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            with open(path, encoding="ascii") as file:
                return file.read().strip()
        with os.fdopen(fd, "w") as file:
            file.write(key)
        return key


def _number(config, name, kind=int, minimum=0, maximum=None):
    value = config[name]
    try:
        if isinstance(value, bool) or value in (None, ""):
            raise ValueError
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(name, f"must be a number, got {value!r}") from None
    if number < minimum or (maximum is not None and number > maximum):
        limits = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigError(name, f"must be {limits}, got {value!r}")
    config[name] = number


def _flag(config, name):
    value = config[name]
    if isinstance(value, str):
        if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ConfigError(name, f"must be true or false, got {value!r}")
        value = value.lower() in ("1", "true", "yes", "on")
    config[name] = bool(value)


def _check_numbers(config):
    for name in ("MAX_CONTENT_LENGTH", "MAX_FORM_PARTS", "BATCH_SIZE"):
        _number(config, name, minimum=1)
    for name in ("PROXY_HOPS", "RETENTION_DAYS", "SPAM_MAX_LINKS", "SPAM_DUPLICATE_MINUTES"):
        _number(config, name)
    for name in ("SMTP_TIMEOUT", "SMTP_DATA_TIMEOUT", "WEBHOOK_TIMEOUT", "NOTIFY_TIMEOUT", "RETRY_FIRST_SECONDS", "RETRY_MAX_SECONDS", "GIVE_UP_SECONDS",
                 "LEASE_SECONDS", "POLL_SECONDS", "SPAM_MIN_SECONDS", "SPAM_MAX_TOKEN_AGE", "SESSION_HOURS",
                 "HEALTH_MAX_DELAY_SECONDS", "MAIL_ALARM_SECONDS"):
        _number(config, name, kind=float)
    # At 0 every submission would be refused before the writer could even begin.
    _number(config, "STORE_TIMEOUT", kind=float, minimum=0.1, maximum=60)
    if config["RETRY_MAX_SECONDS"] < config["RETRY_FIRST_SECONDS"]:
        raise ConfigError("RETRY_MAX_SECONDS", "must not be smaller than POSTBOX_RETRY_FIRST_SECONDS")
    delivery = str(config["DELIVERY"]).lower()
    if delivery not in DELIVERY_MODES:
        raise ConfigError("DELIVERY", f"must be one of {', '.join(DELIVERY_MODES)}, got {config['DELIVERY']!r}")
    config["DELIVERY"] = delivery
    for name in ("CHECK_DELIVERABILITY", "WEBHOOK_ALLOW_PRIVATE", "AUTOREPLY", "ACCESS_LOG"):
        _flag(config, name)


def email_list(config_name, value):
    """Split a comma-separated list of addresses, checking each; each is kept as SMTP carries it.

    An internationalized domain (info@цветы.рф) becomes its ASCII form (info@xn--b1ag3bn2a.xn--p1ai), which every
    server takes: written as typed, it reached no one, as smtplib sends commands in ASCII. Letters beyond ASCII
    before the @ need a server's SMTPUTF8, which Postbox does not use: such an address is refused here, at start.
    """
    if isinstance(value, (list, tuple)):
        items = [str(item) for item in value]
    else:
        items = str(value or "").split(",")
    addresses = []
    for item in (item.strip() for item in items):
        if not item:
            continue
        try:
            checked = validate_email(item, check_deliverability=False)
        except EmailNotValidError as error:
            raise ConfigError(config_name, f"{item!r} is not an email address ({error})") from None
        if checked.ascii_email is None:
            raise ConfigError(config_name, f"{item!r} has letters beyond ASCII before the @, which mail servers"
                              " take only with SMTPUTF8, and Postbox does not use it; give an address whose"
                              " part before the @ is in Latin letters (its domain may be internationalized)")
        addresses.append(checked.ascii_email)
    return tuple(addresses)


def _check_mail(config):
    config["OWNER_EMAIL"] = email_list("OWNER_EMAIL", config["OWNER_EMAIL"])
    mail_from = email_list("MAIL_FROM", config["MAIL_FROM"])
    if len(mail_from) > 1:
        raise ConfigError("MAIL_FROM", "must be one address")
    if not mail_from:
        # The site's own address: an owner's address is the best guess that passes SPF.
        mail_from = config["OWNER_EMAIL"][:1] or ("postbox@localhost",)
    config["MAIL_FROM"] = mail_from[0]
    security = str(config["SMTP_SECURITY"]).lower()
    if security not in SMTP_SECURITY:
        raise ConfigError("SMTP_SECURITY", f"must be one of {', '.join(SMTP_SECURITY)}, got {security!r}")
    config["SMTP_SECURITY"] = security
    if config["SMTP_PORT"] in (None, ""):
        config["SMTP_PORT"] = {"starttls": 587, "ssl": 465, "none": 25}[security]
    _number(config, "SMTP_PORT", minimum=1, maximum=65535)
    for name in ("SMTP_HOST", "SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_HELO"):
        # from_prefixed_env turns a numeric password into an int.
        config[name] = "" if config[name] is None else str(config[name])
    if config["SMTP_PASSWORD"] and not config["SMTP_USERNAME"]:
        raise ConfigError("SMTP_USERNAME", "is required when POSTBOX_SMTP_PASSWORD is set")
    if config["SMTP_HOST"] and not config["OWNER_EMAIL"]:
        raise ConfigError("OWNER_EMAIL", "is required when POSTBOX_SMTP_HOST is set: who gets the messages?")
    config["SMTP_HELO"] = config["SMTP_HELO"] or config["MAIL_FROM"].rpartition("@")[2] or "localhost"
    if not EHLO_NAME.fullmatch(config["SMTP_HELO"]):
        raise ConfigError("SMTP_HELO", f"{config['SMTP_HELO']!r} is not a host name SMTP can carry: ASCII, no spaces"
                          " (an internationalized name in its xn-- form)")
    if not config["OWNER_EMAIL"]:
        # No SMTP and no owner: a first run; the .eml files under MAIL_DIR show what would be sent.
        config["OWNER_EMAIL"] = ("owner@localhost",)


def _check_misc(config):
    try:
        zoneinfo.ZoneInfo(str(config["TIMEZONE"]))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError("TIMEZONE", f"{config['TIMEZONE']!r} is not an IANA time zone such as Europe/Rome") from None
    for name in ("RATE_LIMIT", "LOGIN_RATE_LIMIT", "LOGIN_ACCOUNT_RATE_LIMIT"):
        rate = str(config[name]).strip()
        config[name] = "" if rate.lower() in ("off", "none", "") else rate
    _check_ratelimit_storage(config)
    hosts = config["TRUSTED_HOSTS"]
    if isinstance(hosts, str):
        hosts = [host.strip() for host in hosts.split(",") if host.strip()]
    config["TRUSTED_HOSTS"] = list(hosts) or None
    language = str(config["LANGUAGE"] or "")
    if language and language not in LANGUAGES:
        raise ConfigError("LANGUAGE", f"must be one of {', '.join(LANGUAGES)}, got {language!r}")
    public_url = str(config["PUBLIC_URL"] or "").rstrip("/")
    if public_url and (urlsplit(public_url).scheme not in ("http", "https") or not urlsplit(public_url).hostname):
        raise ConfigError("PUBLIC_URL", f"must be an address such as https://postbox.example.com, got {public_url!r}")
    config["PUBLIC_URL"] = public_url
    _check_metrics(config)


def _check_ratelimit_storage(config):
    uri = str(config["RATELIMIT_STORAGE_URI"] or "").strip() or "memory://"
    parts = urlsplit(uri)
    # The address may hold Redis's password: an error names its scheme and host only.
    example = "memory:// or a Redis address such as redis://127.0.0.1:6379/0"
    if parts.scheme not in RATELIMIT_STORAGES:
        raise ConfigError("RATELIMIT_STORAGE_URI", f"must be {example}, got a {parts.scheme or 'plain'!r} address")
    try:
        parts.port
    except ValueError:
        raise ConfigError("RATELIMIT_STORAGE_URI",
                          f"has a port that is not a number from 1 to 65535 (host {parts.hostname!r})") from None
    if parts.scheme in ("redis", "rediss") and not (parts.hostname and re.fullmatch(r"/?\d*", parts.path)):
        raise ConfigError("RATELIMIT_STORAGE_URI", f"must be {example}: a host, then a database number if any")
    if parts.scheme == "redis+unix" and not parts.path:
        raise ConfigError("RATELIMIT_STORAGE_URI",
                          "must name Redis's socket, such as redis+unix:///run/redis/redis.sock")
    config["RATELIMIT_STORAGE_URI"] = uri


def unshared_limits_warning(config, web_processes):
    """One line for the log when several processes count the rate limits each in its own memory, else ""."""
    if urlsplit(config["RATELIMIT_STORAGE_URI"]).scheme != "memory":
        return ""
    if web_processes > 1:
        reason = f"{web_processes} web processes serve Postbox (WEB_CONCURRENCY)"
    elif database.is_postgresql(config["DATABASE"]):
        reason = "the database is PostgreSQL, so other nodes may serve Postbox too"
    else:
        return ""
    return (f"rate limits are counted per process: {reason}, and POSTBOX_RATELIMIT_STORAGE_URI is memory://;"
            " set it to a shared Redis (redis://host:6379/0) for exact limits")


def _check_metrics(config):
    config["METRICS_TOKEN"] = "" if config["METRICS_TOKEN"] is None else str(config["METRICS_TOKEN"])
    if config["METRICS_TOKEN"] and len(config["METRICS_TOKEN"]) < 16:
        raise ConfigError("METRICS_TOKEN", "must be at least 16 characters (try: openssl rand -hex 16)")
    items = config["METRICS_ALLOWED_IPS"]
    if not isinstance(items, (list, tuple)):
        items = str(items or "").split(",")
    networks = []
    for item in (str(item).strip() for item in items):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError("METRICS_ALLOWED_IPS", f"{item!r} is not an address or network such as"
                                                     " 127.0.0.1 or 10.0.0.0/8") from None
    config["METRICS_ALLOWED_IPS"] = tuple(networks)


def _check_follow_up(config):
    for name in ("REMIND_AFTER", "CALLBACK_REMIND_MINUTES"):
        _number(config, name, kind=float)
    _number(config, "REMIND_MAX")
    try:
        config["SCHEDULE"] = business_hours.parse(str(config["BUSINESS_HOURS"] or ""),
                                                  zoneinfo.ZoneInfo(str(config["TIMEZONE"])))
    except ValueError as error:
        raise ConfigError("BUSINESS_HOURS", str(error)) from None
    if config["DIGEST_HOUR"] not in (None, ""):
        _number(config, "DIGEST_HOUR", maximum=23)
    else:
        config["DIGEST_HOUR"] = None
    slots = tuple(slot.replace(" ", "") for slot in str(config["CALLBACK_SLOTS"] or "").split(",") if slot.strip())
    for slot in slots:
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d", slot) or slot[6:] <= slot[:5]:
            raise ConfigError("CALLBACK_SLOTS", f"{slot!r} is not a slot such as 09:00-11:00")
    if not slots:
        raise ConfigError("CALLBACK_SLOTS", "needs at least one slot such as 09:00-11:00")
    config["CALLBACK_SLOTS"] = slots
    region = str(config["PHONE_REGION"] or "").upper()
    if region and region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError("PHONE_REGION", f"{region!r} is not a region code such as IT, RU, AM or IN")
    config["PHONE_REGION"] = region


def url_list(value):
    """Split a list of URLs given as a TOML list or as text separated by commas or spaces."""
    items = value if isinstance(value, (list, tuple)) else re.split(r"[\s,]+", str(value or ""))
    return tuple(str(item).strip() for item in items if str(item).strip())


def webhook_list(config_name, value, secret, allow_private):
    """Check a form's webhooks: http(s) URLs, a whsec_ secret to sign them, no private address unless allowed."""
    urls = url_list(value)
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(config_name, f"webhook {url!r} must be a full http:// or https:// address")
        try:
            literal = ipaddress.ip_address(parts.hostname)
        except ValueError:
            literal = None  # a name: checked each time it is resolved, before connecting
        if literal is not None and not allow_private and not literal.is_global:
            raise ConfigError(config_name, f"webhook {url!r} points at a private address;"
                                           " set POSTBOX_WEBHOOK_ALLOW_PRIVATE=true to allow it")
    redaction.protect(urls)
    if urls:
        try:
            Webhook(secret)
        except Exception:  # the library raises several kinds for a missing or malformed secret
            raise ConfigError(config_name, "webhooks need a secret such as whsec_… (POSTBOX_WEBHOOK_SECRET,"
                                           " or webhook_secret in the forms file)") from None
    return urls


def notify_list(config_name, value):
    """Check Apprise URLs without ever repeating one: they carry bot tokens."""
    urls = url_list(value)
    for position, url in enumerate(urls, start=1):
        if apprise.Apprise.instantiate(url, suppress_exceptions=True) is None:
            raise ConfigError(config_name, f"notify URL number {position} is not one Apprise understands"
                                           " (see https://github.com/caronc/apprise/wiki)")
    redaction.protect(urls)
    return urls


def form_for_key(config, key):
    """A stored submission's form settings: the default form's when its key has left the forms file since."""
    forms = config["FORM_DEFINITIONS"]
    return forms.get(key) or forms["contactus"]


def origin_list(config_name, value):
    """Parse allowed origins ('https://example.com') into normalised scheme://host[:port] strings."""
    items = value if isinstance(value, (list, tuple)) else str(value or "").split(",")
    origins = []
    for item in (str(item).strip() for item in items):
        if not item:
            continue
        problem = f"{item!r} is not an origin such as https://example.com (scheme and host, no path)"
        parts = urlsplit(item)
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(config_name, problem) from None
        if (parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/")
                or parts.query or parts.fragment or parts.username is not None or "*" in item):
            raise ConfigError(config_name, problem)
        # Browsers leave the default port out of Origin: https://example.com:443 is https://example.com.
        default_port = {"http": 80, "https": 443}[parts.scheme]
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        origins.append(f"{parts.scheme}://{host}" + (f":{port}" if port and port != default_port else ""))
    return tuple(origins)


def _check_redirect(config_name, url, allowed_origins):
    """A form's redirect must be a full address on one of its allowed sites."""
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(config_name, f"redirect {url!r} must be a full address such as https://example.com/thanks")
    if origin_list(config_name, [f"{parts.scheme}://{parts.netloc}"])[0] not in allowed_origins:
        raise ConfigError(config_name, f"redirect {url!r} is not on one of the form's allowed origins")
    return url


def _load_forms(config):
    allowed_origins = origin_list("ALLOWED_ORIGINS", config["ALLOWED_ORIGINS"])
    default = FormSettings(
        key="contactus",
        title=str(config["FORM_TITLE"]),
        owners=config["OWNER_EMAIL"],
        allowed_origins=allowed_origins,
        language=str(config["LANGUAGE"] or ""),
        redirect=_check_redirect("REDIRECT", str(config["REDIRECT"] or ""), allowed_origins),
        webhooks=webhook_list("WEBHOOKS", config["WEBHOOKS"], str(config["WEBHOOK_SECRET"] or ""),
                              config["WEBHOOK_ALLOW_PRIVATE"]),
        webhook_secret=str(config["WEBHOOK_SECRET"] or ""),
        notify=notify_list("NOTIFY", config["NOTIFY"]),
        autoreply=config["AUTOREPLY"],
    )
    forms = {"contactus": default}
    if config["FORMS"]:
        forms.update(_read_forms_file(str(config["FORMS"]), default, config["WEBHOOK_ALLOW_PRIVATE"]))
    # The built-in callback form (/callback) goes to the default form's owners unless [forms.callback] says.
    forms.setdefault("callback", dataclasses.replace(default, key="callback", title="", fields=("phone",),
                                                     autoreply=False))
    return forms


FORM_KEYS = {"title": str, "owners": (list, str), "allowed_origins": (list, str), "language": str,
             "redirect": str, "fields": list, "required": list, "webhooks": (list, str), "webhook_secret": str,
             "notify": (list, str), "autoreply": bool, "autoreply_subject": str, "autoreply_text": str}


def _read_forms_file(path, default, allow_private):
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        raise ConfigError("FORMS", f"cannot read {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError("FORMS", f"{path} is not valid TOML: {error}") from None
    unknown = sorted(set(document) - {"forms"})
    if unknown or not isinstance(document.get("forms", {}), dict):
        raise ConfigError("FORMS", f"{path} must contain only [forms.KEY] tables, found {unknown or ['forms']}")
    forms = {}
    for key, table in document.get("forms", {}).items():
        where = f"FORMS ({path}, form {key!r})"
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", key):
            raise ConfigError("FORMS", f"form key {key!r} may use only letters, digits, '-' and '_'")
        forms[key] = _form_from_table(key, table, default, where, allow_private)
    return forms


def _form_from_table(key, table, default, where, allow_private):
    if not isinstance(table, dict):
        raise ConfigError(where, "must be a table: [forms.KEY] followed by title = ..., owners = [...]")
    for name, value in table.items():
        if name not in FORM_KEYS:
            # A misspelt key ("allowed_origin") would otherwise be ignored silently.
            raise ConfigError(where, f"unknown setting {name!r}; the settings are {', '.join(FORM_KEYS)}")
        if not isinstance(value, FORM_KEYS[name]):
            raise ConfigError(where, f"{name} has the wrong type ({type(value).__name__})")
    fields = tuple(table.get("fields", OPTIONAL_FIELDS))
    unknown = [name for name in fields if name not in OPTIONAL_FIELDS]
    if unknown:
        raise ConfigError(where, f"unknown optional fields {unknown}; choose from {', '.join(OPTIONAL_FIELDS)}")
    required = tuple(table.get("required", REQUIRED_FIELDS))
    unknown = [name for name in required if name not in FORM_FIELDS]
    if unknown:
        raise ConfigError(where, f"unknown required fields {unknown}; choose from {', '.join(FORM_FIELDS)}")
    language = table.get("language", "")
    if language and language not in LANGUAGES:
        raise ConfigError(where, f"language must be one of {', '.join(LANGUAGES)}")
    owners = email_list(where, table.get("owners", default.owners))
    if not owners:
        raise ConfigError(where, "needs at least one owner address")
    allowed_origins = origin_list(where, table.get("allowed_origins", ()))
    return FormSettings(
        key=key,
        title=str(table.get("title", default.title)),
        owners=owners,
        allowed_origins=allowed_origins,
        language=language,
        redirect=_check_redirect(where, table.get("redirect", ""), allowed_origins),
        fields=fields,
        required=required,
        # A form without its own channels uses the environment's, like its owners.
        webhooks=webhook_list(where, table.get("webhooks", default.webhooks),
                              table.get("webhook_secret", default.webhook_secret), allow_private),
        webhook_secret=table.get("webhook_secret", default.webhook_secret),
        notify=notify_list(where, table.get("notify", default.notify)),
        # The owner's words, never the visitor's: one line for the subject, as a header must be.
        autoreply=table.get("autoreply", default.autoreply),
        autoreply_subject=" ".join(table.get("autoreply_subject", "").split())[:200],
        autoreply_text=table.get("autoreply_text", "").strip(),
    )
