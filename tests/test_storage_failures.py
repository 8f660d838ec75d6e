"""When the database cannot take a write: a bounded wait, a translated 503, nothing half-stored, recovery.

Real faults against a real gunicorn: another process holding SQLite's lock, a full tmpfs, a file system made
read-only, the database's directory removed. Mounting needs root, as the test machines run.
"""
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy

import database
from conftest import ROOT, VALID

STORE_TIMEOUT = 2
LOCK_SECONDS = 20
AS_NOBODY = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups")
# Every fault here is one of the SQLite file (its lock, its disk, its directory): PostgreSQL has none of them.
pytestmark = pytest.mark.sqlite_only


def post(url, fields, language="en", as_json=True, timeout=15):
    """POST the form; return (status, headers, body as JSON or text, seconds taken)."""
    headers = {"Accept-Language": language}
    if as_json:
        data, headers["Content-Type"], headers["Accept"] = json.dumps(fields).encode(), "application/json", "application/json"
    else:
        data = "&".join(f"{name}={urllib.request.quote(value)}" for name, value in fields.items()).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(url + "/contactus", data=data, headers=headers)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, answer_headers, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, answer_headers, body = error.code, error.headers, error.read()
    text = body.decode()
    return status, answer_headers, json.loads(text) if as_json else text, time.monotonic() - started


def stored_messages(path):
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT message FROM submissions ORDER BY id")]


def outbox_rows(path):
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]


def assert_unavailable(status, headers, body, elapsed, language="en"):
    assert status == 503, body
    assert int(headers["Retry-After"]) > 0
    assert elapsed < STORE_TIMEOUT + 1.5
    if isinstance(body, dict):
        assert body["ok"] is False and body["errors"][0]["code"] == "UNAVAILABLE"
    if language == "ru":
        text = body["error"] if isinstance(body, dict) else body
        assert "не сохранено" in text


def test_a_lock_held_by_another_process_gets_a_translated_503_then_recovers(live_server_factory, tmp_path):
    db_path = tmp_path / "postbox.sqlite3"
    server = live_server_factory(STORE_TIMEOUT=STORE_TIMEOUT)
    assert post(server.url, {**VALID, "message": "before the lock"})[0] == 200
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, sys, time\n"
        f"conn = sqlite3.connect({str(db_path)!r}, isolation_level=None)\n"
        "conn.execute('BEGIN EXCLUSIVE')\n"
        "print('locked', flush=True)\n"
        f"time.sleep({LOCK_SECONDS})\n"
        "conn.execute('ROLLBACK')\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(pool.map(lambda i: post(server.url, {**VALID, "message": f"while locked {i}"},
                                                   language="ru", as_json=i % 2 == 0), range(6)))
        for status, headers, body, elapsed in answers:
            assert_unavailable(status, headers, body, elapsed, language="ru")
        # Still locked: a later visitor is not queued behind the first ones' waits.
        assert_unavailable(*post(server.url, {**VALID, "message": "still locked"}))
    finally:
        holder.wait(LOCK_SECONDS + 10)
    status, _headers, body, _elapsed = post(server.url, {**VALID, "message": "after the lock"})
    assert status == 200 and body["ok"]
    assert stored_messages(db_path) == ["before the lock", "after the lock"]
    assert outbox_rows(db_path) == 2


@contextmanager
def small_tmpfs(path, size="2m"):
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory):
    """Write a file until the file system is full; return its path."""
    filler = directory / "filler"
    with open(filler, "wb") as file:
        try:
            while True:
                file.write(b"\0" * 65536)
                file.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_gets_503_stores_nothing_half_and_recovers(live_server_factory, tmp_path):
    with small_tmpfs(tmp_path / "disk") as disk:
        db_path = disk / "postbox.sqlite3"
        server = live_server_factory(DATABASE=db_path, STORE_TIMEOUT=STORE_TIMEOUT)
        assert post(server.url, {**VALID, "message": "before"})[0] == 200
        filler = fill(disk)
        long_text = "x" * 4900  # more than the WAL's free pages: the write needs new blocks
        refused = [post(server.url, {**VALID, "message": f"full {i} {long_text}"}) for i in range(5)]
        unavailable = [answer for answer in refused if answer[0] == 503]
        assert unavailable, [answer[0] for answer in refused]
        for answer in unavailable:
            assert_unavailable(*answer)
        filler.unlink()
        status, _headers, body, _elapsed = post(server.url, {**VALID, "message": "after"})
        assert status == 200 and body["ok"]
        stored = stored_messages(db_path)
        accepted = [f"full {i} {long_text}" for i, answer in enumerate(refused) if answer[0] == 200]
        assert stored == ["before", *accepted, "after"]
        assert outbox_rows(db_path) == len(stored)
        server.kill()


