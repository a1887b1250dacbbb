"""Getting the digest and alerts to the practitioner, and only to them.

``deliver = "imap"`` APPENDs to the practitioner's own inbox (nothing leaves the
server); ``deliver = "smtp"`` sends to ``digest.to`` through :mod:`inbox_guard.smtp`,
which refuses any other recipient.

A digest is recorded (with the contacts it covers) before it is delivered and marked
delivered after, so a crash in between re-delivers the same digest rather than
losing or splitting its contacts; over IMAP the retry first looks for it by
Message-ID, so it is not appended twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage

from . import compose, digest
from .credentials import Fixed, Secret, login_secret, password
from .mailbox import Mailbox
from .model import Problem, Settings
from .store import Store


def deliver(
    settings: Settings, message: EmailMessage, mailbox: Mailbox | None, now: datetime
) -> None:
    main = settings.main
    if main.digest.deliver == "imap":
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


@dataclass
class DigestRun:
    digest: digest.Digest
    message: EmailMessage | None  # None: nothing to send (quiet day, send_empty off)
    delivered: bool


def _message_id(settings: Settings, keys: list[str], now: datetime, made: int) -> str:
    basis = "\x00".join([now.isoformat(), str(made), *keys]).encode()
    domain = settings.main.therapist.email.rsplit("@", 1)[1]
    return f"<inbox-guard.digest.{hashlib.sha256(basis).hexdigest()[:24]}@{domain}>"


def run_digest(
    settings: Settings, mailbox: Mailbox | None, store: Store, now: datetime, dry_run: bool,
    problems: list[Problem] | None = None,
) -> DigestRun:
    """Build the digest of everything since the last one; deliver it unless ``dry_run``.
    It reports the service's own trouble since then (a server down, a refused login, a
    calendar that could not be fetched): what the store kept, plus ``problems`` that
    could not be stored."""
    env = compose.env_for(settings)
    pending = store.pending_digest()
    if pending:
        message_id, keys = pending
        contacts = store.contacts(keys)
    else:
        contacts = store.undigested()
        message_id = _message_id(settings, [c.key for c in contacts], now,
                                 store.digests_made())
    recent = store.contacts_since(now - timedelta(days=digest.PATTERN_DAYS))
    kept = store.problems()
    stuck = digest.unfinished(store.unfinished(), store.unreadable(), settings)
    built = digest.build(contacts, recent, settings, now, store.last_digest_at(),
                         [*kept, *(problems or [])], stuck)
    quiet = built.empty and not built.problems and not built.unfinished
    if quiet and not settings.main.digest.send_empty and not pending:
        return DigestRun(built, None, False)
    message = compose.digest_message(settings, env, built, message_id, now)
    if dry_run:
        return DigestRun(built, message, False)
    if pending and mailbox is not None and settings.main.digest.deliver == "imap" \
            and mailbox.has_message_id(settings.main.account.inbox, message_id):
        store.digest_delivered(message_id, now)
        store.clear_problems(kept)
        return DigestRun(built, message, True)
    if not pending:
        store.plan_digest(message_id, built.keys, now)
    deliver(settings, message, mailbox, now)
    store.digest_delivered(message_id, now)
    store.clear_problems(kept)
    return DigestRun(built, message, True)
