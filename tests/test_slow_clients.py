"""The server as `make run` starts it, exposed directly: slow and hostile clients do not stop a visitor."""
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request

from conftest import ROOT, VALID, base_config
from submissions import SubmissionWriter

SLOW_CONNECTIONS = 200
TRICKLE_SECONDS = 2


class Tricklers:
    """Connections that send a request one byte every few seconds: half in the headers, half in the body."""

    def __init__(self, port, count):
        body = json.dumps(VALID).encode()
        self.requests = []
        for index in range(count):
            head = (b"POST /contactus HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(body))
            # Headers trickled from the first byte, or the body trickled after whole headers.
            self.requests.append((head + body, 1 if index % 2 == 0 else len(head) + 1))
        self.sockets = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
        self.sent = [0] * count
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def send_next(self, index, length):
        request, _ = self.requests[index]
        chunk = request[self.sent[index]:self.sent[index] + length]
        if chunk and self.sent[index] + length < len(request):  # never complete: the request stays open
            try:
                self.sockets[index].sendall(chunk)
                self.sent[index] += len(chunk)
            except OSError:
                pass

    def run(self):
        for index, (_, first) in enumerate(self.requests):
            self.send_next(index, first)
        while not self.stopping.wait(TRICKLE_SECONDS):
            for index in range(len(self.sockets)):
                self.send_next(index, 1)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join()
        for sock in self.sockets:
            sock.close()


def timed_post(url, fields):
    request = urllib.request.Request(url + "/contactus", data=json.dumps(fields).encode(),
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200 and json.loads(response.read())["ok"]
    return time.monotonic() - started


def test_200_slow_connections_do_not_stop_a_visitor(live_server_factory):
    server = live_server_factory()
    with Tricklers(server.port, SLOW_CONNECTIONS):
        time.sleep(TRICKLE_SECONDS)  # load, not a clock: every slow connection has started its request
        durations = [timed_post(server.url, {**VALID, "message": f"visitor {index}"}) for index in range(5)]
    print("visitor's submissions under 200 slow connections: " + ", ".join(f"{d * 1000:.0f} ms" for d in durations))
    assert max(durations) < 1.0


# Run under gevent as gunicorn.conf.py runs the app, in a process of its own: the app is made, its writer started
# by a first submission, and the script's visitors (greenlets) post through the app. The script prints one JSON line.
UNDER_GEVENT = """
from gevent import monkey
monkey.patch_all()
import itertools, json, sys
import gevent
from app import create_app

app = create_app(json.loads(sys.argv[1]))
app.test_client().post("/contactus", json={"name": "Anna", "email": "anna@example.com", "message": "first"})
"""


def run_under_gevent(script, tmp_path, database_url):
    config = {**base_config(tmp_path, 25, database_url), "DELIVERY": "external"}
    result = subprocess.run([sys.executable, "-c", UNDER_GEVENT + script, json.dumps(config)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


# 16 visitors post 40 submissions each; the order in which they reached the app is compared with the order their
# rows were stored in.
IN_ORDER_SCRIPT = """
arrived, stored = itertools.count(), {}

def visitor(number):
    client = app.test_client()
    for _ in range(40):
        sequence = next(arrived)
        answer = client.post("/contactus", json={"name": "Anna", "email": f"anna{number}@example.com",
                                                 "message": f"visit {sequence}"})
        stored[sequence] = answer.json["id"]

gevent.joinall([gevent.spawn(visitor, number) for number in range(16)])
print(json.dumps([stored[sequence] for sequence in sorted(stored)]))
"""


def test_under_gevent_no_submission_waits_behind_later_ones(tmp_path, database_url):
    """The group commit serves visitors first come, first stored. It once checked its thread with
    Thread.is_alive() under a lock; under gevent that call yields, and requests queued on the lock were
    overtaken by newer ones again and again: a few visitors waited seconds while the rest took milliseconds."""
    ids = run_under_gevent(IN_ORDER_SCRIPT, tmp_path, database_url)
    assert len(set(ids)) == 640
    overtaken = [index for index, stored in enumerate(ids) if stored > min(ids[index:])]
    assert not overtaken, f"{len(overtaken)} submissions were stored after later ones"


# More visitors than one batch holds, so a batch is always waiting, and a health check asked for while they post:
# /healthz writes a row, so it needs the write lock that the group commit takes for each batch.
HEALTH_SCRIPT = """
acknowledged, health = [0], {}

def visitor(number):
    client = app.test_client()
    for sequence in range(5):
        client.post("/contactus", json={"name": "Anna", "email": f"anna{number}@example.com",
                                        "message": f"visit {sequence}"})
        acknowledged[0] += 1

def health_check():
    while acknowledged[0] < 100:
        gevent.sleep(0.001)
    health["before"] = acknowledged[0]
    health["status"] = app.test_client().get("/healthz").status_code
    health["after"] = acknowledged[0]

gevent.joinall([gevent.spawn(visitor, number) for number in range(256)] + [gevent.spawn(health_check)])
print(json.dumps(health))
"""


def test_under_gevent_a_health_check_is_not_held_up_by_a_stream_of_submissions(tmp_path, database_url):
    """A write of the inbox or of /healthz waits for the batch being committed, not for the visitors to stop.
    A released gevent lock went back to the writer, whose next batch was already waiting: under a steady stream
    of submissions (on PostgreSQL every statement yields), /healthz waited until the stream ended."""
    health = run_under_gevent(HEALTH_SCRIPT, tmp_path, database_url)
    assert health["status"] == 200
    # Submissions acknowledged while the health check waited: the batch being committed and perhaps the next,
    # not the rest of the 1,280 (all of them, on PostgreSQL, before the fix).
    assert health["after"] - health["before"] <= 2 * SubmissionWriter.MAX_BATCH, health
