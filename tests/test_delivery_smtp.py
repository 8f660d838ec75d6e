"""SMTP read as RFC 5321 means it: a refusal of the connection pauses the channel, a refusal of a recipient or
of the content is that message's, each owner address is its own target, and the final reply gets its 10 minutes.
With a server that offers PIPELINING (RFC 2920) and with one that does not."""
import logging
import socket
import threading

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from conftest import VALID, base_config, count_rows, deliver_all, free_port

from app import create_app
from channels.base import ChannelDown, Permanent, Retry
from channels.mail import SMTPSession


@pytest.fixture(params=[True, False], ids=["pipelining", "one-command-at-a-time"])
def smtp_server(smtp_server, request):
    """Every test here runs against a server that offers PIPELINING, and against one that does not."""
    smtp_server.handler.pipelining = request.param
    return smtp_server


def submit(client, **fields):
    assert client.post("/contactus", data={**VALID, **fields}).status_code == 303


def connection_pause(db):
    return db.execute("SELECT * FROM delivery_targets WHERE channel = 'email' AND target = ''").mappings().first()


class GreetingRefuser:
    """A server on the SMTP port that answers every connection with a 554 greeting (a blocklist), then hangs up."""

    def __init__(self, port):
        self.listener = socket.create_server(("127.0.0.1", port))
        self.listener.settimeout(0.1)
        self.stopping = threading.Event()
        self.connections = 0
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with connection:
                connection.sendall(b"554 5.7.1 Your address is on our blocklist\r\n")

    def stop(self):
        self.stopping.set()
        self.thread.join(5)
        self.listener.close()


def test_refusals_of_the_connection_fail_no_lead_and_all_arrive_after_recovery(client, app, db, smtp_server):
    smtp_server.stop()
    refuser = GreetingRefuser(smtp_server.port)
    for index in range(5):
        submit(client, message=f"lead {index}")
    deliver_all(app, db)
    assert refuser.connections == 1  # one try for the channel, not one per lead
    refuser.stop()
    pause = connection_pause(db)
    assert "554" in pause["last_error"] and pause["failures"] == 1
    assert count_rows(db, "outbox", "state = 'pending' AND attempts = 0") == 5

    smtp_server.start()
    smtp_server.handler.mail_replies = ["550 5.7.1 Daily sending quota exceeded"]
    assert deliver_all(app, db) == 0  # paused: nothing is claimed before the pause ends
    deliver_all(app, db, clock=lambda: pause["paused_until"] + 0.01)
    pause = connection_pause(db)
    assert "550" in pause["last_error"] and pause["failures"] == 2
    assert count_rows(db, "outbox", "state = 'pending' AND attempts = 0") == 5
    assert smtp_server.messages == []

    deliver_all(app, db, clock=lambda: pause["paused_until"] + 0.01)
    bodies = sorted(received["message"].get_content().split("lead ")[1].split()[0] for received in smtp_server.messages)
    assert bodies == ["0", "1", "2", "3", "4"]
    assert count_rows(db, "outbox", "state = 'sent' AND attempts = 1") == 5
    assert connection_pause(db)["failures"] == 0


def test_each_owner_address_has_its_own_outcome(config, smtp_server, tmp_path):
    config["OWNER_EMAIL"] = "owner@florist.example,assistant@florist.example"
    app = create_app(config)
    client = app.test_client()
    db = __import__("database").open_db(config["DATABASE"])
    smtp_server.handler.rcpt_replies["assistant@florist.example"] = "452 4.2.2 Mailbox full"
    submit(client)
    deliver_all(app, db)
    assert [received["rcpt_tos"] for received in smtp_server.messages] == [["owner@florist.example"]]
    second = db.execute("SELECT * FROM outbox WHERE target = 'assistant@florist.example'").mappings().first()
    assert second["state"] == "pending" and second["attempts"] == 1 and "452" in second["last_error"]

    del smtp_server.handler.rcpt_replies["assistant@florist.example"]
    deliver_all(app, db, clock=lambda: second["next_attempt_at"] + 0.01)
    assert sorted(received["rcpt_tos"][0] for received in smtp_server.messages) == [
        "assistant@florist.example", "owner@florist.example"]
    assert count_rows(db, "outbox", "state = 'sent'") == 2

    smtp_server.handler.rcpt_replies["owner@florist.example"] = "550 5.1.1 No such user"
    submit(client, message="a second lead")
    deliver_all(app, db)
    states = dict(db.execute("SELECT target, state FROM outbox WHERE submission_id = 2").all())
    assert states == {"owner@florist.example": "failed", "assistant@florist.example": "sent"}
    db.close()


