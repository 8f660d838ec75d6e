"""The messenger channel: a short text through Apprise (Telegram, Slack, Discord, Matrix, ntfy and many more)."""
import functools
import logging

import apprise

from channels.base import Channel, Permanent, Retry, public_part, url_label
from emails import lead_summary
from redaction import scrub, secret_pieces

# Apprise's own retries are off: the outbox retries, with backoff, across restarts. Its store stays in memory.
ASSET = apprise.AppriseAsset(storage_mode="memory")
ASSET.default_service_retry = 0


def service(url, timeout=None):
    """Return Apprise's plugin for a URL, or None when Apprise does not understand it."""
    plugin = apprise.Apprise.instantiate(url, asset=ASSET, suppress_exceptions=True)
    if plugin is not None and timeout is not None:
        plugin.socket_connect_timeout = plugin.socket_read_timeout = timeout
    return plugin


@functools.lru_cache(maxsize=256)
def label(url):
    """The outbox's label for a messenger URL: Apprise's own masked form, never the token.

    Cached: every submission asks for its form's labels in the request, and loading Apprise's plugin for a
    URL each time would put that work on the visitor's wait; a URL's label never changes.
    """
    plugin = service(url)
    shown = plugin.url(privacy=True) if plugin is not None else public_part(url)
    return url_label(url, shown.split("?", 1)[0])


class NotifyChannel(Channel):
    """Each of the form's Apprise URLs is a target."""

    name = "notify"

    def targets(self, form):
        return [label(url) for url in form.notify]

    def new_message_id(self):
        return ""

    def send(self, session, row, submission, form):
        url = next((url for url in form.notify if label(url) == row["target"]), None)
        if url is None:
            raise Permanent("this messenger is no longer among the form's notify URLs")
        plugin = service(url, timeout=self.config["NOTIFY_TIMEOUT"])
        if row["kind"] not in ("lead", "reminder", "digest"):
            raise Permanent(f"messengers are not sent the kind {row['kind']!r}")
        title, body = lead_summary(submission, form, self.config["PUBLIC_URL"], row["kind"], row.get("digest"))
        with apprise.LogCapture(level=logging.WARNING) as captured:
            delivered = plugin.notify(body=body, title=title)
        if not delivered:
            reason = " ".join(line.split(" - ", 2)[-1] for line in captured.getvalue().splitlines()[-2:])
            raise Retry(scrub(reason or "the messenger refused the notification", secret_pieces(url))[:300])
        return "accepted"

    @staticmethod
    def worst_case_seconds(config):
        # Apprise may make a few requests for one notification (a Telegram chat id lookup, a long text in parts).
        return config["NOTIFY_TIMEOUT"] * 6
