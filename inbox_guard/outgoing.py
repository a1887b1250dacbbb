"""The two messages a pass writes for people: the holding reply, saved as a draft in
the practitioner's Drafts folder (never sent), and the risk alert, delivered to the
practitioner by the digest's route (never to the client). Each has a Message-ID
derived from its contact, so it is looked for before it is written again."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import compose
from .deliver import deliver
from .errors import ConnectError, InboxGuardError, MailboxError, StoreError
from .isolate import reason
from .mailbox import Mailbox
from .model import Contact, Settings
from .store import Store

if TYPE_CHECKING:
    import jinja2

    from .steps import Failures

log = logging.getLogger("inbox_guard.triage")

DRAFT_FLAGS = ("\\Draft", "\\Seen")


def drafts(
    settings: Settings,
    env: jinja2.Environment,
    mailbox: Mailbox,
    store: Store,
    now: datetime,
    due: list[Contact],
    failures: Failures,
) -> None:
    """Holding replies into Drafts. Each draft's Message-ID is derived from its message,
    so before any APPEND the folder is searched for it: a draft appended before a crash,
    by an overlapping run or before the state file was lost is found, never made twice.
    A draft is recorded as done only when the server answered OK."""
    if not due:
        return
    try:
        folder = mailbox.find_drafts(settings.main.account.drafts)
    except (ConnectError, StoreError):
        raise
    except Exception as exc:
        for c in due:
            failures(c, "draft", exc)
        return
    ids = {c.key: compose.draft_message_id(c.key, settings) for c in due}
    try:
        there = mailbox.existing_message_ids(folder, list(ids.values()))
    except (ConnectError, StoreError):
        raise
    except Exception as exc:
        # The server cannot search Drafts (say, one unreadable file there). A draft
        # never tried before cannot be there (the state file's lock keeps others
        # out), so those are made; one tried before waits for a search that works.
        log.warning("cannot search %s for earlier drafts: %s", folder, reason(exc))
        for c in due:
            if c.draft_tried:
                failures(c, "draft", f"cannot look in {folder} for an earlier copy: {reason(exc)}")
        due = [c for c in due if not c.draft_tried]
        there = set()
    store.mark([c.key for c in due if ids[c.key] in there], "draft_done")
    todo: list[tuple[Contact, bytes]] = []
    for c in due:
        if ids[c.key] in there:
            continue
        client = settings.clients.get(c.client)
        try:
            msg = compose.draft(
                settings=settings,
                env=env,
                subject=c.subject or "",
                message_id=c.message_id,
                references=c.refs,
                to=c.address,
                key=c.key,
                session=c.session,
                risk=c.risk,
                now=now,
                template=client.draft_template if client else None,
                from_addr=c.reply_from,
            )
            todo.append((c, msg.as_bytes()))
        except Exception as exc:
            failures(c, "draft", exc)
    if not todo:
        return
    store.mark((c.key for c, _ in todo), "draft_tried")
    answers = mailbox.append_each(folder, [raw for _, raw in todo], DRAFT_FLAGS, now)
    for (c, _), refused in zip(todo, answers, strict=True):
        if refused is not None:
            failures(c, "draft", refused)
    store.mark(
        (c.key for (c, _), refused in zip(todo, answers, strict=True) if refused is None),
        "draft_done",
    )


def alert(
    settings: Settings,
    env: jinja2.Environment,
    mailbox: Mailbox,
    store: Store,
    c: Contact,
    now: datetime,
) -> None:
    """Tell the practitioner at once, by the digest's route (never the client)."""
    domain = settings.mail_domain
    message_id = f"<inbox-guard.alert.{c.key}@{domain}>"
    client = settings.clients.get(c.client)
    msg = compose.alert_message(
        settings,
        env,
        client=c.client,
        name=client.name if client else c.client,
        received=c.received,
        draft=c.draft,
        suppressed=c.suppressed,
        session=c.session,
        message_id=message_id,
        now=now,
    )
    inbox = settings.main.account.inbox
    sent = False
    if settings.main.digest.deliver == "imap":
        # Over IMAP an alert appended just before a crash is found, not sent twice.
        # If the server cannot search (one unreadable message anywhere in the inbox
        # makes Dovecot refuse), the alert goes anyway: twice is better than never.
        try:
            sent = mailbox.has_message_id(inbox, message_id)
        except ConnectError:
            raise
        except MailboxError as exc:
            log.warning(
                "uid %s (client %s): cannot look for an earlier alert (%s); sending it",
                c.uid,
                c.client,
                reason(exc),
            )
    if not sent:
        deliver(settings, msg, mailbox, now)
    store.mark([c.key], "alert_done")


def signin_alert(
    settings: Settings, why: str, basis: str, now: datetime, log: logging.LoggerAdapter[Any]
) -> None:
    """Tell the practitioner that the sign-in needs renewing, by the digest's route,
    where that route does not itself need the lost sign-in."""
    main = settings.main
    if main.digest.deliver == "imap" or (main.smtp is not None and main.smtp.auth == "oauth2"):
        log.error(
            "cannot send an alert about it: the digest's route needs the "
            "same sign-in; the next digest after `login` will say so"
        )
        return
    try:
        deliver(settings, compose.signin_alert(settings, why, basis, now), None, now)
        log.info("sent an alert: the sign-in needs renewing")
    except InboxGuardError as exc:
        log.error("could not send the sign-in alert: %s", exc)
