"""gunicorn's gevent worker, stopping without resetting the connections that wait to be accepted.

When the last process holding a listening socket closes it, the kernel resets every connection still in
its accept queue: a visitor who connected a moment before a restart sees "connection reset", not an
answer. So, once the master has let go of the socket (a stop, not a reload), the worker first tells the
kernel to drop new connection attempts (the clients retry them a second later, and then reach the restarted
server or are refused), keeps accepting and serving what is already queued or half-way through its
handshake, and only then closes.
"""
import ctypes
import os
import socket
import struct
import time

import gevent
from gunicorn.workers.ggevent import GeventWorker

# How long a stop waits for the accept queue to empty before stopping as gunicorn does (its graceful timeout then
# serves what was accepted). A queue holds at most the visitors of the last moment: it empties in milliseconds.
DRAIN_SECONDS = 5

SO_ATTACH_FILTER = 26  # linux/asm-generic/socket.h
# A classic BPF program run on each TCP segment reaching the listening socket (the data starts at the TCP
# header): drop a SYN without ACK, that is a new connection attempt; keep everything else, so the handshakes
# already under way complete and land in the queue that is still being served.
# Instructions are struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}.
_SYN_ONLY_DROP = [
    (0x30, 0, 0, 13),          # ldb [13]: the TCP flags
    (0x54, 0, 0, 0x12),        # and #SYN|ACK
    (0x15, 0, 1, 0x02),        # jeq #SYN: a bare SYN drops, anything else jumps to keep
    (0x06, 0, 0, 0),           # ret #0: drop
    (0x06, 0, 0, 0xFFFFFFFF),  # ret #-1: keep the whole segment
]
_FILTER = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *line) for line in _SYN_ONLY_DROP))
_FILTER_PROGRAM = struct.pack("HP", len(_SYN_ONLY_DROP), ctypes.addressof(_FILTER))  # struct sock_fprog


class DrainingGeventWorker(GeventWorker):
    def handle_exit(self, sig, frame):
        if self.master_has_closed_listeners():
            self.drop_new_connections()
            # Out of the signal handler, which must not block: stop once what is queued has been accepted.
            gevent.spawn(self.exit_when_drained, sig, frame)
            return
        super().handle_exit(sig, frame)

    def exit_when_drained(self, sig, frame):
        """Go on accepting until every listener's accept queue is empty, then stop as gunicorn does.

        gunicorn's own loop gives a stopping worker one more second of accepting, then closes: under load a
        queued connection could still be waiting then, and was reset. Handshakes under way when new ones were
        dropped complete within a round trip, so the queue is read only after a moment.
        """
        deadline = time.monotonic() + DRAIN_SECONDS
        gevent.sleep(0.05)
        while any(queued_connections(listener) for listener in self.sockets) and time.monotonic() < deadline:
            gevent.sleep(0.02)
        super().handle_exit(sig, frame)

    def master_has_closed_listeners(self):
        """True when the master stops for good: it closes its listening sockets before it stops workers.

        On a reload (HUP) or a worker's recycling the master keeps them, and other workers go on accepting.
        """
        sockets = {f"socket:[{os.fstat(listener.fileno()).st_ino}]" for listener in self.sockets}
        try:
            held = {os.readlink(f"/proc/{self.ppid}/fd/{fd}") for fd in os.listdir(f"/proc/{self.ppid}/fd")}
        except OSError:
            return False  # not Linux, or no /proc: stop as gunicorn always did
        return not sockets & held

    def drop_new_connections(self):
        """Attach the filter that drops a new connection's SYN to every listening socket."""
        for listener in self.sockets:
            try:
                listener.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, _FILTER_PROGRAM)
            except OSError as error:
                self.log.warning("could not hold back new connections on %s: %s", listener, error)


def queued_connections(listener):
    """How many connections wait in a listening socket's accept queue: Linux's TCP_INFO gives it as
    tcpi_unacked for a socket in LISTEN (struct tcp_info: eight bytes of flags, then u32 rto, ato, snd_mss,
    rcv_mss, unacked). A listener that is not TCP, or a kernel that will not say, counts as empty."""
    try:
        info = listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 32)
    except (OSError, AttributeError):
        return 0
    return struct.unpack_from("I", info, 24)[0] if len(info) >= 28 else 0
