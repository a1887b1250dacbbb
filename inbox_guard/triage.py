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
import functools
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any, TypeVar

import jinja2

from . import agenda, compose, marks, risk, rules
from .decide import Arrival, Candidate, classify, plan
from .deliver import deliver
from .errors import ConnectError, ConnectionLost, MailboxError, StoreError
from .mailbox import Fetched, Mailbox, Status
from .marks import Marks
from .model import Contact, Settings
from .store import GONE, Store

log = logging.getLogger(__name__)

DRAFT_FLAGS = ("\\Draft", "\\Seen")
T = TypeVar("T")
R = TypeVar("R")
REDIALS = 30  # logins again per pass after the server hung up on a read


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


def _reason(exc: BaseException) -> str:
    """One line for the log, the JSON and the digest (never a traceback)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:299] + "…"


class _Redials:
    """How often one pass may log in again after the server hung up on a read."""

    def __init__(self, mailbox: Mailbox, budget: int = REDIALS) -> None:
        self.mailbox = mailbox
        self.left = budget

    def __call__(self, exc: ConnectError) -> bool:
        """Log in again (a failure to raises, ending the pass); True while there is
        budget left to look for the message at fault, False once the rest of the batch
        should be reported as not read this time (so the pass still records progress)."""
        log.warning("the server hung up (%s); logging in again to go on without the "
                    "message at fault", exc)
        self.mailbox.reconnect()
        self.left -= 1
        return self.left >= 0


def _isolate(
    items: Sequence[T], work: Callable[[list[T]], R], fault: Callable[[T, Exception], None],
    redial: _Redials | None = None,
) -> Iterator[tuple[list[T], R]]:
    """Run ``work`` over ``items`` in one go; when the server refuses it (or anything
    else goes wrong but the state file), halve and try again, so the one item at
    fault is found and reported without holding back the others. With ``redial``,
    also when the server hangs up (it may, on a message it cannot read): log in
    again and go on. Only for work that is safe to repeat (reads, STORE +FLAGS)."""
    if not items:
        return
    try:
        yield list(items), work(list(items))
    except ConnectionLost as exc:
        if redial is None:
            raise
        if not redial(exc) or len(items) == 1:
            for item in items:  # each is tried again on the next pass
                fault(item, exc)
            return
        mid = len(items) // 2
        yield from _isolate(items[:mid], work, fault, redial)
        yield from _isolate(items[mid:], work, fault, redial)
    except (ConnectError, StoreError):
        raise  # a timeout or a refused login is the server's trouble, not a message's
    except Exception as exc:
        if len(items) == 1:
            fault(items[0], exc)
            return
        mid = len(items) // 2
        yield from _isolate(items[:mid], work, fault, redial)
        yield from _isolate(items[mid:], work, fault, redial)


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
        log.warning("the server could not search by sender (%s)", _reason(exc))
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
    redial: _Redials | None = None


def _read_new(
    settings: Settings, mailbox: Mailbox, store: Store, now: datetime, read_only: bool,
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
                inbox, pos[0], status.uidvalidity, settings.main.triage.lookback_days,
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
    read = _Read(status=status, top=top, rescan=rescan, redial=_Redials(mailbox))
    if not rescan:
        fresh = set(uids)
        read.retried = [u for u in store.unread_due(inbox, status.uidvalidity, now)
                        if u not in fresh]

    def fault(uid: int, exc: Exception, received: datetime | None = None,
              what: str = "reading") -> None:
        log.warning("uid %s: %s failed: %s", uid, what, _reason(exc))
        read.faults[uid] = (received, f"{what}: {_reason(exc)}")

    wanted = sorted(set(uids) | set(read.retried))
    fetched: list[Fetched] = []
    for _batch, got in _isolate(
        wanted, lambda batch: list(mailbox.fetch_headers(batch, rules.FIELDS)), fault,
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
            result.ignored.append(
                {"uid": f.uid, "client": cand.client.id, "reason": cand.ignored}
            )
            continue
        read.candidates.append(cand)
    return read


def _screen(
    settings: Settings, mailbox: Mailbox, candidates: list[Candidate], read: _Read
) -> dict[int, bool]:
    """Risk words in the subject or the first 64 KiB of the text part, per UID. A
    message whose text cannot be fetched or read is a fault of that message."""
    def fault(uid: int, exc: Exception) -> None:
        log.warning("uid %s: risk screen failed: %s", uid, _reason(exc))
        read.faults[uid] = (by_uid[uid].arrival.received, f"risk screen: {_reason(exc)}")

    by_uid = {c.arrival.uid: c for c in candidates}
    parts: dict[int, tuple[str, str, str] | None] = {}
    for uid, c in by_uid.items():
        try:
            parts[uid] = rules.text_part(c.arrival.headers)
        except Exception as exc:
            fault(uid, exc)
    windows: dict[int, Any] = {}
    for _batch, got in _isolate(
        sorted(parts),
        lambda batch: mailbox.text_windows({u: parts[u] for u in batch}, risk.WINDOW),
        fault, read.redial,
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
            log.warning("uid %s (client %s): risk words found (%s)", uid, c.client.id,
                        risk.DISCLAIMER)
    return out


def _identify(
    store: Store, mailbox: Mailbox, candidates: list[Candidate], uidvalidity: int,
) -> tuple[dict[int, str], dict[int, str], list[int]]:
    """The key of each candidate, which are new (UID -> key) and which are known, and
    the UIDs of later copies of one message.

    A message's key is the same under any UID or UIDVALIDITY (its Message-ID, sender
    and arrival time); copies of it with all three the same (a duplicate delivery) are
    numbered in UID order. A known key seen at a new UID was renumbered by the server,
    or left the inbox and came back (archived, then moved back): its record moves
    there, and it is not a new contact."""
    bases = {c.arrival.uid: compose.message_key(c.arrival.headers, c.arrival.received)
             for c in candidates}
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
    settings: Settings, mailbox: Mailbox, store: Store, now: datetime, read: _Read,
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
        ready, settings, now, store.drafted_windows(), risky,
        drafted_ids=store.drafted_message_ids(i for i in ids if i is not None), copies=copies,
    )
    by_uid = {c.arrival.uid: c for c in ready}
    with store.transaction():
        for d in decisions:
            cand = by_uid[d.uid]
            h = cand.arrival.headers
            key = fresh[d.uid]
            store.add(
                Contact(
                    key=key, base=compose.message_key(h, cand.arrival.received),
                    client=d.client, mailbox=inbox, uidvalidity=uidvalidity,
                    uid=d.uid, received=d.received, address=d.address,
                    message_id=h.message_id, refs=h.references, subject=h.subject,
                    draft=d.draft, suppressed=d.suppressed, window=d.window,
                    session=d.session, agenda=str(agenda.relpath(d.client, d.session)),
                    risk=d.risk, alert=d.risk and settings.main.risk.alert,
                    was_flagged=cand.arrival.flagged, reply_from=d.reply_from,
                ),
                now,
            )
        if read.rescan:
            store.forget_unread(inbox, uidvalidity)
        for uid, (received, error) in read.faults.items():
            store.note_unread(inbox, uidvalidity, uid, received, error, now)
        # Tried again and read this time, or gone from the inbox: nothing left to retry.
        store.clear_unread(inbox, uidvalidity,
                           [u for u in read.retried if u not in read.faults])
        store.set_position(inbox, uidvalidity, read.top)


@dataclass(frozen=True)
class _Look:
    """How marks show on this server ([mark] show, chosen once per pass)."""

    style: str
    keeps_keywords: bool
    label: str
    colour: str
    keyword: str
    needs_attention: Marks

    @classmethod
    def of(cls, settings: Settings, mailbox: Mailbox) -> _Look:
        main = settings.main
        status = mailbox.open(main.account.inbox, read_only=False)
        keeps = status.allows(main.triage.keyword)
        style = marks.choose(main.mark.show, mailbox.capabilities(), keeps)
        if not keeps:
            mailbox.warn_once(f"the server does not keep the keyword {main.triage.keyword} "
                              "(PERMANENTFLAGS has no \\*); marks show as \\Flagged")
        label, risk_label = compose.mark_labels(settings)
        risky = marks.needs_attention(style, main.risk.keyword,
                                      status.allows(main.risk.keyword), risk_label)
        return cls(style, keeps, label, main.mark.colour, main.triage.keyword, risky)

    def out_of_hours(self, c: Contact) -> Marks:
        return marks.out_of_hours(self.style, self.keyword, self.keeps_keywords, self.label,
                                  self.colour, c.was_flagged, c.risk)


class _Failures:
    """What went wrong this pass, per contact and step ("draft: ...")."""

    def __init__(self) -> None:
        self.by_key: dict[str, list[str]] = {}

    def __call__(self, c: Contact, step: str, exc: BaseException | str) -> None:
        why = exc if isinstance(exc, str) else _reason(exc)
        log.error("uid %s (client %s): %s: %s", c.uid, c.client, step, why)
        self.by_key.setdefault(c.key, []).append(f"{step}: {why}")

    def __contains__(self, key: str) -> bool:
        return key in self.by_key

    def text(self, key: str) -> str:
        return "; ".join(self.by_key[key])


def _relocate(
    mailbox: Mailbox, store: Store, status: Status, pending: list[Contact],
    failures: _Failures,
) -> bool:
    """Marks planned under an old UIDVALIDITY are re-resolved, never assumed: the
    message is looked up by Message-ID and arrival time. One that has left the inbox
    cannot be marked, and the store says so (not "done"). True if any moved."""
    moved = False
    taken: set[int] = set()  # two copies never move to one UID
    for c in pending:
        unmarked = not c.keyword_done or (c.risk and not c.risk_done)
        if c.uidvalidity == status.uidvalidity or not unmarked:
            continue
        try:
            found = mailbox.find_uids(c.message_id, c.address, c.received)
        except (ConnectError, StoreError):
            raise
        except Exception as exc:
            failures(c, "mark", exc)
            continue
        uid = next((u for u in found if u not in taken), None)
        if uid is None:
            log.warning("uid %s (client %s): the message left the inbox before it could "
                        "be marked", c.uid, c.client)
            store.mark([c.key], "keyword_done", GONE)
            if c.risk:
                store.mark([c.key], "risk_done", GONE)
        else:
            store.relocate(c.key, status.uidvalidity, uid)
            taken.add(uid)
        moved = True
    return moved


def _mark(
    settings: Settings, mailbox: Mailbox, store: Store, due: list[tuple[Contact, Marks]],
    step: str, failures: _Failures,
) -> None:
    """Add each contact's marks (flags and keywords, Gmail labels, a copy in a folder)
    to its message. A refused STORE is narrowed to the message it concerns; a copy is
    made only after the folder was searched for it (a copy made just before a crash
    is found, not made again); a message is recorded as marked only when the server
    said OK to all of it."""
    if not due:
        return
    inbox = settings.main.account.inbox
    status = mailbox.open(inbox, read_only=False)
    failed: set[str] = set()
    live: list[tuple[Contact, Marks]] = []
    for c, m in due:
        if c.uidvalidity != status.uidvalidity:
            failures(c, "mark", "the server renumbered the inbox; the next pass finds it")
            failed.add(c.key)
        else:
            live.append((c, m))

    def each(group: list[Contact], work: Callable[[list[int]], None],
             instead: Callable[[int], bool] = lambda uid: False) -> None:
        by_uid: dict[int, list[Contact]] = {}
        for c in group:
            by_uid.setdefault(c.uid, []).append(c)

        def refused(uid: int, exc: Exception) -> None:
            if instead(uid):
                return
            for c in by_uid[uid]:
                failures(c, "mark", exc)
                failed.add(c.key)

        for _ in _isolate(sorted(by_uid), work, refused):
            pass

    def grouped(what: Callable[[Marks], tuple[str, ...]]) -> dict[tuple[str, ...], list[Contact]]:
        out: dict[tuple[str, ...], list[Contact]] = {}
        for c, m in live:
            if what(m):
                out.setdefault(what(m), []).append(c)
        return out

    for flags, group in grouped(lambda m: m.flags).items():
        each(group, functools.partial(_add, mailbox.add_flags, flags),
             functools.partial(_flag_instead, mailbox, flags))
    for labels, group in grouped(lambda m: m.labels).items():
        each(group, functools.partial(_add, mailbox.add_labels, labels))
    for folders, group in grouped(lambda m: m.folders).items():
        for folder in folders:
            _copy_once(mailbox, inbox, folder, [c for c in group if c.key not in failed],
                       failures, failed)
    store.mark((c.key for c, _ in live if c.key not in failed), step)


def _add(
    adding: Callable[[list[int], list[str]], None], names: tuple[str, ...], uids: list[int]
) -> None:
    adding(uids, list(names))


def _flag_instead(mailbox: Mailbox, flags: tuple[str, ...], uid: int) -> bool:
    """A server may announce that it keeps any keyword (PERMANENTFLAGS ``\\*``) and
    still refuse one: Cyrus once a mailbox has its 100 keywords ("Too many user
    flags"), Dovecot one longer than 50 characters. The mark is then \\Flagged, as on
    a server that keeps no keywords at all. True if that worked."""
    if all(f.startswith("\\") for f in flags):
        return False
    plain = [f for f in flags if f.startswith("\\")]
    try:
        mailbox.add_flags([uid], [*plain, "\\Flagged"] if "\\Flagged" not in plain else plain)
    except (ConnectError, StoreError):
        raise
    except Exception:
        return False
    mailbox.warn_once(f"the server refused the keyword(s) {' '.join(flags)} although it "
                      "announces that it keeps keywords; marking with \\Flagged instead")
    return True


def _copy_once(
    mailbox: Mailbox, inbox: str, folder: str, group: list[Contact], failures: _Failures,
    failed: set[str],
) -> None:
    """A copy of each message in ``folder``, unless one is there already."""
    todo: list[Contact] = []
    try:
        mailbox.ensure_folder(folder)
        for c in group:
            if not mailbox.in_folder(folder, c.message_id, c.address, c.received):
                todo.append(c)
    except (ConnectError, StoreError):
        raise
    except Exception as exc:
        for c in group:
            failures(c, "mark", exc)
            failed.add(c.key)
        return
    mailbox.open(inbox, read_only=False)
    by_uid = {c.uid: c for c in todo}

    def refused(uid: int, exc: Exception) -> None:
        failures(by_uid[uid], "mark", exc)
        failed.add(by_uid[uid].key)

    for _ in _isolate(sorted(by_uid), lambda uids: mailbox.copy(uids, folder), refused):
        pass


def _do_steps(
    settings: Settings, mailbox: Mailbox, store: Store, now: datetime, dry_run: bool,
    status: Status, result: PassResult, stop: threading.Event | None,
) -> None:
    """Do what the store says is pending, safety first, each step in batches (one
    STORE, one write per agenda file, one MULTIAPPEND for the drafts) and recorded as
    it completes. A failure that belongs to one message is recorded for it alone; a
    lost connection stops the pass, and whatever is left is pending for the next."""
    main = settings.main
    pending = store.pending(now)
    failures = _Failures()

    def stopping() -> bool:
        if stop is not None and stop.is_set():
            log.info("stopping: unfinished messages are left for the next pass")
            return True
        return False

    if pending and not dry_run:
        if _relocate(mailbox, store, status, pending, failures):
            keys = {c.key for c in pending}
            pending = [c for c in store.pending(now) if c.key in keys]
        # 1. Risk: its keyword and \Flagged, then the alert, before anything else.
        look = _Look.of(settings, mailbox)
        _mark(settings, mailbox, store,
              [(c, look.needs_attention) for c in pending if c.risk and not c.risk_done],
              "risk_done", failures)
        env = compose.env_for(settings)
        for c in pending:
            if c.alert and not c.alert_done:
                try:
                    _alert(settings, env, mailbox, store, c, now)
                except (ConnectError, StoreError):
                    raise
                except Exception as exc:
                    failures(c, "alert", exc)
        if stopping():
            return
        # 2. The out-of-hours mark.
        _mark(settings, mailbox, store,
              [(c, look.out_of_hours(c)) for c in pending if not c.keyword_done],
              "keyword_done", failures)
        # 3. The notes before the drafts: they need only the disk.
        if stopping():
            return
        _notes(settings, store, [c for c in pending if not c.agenda_done], failures)
        if stopping():
            return
        # 4. The holding replies.
        _drafts(settings, env, mailbox, store, now,
                [c for c in pending if c.draft and not c.draft_done], failures)
        store.complete([c.key for c in pending if c.key not in failures], now,
                       keep_subject=main.digest.include_subjects)
        with store.transaction():
            for key in failures.by_key:
                store.failed(key, failures.text(key), now)

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
                "agenda": _agenda_display(settings, c),
                "risk": c.risk,
                "suppressed": c.suppressed,
            }
        )
        log.info(
            "uid %s (client %s): out of hours; %s", c.uid, c.client,
            "draft saved" if c.draft else f"no draft ({c.suppressed})",
        )


def _notes(settings: Settings, store: Store, contacts: list[Contact], failures: _Failures) -> None:
    """Agenda lines, one write per file."""
    files: dict[tuple[str, str], list[Contact]] = {}
    for c in contacts:
        files.setdefault((c.client, c.agenda), []).append(c)
    with_subject = settings.main.agenda.include_subjects
    for (client_id, _), group in files.items():
        client = settings.clients.get(client_id)
        try:
            lines = [
                (agenda.note_line(c.received.astimezone(settings.tz),
                                  c.subject if with_subject else None, c.key, c.risk), c.key)
                for c in group
            ]
            agenda.add_notes(settings.agenda_dir, client_id,
                             client.name if client else client_id, group[0].session, lines)
        except Exception as exc:
            for c in group:
                failures(c, "agenda", exc)
            continue
        store.mark((c.key for c in group), "agenda_done")


def _drafts(
    settings: Settings, env: jinja2.Environment, mailbox: Mailbox, store: Store, now: datetime,
    due: list[Contact], failures: _Failures,
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
        log.warning("cannot search %s for earlier drafts: %s", folder, _reason(exc))
        for c in due:
            if c.draft_tried:
                failures(c, "draft", f"cannot look in {folder} for an earlier copy: "
                                     f"{_reason(exc)}")
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
                settings=settings, env=env, subject=c.subject or "", message_id=c.message_id,
                references=c.refs, to=c.address, key=c.key, session=c.session, risk=c.risk,
                now=now, template=client.draft_template if client else None,
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
    store.mark((c.key for (c, _), refused in zip(todo, answers, strict=True)
                if refused is None), "draft_done")


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
            log.warning("uid %s (client %s): cannot look for an earlier alert (%s); "
                        "sending it", c.uid, c.client, _reason(exc))
    if not sent:
        deliver(settings, msg, mailbox, now)
    store.mark([c.key], "alert_done")


def run_pass(
    settings: Settings, mailbox: Mailbox, store: Store, now: datetime, dry_run: bool = False,
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
        _do_steps(settings, mailbox, store, now, dry_run, read.status, result, stop)
    if not dry_run:
        store.purge(now - timedelta(days=settings.main.state.retain_days))
    return result
