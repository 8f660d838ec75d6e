"""The email channel: one outbox row per owner address, sent over SMTP as RFC 5321 means its replies."""
import os
import re
import smtplib
import ssl
import time
import uuid

from email_validator import EmailNotValidError, validate_email

from channels.base import Channel, ChannelDown, Permanent, Retry
from emails import build_message, new_message_id

# smtplib opens the connection, EHLO, STARTTLS, EHLO again and AUTH: each one command with its own timeout.
COMMANDS_BEFORE_DATA = 8
# RFC 5321 3.8: "421 Service not available, closing transmission channel", at any command; nothing follows it.
CLOSING = 421


class EmailChannel(Channel):
    """The owner's email, to each of the form's owner addresses."""

    name = "email"
    shared_connection = True

    def targets(self, form):
        return list(form.owners)

    def new_message_id(self):
        return new_message_id(self.config["MAIL_FROM"])

    def session(self):
        if self.config["SMTP_HOST"]:
            return SMTPSession(self.config)
        return FileSession(self.config["MAIL_DIR"])

    def send(self, session, row, submission, form):
        recipient = envelope_address(row["target"])
        message = build_message(row, submission, form)
        data = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
        return session.send(data, self.config["MAIL_FROM"], recipient, submission["id"])

    @staticmethod
    def worst_case_seconds(config):
        return config["SMTP_TIMEOUT"] * COMMANDS_BEFORE_DATA + config["SMTP_DATA_TIMEOUT"]

    def describe(self):
        if not self.config["SMTP_HOST"]:
            return f"files in {self.config['MAIL_DIR']} (no POSTBOX_SMTP_HOST set)"
        return f"SMTP {self.config['SMTP_HOST']}:{self.config['SMTP_PORT']} ({self.config['SMTP_SECURITY']})"


class SMTPSession:
    """One SMTP connection for a batch, opened at the first message and again after a broken one."""

    def __init__(self, config):
        self.config = config
        self.smtp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close(polite=True)

    def close(self, polite=False):
        if self.smtp is None:
            return
        try:
            if polite:
                self.smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            self.smtp.close()
            self.smtp = None

    def connect(self):
        """Greeting, EHLO, STARTTLS and login; any refusal is about the connection or the account."""
        config = self.config
        host, port, timeout = config["SMTP_HOST"], config["SMTP_PORT"], config["SMTP_TIMEOUT"]
        smtp = smtplib.SMTP_SSL(context=ssl.create_default_context(), local_hostname=config["SMTP_HELO"],
                                timeout=timeout) if config["SMTP_SECURITY"] == "ssl" else \
            smtplib.SMTP(local_hostname=config["SMTP_HELO"], timeout=timeout)
        try:
            code, reply = smtp.connect(host, port)
            if code != 220:
                raise ChannelDown(f"greeting refused: {code} {_text(reply)}")
            smtp.ehlo_or_helo_if_needed()
            if config["SMTP_SECURITY"] == "starttls":
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if config["SMTP_USERNAME"]:
                smtp.login(config["SMTP_USERNAME"], config["SMTP_PASSWORD"])
        except BaseException as error:
            smtp.close()  # a refused login or TLS handshake must not leave the socket open
            if isinstance(error, ChannelDown):
                raise
            if isinstance(error, Exception):
                raise ChannelDown(connection_problem(error)) from error
            raise
        self.smtp = smtp

    def send(self, data, sender, recipient, submission_id):
        if self.smtp is None:
            self.connect()
        try:
            return self._transaction(data, sender, recipient)
        except (smtplib.SMTPServerDisconnected, OSError) as error:
            # The connection broke mid-message: this one may or may not have arrived; the next reconnects.
            self.close()
            raise Retry(connection_problem(error)) from error
        except (ChannelDown, Permanent, Retry):
            raise  # a refusal, after which _transaction reset the session or hung up
        except Exception:
            # Anything else may have left the server inside this message's transaction, where the next MAIL FROM
            # would be refused ("503 nested MAIL command") and pause the channel for every message: reconnect.
            self.close()
            raise

    def _transaction(self, data, sender, recipient):
        smtp = self.smtp
        envelope = (f"MAIL FROM:{smtplib.quoteaddr(sender)}", f"RCPT TO:{smtplib.quoteaddr(recipient)}", "DATA")
        replies = []
        if smtp.has_extn("pipelining"):
            # RFC 2920: the three commands in one write and their replies read in order, so a message takes two
            # round trips instead of four: most of its time when the server is far away.
            smtp.send("".join(f"{command}\r\n" for command in envelope))
            for _ in envelope:
                replies.append(smtp.getreply())
                if replies[-1][0] == CLOSING:
                    break  # the server hangs up after it: no other reply comes
        else:
            for command in envelope:
                smtp.putcmd(command)
                replies.append(smtp.getreply())
                if replies[-1][0] not in (250, 251, 354):
                    break
        refusal = _envelope_refusal(replies, recipient)
        if refusal is not None:
            self._abandon(replies[-1][0])
            raise refusal
        # RFC 5321 4.5.3.2.6: the reply to the end of the data may take 10 minutes; leaving earlier means
        # sending the same message again at every retry.
        smtp.sock.settimeout(self.config["SMTP_DATA_TIMEOUT"])
        try:
            smtp.send(_dot_stuffed(data))
            code, reply = smtp.getreply()
        finally:
            if smtp.sock is not None:
                smtp.sock.settimeout(self.config["SMTP_TIMEOUT"])
        if code != 250:
            self._abandon(code)
            raise _refusal("message refused", code, reply)
        return f"{code} {_text(reply)}"

    def _abandon(self, last_code):
        """After a refusal: RSET for the next message, or hang up when the server is closing (421) or took DATA
        after refusing MAIL or RCPT (354), where it waits for content that must not come."""
        if last_code in (CLOSING, 354):
            self.close()
        else:
            self.smtp.rset()