IDN_OWNER = "info@xn--b1ag3bn2a.xn--p1ai"  # info@цветы.рф, as SMTP carries it


def test_an_owner_on_an_internationalized_domain_gets_the_lead(config, smtp_server):
    """An .рф address, as the articles' florists have: typed as is, no message ever reached it (smtplib writes
    commands in ASCII), and the owner learned only from the inbox's alarm that mail had stopped."""
    config.update(OWNER_EMAIL="info@цветы.рф", MAIL_FROM="")
    app = create_app(config)
    db = __import__("database").open_db(config["DATABASE"])
    submit(app.test_client())
    deliver_all(app, db)
    [received] = smtp_server.messages
    assert received["mail_from"] == IDN_OWNER and received["rcpt_tos"] == [IDN_OWNER]
    assert received["message"]["To"] == IDN_OWNER
    assert smtp_server.handler.sessions == ["xn--b1ag3bn2a.xn--p1ai"]
    assert db.execute("SELECT state FROM outbox").scalar() == "sent"
    db.close()


def test_a_message_queued_for_an_owner_as_typed_reaches_them(client, app, db, smtp_server):
    """Queued before the settings kept the domain's ASCII form: the owner's address as typed is sent to in that
    form, and one that needs SMTPUTF8 fails for good, at once, instead of being tried until the give-up time."""
    submit(client, message="queued with the owner as typed")
    submit(client, message="queued for an address SMTP cannot carry")
    first, second = db.execute("SELECT id FROM outbox ORDER BY id").scalars().all()
    db.execute("UPDATE outbox SET target = :target WHERE id = :id",
               [{"id": first, "target": "info@цветы.рф"}, {"id": second, "target": "почта@цветы.рф"}])
    db.connection.commit()
    deliver_all(app, db)
    assert [received["rcpt_tos"] for received in smtp_server.messages] == [[IDN_OWNER]]
    rows = db.execute("SELECT state, attempts, last_error FROM outbox ORDER BY id").all()
    assert rows[0][:2] == ("sent", 1)
    assert rows[1][:2] == ("failed", 1) and "without SMTPUTF8" in rows[1][2]


def test_a_slow_final_reply_is_waited_for_and_gives_one_copy(client, app, db, smtp_server):
    smtp_server.handler.delay = 20  # longer than POSTBOX_SMTP_TIMEOUT (2 s here), well within RFC 5321's 10 minutes
    submit(client)
    deliver_all(app, db)
    smtp_server.handler.delay = 0
    deliver_all(app, db)
    assert len(smtp_server.messages) == 1
    row = db.execute("SELECT * FROM outbox").mappings().first()
    assert row["state"] == "sent" and row["attempts"] == 1 and row["reply"] == "250 Message accepted"


def test_only_the_message_tried_is_charged_an_attempt(client, app, db, smtp_server):
    smtp_server.handler.replies = ["451 4.3.0 Try again later"]
    for index in range(3):
        submit(client, message=f"lead {index}")
    deliver_all(app, db)
    attempts = db.execute("SELECT attempts FROM outbox ORDER BY id").scalars().all()
    assert attempts == [1, 1, 1]
    states = db.execute("SELECT state FROM outbox ORDER BY id").scalars().all()
    assert states == ["pending", "sent", "sent"]


def test_ehlo_names_the_senders_domain_or_the_setting(config, smtp_server):
    for helo, expected in (("", "florist.example"), ("mx.florist.example", "mx.florist.example")):
        smtp_server.handler.sessions.clear()
        app = create_app({**config, "SMTP_HELO": helo})
        assert app.test_client().post("/contactus", data={**VALID, "message": helo or "default"}).status_code == 303
        db = __import__("database").open_db(config["DATABASE"])
        deliver_all(app, db)
        db.close()
        assert smtp_server.handler.sessions == [expected]


