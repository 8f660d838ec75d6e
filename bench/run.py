"""Measure Postbox against its references in one run: `python -m bench.run [--quick] [--only NAME]`.

Every scenario runs the production server settings (gunicorn.conf.py) in subprocesses, drives them from a
separate load generator (wrk with bench/post.lua) and compares with a reference measured in the same run.
It prints one table and writes bench/results.json. See docs/PERFORMANCE.md for what each figure means.
"""
import argparse
import hashlib
import html.parser
import http.cookiejar
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from bench.postgres import PostgresMissing, PostgresServer

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
CACHE = BENCH / ".cache"
PYTHON = sys.executable
FLASK = str(Path(PYTHON).parent / "flask")
WRK = shutil.which("wrk") or "/usr/bin/wrk"
SCENARIOS = ("submit", "slow-smtp", "delivery", "export", "inbox", "startup")

FULL = {"rounds": 2, "seconds": 10, "warmup": 2, "backlog": 10_000, "far_backlog": 500, "big": 1_000_000,
        "small": 1_000, "page_requests": 20, "starts": 3}
QUICK = {"rounds": 1, "seconds": 3, "warmup": 1, "backlog": 2_000, "far_backlog": 100, "big": 20_000, "small": 1_000,
         "page_requests": 5, "starts": 2}
# The relay's delay each way for scenario 3's second run: a 20 ms round trip, a mail provider in the same country.
FAR_ONE_WAY_MS = 10


# --- Subprocesses that never outlive the run ------------------------------------------------------

class Processes:
    """Every process this run starts, each in its own session, so a whole server tree can be stopped."""

    def __init__(self):
        self.running = []

    def start(self, command, log_path, **kwargs):
        log = open(log_path, "ab")
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, **kwargs)
        process.log = log
        process.log_path = log_path
        self.running.append(process)
        return process

    def stop(self, process, grace=15):
        """SIGTERM the process group, SIGKILL it after `grace` seconds."""
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            except ProcessLookupError:
                pass
        process.log.close()
        if process in self.running:
            self.running.remove(process)

    def stop_all(self):
        for process in list(self.running):
            self.stop(process, grace=5)


PROCESSES = Processes()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.01)
    raise RuntimeError(f"timed out waiting for {what}")


def start_sink(workdir, delay=0.0):
    """Start an aiosmtpd sink in its own process; return (process, port)."""
    port = free_port()
    process = start_ready([PYTHON, "-m", "bench.smtp_sink", str(port), str(delay)], workdir / f"smtp-{port}.log",
                          "the SMTP sink")
    return process, port


def start_latency_proxy(workdir, target_port, one_way_ms):
    """Start a relay that puts target_port one_way_ms away (bench/latency_proxy.py); return (process, port)."""
    port = free_port()
    process = start_ready([PYTHON, "-m", "bench.latency_proxy", str(port), str(target_port), str(one_way_ms)],
                          workdir / f"latency-{port}.log", "the latency relay")
    return process, port


def start_ready(command, log_path, what):
    """Start a helper server and wait until it prints "ready"."""
    process = PROCESSES.start(command, log_path)
    wait_until(lambda: b"ready" in log_path.read_bytes() or process.poll() is not None, 20, what)
    if process.poll() is not None:
        raise RuntimeError(f"{what} failed: {log_path.read_text()[-2000:]}")
    return process


def postbox_env(workdir, smtp_port, **overrides):
    """POSTBOX_* settings for a benchmark server: a fresh database, no rate limit, SMTP on loopback.

    The duplicate rule keeps its default (10 minutes), as issue 15 asks and the anchor does: every submission
    pays its query, and post.lua's distinct addresses keep each one new.
    """
    settings = {"DATABASE": workdir / "postbox.sqlite3", "MAIL_DIR": workdir / "mail", "SECRET_KEY": "bench-secret",
                "OWNER_EMAIL": "owner@florist.example", "MAIL_FROM": "forms@florist.example",
                "SMTP_HOST": "127.0.0.1", "SMTP_PORT": smtp_port, "SMTP_SECURITY": "none", "SMTP_TIMEOUT": 15,
                "RATE_LIMIT": "off"}
    settings.update(overrides)
    return {f"POSTBOX_{name}": str(value) for name, value in settings.items()}


class Server:
    """gunicorn -c gunicorn.conf.py TARGET, started as a subprocess and stopped with its whole group."""

    def __init__(self, target, workdir, env=None, name="server"):
        self.target = target
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {}), "PORT": str(self.port), "HOST": "127.0.0.1"}
        self.log_path = workdir / f"{name}-{self.port}.log"
        self.process = None

    def start(self, timeout=60):
        """Start gunicorn and return the seconds until GET /contactus was first answered."""
        started = time.perf_counter()
        self.process = PROCESSES.start([PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py", self.target],
                                       self.log_path, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.target} exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/contactus", timeout=5) as response:
                    response.read()
                return time.perf_counter() - started
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.005)
        raise RuntimeError(f"{self.target} did not answer within {timeout} s")

    def stop(self):
        if self.process is not None:
            PROCESSES.stop(self.process)


