"""A local SMTP server that accepts and discards mail, optionally slowly: `python -m bench.smtp_sink PORT [DELAY]`.

It prints "ready" once listening and, when stopped with SIGTERM, how many messages it accepted.
"""
import asyncio
import signal
import sys
import threading

from aiosmtpd.controller import Controller


def with_pipelining(responses):
    """aiosmtpd's EHLO lines with PIPELINING (RFC 2920) among the extensions, before the last line."""
    return responses[:-1] + ["250-PIPELINING"] + responses[-1:]


class CountingHandler:
    """Accept every message after `delay` seconds and count it."""

    def __init__(self, delay):
        self.delay = delay
        self.accepted = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        """Offer PIPELINING (RFC 2920), as the servers Postbox meets in the field do."""
        session.host_name = hostname
        return with_pipelining(responses)

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        self.accepted += 1
        return "250 Message accepted"


def main():
    port = int(sys.argv[1])
    handler = CountingHandler(float(sys.argv[2]) if len(sys.argv) > 2 else 0.0)
    controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=10)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    controller.start()
    print("ready", flush=True)
    stopped.wait()
    controller.stop()
    print(f"accepted {handler.accepted}", flush=True)


if __name__ == "__main__":
    main()
