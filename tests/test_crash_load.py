"""SIGKILL of web workers during a load: every acknowledged lead reaches every channel, duplicates ≤ kills."""
import http.client
import json
import os
import signal
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import VALID, WEBHOOK_SECRET, duplicates, wait_for_every_channel

SUBMISSIONS = 520
KILL_AT = (100, 200, 300, 400)


def post(url, index):
    body = json.dumps({**VALID, "message": f"load {index}"}).encode()
    request = urllib.request.Request(url + "/contactus", data=body, headers={
        "Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return index, json.loads(response.read())["id"]
    except (OSError, http.client.HTTPException):  # reset, or cut short half-way through the answer
        return index, None  # the worker serving it was killed: not acknowledged, so not promised


def worker_pids(master_pid):
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master_pid:
                pids.append(int(entry))
    return pids


def is_delivery_process(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().rstrip(b"\0").endswith(b"\0deliver")
    except OSError:
        return False


@pytest.mark.parametrize("delivery", ["thread", "process"])
def test_sigkill_under_load_loses_nothing_and_repeats_at_most_one_per_kill(
        live_server_factory, smtp_server, http_receiver, delivery):
    """With delivery threads in the web workers, the web workers are killed; with a delivery process, the web
    workers and the delivery process in turn."""
    server = live_server_factory(
        workers=2, DELIVERY=delivery, WEBHOOKS=f"{http_receiver.url}/hook", WEBHOOK_SECRET=WEBHOOK_SECRET, WEBHOOK_ALLOW_PRIVATE="true",
        NOTIFY=f"json://127.0.0.1:{http_receiver.port}/notify", LEASE_SECONDS=12, SMTP_TIMEOUT=1,
        SMTP_DATA_TIMEOUT=2, WEBHOOK_TIMEOUT=2, NOTIFY_TIMEOUT=1.5, POLL_SECONDS=0.2)
    acknowledged = {}
    kills = []
    lock = threading.Lock()

    def record(result):
        index, submission_id = result
        with lock:
            if submission_id is not None:
                acknowledged[index] = submission_id
            if len(kills) < len(KILL_AT) and len(acknowledged) >= KILL_AT[len(kills)]:
                victims = sorted(worker_pids(server.process.pid), key=lambda pid: is_delivery_process(pid))
                deadline = time.monotonic() + 15
                while delivery == "process" and len(kills) % 2:
                    # The master restarts a killed delivery process within a few seconds: wait for it.
                    victims = [pid for pid in worker_pids(server.process.pid) if is_delivery_process(pid)]
                    if victims or time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
                if victims:
                    os.kill(victims[0], signal.SIGKILL)
                    kills.append(time.monotonic())

    with ThreadPoolExecutor(max_workers=8) as pool:
        for future in [pool.submit(post, server.url, index) for index in range(SUBMISSIONS)]:
            record(future.result())
    assert len(kills) == len(KILL_AT)
    assert len(acknowledged) >= SUBMISSIONS - 40  # only requests in flight at a kill may go unanswered

    expected = set(acknowledged.values())
    index_of = {f"load {index}": submission_id for index, submission_id in acknowledged.items()}

    deliveries = wait_for_every_channel(expected, smtp_server, http_receiver, index_of)
    assert sum(duplicates(deliveries).values()) <= len(kills), duplicates(deliveries)
