"""Shared fixtures: an app on a temporary SQLite file or PostgreSQL database, a real SMTP server on loopback, a real gunicorn, real Redis
and PostgreSQL servers."""
import asyncio
import base64
import email
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from email.policy import default as default_policy
from pathlib import Path

import pytest
import redis
from aiosmtpd.controller import Controller
from standardwebhooks import Webhook

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402
from bench.postgres import PostgresMissing, PostgresServer, free_port  # noqa: E402
from bench.smtp_sink import with_pipelining  # noqa: E402
import database  # noqa: E402
import outbox  # noqa: E402


class RecordingHandler:
    """An SMTP server's behaviour, programmable per test: replies to give, a delay, and what it received."""

    def __init__(self):
        self.messages = []
        self.replies = []  # consumed one per DATA: e.g. "451 4.3.0 try later"; empty means accept
        self.rcpt_replies = {}  # address -> reply for RCPT TO
        self.mail_replies = []  # consumed one per MAIL FROM: e.g. "550 5.7.1 daily quota exceeded"
        self.delay = 0.0
        self.lock = threading.Lock()
        self.sessions = []  # the EHLO name of each connection
        self.pipelining = True  # RFC 2920, which real servers offer; aiosmtpd reads pipelined commands in order

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.sessions.append(hostname)
        return with_pipelining(responses) if self.pipelining else responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.mail_replies:
            return self.mail_replies.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            if self.replies:
                return self.replies.pop(0)
            message = email.message_from_bytes(envelope.original_content or envelope.content, policy=default_policy)
            self.messages.append({"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos),
                                  "message": message, "raw": envelope.original_content or envelope.content})
        return "250 Message accepted"


class SMTPServer:
    """A real aiosmtpd server on a free loopback port that tests can stop and start again."""

    def __init__(self):
        self.port = free_port()
        self.handler = RecordingHandler()
        self.controller = None

    def start(self):
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, ready_timeout=10)
        self.controller.start()

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def messages(self):
        return self.handler.messages

    def wait_for(self, count, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.messages) >= count:
                return self.messages
            time.sleep(0.05)
        raise AssertionError(f"expected {count} message(s), the SMTP server got {len(self.messages)}")


@pytest.fixture
def smtp_server():
    server = SMTPServer()
    server.start()
    yield server
    server.stop()


# --- The store: every test that uses the app's database runs on SQLite and on PostgreSQL -------------------------

STORES = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc):
    """Run each test that uses the database once per store; one marked sqlite_only (it tests the SQLite file
    itself: its lock, its disk, its backup) on SQLite alone. POSTBOX_TEST_STORES=postgresql picks stores."""
    if "store" in metafunc.fixturenames:
        chosen = [name for name in os.environ.get("POSTBOX_TEST_STORES", ",".join(STORES)).split(",") if name]
        if metafunc.definition.get_closest_marker("sqlite_only"):
            chosen = ["sqlite"]
        elif metafunc.definition.get_closest_marker("postgresql_only"):
            chosen = ["postgresql"]
        metafunc.parametrize("store", chosen, indirect=True)


@pytest.fixture
def store(request):
    return request.param


@pytest.fixture
def database_url(store, tmp_path, request):
    """The test's database: a SQLite file in its folder, or a new database on the session's PostgreSQL."""
    if store == "sqlite":
        yield str(tmp_path / "postbox.sqlite3")
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database()
    yield url
    server.drop_database(url)


def rows(source, sql, params=None):
    """Read the test's database (its URL or path, or an open one), whichever store it is: a list of tuples."""
    db = database.open_db(source) if isinstance(source, str) else source
    try:
        return [tuple(row) for row in db.execute(sql, params)]
    finally:
        if db is not source:
            db.close()


def base_config(tmp_path, smtp_port, database_url=None):
    return {
        "DATABASE": database_url or str(tmp_path / "postbox.sqlite3"),
        "MAIL_DIR": str(tmp_path / "mail"),
        "SECRET_KEY": "test-secret",
        "OWNER_EMAIL": "owner@florist.example",
        "MAIL_FROM": "forms@florist.example",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": smtp_port,
        "SMTP_SECURITY": "none",
        "SMTP_TIMEOUT": 2,
        "RETRY_FIRST_SECONDS": 0.2,
        "RETRY_MAX_SECONDS": 1,
        "POLL_SECONDS": 0.1,
        "RATE_LIMIT": "off",
        "SPAM_MIN_SECONDS": 0,
        "SPAM_DUPLICATE_MINUTES": 0,
    }


@pytest.fixture
def config(tmp_path, smtp_server, database_url):
    """The settings of a test app: edit them in a test before asking for `app`."""
    return base_config(tmp_path, smtp_server.port, database_url)


@pytest.fixture
def app(config):
    app = create_app(config)
    yield app
    worker = app.extensions.get("postbox.worker")
    if worker is not None:
        worker.stop()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def db(app):
    connection = database.open_db(app.config["DATABASE"])
    yield connection
    connection.close()


def deliver_all(app, db, claimant="test-worker", clock=time.time):
    """Run delivery passes until nothing due is left; return how many messages were claimed."""
    total = 0
    while count := outbox.deliver_due(app, db, claimant, clock):
        total += count
    return total


def count_rows(db, table, where="TRUE", params=None):
    return db.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}", params).scalar()


VALID = {"name": "Anna Rossi", "email": "anna@example.com", "message": "Vorrei un mazzo di rose per sabato."}


# --- A real HTTP receiver (webhooks, messengers) ---------------------------------------------------------

