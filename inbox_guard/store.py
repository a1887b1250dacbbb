"""The state store: what was seen, decided and done, per mailbox and per message.

SQLite (stdlib) in WAL mode, owner-only (:mod:`statefile` opens it, one worker at a
time), with numbered :mod:`migrations` applied at start-up. :class:`Store` keeps the
mailbox positions and the contacts; the service's own records (unread messages,
trouble, digests) are :mod:`records`. A contact is written as
*planned* before anything is done to the mailbox, and each step (keyword, agenda line,
draft) is recorded as it completes, so a crash at any point is finished by the next
pass and nothing happens twice.

Transactions, one rule: **every public method is atomic on its own** — one statement,
or its statements inside :meth:`Store.transaction`. A caller groups writes that must
land together in ``with store.transaction():``; transactions nest (an inner one is a
SAVEPOINT), so any method may be called inside one, and an error rolls back exactly
the block it leaves.

Only metadata is kept: times, client ids, Message-IDs, subjects (while a draft or a
digest still needs them). Never a message body.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import suppress
from datetime import UTC, datetime

from .model import MAX_ATTEMPTS, Contact, Settings
from .records import Records, time_or_none
from .statefile import LOCK_WAIT_SECONDS, Lock, take_lock

# Values of a mark step (keyword_done, risk_done): not yet, stored, or not possible
# because the message left the inbox before it could be marked.
DONE, GONE = 1, 2


def _chunks(items: list[str]) -> Iterator[list[str]]:
    """SQLite limits the parameters of one statement."""
    for i in range(0, len(items), 500):
        yield items[i : i + 500]


def _row(r: sqlite3.Row) -> Contact:
    return Contact(
        key=r["key"],
        client=r["client"],
        mailbox=r["mailbox"],
        uidvalidity=r["uidvalidity"],
        uid=r["uid"],
        received=datetime.fromisoformat(r["received"]),
        address=r["address"],
        message_id=r["message_id"],
        refs=tuple(r["refs"].split()),
        subject=r["subject"],
        draft=bool(r["draft"]),
        suppressed=r["suppressed"],
        window=r["window"],
        session=time_or_none(r["session"]),
        agenda=r["agenda"],
        risk=bool(r["risk"]),
        keyword_done=r["keyword_done"],
        agenda_done=bool(r["agenda_done"]),
        draft_tried=bool(r["draft_tried"]),
        draft_done=bool(r["draft_done"]),
        alert=bool(r["alert"]),
        alert_done=bool(r["alert_done"]),
        attempts=r["attempts"],
        base=r["base"] or r["key"],
        risk_done=r["risk_done"],
        last_error=r["last_error"],
        last_attempt=time_or_none(r["last_attempt"]),
        was_flagged=bool(r["was_flagged"]),
        reply_from=r["reply_from"],
    )


class Store(Records):
    """Mailbox positions and contacts, on top of the service's own :class:`Records`."""

    # -- mailbox position --------------------------------------------------------

    def position(self, mailbox: str) -> tuple[int, int] | None:
        """(UIDVALIDITY, highest UID handled) for ``mailbox``, or None before any pass."""
        row = self._execute(
            "SELECT uidvalidity, last_uid FROM mailbox WHERE name = ?", (mailbox,)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def set_position(self, mailbox: str, uidvalidity: int, last_uid: int) -> None:
        self._execute(
            "INSERT INTO mailbox VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
            "uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid",
            (mailbox, uidvalidity, last_uid),
        )

    # -- contacts ----------------------------------------------------------------

    def drafted_windows(self) -> set[tuple[str, str]]:
        rows = self._execute("SELECT DISTINCT client, window FROM contact WHERE draft = 1")
        return {(r[0], r[1]) for r in rows}

    def copies(self, bases: Iterable[str]) -> dict[str, list[tuple[str, int, int]]]:
        """Per base, the (key, UIDVALIDITY, UID) of every stored copy of that message."""
        out: dict[str, list[tuple[str, int, int]]] = {}
        for chunk in _chunks(list(bases)):
            rows = self._execute(
                "SELECT base, key, uidvalidity, uid FROM contact WHERE base IN "
                f"({','.join('?' * len(chunk))}) ORDER BY uid",
                chunk,
            )
            for r in rows:
                out.setdefault(r[0], []).append((r[1], r[2], r[3]))
        return out

    def drafted_message_ids(self, ids: Iterable[str]) -> set[str]:
        """Which of these Message-IDs already have a draft planned (at most one each)."""
        found: set[str] = set()
        for chunk in _chunks(list(ids)):
            rows = self._execute(
                "SELECT DISTINCT message_id FROM contact WHERE draft = 1 AND message_id IN "
                f"({','.join('?' * len(chunk))})",
                chunk,
            )
            found.update(r[0] for r in rows)
        return found

    def relocate(self, key: str, uidvalidity: int, uid: int) -> None:
        """The message of ``key`` is now at ``uid`` (the server renumbered the mailbox)."""
        self._execute(
            "UPDATE contact SET uidvalidity = ?, uid = ? WHERE key = ?", (uidvalidity, uid, key)
        )

    def add(self, c: Contact, now: datetime) -> None:
        self._execute(
            "INSERT INTO contact (key, base, client, mailbox, uidvalidity, uid, received, "
            "address, message_id, refs, subject, draft, suppressed, window, session, agenda, "
            "risk, alert, planned_at, was_flagged, reply_from) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                c.key,
                c.base or c.key,
                c.client,
                c.mailbox,
                c.uidvalidity,
                c.uid,
                c.received.astimezone(UTC).isoformat(),  # UTC: comparable as text
                c.address,
                c.message_id,
                " ".join(c.refs),
                c.subject,
                int(c.draft),
                c.suppressed,
                c.window,
                c.session.isoformat() if c.session else None,
                c.agenda,
                int(c.risk),
                int(c.alert),
                now.isoformat(),
                int(c.was_flagged),
                c.reply_from,
            ),
        )

    def has_pending(self, now: datetime, mailbox: str, uidvalidity: int) -> bool:
        """Is any contact, or any unread message of ``mailbox`` in this numbering, due
        for another try?"""
        row = self._execute(
            f"SELECT 1 FROM contact WHERE {self._DUE} LIMIT 1", self._due_args(now)
        ).fetchone()
        if row is not None:
            return True
        row = self._execute(
            "SELECT 1 FROM unread WHERE mailbox = ? AND uidvalidity = ? "
            "AND (attempts < ? OR last <= ?) LIMIT 1",
            (mailbox, uidvalidity, *self._due_args(now)),
        ).fetchone()
        return row is not None

    def pending(self, now: datetime) -> list[Contact]:
        """Contacts with steps left: each pass up to MAX_ATTEMPTS, then once a day."""
        rows = self._execute(
            f"SELECT * FROM contact WHERE {self._DUE} ORDER BY received, key",
            self._due_args(now),
        )
        return [_row(r) for r in rows]

    def unfinished(self) -> list[Contact]:
        """Contacts that failed MAX_ATTEMPTS passes running and are still not done."""
        rows = self._execute(
            "SELECT * FROM contact WHERE done_at IS NULL AND attempts >= ? "
            "ORDER BY risk DESC, received, key",
            (MAX_ATTEMPTS,),
        )
        return [_row(r) for r in rows]

    def mark(self, keys: Iterable[str], step: str, value: int = DONE) -> None:
        """Record that a step (marks, agenda, draft tried/done, alert) happened."""
        if step not in (
            "keyword_done",
            "risk_done",
            "agenda_done",
            "draft_tried",
            "draft_done",
            "alert_done",
        ):
            raise ValueError(step)
        with self.transaction():
            for key in keys:
                self._execute(f"UPDATE contact SET {step} = ? WHERE key = ?", (value, key))

    def failed(self, key: str, error: str, now: datetime) -> None:
        self._execute(
            "UPDATE contact SET attempts = attempts + 1, last_error = ?, last_attempt = ? "
            "WHERE key = ?",
            (error, now.astimezone(UTC).isoformat(), key),
        )

    def complete(self, keys: Iterable[str], now: datetime, keep_subject: bool) -> None:
        """All steps done: close the contacts and drop what is no longer needed."""
        with self.transaction():
            for key in keys:
                self._execute(
                    "UPDATE contact SET done_at = ?, refs = '', last_error = NULL"
                    + ("" if keep_subject else ", subject = NULL")
                    + " WHERE key = ?",
                    (now.isoformat(), key),
                )

    # -- digests -----------------------------------------------------------------

    def undigested(self) -> list[Contact]:
        """Completed contacts not yet in a delivered digest, oldest first."""
        rows = self._execute(
            "SELECT * FROM contact WHERE done_at IS NOT NULL AND digested_at IS NULL "
            "ORDER BY received, key"
        )
        return [_row(r) for r in rows]

    def contacts_since(self, since: datetime, client: str | None = None) -> list[Contact]:
        """Contacts received from ``since`` on (of one client, when given)."""
        at = since.astimezone(UTC).isoformat()
        rows = (
            self._execute("SELECT * FROM contact WHERE received >= ? ORDER BY received, key", (at,))
            if client is None
            else self._execute(
                "SELECT * FROM contact WHERE client = ? AND received >= ? ORDER BY received, key",
                (client, at),
            )
        )
        return [_row(r) for r in rows]

    def contacts(self, keys: Iterable[str]) -> list[Contact]:
        out: list[Contact] = []
        for chunk in _chunks(list(keys)):
            rows = self._execute(
                f"SELECT * FROM contact WHERE key IN ({','.join('?' * len(chunk))})", chunk
            )
            out.extend(_row(r) for r in rows)
        return sorted(out, key=lambda c: (c.received, c.key))

    def purge(self, before: datetime) -> int:
        """Forget handled contacts and delivered digests older than ``before``."""
        when = before.astimezone(UTC).isoformat()
        with self.transaction():
            gone = self._execute(
                "DELETE FROM contact WHERE done_at IS NOT NULL AND received < ?", (when,)
            ).rowcount
            self._execute(
                "DELETE FROM digest WHERE delivered_at IS NOT NULL AND created_at < ?", (when,)
            )
            self._execute("DELETE FROM unread WHERE first < ?", (when,))
            self._execute("DELETE FROM brief WHERE planned_at < ?", (when,))
        return int(gone)


class HeldStore:
    """A practitioner's state as ``run`` holds it. SQLite: the file's lock for the
    service's life, its connection only for a job (each costs about 150 KB, so a
    thousand practitioners would hold 150 MB between jobs). PostgreSQL: the session,
    which holds the practitioner's lock; once lost, it is taken again or let go, never
    waited for (another worker may serve them now: :class:`BusyError`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: Store | None = None
        self._file_lock: Lock | None = None

    def open(self) -> Store:
        if self._store is None:
            if self.settings.main.state.url:
                self._store = Store.open_for(self.settings, 0.0)
            else:
                path = self.settings.state_path
                if self._file_lock is None:
                    self._file_lock = take_lock(path, LOCK_WAIT_SECONDS)
                self._store = Store.open(path, held=self._file_lock)
        return self._store

    def rest(self) -> None:
        """Between jobs: close the SQLite connection, keep the lock."""
        if not self.settings.main.state.url:
            self.drop()

    def drop(self) -> None:
        if self._store is not None:
            with suppress(Exception):
                self._store.close()
            self._store = None

    def release(self) -> None:
        """The service stops: everything goes, the lock too."""
        self.drop()
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None
