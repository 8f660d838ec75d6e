"""Stopping the whole server, as systemd or Ctrl+C do: the delivery process is not started again on the way out."""
import signal
import time
from pathlib import Path


def test_a_stop_signalled_to_the_whole_group_restarts_nothing_and_logs_no_error(live_server_factory):
    server = live_server_factory()
    log = Path(server.log_path)
    deadline = time.monotonic() + 20
    while "delivery worker" not in log.read_text():  # the delivery process is up and delivering
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.1)
    server.kill(signal.SIGTERM)  # master, web worker and delivery process at once, as systemd's stop does
    text = log.read_text()
    assert "starting another" not in text and "Traceback" not in text and "ERROR" not in text, text[-3000:]
    assert text.count("started beside the web process") == 1
