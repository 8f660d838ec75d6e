"""No visitor text becomes a header: RFC 2047 encoded words typed into any field reach the owner literally."""
import base64
import email
from email.header import decode_header, make_header
from email.policy import compat32
from email.policy import default as default_policy
from email.utils import parseaddr

from conftest import VALID, deliver_all
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import emails
import outbox
import submissions


EXPECTED_HEADERS = ["Subject", "From", "To", "Reply-To", "Date", "Message-ID", "Auto-Submitted",
                    "X-Postbox-Submission", "Content-Type", "Content-Transfer-Encoding", "MIME-Version"]
SEPARATORS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\t"
ATTACK = "=?utf-8?q?x=0D=0ABcc:_v@evil.example?="


def header_names(raw):
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("ascii")
    return [line.split(":", 1)[0] for line in head.split("\n") if line and not line[0].isspace()]


def decoded(raw_value):
    """Decode a raw header value as RFC 2047 says: whitespace between adjacent encoded words is dropped."""
    return str(make_header(decode_header(raw_value.replace("\r\n", "").replace("\n", ""))))


def display_name(raw_message, header):
    name, _ = parseaddr(raw_message[header].replace("\r\n", "").replace("\n", ""))
    return decoded(name)


def test_encoded_word_attack_gives_exactly_the_expected_headers(client, app, db, smtp_server):
    response = client.post("/contactus", data={**VALID, "name": ATTACK, "subject": ATTACK, "_subject": ATTACK})
    assert response.status_code == 303
    deliver_all(app, db)
    [received] = smtp_server.messages
    raw = received["raw"]
    assert header_names(raw) == EXPECTED_HEADERS
    parsed = email.message_from_bytes(raw, policy=default_policy)
    assert parsed["Bcc"] is None and b"evil.example" not in raw.split(b"\r\n\r\n")[0].replace(b"=", b"")
    assert parsed["From"].addresses[0].display_name == ATTACK
    assert parsed["Reply-To"].addresses[0].display_name == ATTACK
    assert parsed["Reply-To"].addresses[0].addr_spec == VALID["email"]
    assert str(parsed["Subject"]) == ATTACK
    assert received["rcpt_tos"] == ["owner@florist.example"]


def test_an_address_spelling_an_encoded_word_is_refused(client, db):
    response = client.post("/contactus", json={**VALID, "email": "=?utf-8?q?x=0D=0Ax?=@example.com"})
    assert response.status_code == 400 and response.json["errors"][0]["field"] == "email"
    assert db.execute("SELECT COUNT(*) FROM submissions").scalar() == 0


def test_long_cyrillic_name_decodes_back_exactly(client, app, db, smtp_server):
    name = ("Николай Андреевич Римский-Корсаков Александрович Бородин Модест Петрович Мусоргский Цезарь")[:90]
    assert len(name) == 90
    assert client.post("/contactus", data={**VALID, "name": name}).status_code == 303
    deliver_all(app, db)
    raw = email.message_from_bytes(smtp_server.messages[0]["raw"], policy=compat32)
    assert display_name(raw, "From") == name
    assert display_name(raw, "Reply-To") == name
    assert all(len(line) <= 78 for line in smtp_server.messages[0]["raw"].split(b"\r\n"))


# --- Any encoded word, in every field that reaches a header ----------------------------------------------------

def encoded_word(charset, encoding, text):
    data = text.encode("utf-8")
    if encoding in "bB":
        payload = base64.b64encode(data).decode()
    else:
        payload = "".join(f"={byte:02X}" if byte > 126 or chr(byte) in "=?_ \t\r\n" or byte < 32 else chr(byte)
                          for byte in data)
    return f"=?{charset}?{encoding}?{payload}?="


inner_text = st.lists(st.sampled_from([*SEPARATORS, *"abBcc:@ <>,;\"=?_éй", "Bcc: v@evil.example"]),
                      min_size=1, max_size=12).map("".join)
words = st.builds(encoded_word, st.sampled_from(["utf-8", "UTF-8", "iso-8859-1", "koi8-r", "us-ascii", "x-bogus"]),
                  st.sampled_from("qQbB"), inner_text)
# Visitor text around the words: plain letters, spaces, and the characters that matter in headers.
visitor_text = st.lists(st.one_of(words, st.text(alphabet=st.sampled_from([*"Ab <>\"(),:;@=?Юя"]), max_size=6)),
                        min_size=1, max_size=4).map(lambda parts: "".join(parts)[:100]).filter(str.strip)

relaxed = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def build(app, db, client, fields):
    response = client.post("/contactus", json={**VALID, **fields})
    assert response.status_code == 200, response.json
    submission_id = response.json["id"]
    notifications = outbox.notifications_of(db, submission_id)
    with app.app_context():
        submission = submissions.get_submission(db, submission_id)
        return emails.build_owner_message(submission, app.config["FORM_DEFINITIONS"]["contactus"],
                                           notifications[0]["message_id"]).as_bytes()


@relaxed
@given(name=visitor_text, subject=visitor_text, special_subject=visitor_text)
def test_any_encoded_word_reaches_the_owner_literally(app, db, name, subject, special_subject):
    raw = build(app, db, app.test_client(), {"name": name, "subject": subject, "_subject": special_subject})
    assert header_names(raw) == EXPECTED_HEADERS
    assert all(len(line) <= 78 for line in raw.split(b"\n\n", 1)[0].split(b"\n"))
    head = email.message_from_bytes(raw, policy=compat32)
    assert decoded(head["Subject"]) == emails.one_line(special_subject[:200], limit=250)
    assert display_name(head, "From") == emails.one_line(name.strip(), limit=250)
    assert display_name(head, "Reply-To") == emails.one_line(name.strip(), limit=250)
    assert parseaddr(head["From"].replace("\n", ""))[1] == app.config["MAIL_FROM"]
    assert parseaddr(head["Reply-To"].replace("\n", ""))[1] == VALID["email"]


@relaxed
@given(name=visitor_text, subject=visitor_text)
def test_subject_made_from_the_visitors_fields_is_literal_too(app, db, name, subject):
    raw = build(app, db, app.test_client(), {"name": name, "subject": subject})
    assert header_names(raw) == EXPECTED_HEADERS
    head = email.message_from_bytes(raw, policy=compat32)
    assert decoded(head["Subject"]) == emails.one_line(f"{subject.strip()} (from {name.strip()})", limit=250)


def test_another_librarys_charset_setting_does_not_change_our_headers(client, app, db, smtp_server):
    import apprise.plugins.email  # noqa: F401 - sets the shared "utf-8" charset to quoted-printable
    assert client.post("/contactus", data={**VALID, "name": "Иван Петров"}).status_code == 303
    deliver_all(app, db)
    parsed = email.message_from_bytes(smtp_server.messages[0]["raw"], policy=default_policy)
    assert parsed["From"].addresses[0].display_name == "Иван Петров"
