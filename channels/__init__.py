"""The channels a notification can travel on.

A channel is one small class (channels/base.py): it names its targets for a form, opens whatever a batch
shares (an SMTP connection), sends one outbox row, and turns its own errors into Retry, Permanent, TargetOff
or ChannelDown. The outbox engine (outbox.py) does the rest: claiming, leases, retries, giving up. Adding a
channel is writing one module here and one line in CHANNELS.
"""
from channels.mail import EmailChannel
from channels.notify import NotifyChannel
from channels.webhook import WebhookChannel

CHANNELS = {channel.name: channel for channel in (EmailChannel, WebhookChannel, NotifyChannel)}
