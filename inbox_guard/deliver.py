"""Getting the digest and alerts to the practitioner, and only to them.

``deliver = "imap"`` APPENDs to the practitioner's own inbox (nothing leaves the
server); ``deliver = "smtp"`` sends to ``digest.to`` through :mod:`inbox_guard.smtp`,
which refuses any other recipient. How a digest is made and kept exactly-once is
:mod:`inbox_guard.digest`.
"""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage

from .credentials import Fixed, Secret, login_secret, password
from .mailbox import Mailbox
from .model import Settings


def deliver(
    settings: Settings,
    message: EmailMessage,
    mailbox: Mailbox | None,
    now: datetime,
    route: str | None = None,
) -> None:
    """By ``route`` (``"imap"`` or ``"smtp"``; default the digest's ``deliver``)."""
    main = settings.main
    if (route or main.digest.deliver) == "imap":
        if mailbox is None:
            raise ValueError("IMAP delivery needs a mailbox connection")
        mailbox.append(main.account.inbox, message.as_bytes(), (), now)
        return
    from . import smtp

    server = main.smtp
    assert server is not None  # checked at config load
    secret: Secret | None = None
    if server.auth == "oauth2":
        secret = login_secret(settings)  # the account's own sign-in
    elif server.username:
        secret = Fixed(password(server, "smtp", settings.path))
    smtp.send(server, secret, message, [settings.digest_to], main.therapist.all_addresses)
