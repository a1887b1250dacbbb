"""The triage pass: read what is new, ask the core what to do, do it, record it.

``once``, ``run`` and ``demo`` all call :func:`run_pass`. The order of work is what
makes it exactly-once: every decision is written to the store (with the new mailbox
position) *before* the mailbox or the disk is touched, and each step is recorded as it
completes, so a pass cut short anywhere is finished by the next one, and a step that
might have happened (a draft APPENDed just before a crash) is checked before redoing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

import jinja2

from . import agenda, compose, risk, rules
from .config import Settings
from .decide import Arrival, Candidate, classify, plan
from .deliver import deliver
from .errors import ConnectError, InboxGuardError, MailboxError, StoreError
from .mailbox import Mailbox, Status
from .store import Contact, Store

log = logging.getLogger(__name__)

DRAFT_FLAGS = ("\\Draft", "\\Seen")


@dataclass
class PassResult:
    scanned: int = 0
    flagged: list[dict[str, Any]] = field(default_factory=list)
    ignored: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "scanned": self.scanned,
            "flagged": self.flagged,
            "ignored": self.ignored,
            "errors": self.errors,
        }


def _agenda_display(settings: Settings, c: Contact) -> str:
    return str(PurePosixPath(settings.main.agenda.dir) / c.agenda)


def _sender_forms(settings: Settings) -> list[str]:
    """Every active client address, with internationalised domains also in Unicode
    (a server searches the decoded header, which may hold either form)."""
    forms = []
    for addr in sorted(settings.client_by_email):
        forms.append(addr)
        local, _, domain = addr.rpartition("@")
        if "xn--" in domain:
            with contextlib.suppress(UnicodeError):
                forms.append(f"{local}@{domain.encode('ascii').decode('idna')}")
    return forms


def _read_new(
    settings: Settings, mailbox: Mailbox, store: Store, now: datetime, read_only: bool,
    result: PassResult,
) -> tuple[list[tuple[Candidate, str]], Status | None, int]:
    """Fetch headers of what is new; return candidates with keys, the status, top UID.
    The status is None when nothing is new or pending (the inbox was not opened)."""
    inbox = settings.main.account.inbox
    pos = store.position(inbox)
    kept = mailbox.is_open(inbox, read_only)
    if pos is not None and not store.has_pending():
        # The quiet case costs one command whatever the mailbox size: on the service's
        # kept connection a NOOP; otherwise a STATUS (a SELECT of 100k messages
        # takes over 100 ms).
        if kept:
            if not mailbox.has_news():
                return [], None, pos[1]
        else:
            uidvalidity, uidnext = mailbox.quick_status(inbox)
            if uidvalidity == pos[0] and uidnext is not None and uidnext <= pos[1] + 1:
                return [], None, pos[1]
    status = mailbox.open(inbox, read_only=read_only)
    cutoff: datetime | None = None
    if pos is None or pos[0] != status.uidvalidity:
        if pos is not None:
            log.warning(
                "UIDVALIDITY of %s changed (%s -> %s): rescanning the last %d days",
                inbox, pos[0], status.uidvalidity, settings.main.triage.lookback_days,
            )
        # First pass: only the lookback window, and on the server already only mail
        # from client addresses; all other mail is recorded as seen, never fetched.
        cutoff = now - timedelta(days=settings.main.triage.lookback_days)
        day = cutoff.date() - timedelta(days=1)  # SEARCH works in the server's whole days
        uids = mailbox.uids_since_from(day, _sender_forms(settings)) if cutoff < now else []
        top = status.uidnext - 1 if status.uidnext else mailbox.highest_uid()
    elif not kept and status.uidnext is not None and status.uidnext <= pos[1] + 1:
        uids, top = [], pos[1]  # nothing new: no SEARCH, no FETCH
    else:
        uids = mailbox.uids_after(pos[1])
        top = pos[1]
    top = max([top, *uids])

    candidates: list[tuple[Candidate, str]] = []
    for f in mailbox.fetch_headers(uids, rules.FIELDS) if uids else ():
        if cutoff is not None and f.internaldate < cutoff:
            continue
        result.scanned += 1
        try:
            headers = rules.parse(f.header)
            cand = classify(Arrival(f.uid, f.internaldate, headers), settings)
        except Exception as exc:  # a hostile message must not stop the pass
            log.warning("uid %s: cannot read headers: %s", f.uid, exc)
            result.errors.append({"uid": f.uid, "error": f"cannot read headers: {exc}"})
            continue
        if cand is None:
            continue
        if cand.ignored:
            result.ignored.append(
                {"uid": f.uid, "client": cand.client.id, "reason": cand.ignored}
            )
            continue
        candidates.append((cand, compose.message_key(headers, f.internaldate)))
    return candidates, status, top


def _screen(
    settings: Settings, mailbox: Mailbox, candidates: list[Candidate]
) -> dict[int, bool]:
    """Risk words in the subject or the first 64 KiB of the text part, per UID."""
    parts = {c.arrival.uid: rules.text_part(c.arrival.headers) for c in candidates}
    windows = mailbox.text_windows(parts, risk.WINDOW)
    out = {}
    for c in candidates:
        texts = [c.arrival.headers.subject]
        w = windows.get(c.arrival.uid)
        if w is not None:
            texts.append(risk.decode_part(w.raw, w.encoding, w.charset, w.subtype))
        out[c.arrival.uid] = bool(risk.screen(texts, settings.main.risk.phrases))
        if out[c.arrival.uid]:
            log.warning("uid %s (client %s): risk words found (%s)", c.arrival.uid,
                        c.client.id, risk.DISCLAIMER)
    return out


def _plan_and_record(
    settings: Settings, mailbox: Mailbox, store: Store, now: datetime,
    candidates: list[tuple[Candidate, str]], uidvalidity: int, top: int,
) -> None:
    inbox = settings.main.account.inbox
    known = store.known(k for _, k in candidates)
    fresh = {c.arrival.uid: (c, k) for c, k in candidates if k not in known}
    risky = _screen(settings, mailbox, [c for c, _ in fresh.values()]) if fresh else {}
    decisions = plan(
        (c for c, _ in fresh.values()), settings, now, store.drafted_windows(), risky
    )
    with store.transaction():
        for d in decisions:
            cand, key = fresh[d.uid]
            h = cand.arrival.headers
            store.add(
                Contact(
                    key=key, client=d.client, mailbox=inbox, uidvalidity=uidvalidity,
                    uid=d.uid, received=d.received, address=d.address,
                    message_id=h.message_id, refs=h.references, subject=h.subject,
                    draft=d.draft, suppressed=d.suppressed, window=d.window,
                    session=d.session, agenda=str(agenda.relpath(d.client, d.session)),
                    risk=d.risk, alert=d.risk and settings.main.risk.alert,
                ),
                now,
            )
        store.set_position(inbox, uidvalidity, top)


def _do_steps(
    settings: Settings, mailbox: Mailbox, store: Store, now: datetime, dry_run: bool,
    status: Status, result: PassResult, stop: threading.Event | None,
) -> None:
    """Do what the store says is pending, in batches: one STORE, one write per agenda
    file, one APPEND (MULTIAPPEND) for the drafts, one transaction per step. A failure
    that belongs to one message is recorded for it alone; a lost connection stops the
    pass, and whatever is left is pending for the next one."""
    main = settings.main
    pending = store.pending()
    failed: dict[str, str] = {}

    def fail(c: Contact, exc: Exception) -> None:
        log.error("uid %s (client %s): %s", c.uid, c.client, exc)
        failed[c.key] = str(exc)

    def stopping() -> bool:
        if stop is not None and stop.is_set():
            log.info("stopping: unfinished messages are left for the next pass")
            return True
        return False

    if pending and not dry_run:
        # Mark: one STORE for all, one more for risk, on UIDs that are still valid.
        unmarked = [c for c in pending if not c.keyword_done]
        live = [c for c in unmarked if c.uidvalidity == status.uidvalidity]
        if live:
            mailbox.add_flags([c.uid for c in live], [main.triage.keyword])
            risky = [c.uid for c in live if c.risk]
            if risky:
                mailbox.add_flags(risky, [main.risk.keyword, "\\Flagged"])
        store.mark((c.key for c in unmarked), "keyword_done")
        # The notes before the drafts: they need only the disk, so a Drafts problem
        # cannot keep a contact off the agenda.
        if stopping():
            return
        _notes(settings, store, [c for c in pending if not c.agenda_done], fail)
        if stopping():
            return
        env = compose.env_for(settings)
        _drafts(settings, env, mailbox, store, now,
                [c for c in pending if c.draft and not c.draft_done and c.key not in failed],
                fail)
        for c in pending:
            if c.alert and not c.alert_done and c.key not in failed:
                try:
                    _alert(settings, env, mailbox, store, c, now)
                except (ConnectError, StoreError):
                    raise
                except (InboxGuardError, jinja2.TemplateError, ValueError) as exc:
                    fail(c, exc)
        done = [c.key for c in pending if c.key not in failed]
        store.complete(done, now, keep_subject=main.digest.include_subjects)
        for key, error in failed.items():
            store.failed(key, error)

    for c in pending:
        if c.key in failed:
            result.errors.append({"uid": c.uid, "error": failed[c.key]})
            continue
        result.flagged.append(
            {
                "uid": c.uid,
                "message_id": c.message_id,
                "client": c.client,
                "received": c.received.astimezone(settings.tz).isoformat(),
                "draft": c.draft,
                "agenda": _agenda_display(settings, c),
                "risk": c.risk,
                "suppressed": c.suppressed,
            }
        )
        log.info(
            "uid %s (client %s): out of hours; %s", c.uid, c.client,
            "draft saved" if c.draft else f"no draft ({c.suppressed})",
        )


def _notes(
    settings: Settings, store: Store, contacts: list[Contact],
    fail: Callable[[Contact, Exception], None],
) -> None:
    """Agenda lines, one write per file."""
    files: dict[tuple[str, str], list[Contact]] = {}
    for c in contacts:
        files.setdefault((c.client, c.agenda), []).append(c)
    with_subject = settings.main.agenda.include_subjects
    for (client_id, _), group in files.items():
        client = settings.clients.get(client_id)
        lines = [
            (agenda.note_line(c.received.astimezone(settings.tz),
                              c.subject if with_subject else None, c.key), c.key)
            for c in group
        ]
        try:
            agenda.add_notes(settings.agenda_dir, client_id, client.name if client else client_id,
                             group[0].session, lines)
        except (OSError, ValueError) as exc:
            for c in group:
                fail(c, exc)
            continue
        store.mark((c.key for c in group), "agenda_done")


def _drafts(
    settings: Settings, env: jinja2.Environment, mailbox: Mailbox, store: Store, now: datetime,
    due: list[Contact], fail: Callable[[Contact, Exception], None],
) -> None:
    """Holding replies into Drafts: recorded as tried, APPENDed together, recorded done."""
    if not due:
        return
    try:
        folder = mailbox.find_drafts(settings.main.account.drafts)
    except ConnectError:
        raise
    except MailboxError as exc:
        for c in due:
            fail(c, exc)
        return
    # A draft APPENDed just before a crash is found, not made again.
    found = [
        c.key for c in due
        if c.draft_tried
        and mailbox.has_message_id(folder, compose.draft_message_id(c.key, settings))
    ]
    store.mark(found, "draft_done")
    todo: list[tuple[Contact, bytes]] = []
    for c in due:
        if c.key in found:
            continue
        client = settings.clients.get(c.client)
        try:
            msg = compose.draft(
                settings=settings, env=env, subject=c.subject or "", message_id=c.message_id,
                references=c.refs, to=c.address, key=c.key, session=c.session, risk=c.risk,
                now=now, template=client.draft_template if client else None,
            )
            todo.append((c, msg.as_bytes()))
        except (jinja2.TemplateError, ValueError) as exc:
            fail(c, exc)
    store.mark((c.key for c, _ in todo), "draft_tried")
    mailbox.append_many(folder, [raw for _, raw in todo], DRAFT_FLAGS, now)
    store.mark((c.key for c, _ in todo), "draft_done")


def _alert(
    settings: Settings, env: jinja2.Environment, mailbox: Mailbox, store: Store, c: Contact,
    now: datetime,
) -> None:
    """Tell the practitioner at once, by the digest's route (never the client)."""
    domain = settings.main.therapist.email.rsplit("@", 1)[1]
    message_id = f"<inbox-guard.alert.{c.key}@{domain}>"
    client = settings.clients.get(c.client)
    msg = compose.alert_message(
        settings, env, client=c.client, name=client.name if client else c.client,
        received=c.received, draft=c.draft, suppressed=c.suppressed, session=c.session,
        message_id=message_id, now=now,
    )
    inbox = settings.main.account.inbox
    imap = settings.main.digest.deliver == "imap"
    # Over IMAP an alert appended just before a crash is found, not sent twice.
    if not (imap and mailbox.has_message_id(inbox, message_id)):
        deliver(settings, msg, mailbox, now)
    store.mark([c.key], "alert_done")


def run_pass(
    settings: Settings, mailbox: Mailbox, store: Store, now: datetime, dry_run: bool = False,
    stop: threading.Event | None = None,
) -> PassResult:
    """One triage pass over the inbox. With ``dry_run`` the store must be a snapshot.

    ``stop``, when set, ends the pass between two messages (the service's shutdown).
    """
    result = PassResult()
    candidates, status, top = _read_new(settings, mailbox, store, now, dry_run, result)
    if status is not None:
        _plan_and_record(settings, mailbox, store, now, candidates, status.uidvalidity, top)
        _do_steps(settings, mailbox, store, now, dry_run, status, result, stop)
    if not dry_run:
        store.purge(now - timedelta(days=settings.main.state.retain_days))
    return result
