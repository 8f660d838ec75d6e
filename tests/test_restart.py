"""A restart under load: every request is either served or refused, none is reset half-way."""
import http.client
import json
import signal
import threading
import time

from conftest import VALID, LiveServer


def outcome(port, index):
    """Post once on a new connection; say 'served', 'refused' or what went wrong."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        connection.request("POST", "/contactus", body=json.dumps({**VALID, "message": f"restart {index}"}),
                           headers={"Content-Type": "application/json", "Accept": "application/json"})
        response = connection.getresponse()
        response.read()
        return "served" if response.status in (200, 503) else f"status {response.status}"
    except ConnectionRefusedError:
        time.sleep(0.01)
        return "refused"
    except Exception as error:  # noqa: BLE001 - each kind of failure is named in the assertion
        return type(error).__name__
    finally:
        connection.close()


def test_a_restart_under_load_serves_or_refuses_every_request(live_server_factory, tmp_path):
    first = live_server_factory()
    outcomes, stop = [], threading.Event()

    def visitor(number):
        index = 0
        while not stop.is_set():
            outcomes.append(outcome(first.port, f"{number}-{index}"))
            index += 1

    visitors = [threading.Thread(target=visitor, args=(number,)) for number in range(8)]
    for thread in visitors:
        thread.start()
    time.sleep(1)  # load, not a clock: the visitors post throughout the restart
    first.process.send_signal(signal.SIGTERM)
    first.process.wait(30)
    second = LiveServer({})
    second.env, second.port, second.url = first.env, first.port, first.url
    second.start(tmp_path / "gunicorn-restarted.log")
    time.sleep(1)
    stop.set()
    for thread in visitors:
        thread.join(30)
    second.kill()
    counts = {kind: outcomes.count(kind) for kind in set(outcomes)}
    print(f"outcomes across the restart: {counts}")
    assert set(counts) <= {"served", "refused"}, counts
    assert counts.get("served", 0) > 50