class HTTPReceiver:
    """A real HTTP server on loopback that records every request and answers from a programmable list."""

    def __init__(self):
        self.requests = []
        self.replies = []  # consumed one per request: (status, headers dict, body bytes); empty means 200
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    status, headers, reply = receiver.replies.pop(0) if receiver.replies else (200, {}, b"{}")
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait_for(self, count, timeout=15):
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"expected {count} request(s), got {len(self.requests)}"
            time.sleep(0.05)
        return self.requests


@pytest.fixture
def http_receiver():
    receiver = HTTPReceiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"postbox-test-secret-32-bytes-ok!").decode()


def wait_for_every_channel(expected, smtp_server, http_receiver, id_of_text, timeout=120):
    """Wait until every submission id in `expected` has reached the email, webhook and messenger channels;
    then, after a moment for anything sent twice to arrive, return each channel's deliveries per id.

    A messenger text names no id: it is known by the message it quotes (id_of_text); one of a submission stored
    but never acknowledged (its process was killed) counts under its own text."""
    def delivered():
        email = Counter(int(m["message"]["X-Postbox-Submission"]) for m in smtp_server.messages)
        webhook, notify = Counter(), Counter()
        for request in list(http_receiver.requests):
            if request["path"] == "/hook":
                webhook[Webhook(WEBHOOK_SECRET).verify(request["body"], request["headers"])["data"]["id"]] += 1
            else:
                text = json.loads(request["body"])["message"]
                notify[next((i for line, i in id_of_text.items() if f"\n{line}\n" in f"\n{text}\n"), text)] += 1
        return {"email": email, "webhook": webhook, "notify": notify}

    deadline = time.monotonic() + timeout
    while not all(expected <= set(counts) for counts in delivered().values()):
        assert time.monotonic() < deadline, {name: len(expected - set(counts)) for name, counts in delivered().items()}
        time.sleep(0.5)
    time.sleep(2)  # anything sent twice would arrive now
    return delivered()


def duplicates(deliveries):
    """How many deliveries beyond the first, per channel."""
    return {name: sum(n - 1 for n in by_id.values() if n > 1) for name, by_id in deliveries.items()}


# --- A real gunicorn ------------------------------------------------------------------------------

class LiveServer:
    """`gunicorn -c gunicorn.conf.py app:create_app()` in a subprocess, configured through POSTBOX_* variables."""

    def __init__(self, env, workers=1, command_prefix=()):
        self.command_prefix = list(command_prefix)  # e.g. setpriv, to run as a user file permissions apply to
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **{f"POSTBOX_{key}": str(value) for key, value in env.items()},
                    "PORT": str(self.port), "WEB_CONCURRENCY": str(workers)}
        self.process = None
        self.log_path = None

    def start(self, log_path):
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen(
            [*self.command_prefix, sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:create_app()"],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gunicorn exited: {Path(log_path).read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError("gunicorn did not start listening")

    def kill(self, sig=signal.SIGKILL):
        """Kill the whole process group (master and workers) at once."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(10)
        self.log.close()


@pytest.fixture
def live_server_factory(tmp_path, smtp_server, database_url):
    servers = []

    def start(workers=1, command_prefix=(), **overrides):
        env = {key: value for key, value in base_config(tmp_path, smtp_server.port, database_url).items()
               if key not in ("RATE_LIMIT",)}
        env.update({"RATE_LIMIT": "off"}, **overrides)
        server = LiveServer(env, workers=workers, command_prefix=command_prefix).start(tmp_path / f"gunicorn-{len(servers)}.log")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


# --- A real browser -------------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts"
# axe-core from npm, pinned in the Makefile: `make axe` (part of `make test`) installs it.
AXE = ROOT / ".cache" / "axe" / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium through Playwright; never a downloaded browser, never a skip (`make test` installs it)."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "install Debian's chromium (make chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


# --- Real Redis and PostgreSQL (Debian's), each on a free loopback port in a temporary folder ---------------

REDIS_SERVER = "/usr/bin/redis-server"


def wait_until(ready, what, log_path, timeout=30):
    """Poll ready() until it is true; fail with the server's log when the deadline passes."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not start: {Path(log_path).read_text()[-3000:]}")
        time.sleep(0.05)


class RedisServer:
    """Debian's redis-server on 127.0.0.1 and a free port, nothing kept on disk; stop() and start() again."""

    def __init__(self, directory):
        assert Path(REDIS_SERVER).exists(), "install Debian's redis-server (make redis)"
        self.directory = Path(directory)
        self.directory.mkdir(exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self):
        settings = self.directory / "redis.conf"
        settings.write_text(f'bind 127.0.0.1\nport {self.port}\ndir {self.directory}\nsave ""\nappendonly no\n'
                            f"logfile {self.directory / 'redis.log'}\n")
        self.process = subprocess.Popen([REDIS_SERVER, str(settings)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)

        def answers():
            assert self.process.poll() is None, (self.directory / "redis.log").read_text()
            try:
                return client.ping()
            except redis.ConnectionError:
                return False

        wait_until(answers, "redis-server", self.directory / "redis.log")
        client.close()
        return self

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    """The session's Redis, emptied for this test: a limit counted by another test must not leak into it."""
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def postgres_server():
    """Debian's PostgreSQL for the session (bench/postgres.py starts it), without fsync: the tests kill servers,
    never the machine."""
    try:
        server = PostgresServer().start(durable=False)
    except PostgresMissing as error:
        raise AssertionError(str(error)) from None  # never a skip: `make test` installs it
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh empty PostgreSQL database for this test, dropped after it."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)
