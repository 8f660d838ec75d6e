"""What every channel shares: the base class, and the answers a channel may give about one message."""
import hashlib
from contextlib import nullcontext
from urllib.parse import urlsplit


class Retry(Exception):
    """This message was not delivered this time; try it again later (after retry_after seconds, if given)."""

    def __init__(self, detail, retry_after=None):
        super().__init__(detail)
        self.retry_after = retry_after


class Permanent(Exception):
    """This message can never be delivered to this target."""


class TargetOff(Permanent):
    """The target asked never to be sent anything again (a webhook's 410 Gone)."""


class ChannelDown(Exception):
    """The channel itself failed (connection, greeting, login, sender refused): no one message is to blame."""


class Channel:
    """What every channel shares; subclasses set `name` and implement targets() and send()."""

    name = ""
    # True when one failure means the whole channel is down (one SMTP server), False when each target
    # stands alone (one webhook host being down says nothing about another).
    shared_connection = False

    def __init__(self, config):
        self.config = config

    def targets(self, form):
        """Return the form's targets on this channel, as the labels stored in the outbox."""
        raise NotImplementedError

    def new_message_id(self):
        """Return the id a message keeps across every retry."""
        raise NotImplementedError

    def session(self):
        """Return a context manager for a batch's shared state, entered lazily before the first send."""
        return nullcontext()

    def send(self, session, row, submission, form):
        """Deliver one outbox row; return the other side's answer, or raise Retry, Permanent or ChannelDown."""
        raise NotImplementedError

    @staticmethod
    def worst_case_seconds(config):
        """The longest one message can take, which a lease must cover."""
        raise NotImplementedError

    def describe(self):
        return self.name


def url_label(url, shown):
    """A target's label for a URL holding secrets: what may be shown, and a digest telling two URLs apart."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:8]
    return f"{shown} #{digest}"


def public_part(url):
    """scheme://host/path of a URL, without credentials, query or fragment (where tokens hide)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
