"""Two app nodes on one PostgreSQL and one Redis: one is killed mid-load, and nothing acknowledged is lost."""
import json
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import VALID, WEBHOOK_SECRET, duplicates, rows, wait_for_every_channel

SUBMISSIONS = 300
KILL_AT = 120


def post(url, index):
    body = json.dumps({**VALID, "message": f"two nodes {index}"}).encode()
    request = urllib.request.Request(url + "/contactus", data=body, headers={
        "Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())["id"]
    except OSError:
        return None  # its node was killed while it waited: not acknowledged, so not promised


@pytest.mark.postgresql_only
def test_a_node_killed_mid_load_loses_nothing_and_the_other_delivers_everything(
        live_server_factory, database_url, redis_url, smtp_server, http_receiver):
    settings = dict(RATELIMIT_STORAGE_URI=redis_url, WEBHOOKS=f"{http_receiver.url}/hook",
                    WEBHOOK_SECRET=WEBHOOK_SECRET, WEBHOOK_ALLOW_PRIVATE="true",
                    NOTIFY=f"json://127.0.0.1:{http_receiver.port}/notify", LEASE_SECONDS=12, SMTP_TIMEOUT=1,
                    SMTP_DATA_TIMEOUT=2, WEBHOOK_TIMEOUT=2, NOTIFY_TIMEOUT=1.5, POLL_SECONDS=0.2)
    nodes = [live_server_factory(**settings) for _ in range(2)]  # each with its own delivery process
    alive = list(nodes)
    acknowledged, lock = {}, threading.Lock()

    def send(index):
        # A load balancer's way: alternate between the nodes that are up.
        with lock:
            node = alive[index % len(alive)]
        submission_id = post(node.url, index)
        with lock:
            if submission_id is not None:
                acknowledged[index] = submission_id
            if len(acknowledged) >= KILL_AT and nodes[0] in alive:
                alive.remove(nodes[0])
                nodes[0].kill()  # the whole node at once: master, web worker and delivery process

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(send, range(SUBMISSIONS)))
    assert nodes[0] not in alive
    assert len(acknowledged) >= SUBMISSIONS - 10  # only requests in flight at the kill may go unanswered

    # Stored once each: the acknowledged ids are distinct rows holding their own text.
    stored = dict(rows(database_url, "SELECT id, message FROM submissions"))
    assert all(stored[submission_id] == f"two nodes {index}" for index, submission_id in acknowledged.items())
    assert len(set(acknowledged.values())) == len(acknowledged)

    expected = set(acknowledged.values())
    id_of_text = {text: submission_id for submission_id, text in stored.items()}

    deliveries = wait_for_every_channel(expected, smtp_server, http_receiver, id_of_text)
    assert sum(duplicates(deliveries).values()) <= 1, duplicates(deliveries)  # the one kill's message in flight
    assert rows(database_url, "SELECT count(*) FROM outbox WHERE state != 'sent'") == [(0,)]
