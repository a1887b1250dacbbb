"""The triage pass: read what is new, ask the core what to do, do it, record it.

``once``, ``run`` and ``demo`` all call :func:`run_pass`. The order of work is what
makes it exactly-once: every decision is written to the store (with the new mailbox
position) *before* the mailbox or the disk is touched, and each step is recorded as it
completes, so a pass cut short anywhere is finished by the next one, and a step that
might have happened (a draft APPENDed just before a crash) is looked for before it is
done again.

Faults stay with their message. Whatever goes wrong while reading, screening,
composing or recording one message, and any command the server refuses for it, is
reported for that message alone and retried on later passes (each pass up to
``model.MAX_ATTEMPTS`` times, then daily, listed in every digest until done); only a
lost connection or an unusable state file ends a pass early. The steps run safety
first: the risk marks and the alert come before anything that can fail for other
reasons, and no step waits for another to succeed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

from . import agenda, compose, risk, rules
from .decide import Arrival, Candidate, classify, plan
from .errors import ConnectError, ConnectionLost, MailboxError
from .isolate import Redials, isolate, reason
from .mailbox import Fetched, Mailbox, Status
from .model import Contact, Settings
from .outcome import PassResult
from .steps import Failures, do_steps
from .store import Store

log = logging.getLogger(__name__)


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


def _since_from(mailbox: Mailbox, day: date, senders: list[str]) -> list[int]:
    """Client mail since ``day``, picked out by the server. SEARCH FROM makes the
    server open every message file in range, and one it cannot read fails the whole
    SEARCH (Dovecot hangs up); then all mail since ``day`` is read instead, by header,
    and the pass picks out client mail itself."""
    try:
        return mailbox.uids_since_from(day, senders)
    except ConnectionLost as exc:
        log.warning("the server hung up on SEARCH FROM (%s); logging in again", exc)
        mailbox.reconnect()
    except ConnectError:
        raise
    except MailboxError as exc:
        log.warning("the server could not search by sender (%s)", reason(exc))
    return mailbox.uids_since(day)


@dataclass
class _Read:
    """What the pass learnt from the inbox."""

    status: Status
    top: int  # the highest UID now handled
    rescan: bool  # first pass, or the server renumbered the inbox
    candidates: list[Candidate] = field(default_factory=list)
    faults: dict[int, tuple[datetime | None, str]] = field(default_factory=dict)
    read_ok: set[int] = field(default_factory=set)  # UIDs read without a fault
    retried: list[int] = field(default_factory=list)  # unread UIDs tried again
    redial: Redials | None = None


def _read_new(
    settings: Settings,
    mailbox: Mailbox,
    store: Store,
    now: datetime,
    read_only: bool,
    result: PassResult,
) -> _Read | None:
    """Fetch the headers of what is new (and of what could not be read before), and
    classify it. None when nothing is new or pending (the inbox was not opened)."""
    inbox = settings.main.account.inbox
    pos = store.position(inbox)
    kept = mailbox.is_open(inbox, read_only)
    if pos is not None and not store.has_pending(now, inbox, pos[0]):
        # The quiet case costs one command whatever the mailbox size: on the service's
        # kept connection a NOOP; otherwise a STATUS (a SELECT of 100k messages
        # takes over 100 ms).
        if kept:
            if not mailbox.has_news():
                return None
        else:
            uidvalidity, uidnext = mailbox.quick_status(inbox)
            if uidvalidity == pos[0] and uidnext is not None and uidnext <= pos[1] + 1:
                return None
    status = mailbox.open(inbox, read_only=read_only)
    cutoff: datetime | None = None
    if pos is None or pos[0] != status.uidvalidity:
        rescan = True
        if pos is not None:
            log.warning(
                "UIDVALIDITY of %s changed (%s -> %s): rescanning the last %d days",
                inbox,
                pos[0],
                status.uidvalidity,
                settings.main.triage.lookback_days,
            )
        # First pass: only the lookback window, and on the server already only mail
        # from client addresses; all other mail is recorded as seen, never fetched.
        cutoff = now - timedelta(days=settings.main.triage.lookback_days)
        day = cutoff.date() - timedelta(days=1)  # SEARCH works in the server's whole days
        uids = _since_from(mailbox, day, _sender_forms(settings)) if cutoff < now else []
        top = status.uidnext - 1 if status.uidnext else mailbox.highest_uid()
    elif not kept and status.uidnext is not None and status.uidnext <= pos[1] + 1:
        rescan, uids, top = False, [], pos[1]  # nothing new: no SEARCH, no FETCH
    else:
        rescan, uids, top = False, mailbox.uids_after(pos[1]), pos[1]
        if not kept and status.uidnext is not None:
            # Everything below UIDNEXT was there when the inbox was selected, and the
            # SEARCH just now saw it: mail expunged before a pass saw it moves the
            # position on too, so the next quiet pass stays one STATUS.
            top = max(top, status.uidnext - 1)
    top = max([top, *uids])
    read = _Read(status=status, top=top, rescan=rescan, redial=Redials(mailbox))
    if not rescan:
        fresh = set(uids)
        read.retried = [
            u for u in store.unread_due(inbox, status.uidvalidity, now) if u not in fresh
        ]

    def fault(
        uid: int, exc: Exception, received: datetime | None = None, what: str = "reading"
    ) -> None:
        log.warning("uid %s: %s failed: %s", uid, what, reason(exc))
        read.faults[uid] = (received, f"{what}: {reason(exc)}")

    wanted = sorted(set(uids) | set(read.retried))
    fetched: list[Fetched] = []
    for _batch, got in isolate(
        wanted,
        lambda batch: list(mailbox.fetch_headers(batch, rules.FIELDS)),
        fault,
        read.redial,
    ):
        fetched.extend(got)
    for f in fetched:
        if cutoff is not None and f.internaldate < cutoff:
            continue
        result.scanned += 1
        try:
            headers = rules.parse(f.header)
            cand = classify(Arrival(f.uid, f.internaldate, headers, f.flags), settings)
        except Exception as exc:  # a hostile message must not stop the pass
            fault(f.uid, exc, f.internaldate)
            continue
        read.read_ok.add(f.uid)
        if cand is None:
            continue
        if cand.ignored:
            result.ignored.append({"uid": f.uid, "client": cand.client.id, "reason": cand.ignored})
            continue
        read.candidates.append(cand)
    return read


def _screen(
    settings: Settings, mailbox: Mailbox, candidates: list[Candidate], read: _Read
) -> dict[int, bool]:
    """Risk words in the subject or the first 64 KiB of the text part, per UID. A
    message whose text cannot be fetched or read is a fault of that message."""

    def fault(uid: int, exc: Exception) -> None:
        log.warning("uid %s: risk screen failed: %s", uid, reason(exc))
        read.faults[uid] = (by_uid[uid].arrival.received, f"risk screen: {reason(exc)}")

    by_uid = {c.arrival.uid: c for c in candidates}
    parts: dict[int, tuple[str, str, str] | None] = {}
    for uid, c in by_uid.items():
        try:
            parts[uid] = rules.text_part(c.arrival.headers)
        except Exception as exc:
            fault(uid, exc)
    windows: dict[int, Any] = {}
    for _batch, got in isolate(
        sorted(parts),
        lambda batch: mailbox.text_windows({u: parts[u] for u in batch}, risk.WINDOW),
        fault,
        read.redial,
    ):
        windows.update(got)
    out = {}
    for uid in sorted(parts):
        if uid in read.faults:
            continue
        c = by_uid[uid]
        try:
            texts = [c.arrival.headers.subject]
            w = windows.get(uid)
            if w is not None:
                texts.append(risk.decode_part(w.raw, w.encoding, w.charset, w.subtype))
            out[uid] = bool(risk.screen(texts, settings.main.risk.phrases))
        except Exception as exc:
            fault(uid, exc)
            continue
        if out[uid]:
            log.warning(
                "uid %s (client %s): risk words found (%s)", uid, c.client.id, risk.DISCLAIMER
            )
    return out


def _identify(
    store: Store,
    mailbox: Mailbox,
    candidates: list[Candidate],
    uidvalidity: int,
) -> tuple[dict[int, str], dict[int, str], list[int]]:
    """The key of each candidate, which are new (UID -> key) and which are known, and
    the UIDs of later copies of one message.

    A message's key is the same under any UID or UIDVALIDITY (its Message-ID, sender
    and arrival time); copies of it with all three the same (a duplicate delivery) are
    numbered in UID order. A known key seen at a new UID was renumbered by the server,
    or left the inbox and came back (archived, then moved back): its record moves
    there, and it is not a new contact."""
    bases = {
        c.arrival.uid: compose.message_key(c.arrival.headers, c.arrival.received)
        for c in candidates
    }
    stored = store.copies(set(bases.values()))
    here = {u for rows in stored.values() for _, uv, u in rows if uv == uidvalidity}
    present = mailbox.existing_uids(here) if here else set()
    counted: dict[str, int] = {}
    keys: dict[int, str] = {}
    fresh: dict[int, str] = {}
    copies: list[int] = []
    for uid in sorted(bases):
        base = bases[uid]
        rows = stored.get(base, [])
        same = [k for k, uv, u in rows if uv == uidvalidity and u == uid]
        if same:
            keys[uid] = same[0]
            continue
        left = [k for k, uv, u in rows if uv == uidvalidity and u not in present]
        if left:  # this copy left the inbox and has come back at a new UID
            keys[uid] = left[0]
            store.relocate(left[0], uidvalidity, uid)
            present.add(uid)
            stored[base] = [(k, uv, uid if k == left[0] else u) for k, uv, u in rows]
            continue
        n = sum(1 for _, uv, _ in rows if uv == uidvalidity) + counted.get(base, 0) + 1
        counted[base] = counted.get(base, 0) + 1
        key = compose.copy_key(base, n)
        keys[uid] = key
        if n > 1:
            copies.append(uid)
        if any(k == key for k, _, _ in rows):
            store.relocate(key, uidvalidity, uid)
        else:
            fresh[uid] = key
    return keys, fresh, copies


def _plan_and_record(
    settings: Settings,
    mailbox: Mailbox,
    store: Store,
    now: datetime,
    read: _Read,
) -> None:
    inbox = settings.main.account.inbox
    uidvalidity = read.status.uidvalidity
    with store.transaction():
        _keys, fresh, copies = _identify(store, mailbox, read.candidates, uidvalidity)
    new = [c for c in read.candidates if c.arrival.uid in fresh]
    risky = _screen(settings, mailbox, new, read) if new else {}
    ready = [c for c in new if c.arrival.uid not in read.faults]
    ids = {c.arrival.headers.message_id for c in ready} - {None}
    decisions = plan(
        ready,
        settings,
        now,
        store.drafted_windows(),
        risky,
        drafted_ids=store.drafted_message_ids(i for i in ids if i is not None),
        copies=copies,
    )
    by_uid = {c.arrival.uid: c for c in ready}
    with store.transaction():
        for d in decisions:
            cand = by_uid[d.uid]
            h = cand.arrival.headers
            key = fresh[d.uid]
            store.add(
                Contact(
                    key=key,
                    base=compose.message_key(h, cand.arrival.received),
                    client=d.client,
                    mailbox=inbox,
                    uidvalidity=uidvalidity,
                    uid=d.uid,
                    received=d.received,
                    address=d.address,
                    message_id=h.message_id,
                    refs=h.references,
                    subject=h.subject,
                    draft=d.draft,
                    suppressed=d.suppressed,
                    window=d.window,
                    session=d.session,
                    agenda=str(agenda.relpath(d.client, d.session)),
                    risk=d.risk,
                    alert=d.risk and settings.main.risk.alert,
                    was_flagged=cand.arrival.flagged,
                    reply_from=d.reply_from,
                ),
                now,
            )
        if read.rescan:
            store.forget_unread(inbox, uidvalidity)
        for uid, (received, error) in read.faults.items():
            store.note_unread(inbox, uidvalidity, uid, received, error, now)
        # Tried again and read this time, or gone from the inbox: nothing left to retry.
        store.clear_unread(inbox, uidvalidity, [u for u in read.retried if u not in read.faults])
        store.set_position(inbox, uidvalidity, read.top)


def _report(
    settings: Settings, pending: list[Contact], failures: Failures, result: PassResult
) -> None:
    for c in pending:
        if c.key in failures:
            result.errors.append({"uid": c.uid, "error": failures.text(c.key)})
            continue
        result.flagged.append(
            {
                "uid": c.uid,
                "message_id": c.message_id,
                "client": c.client,
                "received": c.received.astimezone(settings.tz).isoformat(),
                "draft": c.draft,
                "agenda": str(PurePosixPath(settings.main.agenda.dir) / c.agenda),
                "risk": c.risk,
                "suppressed": c.suppressed,
            }
        )
        log.info(
            "uid %s (client %s): out of hours; %s",
            c.uid,
            c.client,
            "draft saved" if c.draft else f"no draft ({c.suppressed})",
        )


def run_pass(
    settings: Settings,
    mailbox: Mailbox,
    store: Store,
    now: datetime,
    dry_run: bool = False,
    stop: threading.Event | None = None,
) -> PassResult:
    """One triage pass over the inbox. With ``dry_run`` the store must be a snapshot.

    ``stop``, when set, ends the pass between two steps (the service's shutdown).
    """
    result = PassResult()
    read = _read_new(settings, mailbox, store, now, dry_run, result)
    if read is not None:
        _plan_and_record(settings, mailbox, store, now, read)
        for uid, (_, error) in sorted(read.faults.items()):
            result.errors.append({"uid": uid, "error": error})
        pending, failures = do_steps(settings, mailbox, store, now, dry_run, read.status, stop)
        _report(settings, pending, failures, result)
    if not dry_run:
        store.purge(now - timedelta(days=settings.main.state.retain_days))
    return result
