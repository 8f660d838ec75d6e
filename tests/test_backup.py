"""`flask backup` copies a consistent, verified database while Postbox serves; `flask restore` puts it back, and
is refused while a server or worker uses the database. Both copy a SQLite file: on PostgreSQL they refuse and name
the server's own tools."""
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from conftest import ROOT, VALID, base_config
from inbox_fixtures import add_submission

import backup

LOAD_SECONDS = 30
LOAD_THREADS = 4


def flask(*args, env, timeout=120, stdin=None):
    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def environment(tmp_path, smtp_port, **overrides):
    settings = {**base_config(tmp_path, smtp_port), **overrides}
    env = {key: value for key, value in os.environ.items() if not key.startswith("POSTBOX_")}
    env.update({f"POSTBOX_{key}": str(value) for key, value in settings.items()})
    return env


class Load:
    """Threads posting the form until stopped; each acknowledged id is kept with the time its answer arrived."""

    def __init__(self, url):
        self.url = url
        self.acknowledged = []  # (monotonic time the answer arrived, submission id)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.errors = []
        self.threads = [threading.Thread(target=self.post_until_stopped, args=(n,)) for n in range(LOAD_THREADS)]

    def post_until_stopped(self, thread_number):
        count = 0
        while not self.stopping.is_set():
            count += 1
            body = json.dumps({**VALID, "message": f"load {thread_number}-{count}"}).encode()
            request = urllib.request.Request(self.url + "/contactus", data=body, headers={
                "Content-Type": "application/json", "Accept": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    submission_id = json.loads(response.read())["id"]
            except OSError as error:
                self.errors.append(repr(error))
                continue
            with self.lock:
                self.acknowledged.append((time.monotonic(), submission_id))

    def acknowledged_before(self, moment):
        with self.lock:
            return {submission_id for at, submission_id in self.acknowledged if at < moment}

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for thread in self.threads:
            thread.join(60)


@pytest.mark.sqlite_only
def test_a_backup_taken_under_load_restores_every_row_acknowledged_before_it(live_server_factory, smtp_server,
                                                                              tmp_path):
    server = live_server_factory()
    env = environment(tmp_path, smtp_server.port)
    backup_path = tmp_path / "backups" / "postbox-backup.sqlite3"
    backup_path.parent.mkdir()
    started = time.monotonic()
    with Load(server.url) as load:
        time.sleep(LOAD_SECONDS / 2)  # the load runs; the backup is taken in its middle
        backup_began = time.monotonic()
        made = flask("backup", str(backup_path), env=env)
        backup_ended = time.monotonic()
        time.sleep(max(0.0, LOAD_SECONDS - (time.monotonic() - started)))
    assert made.returncode == 0, made.stderr
    assert "integrity_check ok, counts match" in made.stdout
    acknowledged = load.acknowledged_before(backup_began)
    assert len(acknowledged) > 100 and not load.errors
    assert len(load.acknowledged_before(time.monotonic())) > len(load.acknowledged_before(backup_ended)), \
        "the load did not go on during and after the backup"

    refused = flask("restore", "--yes", str(backup_path), env=env)
    assert refused.returncode != 0 and "refused: a Postbox server or worker is using" in refused.stderr

    restored_env = {**env, "POSTBOX_DATABASE": str(tmp_path / "restored.sqlite3")}
    restored = flask("restore", "--yes", str(backup_path), env=restored_env)
    assert restored.returncode == 0, restored.stderr
    with sqlite3.connect(tmp_path / "restored.sqlite3") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        ids = {row[0] for row in conn.execute("SELECT id FROM submissions")}
        assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] >= len(ids)
    assert acknowledged <= ids, f"{len(acknowledged - ids)} acknowledged row(s) missing from the backup"


@pytest.mark.sqlite_only
def test_restore_replaces_the_database_once_the_server_has_stopped(live_server_factory, smtp_server, tmp_path):
    server = live_server_factory()
    env = environment(tmp_path, smtp_server.port)
    request = urllib.request.Request(server.url + "/contactus", data=json.dumps(VALID).encode(),
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
    urllib.request.urlopen(request, timeout=10).read()
    assert flask("backup", str(tmp_path / "one.sqlite3"), env=env).returncode == 0
    urllib.request.urlopen(request, timeout=10).read()
    server.kill()
    restored = flask("restore", "--yes", str(tmp_path / "one.sqlite3"), env=env)
    assert restored.returncode == 0, restored.stderr
    assert "Restored 1 submission(s)" in restored.stdout
    with sqlite3.connect(tmp_path / "postbox.sqlite3") as conn:
        assert conn.execute("SELECT COUNT(*) FROM submissions").fetchone() == (1,)


@pytest.mark.sqlite_only
def test_restore_asks_before_replacing_the_database(app, db, tmp_path, smtp_server):
    add_submission(db, app)
    env = environment(tmp_path, smtp_server.port)
    assert flask("backup", str(tmp_path / "copy.sqlite3"), env=env).returncode == 0
    answered_no = flask("restore", str(tmp_path / "copy.sqlite3"), env=env, stdin="n\n")
    assert answered_no.returncode != 0 and "Aborted" in answered_no.stderr


@pytest.mark.sqlite_only
def test_restore_refuses_a_file_that_is_not_a_postbox_database(app, tmp_path, smtp_server):
    other = tmp_path / "other.sqlite3"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    (tmp_path / "junk.sqlite3").write_bytes(b"not a database at all" * 100)
    env = environment(tmp_path, smtp_server.port)
    for path, reason in ((other, "it has no submissions table"), (tmp_path / "junk.sqlite3", "not a Postbox database")):
        result = flask("restore", "--yes", str(path), env=env)
        assert result.returncode != 0 and reason in result.stderr


@pytest.mark.sqlite_only
def test_a_server_does_not_start_while_a_restore_holds_the_database(live_server_factory, tmp_path, app):
    lock = backup._take_exclusive_lock(app.config["DATABASE"])
    try:
        with pytest.raises(AssertionError, match="a restore of .* is running; start when it has finished"):
            live_server_factory()
    finally:
        os.close(lock)


@pytest.mark.sqlite_only
def test_a_backup_is_one_self_contained_file(app, db, tmp_path):
    add_submission(db, app)
    counts = backup.copy_database(app.config["DATABASE"], str(tmp_path / "copy.sqlite3"))
    assert counts["submissions"] == 1
    assert not (tmp_path / "copy.sqlite3-wal").exists() and not list(tmp_path.glob(".postbox-backup-*"))
    with sqlite3.connect(tmp_path / "copy.sqlite3") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)


@pytest.mark.postgresql_only
def test_backup_and_restore_refuse_postgresql_and_name_its_tools(database_url, tmp_path, smtp_server):
    env = environment(tmp_path, smtp_server.port, DATABASE=database_url)
    path = tmp_path / "postbox-backup.sqlite3"
    path.write_bytes(b"")  # restore's PATH must exist for the command to reach its refusal
    for args, tool in ((["backup", str(path)], "pg_dump"), (["restore", "--yes", str(path)], "pg_restore")):
        result = flask(*args, env=env)
        assert result.returncode != 0, result.stdout
        assert tool in result.stderr and "Traceback" not in result.stderr, result.stderr
