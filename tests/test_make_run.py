"""`make run`, the README's first command, serves the form and says where the mail goes."""
import os
import signal
import subprocess
import time
import urllib.request

from conftest import ROOT, free_port


def test_make_run_serves_the_form(tmp_path):
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("POSTBOX_", "MAKE"))}
    env.update(PORT=str(port), POSTBOX_DATABASE=str(tmp_path / "run.sqlite3"), POSTBOX_MAIL_DIR=str(tmp_path / "mail"),
               POSTBOX_OWNER_EMAIL="flora@florist.example")
    log = open(tmp_path / "make-run.log", "w+")
    process = subprocess.Popen(["make", "--no-print-directory", "run"], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/contactus", timeout=2) as response:
                    page = response.read().decode()
                break
            except OSError:
                assert process.poll() is None, (tmp_path / "make-run.log").read_text()
                assert time.monotonic() < deadline, "make run did not serve the form in time"
                time.sleep(0.3)
        assert 'method="post"' in page and 'name="message"' in page
        log.seek(0)
        output = log.read()
        assert f"http://127.0.0.1:{port}/contactus" in output and "flora@florist.example" in output
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)
