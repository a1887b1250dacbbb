"""How the daily digest is made, in three steps:

1. :mod:`.content` — what goes in, as data: pure functions of the stored contacts,
   settings and ``now`` (risk first, then per client; the service's own trouble; the
   pattern of the last 28 days by hour).
2. :mod:`.render` — the message: subject, text and HTML parts, in the practitioner's
   language.
3. :func:`run_digest` (here) — the job: the digest is recorded (with the contacts it
   covers) before it is delivered and marked delivered after, so a crash in between
   re-delivers the same digest rather than losing or splitting its contacts; over IMAP
   the retry first looks for it by Message-ID, so it is not appended twice. Delivery
   itself is :func:`inbox_guard.deliver.deliver`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import TYPE_CHECKING

from .. import compose
from ..deliver import deliver
from ..errors import ConnectionLost, InboxGuardError, StoreError
from ..model import Contact, Problem, Settings
from . import content
from .content import Digest
from .render import digest_message

if TYPE_CHECKING:
    from ..mailbox import Mailbox
    from ..store import Store

__all__ = ["Digest", "DigestRun", "run_digest"]

log = logging.getLogger("inbox_guard.digest")


@dataclass
class DigestRun:
    digest: Digest
    message: EmailMessage | None  # None: nothing to send (quiet day, send_empty off)
    delivered: bool


def _message_id(settings: Settings, keys: list[str], now: datetime, made: int) -> str:
    basis = "\x00".join([now.isoformat(), str(made), *keys]).encode()
    domain = settings.mail_domain
    return f"<inbox-guard.digest.{hashlib.sha256(basis).hexdigest()[:24]}@{domain}>"


def run_digest(
    settings: Settings,
    mailbox: Mailbox | None,
    store: Store,
    now: datetime,
    dry_run: bool,
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
        message_id = _message_id(settings, [c.key for c in contacts], now, store.digests_made())
    recent = store.contacts_since(now - timedelta(days=content.PATTERN_DAYS))
    kept = store.problems()
    stuck = content.unfinished(store.unfinished(), store.unreadable(), settings)
    in_drafts = still_in_drafts(settings, mailbox, contacts)
    built = content.build(
        contacts,
        recent,
        settings,
        now,
        store.last_digest_at(),
        [*kept, *(problems or [])],
        stuck,
        in_drafts,
    )
    quiet = built.empty and not built.problems and not built.unfinished
    if quiet and not settings.main.digest.send_empty and not pending:
        return DigestRun(built, None, False)
    message = digest_message(settings, env, built, message_id, now)
    if dry_run:
        return DigestRun(built, message, False)
    if (
        pending
        and mailbox is not None
        and settings.main.digest.deliver == "imap"
        and mailbox.has_message_id(settings.main.account.inbox, message_id)
    ):
        store.digest_delivered(message_id, now)
        store.clear_problems(kept)
        return DigestRun(built, message, True)
    if not pending:
        store.plan_digest(message_id, built.keys, now)
    deliver(settings, message, mailbox, now)
    store.digest_delivered(message_id, now)
    store.clear_problems(kept)
    return DigestRun(built, message, True)


def still_in_drafts(
    settings: Settings, mailbox: Mailbox | None, contacts: list[Contact]
) -> set[str] | None:
    """The keys of the contacts whose holding reply is still in Drafts (the practitioner
    may have sent or deleted it since; one flagged \\Deleted but not yet expunged
    counts as deleted), by one search for their drafts' Message-IDs; None when Drafts
    cannot be looked at (no connection, the server refuses): the digest then says
    neither, and is sent all the same."""
    ids = {compose.draft_message_id(c.key, settings): c.key for c in contacts if c.draft}
    if not ids:
        return set()
    if mailbox is None:
        return None
    try:
        try:
            return _in_drafts(settings, mailbox, ids)
        except ConnectionLost as exc:
            # The service keeps its connection between passes; the server may have
            # hung up on it since (an idle timeout, a restart): log in again, once.
            log.info("digest: %s; logging in again to look in Drafts", exc)
            mailbox.reconnect()
            return _in_drafts(settings, mailbox, ids)
    except InboxGuardError as exc:
        if isinstance(exc, StoreError):
            raise
        log.warning("digest: cannot look in Drafts for the holding replies (%s)", exc)
        return None


def _in_drafts(settings: Settings, mailbox: Mailbox, ids: dict[str, str]) -> set[str]:
    folder = mailbox.find_drafts(settings.main.account.drafts)
    there = mailbox.existing_message_ids(folder, list(ids), deleted=False)
    return {ids[m] for m in there}
