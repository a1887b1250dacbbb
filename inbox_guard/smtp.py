"""The one module that sends mail, and only ever to the practitioner.

Non-negotiable 1 is enforced here, at the last step: :func:`send` refuses any
recipient that is not one of ``therapist.addresses``, whatever the caller asks.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterable
from email.message import EmailMessage
from typing import Any

from .credentials import Secret
from .errors import DeliveryError
from .schema import Smtp


def _xoauth2(user: str, token: str) -> Any:
    """RFC 7628-style XOAUTH2: the bearer token first; an error challenge is answered
    with an empty line, after which the server says no."""

    def answer(challenge: bytes | None = None, /) -> str:
        return f"user={user}\x01auth=Bearer {token}\x01\x01" if challenge is None else ""

    return answer


def _log_in(client: smtplib.SMTP, server: Smtp, secret: Secret) -> None:
    user = server.username or ""
    if server.auth != "oauth2":
        client.login(user, secret.get())
        return
    client.ehlo_or_helo_if_needed()
    try:
        client.auth("XOAUTH2", _xoauth2(user, secret.get()))
    except smtplib.SMTPAuthenticationError:
        # Renewed once, as for IMAP: the provider may have ended the token early.
        client.auth("XOAUTH2", _xoauth2(user, secret.get(fresh=True)))


def send(
    server: Smtp,
    secret: Secret | None,
    message: EmailMessage,
    to: Iterable[str],
    allowed: Iterable[str],
) -> None:
    recipients = [r.lower() for r in to]
    permitted = {a.lower() for a in allowed}
    strangers = [r for r in recipients if r not in permitted]
    if strangers or not recipients:
        raise DeliveryError(
            f"refusing to send to {', '.join(strangers) or 'nobody'}: inbox-guard only sends "
            "to the practitioner's own addresses"
        )
    where = f"{server.host}:{server.effective_port}"
    context = ssl.create_default_context(cafile=server.ca_file or None)
    try:
        if server.security == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                server.host,
                server.effective_port,
                timeout=server.timeout_seconds,
                context=context,
            )
        else:
            client = smtplib.SMTP(
                server.host, server.effective_port, timeout=server.timeout_seconds
            )
        with client:
            if server.security == "starttls":
                client.starttls(context=context)
            if server.username and secret is not None:
                _log_in(client, server, secret)
            refused = client.send_message(message, to_addrs=recipients)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(f"{where} refused the SMTP login for {server.username!r}") from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"cannot send through {where}: {exc}") from exc
    if refused:
        raise DeliveryError(f"{where} refused {', '.join(refused)}")