def _envelope_refusal(replies, recipient):
    """The exception for the first refused command of MAIL FROM, RCPT TO and DATA, or None if all went on.

    MAIL FROM names only Postbox's own address, so its refusal (a 421 included) is the channel's: it pauses, and no
    message is charged an attempt. A refusal after it may be about this message, which is charged one: were the
    channel paused for it, a message refused every time would hold back every other."""
    (code, reply), *later = replies
    if code != 250:
        return ChannelDown(f"sender refused at MAIL FROM: {code} {_text(reply)}")
    code, reply = later[0]
    if code not in (250, 251):
        return _refusal(f"recipient {recipient} refused", code, reply)
    code, reply = later[1]
    return _refusal("message refused", code, reply) if code != 354 else None


def _refusal(what, code, reply):
    """A refusal of this one message: permanent for a 5xx reply, to be tried again for any other."""
    detail = f"{what}: {code} {_text(reply)}"
    return Permanent(detail) if 500 <= code < 600 else Retry(detail)


def _dot_stuffed(data):
    """The message as DATA sends it (RFC 5321 4.5.2): a dot doubled at each line's start, then the lone dot.
    Its lines already end in CRLF (EmailChannel.send writes them so)."""
    stuffed = re.sub(rb"(?m)^\.", b"..", data)
    return stuffed + (b".\r\n" if stuffed.endswith(b"\r\n") else b"\r\n.\r\n")


class FileSession:
    """Write each message as an .eml file: the pipeline runs end to end with no SMTP server."""

    def __init__(self, directory):
        self.directory = directory

    def __enter__(self):
        os.makedirs(self.directory, exist_ok=True)
        return self

    def __exit__(self, *exc_info):
        pass

    def send(self, data, sender, recipient, submission_id):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = os.path.join(self.directory, f"{stamp}-{submission_id}-{uuid.uuid4().hex[:8]}.eml")
        with open(path + ".tmp", "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(path + ".tmp", path)
        return f"written to {path}"


def envelope_address(address):
    """The address as SMTP carries it without SMTPUTF8: an internationalized domain in its xn-- form.

    The settings hold every owner address so (config.email_list); a message queued before they did still names
    its owner as typed, and reaches them this way.
    """
    if address.isascii():
        return address
    try:
        return validate_email(address, check_deliverability=False, allow_smtputf8=False).ascii_email
    except EmailNotValidError as error:
        raise Permanent(f"{address} cannot be sent to without SMTPUTF8: {error}") from None


def connection_problem(error):
    """Say in one line what went wrong with the connection or the account."""
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return f"login refused: {error.smtp_code} {_text(error.smtp_error)}"
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{error.smtp_code} {_text(error.smtp_error)}"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {error.verify_message}"
    if isinstance(error, TimeoutError):
        return f"timed out: {error}"
    return f"{type(error).__name__}: {error}"


def _text(reply):
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
