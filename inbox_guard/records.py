"""The service's own records in the state file: messages that could not be read
(retried like contacts), the trouble kept for the next digest, and the digests made
and delivered (recorded before delivery, so a crash re-delivers the same one)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from .model import MAX_ATTEMPTS, RETRY_AFTER, Problem, Unread
from .statefile import Database

MAX_PROBLEMS = 20  # distinct kinds of trouble kept between two digests


def time_or_none(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class Records(Database):
    _DUE = "done_at IS NULL AND (attempts < ? OR last_attempt IS NULL OR last_attempt <= ?)"

    def _due_args(self, now: datetime) -> tuple[int, str]:
        return MAX_ATTEMPTS, (now - RETRY_AFTER).astimezone(UTC).isoformat()

    # -- messages that could not be read ----------------------------------------

    def unread_due(self, mailbox: str, uidvalidity: int, now: datetime) -> list[int]:
        rows = self._execute(
            "SELECT uid FROM unread WHERE mailbox = ? AND uidvalidity = ? "
            "AND (attempts < ? OR last <= ?) ORDER BY uid",
            (mailbox, uidvalidity, *self._due_args(now)),
        )
        return [r[0] for r in rows]

    def note_unread(
        self,
        mailbox: str,
        uidvalidity: int,
        uid: int,
        received: datetime | None,
        error: str,
        now: datetime,
    ) -> None:
        at = now.astimezone(UTC).isoformat()
        self._execute(
            "INSERT INTO unread VALUES (?, ?, ?, ?, ?, 1, ?, ?) "
            "ON CONFLICT(mailbox, uidvalidity, uid) DO UPDATE SET "
            # Qualified: PostgreSQL finds a bare ``attempts`` ambiguous (the row, or
            # ``excluded``); SQLite reads both the same.
            "attempts = unread.attempts + 1, error = excluded.error, last = excluded.last, "
            "received = COALESCE(excluded.received, unread.received)",
            (
                mailbox,
                uidvalidity,
                uid,
                received.astimezone(UTC).isoformat() if received else None,
                error,
                at,
                at,
            ),
        )

    def clear_unread(self, mailbox: str, uidvalidity: int, uids: Iterable[int]) -> None:
        with self.transaction():
            for uid in uids:
                self._execute(
                    "DELETE FROM unread WHERE mailbox = ? AND uidvalidity = ? AND uid = ?",
                    (mailbox, uidvalidity, uid),
                )

    def forget_unread(self, mailbox: str, keep_uidvalidity: int) -> None:
        """The mailbox was renumbered: old UIDs mean nothing now (a rescan finds them)."""
        self._execute(
            "DELETE FROM unread WHERE mailbox = ? AND uidvalidity != ?",
            (mailbox, keep_uidvalidity),
        )

    def unreadable(self) -> list[Unread]:
        """Messages still unread after MAX_ATTEMPTS tries, for the digest."""
        rows = self._execute(
            "SELECT * FROM unread WHERE attempts >= ? ORDER BY first, uid", (MAX_ATTEMPTS,)
        )
        return [
            Unread(
                r["mailbox"],
                r["uidvalidity"],
                r["uid"],
                time_or_none(r["received"]),
                r["error"],
                r["attempts"],
                datetime.fromisoformat(r["first"]),
                datetime.fromisoformat(r["last"]),
            )
            for r in rows
        ]

    def pending_digest(self) -> tuple[str, list[str]] | None:
        row = self._execute(
            "SELECT message_id, keys FROM digest WHERE delivered_at IS NULL "
            "ORDER BY created_at LIMIT 1"
        ).fetchone()
        return (row[0], row[1].split()) if row else None

    def plan_digest(self, message_id: str, keys: Iterable[str], now: datetime) -> None:
        self._execute(
            "INSERT INTO digest VALUES (?, ?, ?, NULL)",
            (message_id, now.isoformat(), " ".join(keys)),
        )

    def digest_delivered(self, message_id: str, now: datetime) -> None:
        with self.transaction():
            row = self._execute(
                "SELECT keys FROM digest WHERE message_id = ?", (message_id,)
            ).fetchone()
            for key in row[0].split() if row else []:
                self._execute(
                    "UPDATE contact SET digested_at = ? WHERE key = ?", (now.isoformat(), key)
                )
            self._execute(
                "UPDATE digest SET delivered_at = ? WHERE message_id = ?",
                (now.isoformat(), message_id),
            )

    # -- the service's own trouble ---------------------------------------------------

    def note_problem(self, what: str, now: datetime) -> None:
        """Count one more occurrence of ``what`` for the next digest."""
        at = now.isoformat()
        with self.transaction():
            seen = self._execute(
                "UPDATE problem SET last = ?, times = times + 1 WHERE what = ?", (at, what)
            ).rowcount
            if (
                not seen
                and self._execute("SELECT COUNT(*) FROM problem").fetchone()[0] < MAX_PROBLEMS
            ):
                self._execute("INSERT INTO problem VALUES (?, ?, ?, 1)", (what, at, at))

    def problems(self) -> list[Problem]:
        rows = self._execute("SELECT * FROM problem ORDER BY first, what")
        return [
            Problem(
                r["what"],
                datetime.fromisoformat(r["first"]),
                datetime.fromisoformat(r["last"]),
                r["times"],
            )
            for r in rows
        ]

    def clear_problems(self, reported: list[Problem]) -> None:
        """Forget what a delivered digest reported (anything newer stays for the next)."""
        with self.transaction():
            for p in reported:
                self._execute("DELETE FROM problem WHERE what = ? AND times = ?", (p.what, p.times))

    def digests_made(self) -> int:
        return int(self._execute("SELECT COUNT(*) FROM digest").fetchone()[0])

    def last_digest_at(self) -> datetime | None:
        row = self._execute("SELECT MAX(delivered_at) FROM digest").fetchone()
        return time_or_none(row[0])

    # -- pre-session briefs --------------------------------------------------------

    def brief_record(self, key: str) -> tuple[str, bool, bool] | None:
        """(Message-ID, delivered, skipped) of the brief ``key``, if it was planned."""
        row = self._execute(
            "SELECT message_id, delivered_at, skipped FROM brief WHERE key = ?", (key,)
        ).fetchone()
        return (row[0], row[1] is not None, bool(row[2])) if row else None

    def plan_brief(
        self,
        key: str,
        client: str,
        session: datetime,
        message_id: str,
        now: datetime,
        skipped: bool = False,
    ) -> None:
        self._execute(
            "INSERT INTO brief (key, client, session, message_id, planned_at, "
            "skipped) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                key,
                client,
                session.isoformat(),
                message_id,
                now.astimezone(UTC).isoformat(),
                int(skipped),
            ),
        )

    def brief_delivered(self, key: str, now: datetime) -> None:
        self._execute("UPDATE brief SET delivered_at = ? WHERE key = ?", (now.isoformat(), key))

    def briefs_checked(self) -> datetime | None:
        """Up to when the service has looked for due briefs (None: never)."""
        row = self._execute("SELECT value FROM meta WHERE name = 'briefs_checked'").fetchone()
        return time_or_none(row[0]) if row else None

    def set_briefs_checked(self, at: datetime) -> None:
        self._execute(
            "INSERT INTO meta VALUES ('briefs_checked', ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (at.isoformat(),),
        )
