"""The Postbox application factory: configuration, extensions, blueprints, headers and commands."""
import logging
import os
import signal
import time

import click
import sqlalchemy
from dotenv import find_dotenv, load_dotenv
from flask import Flask, current_app, g, jsonify, make_response, render_template, request
from flask.cli import with_appcontext
from flask_babel import Babel, get_locale
from flask_babel import gettext as _
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from werkzeug.exceptions import HTTPException, InternalServerError, SecurityError, ServiceUnavailable
from werkzeug.middleware.proxy_fix import ProxyFix

import admin
import backup
import catalogues
import callback
import config
import contact
import database
import delivery_process
import health
import metrics
import outbox
import rate_limits
import retention
import store_copy
import submissions
from channels import CHANNELS
from config import LANGUAGES, LOCALES

babel = Babel()


def create_app(test_config=None):
    """Create and configure a Postbox application; test_config replaces the environment."""
    app = Flask(__name__, instance_relative_config=True)
    # /f/contactus and /contactus are the same form: answer both, never redirect a POST between them.
    app.url_map.redirect_defaults = False
    os.makedirs(app.instance_path, exist_ok=True)
    if test_config is None:
        load_dotenv(find_dotenv(usecwd=True))
    try:
        config.load(app, test_config)
        outbox.check_lease(app.config)
    except config.ConfigError as error:
        raise SystemExit(f"postbox: configuration error: {error}") from None
    app.config.update(
        # Each limit has its own "off": the public form's and the two login ones. With all three off the limiter
        # is not enabled at all: it would otherwise run its hooks on every request, for nothing.
        RATELIMIT_ENABLED=any(app.config[name] for name in ("RATE_LIMIT", "LOGIN_RATE_LIMIT",
                                                             "LOGIN_ACCOUNT_RATE_LIMIT")),
        RATELIMIT_SWALLOW_ERRORS=True,  # an error of the limiter's is logged and lets the request through
        **_shared_limiter_settings(app.config["RATELIMIT_STORAGE_URI"]),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=int(app.config["SESSION_HOURS"] * 3600),
        JSON_AS_ASCII=False,
    )
    app.json.ensure_ascii = False
    if app.config["PROXY_HOPS"]:
        hops = app.config["PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_prefix=hops)
    _configure_logging(app)
    database.init_app(app)
    submissions.init_app(app)
    try:
        app.config["BABEL_TRANSLATION_DIRECTORIES"] = catalogues.catalogue_directory(app)
    except catalogues.CatalogueError as error:
        raise SystemExit(f"postbox: cannot serve every language: {error}") from None
    babel.init_app(app, locale_selector=select_language)
    app.jinja_env.globals["get_locale"] = get_locale
    # Registered before the limiter, so it runs after the limiter has added its headers.
    app.after_request(security_headers)
    # One limiter per app: its in-memory counts belong to this app alone.
    limiter = app.extensions["postbox.limiter"] = Limiter(key_func=get_remote_address, app=app, headers_enabled=True)
    rate_limits.init_app(app, limiter)

    app.register_blueprint(contact.bp)
    app.register_blueprint(callback.bp)
    if app.config["RATE_LIMIT"]:
        # A made-up form key is answered (404) before the limiter stores a key for it: otherwise every
        # random /f/<key> would keep a counter in memory for a day.
        for endpoint in ("contact.submit", "callback.submit"):
            rate_limits.limit_view(
                app, limiter, endpoint, app.config["RATE_LIMIT"],
                key_func=lambda: f"{get_remote_address()}:{(request.view_args or {}).get('form_key', 'callback')}",
                exempt_when=lambda: (request.view_args or {}).get("form_key", "callback")
                not in app.config["FORM_DEFINITIONS"],
            )

    admin.init_app(app, limiter)
    # Browsers ask for /favicon.ico whatever a page links: answer it rather than log a 404 for every visit.
    app.add_url_rule("/favicon.ico", "favicon", lambda: app.send_static_file("favicon.svg"))
    health.init_app(app)
    metrics.init_app(app)
    retention.init_app(app)
    backup.init_app(app)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(database.StorageUnavailable, storage_unavailable)
    app.register_error_handler(sqlalchemy.exc.DBAPIError, storage_error)
    app.cli.add_command(init_db_command)
    app.cli.add_command(deliver_command)
    app.cli.add_command(store_copy.copy_to_command)
    return app


# A visitor waits at most this long for the limiter's Redis before the limits are counted in memory instead.
REDIS_TIMEOUT_SECONDS = 2


def _shared_limiter_settings(uri):
    """Flask-Limiter's settings for a Redis shared by every node: a lead is never refused because it is down."""
    if uri.startswith("memory:"):
        return {}
    return {
        # While Redis is down, this process counts the same limits in its memory, and Flask-Limiter logs one
        # warning as it switches; it tries Redis again after 1, 2, 4… up to 32 seconds, and counts there again
        # once it answers.
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
        # Without timeouts, a Redis whose host stops answering would hold every request until TCP gives up.
        "RATELIMIT_STORAGE_OPTIONS": {"socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
                                      "socket_timeout": REDIS_TIMEOUT_SECONDS},
    }


def _configure_logging(app):
    if not logging.getLogger("postbox").handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("postbox").addHandler(handler)
        logging.getLogger("postbox").setLevel(logging.INFO)
        # Flask-Limiter's warnings ("Rate limit storage unreachable - falling back to in-memory storage") in the
        # same shape; its INFO line for every 429 stays out.
        logging.getLogger("flask-limiter").addHandler(handler)
        logging.getLogger("flask-limiter").setLevel(logging.WARNING)
    app.logger.setLevel(logging.INFO)


def select_language():
    """Pick the page's language: the view's choice, else ?lang=, else the browser's."""
    language = g.get("language")
    if language not in LANGUAGES:
        language = request.args.get("lang") if request else None
    if language not in LANGUAGES:
        language = (request.accept_languages.best_match(LANGUAGES) if request else None) or "en"
    return LOCALES[language]


def security_headers(response):
    """Set a strict CSP and the usual hardening headers on every response."""
    embed_form = g.get("embed_form")
    ancestors = " ".join(embed_form.allowed_origins) if embed_form and embed_form.allowed_origins else "'none'"
    form_targets = " ".join(g.get("form_action_origins", ()))
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; connect-src 'self'; "
        f"form-action 'self' {form_targets}; frame-ancestors {ancestors}; base-uri 'none'".replace("  ", " "),
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    if ancestors == "'none'":
        response.headers.setdefault("X-Frame-Options", "DENY")
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if response.status_code not in (429, 503):
        # Flask-Limiter sends Retry-After on every answer; it means "wait" only on these.
        response.headers.pop("Retry-After", None)
    return response


def http_error(error):
    """Answer an HTTP error in the client's language and format: JSON for API clients, else a page."""
    if isinstance(error, SecurityError):
        return untrusted_host(error)
    message = _error_message(error)
    if contact.wants_json():
        code = "UNAVAILABLE" if error.code == 503 else error.name.upper().replace(" ", "_")
        response = jsonify(ok=False, error=message, errors=[{"field": None, "code": code, "message": message}])
    else:
        heading = _("Please wait a little") if error.code == 429 and request.blueprint == "admin" else None
        back = contact.back_link() if request.blueprint == "contact" else None
        response = make_response(render_template("error.html", status=error.code, message=message, heading=heading,
                                                  back=back))
    response.status_code = error.code
    if getattr(error, "valid_methods", None):
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response


def untrusted_host(error):
    """Refuse a Host outside TRUSTED_HOSTS in plain text: no URL can be built for it, so no page either."""
    message = _("This server does not answer to that host name.")
    return current_app.response_class(message + "\n", status=400, mimetype="text/plain")


# Seconds a client is told to wait after a 503: about the time a lock or a full disk takes to clear.
RETRY_AFTER_SECONDS = 10


def storage_unavailable(error):
    """Answer a submission the database could not take in time: 503, try again shortly; nothing was stored."""
    current_app.logger.error("storage unavailable (%s %s): %s", request.method, request.path, error)
    response = http_error(ServiceUnavailable())
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def storage_error(error):
    """An SQLite error about the whole database is a 503 like the writer's; any other is a 500, logged once."""
    if database.is_storage_down(error):
        return storage_unavailable(database.driver_error(error))
    current_app.logger.exception("unexpected database error on %s %s", request.method, request.path)
    return http_error(InternalServerError())


def _error_message(error):
    if error.code == 503:
        return _("Your message was not saved: the server is busy for a moment. Please try again in a minute.")
    if error.code == 500:
        return _("Something went wrong on our side, and your request was not completed. Please try again later.")
    if error.code == 413:
        return _("The form is too large. Please shorten the message.")
    if error.code == 429 and request.blueprint == "admin":
        return _("Too many login attempts from your address. Please wait a minute and try again.")
    if error.code == 429:
        return _("Too many messages from your address. Please wait a little and try again.")
    if error.code in (400, 404) and error.description and not error.description.startswith(
            ("The requested URL", "The browser (or proxy)")):
        return error.description
    return f"{error.code} {error.name}"


@click.command("init-db")
@with_appcontext
def init_db_command():
    """Create or migrate the database, and say where the form is and where its notifications go.

    Example: flask --app app init-db
    """
    from flask import current_app
    port = os.environ.get("PORT", "8000")
    click.echo(f"Postbox database ready: {current_app.config['DATABASE']}")
    click.echo(f"The form: http://127.0.0.1:{port}/contactus")
    for form in current_app.config["FORM_DEFINITIONS"].values():
        channels = [f"{name}: {', '.join(channel(current_app.config).targets(form))}"
                    for name, channel in CHANNELS.items() if channel(current_app.config).targets(form)]
        click.echo(f"  form {form.key!r}: {'; '.join(channels)}")
    click.echo(f"Email is delivered through {CHANNELS['email'](current_app.config).describe()}")


@click.command("deliver")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@click.option("--now", "everything_now", is_flag=True,
              help="First make every waiting message due now and lift channel pauses (after fixing SMTP, say).")
@with_appcontext
def deliver_command(once, everything_now):
    """Run a delivery worker in this process (beside or instead of the web processes' threads).

    Ctrl+C or SIGTERM finishes the message in flight and gives the rest back to other workers.

    Example: flask --app app deliver --once --now
    """
    from flask import current_app
    app = current_app._get_current_object()
    backup.hold_server_lock(app)  # a restore must wait for this worker to stop
    db = database.open_db(app.config["DATABASE"], synchronous="NORMAL")
    try:
        if everything_now:
            click.echo(f"{outbox.send_all_now(db, time.time())} waiting message(s) made due now.")
        if once:
            claimant = f"cli:{os.getpid()}"
            total = 0
            while (count := outbox.deliver_due(app, db, claimant)):
                total += count
            click.echo(f"Claimed {total} message(s).")
            return
    finally:
        db.close()
    worker = outbox.start_worker(app)
    delivery_process.listen_for_wakes(app.config["DATABASE"], worker)
    click.echo(f"Delivering; email goes through {CHANNELS['email'](app.config).describe()}. Ctrl+C stops.")
    signal.signal(signal.SIGTERM, lambda signum, frame: (worker.stopping.set(), worker.wake()))
    try:
        while worker.thread.is_alive():
            worker.thread.join(0.5)
    except KeyboardInterrupt:
        click.echo("Stopping: finishing the message in flight.")
    finally:
        worker.stop()
