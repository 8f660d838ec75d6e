"""GET /metrics in Prometheus' text format: what the database holds, read at each scrape, and request latency.

Off unless POSTBOX_METRICS_TOKEN or POSTBOX_METRICS_ALLOWED_IPS is set: the counts say how busy a business is.
Latency is counted per web process; everything else comes from the database, so every process says the same.
"""
import hmac
import ipaddress
import time

from flask import Response, abort, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

import database


def init_app(app):
    """Register /metrics and the request timer, with a registry of this app's own."""
    registry = CollectorRegistry()
    latency = Histogram("postbox_request_duration_seconds", "Time to answer a request, by endpoint",
                        ["method", "endpoint", "status"], registry=registry)
    registry.register(DatabaseCollector())
    app.extensions["postbox.metrics"] = registry
    app.before_request(_start_timer)
    app.after_request(lambda response: _observe(latency, response))
    app.add_url_rule("/metrics", "metrics", metrics_view)


def _start_timer():
    g.request_started = time.perf_counter()


def _observe(latency, response):
    started = g.get("request_started")
    if started is not None:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        latency.labels(request.method, endpoint, str(response.status_code)).observe(time.perf_counter() - started)
    return response


def metrics_view():
    """Prometheus' text format, to a scraper bearing the token or at an allowed address; 404 when off."""
    config = current_app.config
    if not config["METRICS_TOKEN"] and not config["METRICS_ALLOWED_IPS"]:
        abort(404)
    if not (_has_token(config["METRICS_TOKEN"]) or _from_allowed_address(config["METRICS_ALLOWED_IPS"])):
        abort(403)
    body = generate_latest(current_app.extensions["postbox.metrics"])
    return Response(body, content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})


def _has_token(token):
    scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
    return bool(token) and scheme == "Bearer" and hmac.compare_digest(offered.strip().encode(), token.encode())


def _from_allowed_address(networks):
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    return any(address in network for network in networks)


class DatabaseCollector:
    """Submissions, the outbox and delivery attempts, read from the database at each scrape."""

    def describe(self):
        # Names without samples: registering the collector must not read a database outside a request.
        return [GaugeMetricFamily("postbox_submissions", ""), GaugeMetricFamily("postbox_outbox_depth", ""),
                GaugeMetricFamily("postbox_outbox_oldest_age_seconds", ""),
                CounterMetricFamily("postbox_delivery_attempts", "")]

    def collect(self):
        db = database.get_db()
        now = time.time()
        submissions = GaugeMetricFamily("postbox_submissions", "Submissions stored, by form and status",
                                        labels=["form", "status"])
        for row in db.execute("SELECT form, status, n FROM inbox_totals WHERE n > 0 ORDER BY form, status").mappings():
            submissions.add_metric([row["form"], row["status"]], row["n"])
        depth = GaugeMetricFamily("postbox_outbox_depth", "Notifications waiting to be delivered, by channel",
                                  labels=["channel"])
        oldest = GaugeMetricFamily("postbox_outbox_oldest_age_seconds",
                                   "Age of the oldest notification waiting, by channel", labels=["channel"])
        for row in db.execute("SELECT channel, COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox"
                              " WHERE state = 'pending' GROUP BY channel ORDER BY channel").mappings():
            depth.add_metric([row["channel"]], row["n"])
            oldest.add_metric([row["channel"]], max(0.0, now - row["oldest"]))
        # From the delivery log: deleting a submission (retention, the inbox) deletes its attempts too, which
        # Prometheus reads as a counter reset.
        attempts = CounterMetricFamily("postbox_delivery_attempts", "Delivery attempts, by channel and outcome",
                                       labels=["channel", "outcome"])
        for row in db.execute("SELECT outbox.channel, delivery_log.outcome, COUNT(*) AS n FROM delivery_log"
                              " JOIN outbox ON outbox.id = delivery_log.outbox_id GROUP BY 1, 2 ORDER BY 1, 2"
                              ).mappings():
            attempts.add_metric([row["channel"], row["outcome"]], row["n"])
        return [submissions, depth, oldest, attempts]
