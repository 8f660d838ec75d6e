"""An email's text body is written byte for byte as EmailMessage.set_content writes it (emails.set_text_body)."""
from email.message import EmailMessage

import pytest
from hypothesis import given
from hypothesis import strategies as st

import emails
from emails import MESSAGE_POLICY, set_text_body

WIRE = MESSAGE_POLICY.clone(linesep="\r\n")  # as the email channel sends it

# One body for each transfer encoding the email package chooses.
BODIES = {
    "7bit": "Name: Anna Rossi\nMessage: roses for Saturday\n",
    "8bit": "Имя: Иван Петров\nСообщение: букет к субботе\n",
    "quoted-printable": "A line longer than seventy-eight characters, as a visitor's message often is: " * 3,
    "base64": "Очень длинная строка сообщения без переносов, как пишут посетители с телефона. " * 3,
}


def both_ways(body):
    fast, reference = EmailMessage(policy=MESSAGE_POLICY), EmailMessage(policy=MESSAGE_POLICY)
    for message in (fast, reference):
        message.set_raw("Subject", "Contact us")
    set_text_body(fast, body)
    reference.set_content(body)
    return fast, reference


@pytest.mark.parametrize("transfer_encoding", BODIES)
def test_each_transfer_encoding_is_chosen_and_written_as_set_content_does(transfer_encoding):
    fast, reference = both_ways(BODIES[transfer_encoding])
    assert fast["Content-Transfer-Encoding"] == transfer_encoding
    assert fast.as_bytes(policy=WIRE) == reference.as_bytes(policy=WIRE)
    assert fast.get_content() == reference.get_content()


@given(st.text())
def test_any_body_is_written_as_set_content_writes_it(body):
    fast, reference = both_ways(body)
    assert fast.as_bytes(policy=WIRE) == reference.as_bytes(policy=WIRE)
    assert fast.as_string() == reference.as_string()


def test_without_the_email_packages_encoder_set_content_itself_writes_the_body(monkeypatch):
    monkeypatch.setattr(emails, "_ENCODE_TEXT", None)
    fast, reference = both_ways(BODIES["8bit"])
    assert fast.as_bytes(policy=WIRE) == reference.as_bytes(policy=WIRE)
