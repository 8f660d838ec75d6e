"""Delivery in its own process beside the web process (the default): woken at once, restarted if it dies."""
import json
import os
import signal
import time
import urllib.request

from conftest import VALID


def post(url, message):
    request = urllib.request.Request(url + "/contactus", data=json.dumps({**VALID, "message": message}).encode(),
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["id"]


def children(pid):
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{entry}/stat").read()
            command = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append((int(entry), [part.decode() for part in command if part]))
    return found


def delivery_pid(master):
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pids = [pid for pid, command in children(master) if command[-1:] == ["deliver"]]
        if pids:
            return pids[0]
        time.sleep(0.1)
    raise AssertionError("no delivery process beside the web process")


def test_the_delivery_process_is_woken_by_a_submission_and_restarted_if_killed(live_server_factory, smtp_server):
    # Polling every 30 s: only the web process's nudge can deliver within the test's few seconds.
    server = live_server_factory(POLL_SECONDS=30)
    first = delivery_pid(server.process.pid)
    web_workers = [pid for pid, command in children(server.process.pid) if command[-1:] != ["deliver"]]
    assert web_workers and first not in web_workers
    post(server.url, "woken")
    smtp_server.wait_for(1, timeout=5)

    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while delivery_pid(server.process.pid) == first:
        assert time.monotonic() < deadline, "the killed delivery process was not replaced"
        time.sleep(0.1)
    time.sleep(0.5)  # the new process binds its wake socket as it starts
    post(server.url, "after the restart")
    smtp_server.wait_for(2, timeout=35)
    bodies = sorted(m["message"].get_content().split("\n\n")[0] for m in smtp_server.messages)
    assert len(bodies) == 2


def test_thread_mode_runs_no_delivery_process(live_server_factory, smtp_server):
    server = live_server_factory(DELIVERY="thread")
    time.sleep(1)
    assert not [pid for pid, command in children(server.process.pid) if command[-1:] == ["deliver"]]
    post(server.url, "in a thread")
    smtp_server.wait_for(1, timeout=5)