def wait_for_log(server, text, timeout=10):
    deadline = time.monotonic() + timeout
    while text not in Path(server.log_path).read_text():
        assert time.monotonic() < deadline, f"{text!r} never appeared in the server's log"
        time.sleep(0.05)


def test_a_read_only_database_file_gets_503_and_recovers(live_server_factory):
    # As root every file is writable: the server runs as nobody, for whom permissions count.
    directory = Path(tempfile.mkdtemp())
    directory.chmod(0o777)
    db_path = directory / "postbox.sqlite3"
    try:
        # Delivery as a thread of the web process: the test is about that one process's connections.
        server = live_server_factory(DATABASE=db_path, STORE_TIMEOUT=STORE_TIMEOUT, command_prefix=AS_NOBODY,
                                     DELIVERY="thread")
        # The delivery worker's connection is open first, as in a server that has run a while: SQLite shares
        # one -shm mapping per process, and a first connection opened read-only would make it read-only for all.
        wait_for_log(server, "delivery worker")
        db_path.chmod(0o444)
        assert_unavailable(*post(server.url, {**VALID, "message": "read-only"}, language="ru"), language="ru")
        assert_unavailable(*post(server.url, {**VALID, "message": "read-only"}, as_json=False))
        # SQLite made its -shm file as read-only as the database: the administrator's fix covers all three.
        for path in directory.glob("postbox.sqlite3*"):
            path.chmod(0o644)
        status, _headers, body, _elapsed = post(server.url, {**VALID, "message": "after"})
        assert status == 200 and body["ok"]
        assert stored_messages(db_path) == ["after"]
        server.kill()
    finally:
        shutil.rmtree(directory)


def test_a_database_that_cannot_be_written_stops_start_up_with_one_line(tmp_path):
    with small_tmpfs(tmp_path / "disk") as disk:
        subprocess.run([sys.executable, "-m", "flask", "--app", "app", "init-db"], cwd=ROOT, check=True,
                       env={**os.environ, "POSTBOX_DATABASE": str(disk / "postbox.sqlite3")}, capture_output=True)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "init-db"], cwd=ROOT,
                                env={**os.environ, "POSTBOX_DATABASE": str(disk / "postbox.sqlite3")},
                                capture_output=True, text=True)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("postbox: database error:"), result.stderr


def test_a_database_directory_removed_under_load_gets_no_acknowledgement_after(live_server_factory, tmp_path):
    directory = tmp_path / "data"
    directory.mkdir()
    db_path = directory / "postbox.sqlite3"
    server = live_server_factory(DATABASE=db_path, STORE_TIMEOUT=STORE_TIMEOUT)
    removed_at = None
    late_acknowledgements = []
    stop = threading.Event()

    def visitor(number):
        index = 0
        while not stop.is_set():
            sent_at = time.monotonic()
            status = post(server.url, {**VALID, "message": f"visitor {number} post {index}"})[0]
            if status == 200 and removed_at is not None and sent_at > removed_at:
                late_acknowledgements.append(f"visitor {number} post {index}")
            index += 1

    threads = [threading.Thread(target=visitor, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1)  # load, not a clock: the visitors post throughout
    shutil.rmtree(directory)
    removed_at = time.monotonic()
    time.sleep(1)
    # Restored and initialised again, as the administrator did: still no acknowledgement into a file
    # that the running server does not use.
    directory.mkdir()
    subprocess.run([sys.executable, "-m", "flask", "--app", "app", "init-db"], cwd=ROOT, check=True,
                   env={**os.environ, "POSTBOX_DATABASE": str(db_path)}, capture_output=True)
    time.sleep(1)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert late_acknowledgements == []
    status, headers, body, _elapsed = post(server.url, {**VALID, "message": "after restore"})
    assert status == 503 and body["ok"] is False


def test_a_busy_error_with_an_extended_code_is_waited_for_like_plain_busy(tmp_path):
    """SQLite reports some lock waits with an extended code (BUSY_SNAPSHOT, BUSY_RECOVERY): the writer waits
    for those as for SQLITE_BUSY, where comparing the code as a whole once answered 503 on a free database."""
    path = tmp_path / "busy.sqlite3"
    reader, writer = database.open_db(path), database.open_db(path)
    reader.execute("CREATE TABLE t (x INTEGER)")
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM t").scalar()  # a snapshot, then another connection writes
    writer.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlalchemy.exc.OperationalError) as snapshot_error:
        reader.execute("INSERT INTO t VALUES (2)")
    assert snapshot_error.value.orig.sqlite_errorcode == sqlite3.SQLITE_BUSY_SNAPSHOT
    assert database.is_busy(snapshot_error.value) and database.is_storage_down(snapshot_error.value)
    with pytest.raises(sqlalchemy.exc.OperationalError) as not_busy:
        writer.execute("INSERT INTO missing VALUES (1)")
    assert not database.is_busy(not_busy.value)