# --- Load: wrk with bench/post.lua ------------------------------------------------------------------

def run_wrk(url, connections, seconds, id_dir=None):
    """POST the JSON submission for `seconds`; return wrk's summary as counted by post.lua."""
    env = {**os.environ, "BENCH_ID_DIR": str(id_dir or ""), "BENCH_RUN": uuid.uuid4().hex[:12]}
    command = [WRK, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "--latency",
               "-s", str(BENCH / "post.lua"), f"{url}/contactus"]
    output = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    line = next((line for line in output.splitlines() if line.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{output}")
    result = json.loads(line[len("BENCH "):])
    seconds_run = result["duration_us"] / 1e6
    result["acknowledged_per_s"] = result["acknowledged"] / seconds_run
    # wrk's percentiles cover answered requests only: with none answered there is no latency to report.
    result["p50_ms"] = result["p50_us"] / 1000 if result["requests"] else None
    result["p99_ms"] = result["p99_us"] / 1000 if result["requests"] else None
    return result


def load_server(server, connections, settings, workdir, label, outbox=None):
    """Warm up, then measure; the acknowledged ids of both runs are kept under workdir for checking.

    Given the outbox of a design that delivers (Postbox, the anchor), it also counts what was sent during the
    measured run, the CPU every process of the server (and of its database server, if it has one) used from its
    start until the last of its messages was sent, and so the CPU per delivered submission and the
    accepted-and-delivered rate.
    """
    id_dir = workdir / f"ids-{label}"
    id_dir.mkdir(exist_ok=True)
    warm_dir = id_dir / "warmup"
    warm_dir.mkdir(exist_ok=True)
    run_wrk(server.url, connections, settings["warmup"], warm_dir)
    if outbox is not None:
        drained(label, outbox)
    wait_until_idle(server)
    measured_dir = id_dir / "measured"
    measured_dir.mkdir(exist_ok=True)
    cpu_before, started = cpu_seconds(server, outbox), time.time()
    result = run_wrk(server.url, connections, settings["seconds"], measured_dir)
    if outbox is not None:
        ended = time.time()
        result["sent_during_run"] = outbox.sent_between(started, ended)
        done = drained(label, outbox)
        delivered = outbox.sent_between(started, done)
        result["cpu_ms_per_delivered"] = (cpu_seconds(server, outbox) - cpu_before) * 1000 / max(delivered, 1)
        result["sent_per_acknowledged"] = result["sent_during_run"] / max(result["acknowledged"], 1)
        result["accepted_and_delivered_per_s"] = result["acknowledged"] / (done - started)
    return result, id_dir


def wait_until_idle(server, timeout=60):
    """Wait until a page answers promptly: the warm-up's requests still in flight must not eat the measured run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        started = time.perf_counter()
        with urllib.request.urlopen(f"{server.url}/contactus", timeout=timeout) as response:
            response.read()
        if time.perf_counter() - started < 0.1:
            return
        time.sleep(0.1)


def acknowledged_ids(id_dir):
    ids = set()
    for path in id_dir.rglob("ids-*.txt"):
        ids.update(int(line) for line in path.read_text().split())
    return ids


STORED_IDS = "SELECT id FROM submissions"
QUEUED_IDS = "SELECT submission_id FROM outbox WHERE kind = 'lead'"


def check_stored(database, id_dir):
    """Count, after the server stopped, that every acknowledged submission has its row and its outbox row."""
    conn = sqlite3.connect(database)
    try:
        stored = {row[0] for row in conn.execute(STORED_IDS)}
        queued = {row[0] for row in conn.execute(QUEUED_IDS)}
    finally:
        conn.close()
    return compare_stored(acknowledged_ids(id_dir), stored, queued)


def compare_stored(acknowledged, stored, queued):
    return {"acknowledged": len(acknowledged), "submissions": len(stored), "outbox": len(queued),
            "acknowledged_missing_from_submissions": len(acknowledged - stored),
            "acknowledged_missing_from_outbox": len(acknowledged - queued),
            "stored_not_acknowledged": len(stored - acknowledged),
            "ok": acknowledged <= stored and acknowledged <= queued and stored == queued}


# --- Results ------------------------------------------------------------------------------------

class Table:
    """Rows of (scenario, Postbox figure, reference figure, ratio, goal, met?) and the details behind them."""

    def __init__(self):
        self.rows = []
        self.details = {}

    def add(self, scenario, postbox, reference, unit, goal="", met=None, ratio=None, note=""):
        if ratio is None and isinstance(postbox, (int, float)) and isinstance(reference, (int, float)) and reference:
            ratio = postbox / reference
        self.rows.append({"scenario": scenario, "postbox": postbox, "reference": reference, "unit": unit,
                          "ratio": ratio, "goal": goal, "met": met, "note": note})

    def unavailable(self, scenario, reason, goal=""):
        self.rows.append({"scenario": scenario, "postbox": None, "reference": None, "unit": "", "ratio": None,
                          "goal": goal, "met": None, "note": f"n/a: {reason}"})

    def render(self):
        header = ("scenario", "Postbox", "reference", "ratio", "goal", "met?")
        lines = [header]
        for row in self.rows:
            met = {True: "yes", False: "NO", None: "-"}[row["met"]]
            if row["note"].startswith("n/a"):
                met = row["note"]
            lines.append((row["scenario"], _figure(row["postbox"], row["unit"]), _figure(row["reference"], row["unit"]),
                          "" if row["ratio"] is None else f"{row['ratio']:.2f}", row["goal"], met))
        widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
        text = [" | ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]
        text.insert(1, "-+-".join("-" * width for width in widths))
        notes = [f"  {row['scenario']}: {row['note']}" for row in self.rows
                 if row["note"] and not row["note"].startswith("n/a")]
        return "\n".join(text + (["", "notes:", *notes] if notes else []))


def _figure(value, unit):
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "MB":
        return f"{value:.0f} MB"
    if unit == "":
        return f"{value:.2f}"
    return f"{value:,.0f} {unit}".rstrip()


def machine():
    model = ""
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    sqlite_cli = subprocess.run(["sqlite3", "--version"], capture_output=True, text=True).stdout.split()[:1]
    wrk_version = subprocess.run([WRK, "-v"], capture_output=True, text=True)
    return {"cores": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "sqlite_cli": sqlite_cli[0] if sqlite_cli else "",
            "wrk": (wrk_version.stdout + wrk_version.stderr).split("\n")[0].strip(),
            "platform": platform.platform()}


# --- 1. Submission throughput and latency -------------------------------------------------------

# postbox-pg: the same app, on a database of the bench's PostgreSQL (issue 14).
TARGETS = {"postbox": "app:create_app()", "postbox-pg": "app:create_app()", "bare": "bench.bare_app:create_app()",
           "sync": "bench.sync_app:create_app()", "anchor": "bench.anchor_app:create_app()"}
# How to count a run's deliveries in each design's database: (the file, pending messages, sent between two times).
DELIVERY_QUERIES = {
    "postbox": ("postbox.sqlite3", "SELECT COUNT(*) FROM outbox WHERE state = 'pending'",
                "SELECT COUNT(*) FROM outbox WHERE state = 'sent' AND sent_at BETWEEN ? AND ?"),
    "anchor": ("anchor.sqlite3", "SELECT COUNT(*) FROM outbox WHERE state = 'pending'",
               "SELECT COUNT(*) FROM outbox WHERE state = 'sent' AND sent_at BETWEEN ? AND ?"),
}


class SqliteOutbox:
    """A design's outbox in its SQLite file, read by this process: there is no database server to count."""

    def __init__(self, path, pending_sql, sent_between_sql):
        self.path, self.pending_sql, self.sent_between_sql = path, pending_sql, sent_between_sql

    def pending(self):
        return count(self.path, self.pending_sql)

    def sent_between(self, start, end):
        return count(self.path, self.sent_between_sql, (start, end))

    def server_cpu_seconds(self):
        return 0.0

    def check_stored(self, id_dir):
        return check_stored(self.path, id_dir)

    def close(self):
        pass


class PostgresOutbox:
    """Postbox's outbox in a fresh database of the bench's PostgreSQL, read over one connection of this process."""

    PENDING = "SELECT COUNT(*) FROM outbox WHERE state = 'pending'"
    SENT_BETWEEN = "SELECT COUNT(*) FROM outbox WHERE state = 'sent' AND sent_at BETWEEN %s AND %s"

    def __init__(self, postgres):
        self.postgres = postgres
        self.url = postgres.create_database()
        # Opened now, not between two CPU readings: its backend is this process's, left out of the server's CPU.
        self.connection = postgres.connect(self.url)

    def pending(self):
        return self.connection.execute(self.PENDING).fetchone()[0]

    def sent_between(self, start, end):
        return self.connection.execute(self.SENT_BETWEEN, (start, end)).fetchone()[0]

    def server_cpu_seconds(self):
        return postgres_cpu_seconds(self.postgres, excluded_pid=self.connection.info.backend_pid)

    def check_stored(self, id_dir):
        stored = {row[0] for row in self.connection.execute(STORED_IDS)}
        queued = {row[0] for row in self.connection.execute(QUEUED_IDS)}
        return compare_stored(acknowledged_ids(id_dir), stored, queued)

    def close(self):
        self.connection.close()


def open_outbox(kind, run_dir, postgres):
    """The outbox of a design that has one, to count its deliveries and check what it stored; else None."""
    if kind == "postbox-pg":
        return PostgresOutbox(postgres)
    if kind in DELIVERY_QUERIES:
        name, pending, sent_between = DELIVERY_QUERIES[kind]
        return SqliteOutbox(run_dir / name, pending, sent_between)
    return None


def server_env(kind, run_dir, smtp_port, outbox):
    if kind == "postbox":
        return postbox_env(run_dir, smtp_port)
    if kind == "postbox-pg":
        return postbox_env(run_dir, smtp_port, DATABASE=outbox.url)
    return {"BENCH_SMTP_PORT": str(smtp_port), "BENCH_DATABASE": str(run_dir / "anchor.sqlite3")}


def load_once(kind, smtp_port, connections, settings, run_dir, measure_delivery=False, postgres=None):
    """Start a fresh server (and a fresh database), warm it up, measure, stop, count what was stored and sent."""
    run_dir.mkdir(parents=True)
    outbox = open_outbox(kind, run_dir, postgres)
    try:
        server = Server(TARGETS[kind], run_dir, server_env(kind, run_dir, smtp_port, outbox), kind)
        server.start()
        try:
            measured, id_dir = load_server(server, connections, settings, run_dir, kind,
                                           outbox if measure_delivery else None)
        finally:
            server.stop()
        if kind in ("postbox", "postbox-pg"):
            measured["stored"] = outbox.check_stored(id_dir)
    finally:
        if outbox is not None:
            outbox.close()
    return measured


def process_stats():
    """The /proc/PID/stat fields after the command name, by pid, of every process."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        yield int(entry), fields


def tree_cpu_seconds(session_id):
    """CPU seconds (user + system) of every process in a session: a gunicorn master, its workers, their threads."""
    ticks = sum(int(fields[11]) + int(fields[12]) for _, fields in process_stats() if int(fields[3]) == session_id)
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds(postgres, excluded_pid):
    """CPU seconds of a PostgreSQL server but one backend: the postmaster and its children alive, and those it
    has reaped (backends of closed connections, autovacuum workers). Each child calls setsid(): no session holds
    them all, the parent does."""
    postmaster = postgres.postmaster_pid()
    ticks = 0
    for pid, fields in process_stats():
        if pid == postmaster:
            ticks += sum(int(field) for field in fields[11:15])  # utime, stime, cutime, cstime
        elif int(fields[1]) == postmaster and pid != excluded_pid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_seconds(server, outbox):
    """CPU seconds of a server's processes, and of its database server's when it has one."""
    return tree_cpu_seconds(server.process.pid) + (outbox.server_cpu_seconds() if outbox is not None else 0.0)


def count(database, sql, params=()):
    conn = sqlite3.connect(database, timeout=30)
    try:
        return conn.execute(sql, params).fetchone()[0]
    finally:
        conn.close()


def drained(kind, outbox, timeout=300):
    """Wait until the design's outbox is empty; return the time it was."""
    wait_until(lambda: outbox.pending() == 0, timeout, f"{kind}'s outbox to drain")
    return time.time()


def interleaved(runs, settings, workdir, measure_delivery=False, postgres=None):
    """Run each (label, kind, smtp_port, connections) once per round, alternating, and keep the best of the rounds.

    The machine is shared: noise only ever slows a run down, so the best round is the closest to the truth.
    Every round's storage check must pass, not just the best one's.
    """
    rounds = {label: [] for label, *_ in runs}
    for number in range(settings["rounds"]):
        for label, kind, smtp_port, connections in runs:
            rounds[label].append(load_once(kind, smtp_port, connections, settings, workdir / f"{label}-{number}",
                                           measure_delivery, postgres))
    return {label: best_of(results) for label, results in rounds.items()}


def best_of(results):
    best = dict(max(results, key=lambda result: result["acknowledged_per_s"]))
    best["p50_ms"] = min((result["p50_ms"] for result in results if result["p50_ms"] is not None), default=None)
    best["p99_ms"] = min((result["p99_ms"] for result in results if result["p99_ms"] is not None), default=None)
    best["rounds"] = results
    if "stored" in best:
        best["stored"] = sum_stored([result["stored"] for result in results])
    return best


def sum_stored(checks):
    total = {key: sum(check[key] for check in checks) for key in checks[0] if key != "ok"}
    total["ok"] = all(check["ok"] for check in checks)
    return total


def add_stored_row(table, scenario, stored):
    table.add(scenario, f"{stored['acknowledged']} acknowledged",
              f"{stored['submissions']} rows, {stored['outbox']} outbox", "", "all in both tables", stored["ok"],
              note=f"{stored['stored_not_acknowledged']} stored but unacknowledged (in flight when wrk stopped)")


def start_postgres():
    """The bench's PostgreSQL, started once for the scenario; (None, why) when it is not installed or won't start."""
    try:
        postgres = PostgresServer()
    except PostgresMissing as error:
        return None, str(error)
    try:
        postgres.start()
    except RuntimeError as error:
        stop_postgres(postgres)
        return None, f"PostgreSQL did not start: {error}"
    except BaseException:
        stop_postgres(postgres)
        raise
    return postgres, ""


def stop_postgres(postgres):
    """Stop the server, saying why if it would not: a failure here must not hide the one that ended the run."""
    try:
        postgres.stop()
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        print(f"   stopping PostgreSQL failed: {error}", file=sys.stderr, flush=True)


def add_store_rows(table, name, sqlite_run, postgres_run):
    """Postbox on PostgreSQL beside Postbox on SQLite, both measured in this run: context, no goal (issue 14)."""
    table.add(f"{name}: acknowledged/s on PostgreSQL (ref: on SQLite)", postgres_run["acknowledged_per_s"],
              sqlite_run["acknowledged_per_s"], "req/s")
    # Lower is better, so as for the anchor the ratio shown is SQLite's CPU over PostgreSQL's.
    table.add(f"{name}: CPU per delivered submission on PostgreSQL (ref: on SQLite)",
              postgres_run["cpu_ms_per_delivered"], sqlite_run["cpu_ms_per_delivered"], "ms",
              ratio=sqlite_run["cpu_ms_per_delivered"] / postgres_run["cpu_ms_per_delivered"],
              note="PostgreSQL's CPU counts its server processes too (backends, WAL writer, checkpointer...)")
    table.add(f"{name}: p99 on PostgreSQL (ref: on SQLite)", postgres_run["p99_ms"], sqlite_run["p99_ms"], "ms")
    add_stored_row(table, f"{name}: acknowledged = stored, on PostgreSQL", postgres_run["stored"])


def scenario_submit(table, settings, workdir):
    """Postbox's JSON submissions against the minimal anchor (the same work, done minimally), at 16 and 64
    connections; the bare Flask app, which stores and sends nothing, is context only. Postbox runs again on
    PostgreSQL (issue 14), beside itself on SQLite."""
    sink, smtp_port = start_sink(workdir)
    postgres, postgres_missing = None, ""
    try:
        postgres, postgres_missing = start_postgres()
        for connections in (16, 64):
            runs = [("postbox", "postbox", smtp_port, connections), ("anchor", "anchor", smtp_port, connections),
                    ("bare", "bare", smtp_port, connections)]
            if postgres is not None:
                runs.append(("postbox-pg", "postbox-pg", smtp_port, connections))
            results = interleaved(runs, settings, workdir / f"c{connections}", measure_delivery=True,
                                  postgres=postgres)
            measured, anchor, bare = results["postbox"], results["anchor"], results["bare"]
            table.details[f"submit_{connections}"] = results
            name = f"1. submit, {connections} conn"
            table.add(f"{name}: acknowledged/s (ref: anchor)", measured["acknowledged_per_s"],
                      anchor["acknowledged_per_s"], "req/s", "≥ 0.8×",
                      measured["acknowledged_per_s"] >= 0.8 * anchor["acknowledged_per_s"])
            # Lower is better: the ratio shown is the anchor's CPU over Postbox's, so ≥ 0.8 is the goal too.
            table.add(f"{name}: CPU per delivered submission (ref: anchor)", measured["cpu_ms_per_delivered"],
                      anchor["cpu_ms_per_delivered"], "ms", "≥ 0.8×",
                      anchor["cpu_ms_per_delivered"] >= 0.8 * measured["cpu_ms_per_delivered"],
                      ratio=anchor["cpu_ms_per_delivered"] / measured["cpu_ms_per_delivered"])
            table.add(f"{name}: accepted and delivered/s (ref: anchor)", measured["accepted_and_delivered_per_s"],
                      anchor["accepted_and_delivered_per_s"], "req/s", "≥ 0.8×",
                      measured["accepted_and_delivered_per_s"] >= 0.8 * anchor["accepted_and_delivered_per_s"])
            table.add(f"{name}: sent during the run / acknowledged", measured["sent_per_acknowledged"],
                      anchor["sent_per_acknowledged"], "", "≥ 0.9", measured["sent_per_acknowledged"] >= 0.9,
                      ratio=measured["sent_per_acknowledged"])
            table.add(f"{name}: acknowledged/s (context: bare app)", measured["acknowledged_per_s"],
                      bare["acknowledged_per_s"], "req/s")
            table.add(f"{name}: p50 (ref: anchor)", measured["p50_ms"], anchor["p50_ms"], "ms")
            table.add(f"{name}: p99 (ref: anchor)", measured["p99_ms"], anchor["p99_ms"], "ms")
            add_stored_row(table, f"{name}: acknowledged = stored", measured["stored"])
            if postgres is not None:
                add_store_rows(table, name, measured, results["postbox-pg"])
            else:
                table.unavailable(f"{name}: Postbox on PostgreSQL (ref: on SQLite)", postgres_missing)
    finally:
        PROCESSES.stop(sink)
        if postgres is not None:
            stop_postgres(postgres)


# --- 2. Slow and absent SMTP --------------------------------------------------------------------

def scenario_slow_smtp(table, settings, workdir):
    """p99 with SMTP taking 2 s per message and with SMTP down, against healthy SMTP; and the synchronous design."""
    healthy_sink, healthy_port = start_sink(workdir)
    slow_sink, slow_port = start_sink(workdir, delay=2.0)
    down_port = free_port()  # nothing listens here
    try:
        results = interleaved([
            ("healthy", "postbox", healthy_port, 16), ("slow", "postbox", slow_port, 16),
            ("down", "postbox", down_port, 16), ("sync_healthy", "sync", healthy_port, 16),
            ("sync_slow", "sync", slow_port, 16), ("sync_down", "sync", down_port, 16)], settings, workdir)
    finally:
        PROCESSES.stop(healthy_sink)
        PROCESSES.stop(slow_sink)
    table.details["slow_smtp"] = results
    healthy, slow, down = results["healthy"], results["slow"], results["down"]
    for label, run in (("SMTP 2 s/msg", slow), ("SMTP down", down)):
        table.add(f"2. p99, {label} (ref: healthy SMTP)", run["p99_ms"], healthy["p99_ms"], "ms", "≤ 1.2×",
                  run["p99_ms"] <= 1.2 * healthy["p99_ms"])
        add_stored_row(table, f"2. acknowledged = stored, {label}", run["stored"])
    table.add("2. p99, SMTP 2 s/msg (ref: sync design)", slow["p99_ms"], results["sync_slow"]["p99_ms"], "ms")
    for label, key in (("healthy SMTP", "healthy"), ("SMTP 2 s/msg", "slow"), ("SMTP down", "down")):
        reference = results[f"sync_{key}"]
        table.add(f"2. acknowledged/s, {label} (ref: sync design)", results[key]["acknowledged_per_s"],
                  reference["acknowledged_per_s"], "req/s",
                  note=f"sync design refused {reference['refused']} submissions" if reference["refused"] else "")


# --- 3. Delivery throughput ---------------------------------------------------------------------

def run_json(command, log_path, timeout=1800):
    with open(log_path, "ab") as log:
        output = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, timeout=timeout,
                                check=True, start_new_session=True).stdout
    return json.loads(output.decode().strip().splitlines()[-1])


def scenario_delivery(table, settings, workdir):
    """Drain a backlog through outbox.deliver_due against a plain smtplib loop, to the same sink: on loopback, and
    through a relay that puts the sink FAR_ONE_WAY_MS away, as real SMTP servers are."""
    sink, port = start_sink(workdir)
    try:
        near = delivery_run(workdir / "delivery", port, settings["backlog"])
        proxy, far_port = start_latency_proxy(workdir, port, FAR_ONE_WAY_MS)
        try:
            far = delivery_run(workdir / "delivery-far", far_port, settings["far_backlog"])
        finally:
            PROCESSES.stop(proxy)
    finally:
        PROCESSES.stop(sink)
    accepted = re.search(r"accepted (\d+)", sink.log_path.read_text())
    table.details["delivery"] = {**near, "far": far, "far_one_way_ms": FAR_ONE_WAY_MS,
                                 "sink_accepted": int(accepted.group(1)) if accepted else None}
    # Issue 15 raised the goal from 0.8× (issue 5) to 1.0×, with every outcome committed on its own.
    table.add(f"3. delivery, backlog of {near['count']:,}", near["postbox_rate"], near["smtplib_rate"], "msg/s",
              "≥ 1.0×", near["postbox_rate"] >= near["smtplib_rate"] and near["postbox"]["sent"] == near["count"])
    table.add(f"3. delivery, server {2 * FAR_ONE_WAY_MS} ms away, backlog of {far['count']:,}", far["postbox_rate"],
              far["smtplib_rate"], "msg/s", "every message sent", far["postbox"]["sent"] == far["count"],
              note="the sink offers PIPELINING, as real servers do; smtplib does not use it")


def delivery_run(run_dir, port, count):
    """Queue `count` owner's emails, drain them with Postbox to port, then send as many with the smtplib loop."""
    run_dir.mkdir()
    log_path = run_dir / "delivery.log"
    queued = run_json([PYTHON, "-m", "bench.delivery", "backlog", str(run_dir), str(count)], log_path)
    postbox = run_json([PYTHON, "-m", "bench.delivery", "postbox", str(run_dir), str(port)], log_path)
    reference = run_json([PYTHON, "-m", "bench.delivery", "smtplib", str(port), str(count)], log_path)
    return {"count": count, "queued": queued, "postbox": postbox, "smtplib": reference,
            "postbox_rate": postbox["sent"] / postbox["seconds"],
            "smtplib_rate": reference["sent"] / reference["seconds"]}


# --- Big databases for 4 and 5 ------------------------------------------------------------------

def big_database(rows, workdir):
    """Return a cached database of `rows` realistic submissions, made by bench/make_big_db.py."""
    CACHE.mkdir(exist_ok=True)
    name, command = "make_big_db", [PYTHON, str(BENCH / "make_big_db.py")]
    # The generator's own hash is in the name: when it changes, its old databases are stale.
    digest = hashlib.sha256((BENCH / "make_big_db.py").read_bytes()).hexdigest()[:8]
    path = CACHE / f"{name}-{rows}-{digest}.sqlite3"
    if not path.exists():
        for stale in CACHE.glob(f"{name}-{rows}-*.sqlite3*"):
            stale.unlink()
        print(f"   generating {rows:,} submissions into {path.relative_to(ROOT)} (cached for later runs)...", flush=True)
        partial = CACHE / f"{name}-{rows}-{digest}.partial"
        for leftover in CACHE.glob(f"{name}-{rows}-*.partial*"):
            leftover.unlink()
        with open(workdir / "generate.log", "ab") as log:
            subprocess.run([*command, str(partial), str(rows)], cwd=ROOT, stdout=log, stderr=log, check=True)
        conn = sqlite3.connect(partial)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        for suffix in ("-wal", "-shm"):
            Path(f"{partial}{suffix}").unlink(missing_ok=True)
        partial.rename(path)
    return path


def flask_command(args, database, workdir, stdin=None):
    env = {**os.environ, **postbox_env(workdir, 25, DATABASE=database, SMTP_HOST="", DELIVERY="external")}
    return subprocess.run([FLASK, "--app", "app", *args], cwd=ROOT, env=env, input=stdin, capture_output=True,
                          text=True, timeout=600)


def has_command(name, workdir):
    probe = flask_command([name, "--help"], workdir / "probe.sqlite3", workdir)
    return probe.returncode == 0


# --- 4. Export at scale -------------------------------------------------------------------------

def timed_process(command, env=None):
    """Run a command; return (wall seconds, peak RSS in MB of it and its children, exit status)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    PROCESSES.running.append(process)
    process.log = open(os.devnull, "wb")
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    PROCESSES.stop(process)
    return seconds, usage.ru_maxrss / 1024, process.returncode, stderr


def scenario_export(table, settings, workdir):
    """`flask --app app export --format csv` against `sqlite3 -csv` on the same file."""
    rows = settings["big"]
    if not has_command("export", workdir):
        table.unavailable(f"4. export {rows:,} rows: time", "export command missing", "≤ 2×")
        table.unavailable(f"4. export {rows:,} rows: peak RSS", "export command missing", "< 100 MB")
        return
    database = big_database(rows, workdir)
    flask_command(["init-db"], database, workdir)  # migrations first, so they are not timed
    output = workdir / "export.csv"
    env = {**os.environ, **postbox_env(workdir, 25, DATABASE=database, SMTP_HOST="", DELIVERY="external")}
    seconds, rss, status, stderr = timed_process(
        [FLASK, "--app", "app", "export", "--format", "csv", "--output", str(output)], env)
    if status != 0:
        raise RuntimeError(f"export failed ({status}): {stderr[-2000:]}")
    exported_lines = _count_lines(output)
    output.unlink()
    reference_output = workdir / "sqlite3.csv"
    ref_seconds, ref_rss, ref_status, ref_stderr = timed_process(
        ["sqlite3", "-csv", "-header", "-cmd", f".output {reference_output}", str(database), "select * from submissions"])
    if ref_status != 0:
        raise RuntimeError(f"sqlite3 failed: {ref_stderr}")
    reference_lines = _count_lines(reference_output)
    reference_output.unlink()
    table.details["export"] = {"rows": rows, "postbox_seconds": seconds, "postbox_rss_mb": rss,
                               "postbox_lines": exported_lines, "sqlite3_seconds": ref_seconds,
                               "sqlite3_rss_mb": ref_rss, "sqlite3_lines": reference_lines}
    table.add(f"4. export {rows:,} rows: time", seconds, ref_seconds, "s", "≤ 2×", seconds <= 2 * ref_seconds,
              note=f"{exported_lines:,} lines vs {reference_lines:,}")
    table.add(f"4. export {rows:,} rows: peak RSS", rss, ref_rss, "MB", "< 100 MB", rss < 100)


def _count_lines(path):
    count = 0
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            count += chunk.count(b"\n")
    return count


# --- 5. Inbox at scale --------------------------------------------------------------------------

class FormFields(html.parser.HTMLParser):
    """The inputs of the first form holding a password field: names, types and values."""

    def __init__(self):
        super().__init__()
        self.forms, self.current = [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.current = {"action": attrs.get("action") or "", "inputs": []}
            self.forms.append(self.current)
        elif tag == "input" and self.current is not None and attrs.get("name"):
            self.current["inputs"].append(attrs)

    def handle_endtag(self, tag):
        if tag == "form":
            self.current = None


class AdminSession:
    """A logged-in browser: a cookie jar and the login form filled in, CSRF token included."""

    def __init__(self, base_url):
        self.base_url = base_url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path):
        with self.opener.open(f"{self.base_url}{path}", timeout=120) as response:
            return response.status, response.geturl(), response.read()

    def login(self, email, password):
        _, login_url, page = self.get("/admin/login")
        parser = FormFields()
        parser.feed(page.decode("utf-8", "replace"))
        form = next(form for form in parser.forms if any(i.get("type") == "password" for i in form["inputs"]))
        data = {}
        for field in form["inputs"]:
            kind, name = field.get("type", "text"), field["name"]
            if kind == "password":
                data[name] = password
            elif kind == "email" or "email" in name or "user" in name:
                data[name] = email
            elif kind in ("hidden", "text"):
                data[name] = field.get("value", "")
        action = urllib.parse.urljoin(login_url, form["action"] or login_url)
        request = urllib.request.Request(action, data=urllib.parse.urlencode(data).encode(), method="POST")
        with self.opener.open(request, timeout=60) as response:
            response.read()
        status, landed, _ = self.get("/admin/")
        if "/login" in landed:
            raise RuntimeError("could not log in to /admin with the created user")

    def time_page(self, path, requests):
        """Median seconds to fetch `path`, after one warm-up request."""
        self.get(path)
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            status, _, _ = self.get(path)
            times.append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError(f"{path} answered {status}")
        return statistics.median(times)


def search_word(database):
    """A word from a message in the middle of the table: present, but in a minority of rows."""
    conn = sqlite3.connect(database)
    try:
        middle = conn.execute("SELECT MAX(id) / 2 FROM submissions").fetchone()[0]
        message = conn.execute("SELECT message FROM submissions WHERE id >= ? AND message != '' LIMIT 1",
                               [middle]).fetchone()[0]
    finally:
        conn.close()
    words = sorted((word for word in re.findall(r"\w+", message) if len(word) > 4), key=len, reverse=True)
    return words[0] if words else "rose"


def inbox_pages(database, settings, workdir, label, word):
    run_dir = workdir / f"inbox-{label}"
    run_dir.mkdir()
    email, password = "owner@florist.example", "bench-password-1234"
    created = flask_command(["create-user", email], database, run_dir, stdin=f"{password}\n")
    if created.returncode != 0 and "exist" not in (created.stdout + created.stderr).lower():
        raise RuntimeError(f"create-user failed: {created.stdout}{created.stderr}")
    server = Server("app:create_app()", run_dir,
                    postbox_env(run_dir, 25, DATABASE=database, SMTP_HOST="", DELIVERY="external"), "inbox")
    server.start()
    try:
        session = AdminSession(server.url)
        session.login(email, password)
        pages = {"list": "/admin/", "search": f"/admin/?q={urllib.parse.quote(word)}", "filter": "/admin/?status=new"}
        return {name: session.time_page(path, settings["page_requests"]) for name, path in pages.items()}
    finally:
        server.stop()


def scenario_inbox(table, settings, workdir):
    """The list, a search and a filtered page at the big size against the same pages at 1,000 rows."""
    big, small = settings["big"], settings["small"]
    names = ("list", "search", "filter")
    if not has_command("create-user", workdir):
        for name in names:
            table.unavailable(f"5. inbox {name}, {big:,} vs {small:,}", "admin (create-user, /admin) missing", "≤ 2×")
        return
    big_path, small_path = big_database(big, workdir), big_database(small, workdir)
    word = search_word(small_path)
    for path in (big_path, small_path):
        flask_command(["init-db"], path, workdir)
    at_big = inbox_pages(big_path, settings, workdir, "big", word)
    at_small = inbox_pages(small_path, settings, workdir, "small", word)
    table.details["inbox"] = {"word": word, "big_rows": big, "small_rows": small, "big_seconds": at_big,
                              "small_seconds": at_small}
    for name in names:
        table.add(f"5. inbox {name}, {big:,} vs {small:,} rows", at_big[name] * 1000, at_small[name] * 1000, "ms",
                  "≤ 2×", at_big[name] <= 2 * at_small[name])


# --- 6. Start-up --------------------------------------------------------------------------------

def scenario_startup(table, settings, workdir):
    """Seconds from spawning gunicorn to the first answered GET /contactus, median of a few starts."""
    timings = {"postbox": [], "bare": []}
    for attempt in range(settings["starts"]):
        run_dir = workdir / f"startup-{attempt}"
        run_dir.mkdir()
        for name, target, env in (("postbox", "app:create_app()", postbox_env(run_dir, free_port())),
                                  ("bare", "bench.bare_app:create_app()", {})):
            server = Server(target, run_dir, env, name)
            try:
                timings[name].append(server.start())
            finally:
                server.stop()
    postbox, bare = statistics.median(timings["postbox"]), statistics.median(timings["bare"])
    table.details["startup"] = timings
    table.add("6. start-up to first answered request", postbox, bare, "s", note="fresh database each start")


# --- Main ---------------------------------------------------------------------------------------

def interrupted(signum, frame):
    """Treat SIGTERM like Ctrl+C, so the servers are stopped on the way out."""
    raise KeyboardInterrupt


RUNNERS = {"submit": scenario_submit, "slow-smtp": scenario_slow_smtp, "delivery": scenario_delivery,
           "export": scenario_export, "inbox": scenario_inbox, "startup": scenario_startup}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs and small tables, for iterating")
    parser.add_argument("--only", action="append", choices=SCENARIOS, help="run only this scenario (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory with the server logs")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    chosen = args.only or list(SCENARIOS)
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    workdir = Path(tempfile.mkdtemp(prefix="postbox-bench-"))
    table = Table()
    failures = {}
    started = time.monotonic()
    try:
        for name in chosen:
            print(f"-- {name}", flush=True)
            scenario_dir = workdir / name
            scenario_dir.mkdir()
            try:
                RUNNERS[name](table, settings, scenario_dir)
            except (RuntimeError, subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
                failures[name] = f"{type(error).__name__}: {error}"
                table.unavailable(f"{SCENARIOS.index(name) + 1}. {name}", f"failed: {error}"[:120])
                print(f"   {name} failed: {error}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping every server", file=sys.stderr)
        raise SystemExit(130)
    finally:
        PROCESSES.stop_all()
        if args.keep or failures:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(table.render())
    results = {"mode": "quick" if args.quick else "full", "scenarios": chosen, "settings": settings,
               "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(time.monotonic() - started, 1),
               "rows": table.rows, "details": table.details, "failures": failures, "machine": machine()}
    temporary = BENCH / "results.json.tmp"
    temporary.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    temporary.replace(BENCH / "results.json")
    print(f"\nwritten to {(BENCH / 'results.json').relative_to(ROOT)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
