"""The webhook channel: the submission as JSON, POSTed and signed as the Standard Webhooks spec says."""
import http.client
import ipaddress
import json
import socket
import ssl
import uuid
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from standardwebhooks import Webhook

from channels.base import Channel, Permanent, Retry, TargetOff, public_part, url_label
from emails import inbox_link


def label(url):
    return url_label(url, public_part(url))


class WebhookChannel(Channel):
    """Each of the form's webhook URLs is a target; all share the form's signing secret."""

    name = "webhook"

    def targets(self, form):
        return [label(url) for url in form.webhooks]

    def new_message_id(self):
        return f"msg_{uuid.uuid4().hex}"

    def send(self, session, row, submission, form):
        url = next((url for url in form.webhooks if label(url) == row["target"]), None)
        if url is None:
            raise Permanent("this webhook is no longer among the form's webhooks")
        if row["kind"] != "lead":
            raise Permanent(f"webhooks are sent new leads only, not the kind {row['kind']!r}")
        body = json.dumps(payload(submission, self.config["PUBLIC_URL"]), ensure_ascii=False)
        now = datetime.now(timezone.utc)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Postbox",
            "webhook-id": row["message_id"],
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(form.webhook_secret).sign(row["message_id"], now, body),
        }
        status, reason, retry_after = post(url, body.encode(), headers, self.config["WEBHOOK_TIMEOUT"],
                                           self.config["WEBHOOK_ALLOW_PRIVATE"])
        answer = f"{status} {reason}"
        if 200 <= status < 300:
            return answer
        if status == 410:
            raise TargetOff(f"{answer}: the receiver asked to be sent nothing more")
        # Anything else may be fixed at the other end (a redirect we do not follow, a 401 from a wrong secret).
        raise Retry(answer, retry_after=retry_after)

    @staticmethod
    def worst_case_seconds(config):
        return config["WEBHOOK_TIMEOUT"] * 4  # resolve, connect, send, read the status line


def payload(submission, public_url):
    """The JSON a webhook receives: Standard Webhooks' type, timestamp and data."""
    fields = ("id", "form", "received_at", "name", "email", "phone", "subject", "message", "reply_to",
              "mail_subject", "page", "language")
    data = {name: submission.get(name) for name in fields}
    data["extra"] = submission["extra"]
    data["inbox_url"] = inbox_link(public_url, submission["id"])
    return {"type": "submission.created", "timestamp": submission["received_at"], "data": data}


def public_address(host, port, allow_private):
    """Resolve host and return one address to connect to; refuse private ones before any connection (SSRF)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise Retry(f"cannot resolve {host}: {error.strerror}") from None
    addresses = [info[4][0] for info in infos]
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not allow_private and (not ip.is_global or ip.is_multicast):
            raise Permanent(f"refused: {host} is {ip}, a private, loopback or link-local address"
                            " (POSTBOX_WEBHOOK_ALLOW_PRIVATE=true allows it)")
    return addresses[0]


class _PinnedHTTP(http.client.HTTPConnection):
    """Connect to the address that was checked, not to whatever the name resolves to a moment later."""

    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self):
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self):
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post(url, body, headers, timeout, allow_private):
    """POST body to url; return (status, reason, Retry-After in seconds or None). Redirects are not followed."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = public_address(parts.hostname, port, allow_private)
    connection_class = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
    connection = connection_class(parts.hostname, port, address, timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.reason, retry_after_seconds(response.getheader("Retry-After"))
    except ssl.SSLCertVerificationError as error:
        raise Retry(f"TLS certificate not trusted: {error.verify_message}") from None
    except (OSError, http.client.HTTPException) as error:
        raise Retry(f"{type(error).__name__}: {error}") from None
    finally:
        connection.close()


def retry_after_seconds(value):
    """Read Retry-After, given in seconds or as an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None
