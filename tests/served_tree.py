"""Helpers for tests that start Postbox from a copy of the project, as an administrator would."""
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from babel.messages.pofile import read_po

from conftest import ROOT, free_port

TRANSLATED = ("ru", "it", "hy", "hi")


def copy_as_fresh_clone(target):
    """Copy what a clone of this working tree holds: tracked and new files, nothing ignored (no .mo, no .venv)."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, names):
        source = ROOT / name
        if not source.is_file():
            continue  # deleted in the working tree, not yet committed
        destination = Path(target) / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(source.read_bytes())
        destination.chmod(source.stat().st_mode & 0o777)
    return Path(target)


def send_button(language):
    """The form's submit button in that language, as its catalogue says."""
    if language == "en":
        return "Send"
    with open(ROOT / "translations" / language / "LC_MESSAGES" / "messages.po", "rb") as file:
        return read_po(file).get("Send").string


def clean_environment(**extra):
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("POSTBOX_", "MAKE", "FLASK_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(extra)
    return env


def wait_for_page(url, process, log_path, headers=None, timeout=60):
    """GET url once the server answers; fail with the server's log if it exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.read().decode()
        except OSError:
            assert process.poll() is None, Path(log_path).read_text()[-3000:]
            assert time.monotonic() < deadline, f"no answer from {url}: {Path(log_path).read_text()[-3000:]}"
            time.sleep(0.2)


def assert_serves_every_language(base_url, process, log_path):
    for language in ("en", *TRANSLATED):
        page = wait_for_page(f"{base_url}/contactus", process, log_path, headers={"Accept-Language": language})
        assert f'lang="{language}"' in page and send_button(language) in page, (language, page[:400])


def start(command, cwd, env, log_path):
    log = open(log_path, "ab")
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def new_port():
    return free_port()
