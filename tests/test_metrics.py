"""/metrics: Prometheus' text format for a scraper with the token or at an allowed address, off otherwise."""
import urllib.error
import urllib.request

import pytest
from conftest import VALID, deliver_all
from inbox_fixtures import add_submission
from prometheus_client.parser import text_string_to_metric_families

from app import create_app

TOKEN = "s3cret-metrics-token-for-tests"


def samples(text):
    """{(sample name, frozenset of labels): value} from Prometheus' own parser."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_are_off_unless_configured(client):
    assert client.get("/metrics").status_code == 404


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": TOKEN}])
def test_metrics_refuse_a_scraper_without_the_token(config, headers):
    config["METRICS_TOKEN"] = TOKEN
    assert create_app(config).test_client().get("/metrics", headers=headers).status_code == 403


def test_metrics_answer_an_allowed_address(config):
    config["METRICS_ALLOWED_IPS"] = "10.0.0.0/8, 127.0.0.1"
    assert create_app(config).test_client().get("/metrics").status_code == 200
    config["METRICS_ALLOWED_IPS"] = "10.0.0.0/8"
    assert create_app(config).test_client().get("/metrics").status_code == 403


def test_a_short_token_stops_start_up(config):
    config["METRICS_TOKEN"] = "short"
    with pytest.raises(SystemExit, match="POSTBOX_METRICS_TOKEN: must be at least 16 characters"):
        create_app(config)


def test_metrics_count_submissions_the_outbox_and_delivery_attempts(config, smtp_server):
    config["METRICS_TOKEN"] = TOKEN
    app = create_app(config)
    client = app.test_client()
    import database
    db = database.open_db(app.config["DATABASE"])
    try:
        add_submission(db, app)
        add_submission(db, app, status="spam", queue_email=False)
        smtp_server.handler.replies.append("451 4.3.0 try later")
        deliver_all(app, db)  # one retry
        add_submission(db, app)  # waiting
        text = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).get_data(as_text=True)
    finally:
        db.close()
    values = samples(text)
    assert values[("postbox_submissions", frozenset({("form", "contactus"), ("status", "new")}))] == 2
    assert values[("postbox_submissions", frozenset({("form", "contactus"), ("status", "spam")}))] == 1
    assert values[("postbox_outbox_depth", frozenset({("channel", "email")}))] == 2
    assert values[("postbox_outbox_oldest_age_seconds", frozenset({("channel", "email")}))] >= 0
    assert values[("postbox_delivery_attempts_total", frozenset({("channel", "email"), ("outcome", "retry")}))] == 1


def test_metrics_from_a_real_server_parse_with_prometheus_clients_parser(live_server_factory, smtp_server):
    server = live_server_factory(METRICS_TOKEN=TOKEN)
    request = urllib.request.Request(server.url + "/contactus", data=urllib.parse.urlencode(VALID).encode(),
                                     headers={"Accept": "application/json"})
    urllib.request.urlopen(request, timeout=10).read()
    smtp_server.wait_for(1)
    request = urllib.request.Request(server.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = response.read().decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert {"postbox_submissions", "postbox_outbox_depth", "postbox_outbox_oldest_age_seconds",
            "postbox_delivery_attempts", "postbox_request_duration_seconds"} <= set(families)
    assert families["postbox_request_duration_seconds"].type == "histogram"
    posted = [sample for sample in families["postbox_request_duration_seconds"].samples
              if sample.name.endswith("_count") and sample.labels["endpoint"] == "/contactus"]
    assert posted and posted[0].labels["method"] == "POST" and posted[0].value == 1
    values = samples(text)
    assert values[("postbox_delivery_attempts_total", frozenset({("channel", "email"), ("outcome", "sent")}))] == 1
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(server.url + "/metrics", timeout=10)
    assert refused.value.code == 403
