"""Doing what a pass recorded, safety first: the risk marks and the alert, then the
out-of-hours mark, the agenda notes, and the holding replies, each in batches and each
recorded in the store as it completes (see :mod:`triage` for why that order makes it
exactly-once). A failure that belongs to one message is kept for that message alone
(:class:`Failures`); a lost connection or an unusable state file ends the steps, and
what is left is pending for the next pass."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from . import agenda, compose, marks, outgoing
from .brief import content as brief
from .errors import ConnectError, StoreError
from .isolate import isolate, reason
from .mailbox import Mailbox, Status
from .marks import Marks
from .model import Contact, Settings
from .store import GONE, Store

log = logging.getLogger("inbox_guard.triage")


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
            mailbox.warn_once(
                f"the server does not keep the keyword {main.triage.keyword} "
                "(PERMANENTFLAGS has no \\*); marks show as \\Flagged"
            )
        label, risk_label = compose.mark_labels(settings)
        risky = marks.needs_attention(
            style, main.risk.keyword, status.allows(main.risk.keyword), risk_label
        )
        return cls(style, keeps, label, main.mark.colour, main.triage.keyword, risky)

    def out_of_hours(self, c: Contact) -> Marks:
        return marks.out_of_hours(
            self.style,
            self.keyword,
            self.keeps_keywords,
            self.label,
            self.colour,
            c.was_flagged,
            c.risk,
        )


class Failures:
    """What went wrong this pass, per contact and step ("draft: ...")."""

    def __init__(self) -> None:
        self.by_key: dict[str, list[str]] = {}

    def __call__(self, c: Contact, step: str, exc: BaseException | str) -> None:
        why = exc if isinstance(exc, str) else reason(exc)
        log.error("uid %s (client %s): %s: %s", c.uid, c.client, step, why)
        self.by_key.setdefault(c.key, []).append(f"{step}: {why}")

    def __contains__(self, key: str) -> bool:
        return key in self.by_key

    def text(self, key: str) -> str:
        return "; ".join(self.by_key[key])


def _relocate(
    mailbox: Mailbox,
    store: Store,
    status: Status,
    pending: list[Contact],
    failures: Failures,
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
            log.warning(
                "uid %s (client %s): the message left the inbox before it could be marked",
                c.uid,
                c.client,
            )
            store.mark([c.key], "keyword_done", GONE)
            if c.risk:
                store.mark([c.key], "risk_done", GONE)
        else:
            store.relocate(c.key, status.uidvalidity, uid)
            taken.add(uid)
        moved = True
    return moved


def _mark(
    settings: Settings,
    mailbox: Mailbox,
    store: Store,
    due: list[tuple[Contact, Marks]],
    step: str,
    failures: Failures,
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

    def each(
        group: list[Contact],
        work: Callable[[list[int]], None],
        instead: Callable[[int], bool] = lambda uid: False,
    ) -> None:
        by_uid: dict[int, list[Contact]] = {}
        for c in group:
            by_uid.setdefault(c.uid, []).append(c)

        def refused(uid: int, exc: Exception) -> None:
            if instead(uid):
                return
            for c in by_uid[uid]:
                failures(c, "mark", exc)
                failed.add(c.key)

        for _ in isolate(sorted(by_uid), work, refused):
            pass

    def grouped(what: Callable[[Marks], tuple[str, ...]]) -> dict[tuple[str, ...], list[Contact]]:
        out: dict[tuple[str, ...], list[Contact]] = {}
        for c, m in live:
            if what(m):
                out.setdefault(what(m), []).append(c)
        return out

    for flags, group in grouped(lambda m: m.flags).items():
        each(
            group,
            functools.partial(_add, mailbox.add_flags, flags),
            functools.partial(_flag_instead, mailbox, flags),
        )
    for labels, group in grouped(lambda m: m.labels).items():
        each(group, functools.partial(_add, mailbox.add_labels, labels))
    for folders, group in grouped(lambda m: m.folders).items():
        for folder in folders:
            _copy_once(
                mailbox, inbox, folder, [c for c in group if c.key not in failed], failures, failed
            )
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
    mailbox.warn_once(
        f"the server refused the keyword(s) {' '.join(flags)} although it "
        "announces that it keeps keywords; marking with \\Flagged instead"
    )
    return True


def _copy_once(
    mailbox: Mailbox,
    inbox: str,
    folder: str,
    group: list[Contact],
    failures: Failures,
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

    for _ in isolate(sorted(by_uid), lambda uids: mailbox.copy(uids, folder), refused):
        pass


def do_steps(
    settings: Settings,
    mailbox: Mailbox,
    store: Store,
    now: datetime,
    dry_run: bool,
    status: Status,
    stop: threading.Event | None,
) -> tuple[list[Contact], Failures]:
    """Do what the store says is pending, safety first, each step in batches (one
    STORE, one write per agenda file, one MULTIAPPEND for the drafts) and recorded as
    it completes. A failure that belongs to one message is recorded for it alone; a
    lost connection stops the pass, and whatever is left is pending for the next."""
    main = settings.main
    pending = store.pending(now)
    failures = Failures()

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
        _mark(
            settings,
            mailbox,
            store,
            [(c, look.needs_attention) for c in pending if c.risk and not c.risk_done],
            "risk_done",
            failures,
        )
        env = compose.env_for(settings)
        for c in pending:
            if c.alert and not c.alert_done:
                try:
                    outgoing.alert(settings, env, mailbox, store, c, now)
                except (ConnectError, StoreError):
                    raise
                except Exception as exc:
                    failures(c, "alert", exc)
        if stopping():
            return pending, failures
        # 2. The out-of-hours mark.
        _mark(
            settings,
            mailbox,
            store,
            [(c, look.out_of_hours(c)) for c in pending if not c.keyword_done],
            "keyword_done",
            failures,
        )
        # 3. The notes before the drafts: they need only the disk.
        if stopping():
            return pending, failures
        _notes(settings, store, [c for c in pending if not c.agenda_done], failures)
        if stopping():
            return pending, failures
        # 4. The holding replies.
        outgoing.drafts(
            settings,
            env,
            mailbox,
            store,
            now,
            [c for c in pending if c.draft and not c.draft_done],
            failures,
        )
        store.complete(
            [c.key for c in pending if c.key not in failures],
            now,
            keep_subject=main.digest.include_subjects
            or (main.brief.enabled and main.agenda.include_subjects),
        )
        with store.transaction():
            for key in failures.by_key:
                store.failed(key, failures.text(key), now)

    return pending, failures


def _notes(settings: Settings, store: Store, contacts: list[Contact], failures: Failures) -> None:
    """Agenda lines, one write per file."""
    files: dict[tuple[str, str], list[Contact]] = {}
    for c in contacts:
        files.setdefault((c.client, c.agenda), []).append(c)
    with_subject = settings.main.agenda.include_subjects
    for (client_id, _), group in files.items():
        client = settings.clients.get(client_id)
        try:
            lines = [
                (
                    agenda.note_line(
                        c.received.astimezone(settings.tz),
                        c.subject if with_subject else None,
                        c.key,
                        c.risk,
                    ),
                    c.key,
                )
                for c in group
            ]
            session = group[0].session
            pattern = None
            if client is not None and session is not None:
                recent = store.contacts_since(session - brief.LOOK_BACK, client.id)
                found = brief.brief_for(client, session, recent, settings)
                pattern = brief.pattern_line(found) if found else None
            agenda.add_notes(
                settings.agenda_dir,
                client_id,
                client.name if client else client_id,
                session,
                lines,
                pattern,
            )
        except Exception as exc:
            for c in group:
                failures(c, "agenda", exc)
            continue
        store.mark((c.key for c in group), "agenda_done")
