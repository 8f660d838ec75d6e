"""The synchronous design every peer uses: validate, then send the owner's email with smtplib inside the request.

This is what Formspree's original code and django-contact-form's `form.save()` do; the visitor waits on SMTP.
Served by the same gunicorn.conf.py: `gunicorn -c gunicorn.conf.py "bench.sync_app:create_app()"`,
with BENCH_SMTP_PORT naming the SMTP server on 127.0.0.1.
"""
import os
import smtplib
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from email_validator import EmailNotValidError, validate_email
from flask import Flask, jsonify, request

OWNER = "owner@florist.example"
MAIL_FROM = "forms@florist.example"


def owner_message(fields):
    """Build the owner's email the way a contact-form view does: subject and body from the fields."""
    message = EmailMessage()
    message["Subject"] = " ".join(f"New message from {fields['name']}".splitlines())
    message["From"] = Address(display_name=fields["name"], addr_spec=MAIL_FROM)
    message["To"] = OWNER
    message["Reply-To"] = fields["email"]
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="florist.example")
    message.set_content(f"Name: {fields['name']}\nEmail: {fields['email']}\n\n{fields['message']}\n")
    return message


def create_app():
    """Create the synchronous contact app; POSTBOX_DELIVERY is external so gunicorn.conf.py's hook starts nothing."""
    app = Flask(__name__)
    app.config["DELIVERY"] = "external"
    smtp_port = int(os.environ["BENCH_SMTP_PORT"])

    @app.get("/contactus")
    def form():
        return "<form method=post><input name=name></form>"

    @app.post("/contactus")
    def submit():
        fields = request.get_json()
        if not all(str(fields.get(name, "")).strip() for name in ("name", "email", "message")):
            return jsonify(ok=False, error="name, email and message are required"), 400
        try:
            validate_email(fields["email"], check_deliverability=False)
        except EmailNotValidError as error:
            return jsonify(ok=False, error=str(error)), 400
        try:
            with smtplib.SMTP("127.0.0.1", smtp_port, timeout=15) as smtp:
                smtp.send_message(owner_message(fields))
        except (smtplib.SMTPException, OSError) as error:
            # The submission is lost: there is nowhere else it was kept.
            return jsonify(ok=False, error=f"could not send: {error}"), 502
        return jsonify(ok=True)

    return app
