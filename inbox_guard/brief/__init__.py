"""The pre-session brief: before each session of a client who wrote out of hours since
their previous session, a short message to the practitioner about the pattern.

1. :mod:`.content` — pure: which sessions are due a brief, and what it says.
2. :mod:`.render` — the message, in the practitioner's language.
3. :func:`run_briefs` (here) — the job: every brief due since the last look is
   recorded before it is delivered and marked after, and over IMAP looked for by its
   Message-ID before it is delivered again, so each session gets exactly one brief
   across restarts and kills. A brief whose session began while the service was not
   running is skipped and noted for the digest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import TYPE_CHECKING

from .. import compose
from ..deliver import deliver
from ..errors import InboxGuardError, StoreError
from ..model import Client, Settings
from ..sessions import next_session
from .content import LOOK_BACK, Brief, brief_for, due

if TYPE_CHECKING:
    from ..mailbox import Mailbox
    from ..store import Store

__all__ = ["Brief", "BriefRun", "next_brief", "run_briefs", "send_brief"]

log = logging.getLogger("inbox_guard.brief")


@dataclass
class BriefRun:
    sent: list[tuple[Brief, EmailMessage]] = field(default_factory=list)
    skipped: list[Brief] = field(default_factory=list)


def next_brief(
    settings: Settings, client: Client, store: Store, now: datetime
) -> tuple[datetime | None, Brief | None]:
    """The client's next session after ``now`` and its brief (None without contacts)."""
    session = next_session(client.sessions, now, settings.tz)
    if session is None:
        return None, None
    contacts = store.contacts_since(session - LOOK_BACK, client.id)
    lead = settings.main.brief.minutes_before
    return session, brief_for(client, session, contacts, settings, lead)


def send_brief(
    settings: Settings,
    mailbox: Mailbox | None,
    store: Store,
    brief: Brief,
    now: datetime,
    dry_run: bool = False,
) -> EmailMessage | None:
    """Deliver ``brief`` unless it was delivered before (then None); the message."""
    # Here, not at the top: a pass imports this package for `brief.content`, and has
    # no use for the templates.
    from ..digest import still_in_drafts
    from .render import brief_message

    message_id = brief.message_id(settings)
    kept = store.brief_record(brief.key)
    if kept is not None and (kept[1] or kept[2]):
        return None  # delivered, or skipped, before
    contacts = store.contacts_since(brief.since, brief.client)
    in_drafts = still_in_drafts(
        settings, mailbox, [c for c in contacts if c.received < brief.session]
    )
    message = brief_message(settings, compose.env_for(settings), brief, in_drafts, message_id, now)
    if dry_run:
        return message
    route = settings.main.brief.deliver
    inbox = settings.main.account.inbox
    if kept is None:
        store.plan_brief(brief.key, brief.client, brief.session, message_id, now)
    elif route == "imap" and mailbox is not None and mailbox.has_message_id(inbox, message_id):
        store.brief_delivered(brief.key, now)  # delivered just before a crash
        return None
    deliver(settings, message, mailbox, now, route=route)
    store.brief_delivered(brief.key, now)
    return message


def run_briefs(
    settings: Settings,
    connect: Callable[[], Mailbox | None],
    store: Store,
    now: datetime,
) -> BriefRun:
    """Every brief due since the service last looked; see the module's docstring.
    ``connect`` gives a mailbox (for IMAP delivery and to look in Drafts), asked for
    only when a brief is due."""
    lead = settings.main.brief.minutes_before
    # The first look ever: a session starting within the lead time still gets its brief.
    after = store.briefs_checked() or now - timedelta(minutes=lead)
    contacts = store.contacts_since(after - LOOK_BACK)
    send, skipped = due(settings, contacts, after, now, lead)
    run = BriefRun()
    mailbox = None
    if send:
        try:
            mailbox = connect()
        except InboxGuardError as exc:
            if settings.main.brief.deliver == "imap" or isinstance(exc, StoreError):
                raise
            log.warning("brief: cannot look in Drafts (%s); sending by SMTP all the same", exc)
    for brief in send:
        message = send_brief(settings, mailbox, store, brief, now)
        if message is not None:
            run.sent.append((brief, message))
    for brief in skipped:
        if store.brief_record(brief.key) is None:
            store.plan_brief(
                brief.key, brief.client, brief.session, brief.message_id(settings), now, True
            )
            store.note_problem(
                f"brief: not sent for the session with {brief.name} on "
                f"{brief.session:%a %d %b %H:%M}: inbox-guard was not running at "
                f"{brief.send_at.astimezone(settings.tz):%H:%M}",
                now,
            )
            run.skipped.append(brief)
    store.set_briefs_checked(now)
    return run
