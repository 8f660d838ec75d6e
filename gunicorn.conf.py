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


def post_worker_init(worker):
    """Start this web process's delivery thread once the app is loaded."""
    import mailer

    app = worker.wsgi
    if app.config["DELIVERY_THREAD"]:
        mailer.start_worker(app)
