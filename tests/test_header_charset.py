"""Encoded headers do not depend on what another library registered for utf-8 in this process."""
import email
from email.policy import default as default_policy

import apprise.plugins.email  # noqa: F401 (re-registers utf-8 with quoted-printable headers, process-wide)
import pytest

from emails import encoded_text, mailbox


@pytest.mark.parametrize("name", ["Иван Петров", "Արամ Պետրոսյան", "प्रिया शर्मा", "Anna Rossi =?utf-8?q?x?="])
def test_a_display_name_reads_back_exactly_after_apprise_is_loaded(name):
    raw = f"From: {mailbox('From', name, 'forms@florist.example')}\nSubject: {encoded_text('Subject', name)}\n\n"
    message = email.message_from_string(raw, policy=default_policy)
    assert message["From"].addresses[0].display_name == name
    assert message["Subject"] == name
