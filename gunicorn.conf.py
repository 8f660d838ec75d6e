"""Production server settings: one process with threads (the rate limiter counts exactly in memory),
each web process running its own delivery thread."""
import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = "info"


def on_starting(server):
    """Load Postbox once in the master: a wrong setting stops gunicorn with its one line, instead of every
    worker failing to boot in turn, and the database is migrated before any worker serves. The master then holds
    the database's server lock, which `flask restore` respects, for as long as it runs."""
    if (server.cfg.wsgi_app or server.app.app_uri or "").startswith("app:"):
        import backup
        from app import create_app

        backup.hold_server_lock(create_app())


def post_worker_init(worker):
    """Start this web process's delivery thread once the app is loaded."""
    import outbox

    app = worker.wsgi
    if app.config["DELIVERY_THREAD"]:
        outbox.start_worker(app)


def worker_exit(server, worker):
    """On shutdown, finish the message in flight and give the rest of the claim back at once, not after the lease."""
    import outbox

    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        outbox.stop_worker(app)