def test_the_servers_reply_is_kept_and_the_log_names_the_message_id(client, app, db, smtp_server, caplog):
    submit(client)
    with caplog.at_level(logging.INFO, logger="postbox.delivery"):
        deliver_all(app, db)
    row = db.execute("SELECT * FROM outbox").mappings().first()
    assert row["reply"] == "250 Message accepted"
    assert any(row["message_id"] in record.getMessage() and "sent" in record.getMessage() for record in caplog.records)
    page = __import__("outbox").notifications_of(db, row["submission_id"])[0]
    assert page["log"][-1]["outcome"] == "sent"


def established_connections_to(port):
    """Count this machine's client sockets connected to the port (state ESTABLISHED in /proc/net/tcp)."""
    count = 0
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if remote_port == port and fields[3] == "01":
            count += 1
    return count


@pytest.fixture
def refusing_login_server():
    handler = type("Handler", (), {})()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), auth_require_tls=False,
                            authenticator=lambda *args: AuthResult(success=False, handled=False), ready_timeout=10)
    controller.start()
    yield controller
    controller.stop()


def test_a_refused_login_leaves_no_connection_open(config, refusing_login_server):
    port = refusing_login_server.port
    app = create_app({**config, "SMTP_PORT": port, "SMTP_USERNAME": "forms@florist.example",
                      "SMTP_PASSWORD": "wrong"})
    for index in range(3):
        assert app.test_client().post("/contactus", data={**VALID, "message": f"lead {index}"}).status_code == 303
    db = __import__("database").open_db(config["DATABASE"])
    deliver_all(app, db)
    for _ in range(2):
        resume = connection_pause(db)["paused_until"]
        deliver_all(app, db, clock=lambda: resume + 0.01)  # after each pause, one more login, refused again
    pause = connection_pause(db)
    assert "login refused: 535" in pause["last_error"] and pause["failures"] == 3
    assert count_rows(db, "outbox", "state = 'pending' AND attempts = 0") == 3
    db.close()
    assert established_connections_to(port) == 0


def test_a_message_with_lines_that_start_with_a_dot_arrives_whole(client, app, db, smtp_server):
    # A lone "." ends DATA and a leading one is taken away (RFC 5321 4.5.2): each is sent doubled.
    text = "Three lines:\n.\n.hidden\n..two dots\nand the last."
    submit(client, message=text)
    deliver_all(app, db)
    [received] = smtp_server.messages
    assert "\n.\n.hidden\n..two dots\nand the last." in received["message"].get_content().replace("\r\n", "\n")
    assert db.execute("SELECT state FROM outbox").scalar() == "sent"


class ScriptedSMTPServer:
    """A TCP server that answers each SMTP command from a script, keeping each read of the socket. For what
    aiosmtpd does not show or do: what the client wrote at once, DATA taken after a refused recipient, a 421's
    hang-up."""

    def __init__(self, replies, pipelining=True):
        self.replies = {"MAIL": "250 OK", "RCPT": "250 OK", "DATA": "354 go on", "END": "250 queued", **replies}
        self.pipelining = pipelining
        self.reads = []
        self.hung_up = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        connection, _ = self.listener.accept()
        try:
            self.converse(connection)
        finally:
            connection.close()
            self.hung_up.set()

    def converse(self, connection):
        connection.sendall(b"220 scripted ESMTP\r\n")
        buffer, in_data = b"", False
        while chunk := connection.recv(65536):
            self.reads.append(chunk)
            buffer += chunk
            while True:
                if in_data:
                    end = buffer.find(b"\r\n.\r\n")
                    if end < 0:
                        break
                    buffer, in_data = buffer[end + 5:], False
                    connection.sendall(f"{self.replies['END']}\r\n".encode())
                    continue
                line, found, rest = buffer.partition(b"\r\n")
                if not found:
                    break
                buffer = rest
                verb = line.split(b" ")[0].split(b":")[0].upper().decode()
                if verb == "EHLO":
                    extensions = "250-scripted\r\n250-PIPELINING\r\n" if self.pipelining else "250-scripted\r\n"
                    reply = extensions + "250 8BITMIME"
                else:
                    reply = {"RSET": "250 OK", "QUIT": "221 bye"}.get(verb) or self.replies[verb]
                connection.sendall(f"{reply}\r\n".encode())
                if reply.startswith("421"):  # RFC 5321 3.8: the server closes the channel after it
                    return
                in_data = verb == "DATA" and reply.startswith("354")

    def stop(self):
        self.listener.close()


