"""A throwaway PostgreSQL: Debian's server, its cluster in a temporary folder, on 127.0.0.1 and a free port."""
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

POSTGRESQL = Path("/usr/lib/postgresql")


class PostgresMissing(RuntimeError):
    """Debian's PostgreSQL server binaries are not installed."""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """Debian's PostgreSQL, its cluster in a temporary folder, on 127.0.0.1 and a free port (and a socket there)."""

    def __init__(self):
        installed = sorted(POSTGRESQL.glob("*/bin/initdb"), key=lambda path: int(path.parent.parent.name))
        if not installed:
            raise PostgresMissing(f"no {POSTGRESQL}/*/bin/initdb: install Debian's postgresql (make postgresql)")
        self.bin = installed[-1].parent
        # initdb refuses to run as root: the cluster belongs to Debian's postgres user when run as root.
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.directory = Path(tempfile.mkdtemp(prefix="postbox-postgres-"))
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self.data = self.directory / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self.databases = itertools.count(1)

    def run(self, tool, *arguments):
        command = [*self.as_owner, str(self.bin / tool), *arguments]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")

    def start(self, durable=True):
        """Start the server. durable=False (the tests: they kill servers, never the machine) turns off fsync."""
        log = self.directory / "postgres.log"
        # --no-sync only skips flushing the freshly made cluster: every commit measured afterwards is flushed.
        self.run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8",
                 "--no-sync")
        # Durable, fsync, full_page_writes and synchronous_commit stay on: the benchmark measures a submission
        # acknowledged only once it is on disk, as SQLite's synchronous=FULL does.
        durability = "on" if durable else "off"
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory} -c fsync={durability}"
                   f" -c full_page_writes={durability} -c synchronous_commit={durability}")
        self.run("pg_ctl", "start", "-D", str(self.data), "-l", str(log), "-o", options, "-w", "-t", "60")
        return self

    def postmaster_pid(self):
        """The server's first process; pg_ctl starts it in a session of its own, with every backend in it."""
        return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])

    def create_database(self):
        """A new empty database; its SQLAlchemy URL."""
        name = f"test_{next(self.databases)}"
        self.execute(f"CREATE DATABASE {name}")
        return self.url.rpartition("/")[0] + f"/{name}"

    def drop_database(self, url):
        self.execute(f"DROP DATABASE {url.rpartition('/')[2]} WITH (FORCE)")

    def connect(self, url=None):
        """A psycopg connection in autocommit mode to the database of `url` (SQLAlchemy's), or to postgres."""
        name = (url or self.url).rpartition("/")[2]
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=name, autocommit=True)

    def execute(self, statement):
        """Run one statement outside a transaction (CREATE DATABASE cannot run inside one)."""
        with self.connect() as connection:
            connection.execute(statement)

    def stop(self):
        try:
            self.run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
