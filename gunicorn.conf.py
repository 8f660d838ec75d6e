"""Production server settings: one process (the rate limiter counts exactly in memory; with several, set
POSTBOX_RATELIMIT_STORAGE_URI to a shared Redis) with gevent's event loop, so slow clients cost a greenlet
each, not a thread; delivery runs in its own process beside it
(POSTBOX_DELIVERY=process, the default), or as a thread in each web process (POSTBOX_DELIVERY=thread).

Patched here, before gunicorn or the app import anything: objects made before patching (a lock, a
thread-local) would block the whole event loop."""
from gevent import monkey

monkey.patch_all()

import os  # noqa: E402

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
# An event loop per process: a connection trickling its headers or body one byte at a time holds only a
# greenlet, and the app's reads of a slow body wait without blocking anyone. gthread gave each a thread.
# Its stop serves every connection already accepted by the kernel (see gevent_worker.py).
worker_class = "gevent_worker.DrainingGeventWorker"
worker_connections = int(os.environ.get("GUNICORN_CONNECTIONS", "1000"))
timeout = 30
graceful_timeout = 10
keepalive = 5
# A line per request costs about 140 µs of the request's CPU; POSTBOX_ACCESS_LOG=off drops it (config.py
# checks the value; errors, sends and retries are still logged).
accesslog = None if os.environ.get("POSTBOX_ACCESS_LOG", "on").lower() in ("off", "false", "0", "no") else "-"
errorlog = "-"
loglevel = "info"


def on_starting(server):
    """Load Postbox once in the master: a wrong setting stops gunicorn with its one line, instead of every
    worker failing to boot in turn, and the database is migrated before any worker serves. The master then holds
    the database's server lock, which `flask restore` respects, for as long as it runs."""
    if (server.cfg.wsgi_app or server.app.app_uri or "").startswith("app:"):
        import logging

        import backup
        import config
        from app import create_app

        app = create_app()
        # The in-memory rate limiter starts a timer (a greenlet here): let it end in this process, or a forked
        # worker inherits it half-run and logs a traceback as it ends there. With Redis, the memory kept for
        # when Redis is down has one too. A limiter not enabled (every limit off) has no storage.
        limiter = app.extensions["postbox.limiter"]
        storages = (limiter.storage, getattr(limiter, "_fallback_storage", None)) if limiter.enabled else ()
        for storage in storages:
            timer = getattr(storage, "timer", None)  # memory storages only
            if timer is not None:
                timer.join()
        backup.hold_server_lock(app)
        server.postbox_delivery = app.config["DELIVERY"]
        # Here, not in create_app: the master starts once, while every worker creates the app again.
        warning = config.unshared_limits_warning(app.config, server.cfg.workers)
        if warning:
            logging.getLogger("postbox").warning(warning)


def when_ready(server):
    """Start the delivery process beside the web process, unless delivery is in threads or runs elsewhere."""
    if getattr(server, "postbox_delivery", None) == "process":
        from delivery_process import DeliveryProcess

        server.postbox_delivery_process = DeliveryProcess(graceful_timeout, server).start()


def on_exit(server):
    """Stop the delivery process with the master: it finishes its message in flight and gives the rest back."""
    process = getattr(server, "postbox_delivery_process", None)
    if process is not None:
        process.stop()


def post_worker_init(worker):
    """Start this web process's delivery thread once the app is loaded, when POSTBOX_DELIVERY=thread."""
    import outbox

    app = worker.wsgi
    if app.config.get("DELIVERY") == "thread":
        outbox.start_worker(app)


def worker_exit(server, worker):
    """On shutdown, finish the message in flight and give the rest of the claim back at once, not after the lease."""
    import outbox

    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        outbox.stop_worker(app)