@pytest.fixture
def smtp_config(tmp_path):
    return create_app(base_config(tmp_path, smtp_port=25)).config  # each test gives its own port


@pytest.mark.parametrize("pipelining", [True, False])
def test_with_pipelining_the_envelope_goes_in_one_write(smtp_config, pipelining):
    server = ScriptedSMTPServer({}, pipelining=pipelining)
    with SMTPSession({**smtp_config, "SMTP_PORT": server.port}) as session:
        assert session.send(b"Subject: hello\r\n\r\nHi.\r\n", "forms@florist.example", "owner@florist.example",
                            1) == "250 queued"
    envelope = [b"MAIL FROM:<forms@florist.example>\r\n", b"RCPT TO:<owner@florist.example>\r\n", b"DATA\r\n"]
    if pipelining:  # two round trips: the envelope, then the content
        assert b"".join(envelope) in server.reads
    else:  # four: each command waited for its reply
        assert all(command in server.reads for command in envelope)
    assert b"Subject: hello\r\n\r\nHi.\r\n.\r\n" in server.reads
    server.stop()


def test_a_server_that_takes_data_after_refusing_the_recipient_gets_no_content(smtp_config):
    server = ScriptedSMTPServer({"RCPT": "550 5.1.1 no such user"})  # and DATA still answered 354
    session = SMTPSession({**smtp_config, "SMTP_PORT": server.port})
    with pytest.raises(Permanent, match="recipient owner@florist.example refused: 550"):
        session.send(b"Subject: hello\r\n\r\nHi.\r\n", "forms@florist.example", "owner@florist.example", 1)
    assert server.hung_up.wait(5)  # the connection is dropped: anything sent now would be taken as the message
    assert session.smtp is None
    assert not any(b"Subject: hello" in read for read in server.reads)
    server.stop()


@pytest.mark.parametrize("pipelining", [True, False])
@pytest.mark.parametrize("command, expected", [("MAIL", ChannelDown), ("RCPT", Retry)])
def test_a_server_closing_the_connection_is_hung_up_on_and_the_refusal_kept(smtp_config, pipelining, command,
                                                                           expected):
    # RFC 5321 3.8: a 421 closes the channel; no other reply comes, and RSET would find the connection gone.
    server = ScriptedSMTPServer({command: "421 4.3.2 System shutting down"}, pipelining=pipelining)
    session = SMTPSession({**smtp_config, "SMTP_PORT": server.port})
    with pytest.raises(expected, match="refused.*: 421 4.3.2 System shutting down"):
        session.send(b"Subject: hello\r\n\r\nHi.\r\n", "forms@florist.example", "owner@florist.example", 1)
    assert server.hung_up.wait(5) and session.smtp is None  # the next message connects again
    server.stop()


def test_an_error_of_ours_in_the_middle_of_a_message_does_not_stop_the_next(smtp_config, smtp_server):
    """Neither a refusal nor a broken connection (here, a recipient smtplib cannot write, after MAIL FROM went
    one command at a time): the server may be left inside that message's transaction, where the next MAIL FROM
    would be refused with 503 and pause the channel for every message. The session connects again instead."""
    with SMTPSession({**smtp_config, "SMTP_PORT": smtp_server.port}) as session:
        with pytest.raises(UnicodeEncodeError):
            session.send(b"Subject: one\r\n\r\nHi.\r\n", "forms@florist.example", "почта@цветы.рф", 1)
        assert session.send(b"Subject: two\r\n\r\nHi.\r\n", "forms@florist.example", "owner@florist.example",
                            2).startswith("250")
    assert [received["rcpt_tos"] for received in smtp_server.messages] == [["owner@florist.example"]]
