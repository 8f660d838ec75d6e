"""The app's rate limits: Flask-Limiter's checks on the views that have a limit, as little as it allows on others."""
from flask import request


def init_app(app, limiter):
    """Let the limiter's hooks, which Flask-Limiter runs before and after every request, stop early on a view
    without a limit (a third of their cost goes; the rest Flask-Limiter 4 spends whatever the filter says)."""
    limited_endpoints = app.extensions["postbox.limited_endpoints"] = set()
    limiter.request_filter(lambda: request.endpoint not in limited_endpoints)


def limit_view(app, limiter, endpoint, rate, **options):
    """Put a limit on a registered view, with this app's limiter: its counts belong to this app alone.

    Decorated here rather than where the view is defined because the limiter is the app's, not the module's.
    """
    app.view_functions[endpoint] = limiter.limit(rate, **options)(app.view_functions[endpoint])
    app.extensions["postbox.limited_endpoints"].add(endpoint)
