"""Delivery in its own process, beside the web process: started and watched by gunicorn's master, woken by
the web process through a datagram, so the web process's event loop never builds or sends a message."""
import hashlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

log = logging.getLogger("postbox.delivery")
RESTART_PAUSE_SECONDS = 1


def wake_address(database):
    """The abstract Unix socket (Linux) the delivery process listens on, one per database."""
    digest = hashlib.sha256(os.path.abspath(database).encode()).hexdigest()[:24]
    return f"\0postbox-wake-{digest}"


_sender = threading.local()


def wake(database):
    """Nudge the delivery process: a message is waiting. Never blocks; a missed nudge costs one poll interval."""
    sender = getattr(_sender, "socket", None)
    if sender is None:
        sender = _sender.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sender.setblocking(False)
    try:
        sender.sendto(b"!", wake_address(database))
    except OSError:
        pass  # no delivery process listening (yet), or its queue is full: it polls anyway


def listen_for_wakes(database, worker):
    """In the delivery process: wake the worker at every nudge, in a daemon thread."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        listener.bind(wake_address(database))
    except OSError:
        listener.close()
        return  # another delivery process for this database listens already: this one polls
    def serve():
        while True:
            listener.recv(16)
            worker.wake()
    threading.Thread(target=serve, name="postbox-wake", daemon=True).start()


class DeliveryProcess:
    """`flask --app app deliver`, started by gunicorn's master, restarted if it dies, stopped with the master."""

    def __init__(self, graceful_seconds, arbiter=None):
        self.graceful_seconds = graceful_seconds
        self.arbiter = arbiter  # gunicorn's master: it lets go of its listening sockets as it starts stopping
        self.process = None
        self.stopping = False
        self.master_pid = os.getpid()
        self.watcher = None

    def start(self):
        import gevent  # the master runs gevent's loop: gunicorn.conf.py patches everything before it starts

        self.process = self.spawn()
        # A bare greenlet, not a Thread: a forked web worker inherits it, and a patched Thread ending there
        # logged a KeyError traceback from threading's bookkeeping at every start.
        self.watcher = gevent.spawn(self.watch)
        return self

    def spawn(self):
        process = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "deliver"])
        log.info("delivery process %s started beside the web process", process.pid)
        return process

    def watch(self):
        while not self.stopping:
            if os.getpid() != self.master_pid:
                return  # a forked web worker inherited this watcher: only the master watches
            if self.process.poll() is not None and not self.stopping and not self.master_is_stopping():
                # Its exit status says little: the master reaps every child it has, and then this reads 0.
                time.sleep(RESTART_PAUSE_SECONDS)  # a stop signalled to the whole group reaches the master meanwhile
                if self.stopping or self.master_is_stopping():
                    return
                log.error("delivery process %s exited; starting another", self.process.pid)
                self.process = self.spawn()
            time.sleep(0.5)

    def master_is_stopping(self):
        """A stop of the whole server (systemd, Ctrl+C) reaches the delivery process too, before on_exit calls
        stop(): the master has closed its listening sockets by then, where a reload (HUP) keeps them."""
        return self.arbiter is not None and not self.arbiter.LISTENERS

    def stop(self):
        """SIGTERM: the process finishes the message in flight and gives the rest of its claim back."""
        self.stopping = True
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                return  # it ended, and the master reaped it, just now
            try:
                self.process.wait(self.graceful_seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
