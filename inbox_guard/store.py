"""The state store: what was seen, decided and done, per mailbox and per message.

SQLite (stdlib) in WAL mode, owner-only, with numbered migrations applied at start-up
inside transactions. A contact is written as *planned* before anything is done to the
mailbox, and each step (keyword, agenda line, draft) is recorded as it completes, so a
crash at any point is finished by the next pass and nothing happens twice.

Only metadata is kept: times, client ids, Message-IDs, subjects (while a draft or a
digest still needs them). Never a message body.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .errors import StoreError
from .files import FILE_MODE, private_dir

MIGRATIONS: tuple[str, ...] = (
    # 1: mailboxes and contacts
    """
    CREATE TABLE mailbox (
        name TEXT PRIMARY KEY,
        uidvalidity INTEGER NOT NULL,
        last_uid INTEGER NOT NULL
    );
    CREATE TABLE contact (
        key TEXT PRIMARY KEY,
        client TEXT NOT NULL,
        mailbox TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL,
        uid INTEGER NOT NULL,
        received TEXT NOT NULL,
        address TEXT NOT NULL,
        message_id TEXT,
        refs TEXT NOT NULL DEFAULT '',
        subject TEXT,
        draft INTEGER NOT NULL,
        suppressed TEXT,
        window TEXT NOT NULL,
        session TEXT,
        agenda TEXT NOT NULL,
        risk INTEGER NOT NULL DEFAULT 0,
        keyword_done INTEGER NOT NULL DEFAULT 0,
        agenda_done INTEGER NOT NULL DEFAULT 0,
        draft_tried INTEGER NOT NULL DEFAULT 0,
        draft_done INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        planned_at TEXT NOT NULL,
        done_at TEXT
    );
    CREATE INDEX contact_pending ON contact(done_at) WHERE done_at IS NULL;
    CREATE INDEX contact_client_window ON contact(client, window);
    CREATE INDEX contact_received ON contact(received);
    """,
    # 2: risk alerts and digests
    """
    ALTER TABLE contact ADD COLUMN alert INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE contact ADD COLUMN alert_done INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE contact ADD COLUMN digested_at TEXT;
    CREATE TABLE digest (
        message_id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        keys TEXT NOT NULL,
        delivered_at TEXT
    );
    """,
    # 3: the service's own trouble, kept for the next digest
    """
    CREATE TABLE problem (
        what TEXT PRIMARY KEY,
        first TEXT NOT NULL,
        last TEXT NOT NULL,
        times INTEGER NOT NULL
    );
    """,
)

# A message whose steps failed this many passes running is given up on (and stays
# visible as an error) instead of being retried for ever.
MAX_ATTEMPTS = 3
MAX_PROBLEMS = 20  # distinct kinds of trouble kept between two digests


@dataclass(frozen=True)
class Problem:
    """One kind of trouble the service had (a server down, a refused login, a calendar
    that could not be fetched): when it began, when it was last seen, how often."""

    what: str
    first: datetime
    last: datetime
    times: int


@dataclass(frozen=True)
class Contact:
    key: str
    client: str
    mailbox: str
    uidvalidity: int
    uid: int
    received: datetime
    address: str
    message_id: str | None
    refs: tuple[str, ...]
    subject: str | None
    draft: bool
    suppressed: str | None
    window: str
    session: datetime | None
    agenda: str
    risk: bool
    alert: bool = False
    keyword_done: bool = False
    agenda_done: bool = False
    draft_tried: bool = False
    draft_done: bool = False
    alert_done: bool = False
    attempts: int = 0


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _row(r: sqlite3.Row) -> Contact:
    return Contact(
        key=r["key"], client=r["client"], mailbox=r["mailbox"], uidvalidity=r["uidvalidity"],
        uid=r["uid"], received=datetime.fromisoformat(r["received"]), address=r["address"],
        message_id=r["message_id"], refs=tuple(r["refs"].split()), subject=r["subject"],
        draft=bool(r["draft"]), suppressed=r["suppressed"], window=r["window"],
        session=_dt(r["session"]), agenda=r["agenda"], risk=bool(r["risk"]),
        keyword_done=bool(r["keyword_done"]), agenda_done=bool(r["agenda_done"]),
        draft_tried=bool(r["draft_tried"]), draft_done=bool(r["draft_done"]),
        alert=bool(r["alert"]), alert_done=bool(r["alert_done"]), attempts=r["attempts"],
    )


class Store:
    def __init__(self, conn: sqlite3.Connection, where: str) -> None:
        self._db = conn
        self._where = where
        self._db.row_factory = sqlite3.Row

    # -- opening -----------------------------------------------------------------

    @classmethod
    def open(cls, path: Path) -> Store:
        """Open (creating, 0600 in a 0700 folder) and migrate the state file."""
        try:
            private_dir(path.parent)
            if not path.exists():
                path.touch(mode=FILE_MODE)
            path.chmod(FILE_MODE)
            # The service's jobs run on scheduler threads, one at a time (its lock).
            conn = sqlite3.connect(
                path, isolation_level=None, timeout=30, check_same_thread=False
            )
            store = cls(conn, str(path))
            store._db.execute("PRAGMA journal_mode=WAL")
            store._db.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise StoreError(
                f"{path}: cannot use the state file: {exc} (it was left as it is; move it "
                "aside to start afresh, and the first pass will look back lookback_days)"
            ) from exc
        except OSError as exc:
            raise StoreError(f"{path}: cannot create the state file: {exc.strerror}") from exc
        store._migrate()
        return store

    @classmethod
    def snapshot(cls, path: Path) -> Store:
        """An in-memory copy for dry runs: reads the file if any, never writes it."""
        mem = sqlite3.connect(":memory:", isolation_level=None)
        if path.exists():
            try:
                src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                src.backup(mem)
                src.close()
            except sqlite3.Error as exc:
                raise StoreError(f"{path}: cannot read the state file: {exc}") from exc
        store = cls(mem, str(path))
        store._migrate()
        return store

    def close(self) -> None:
        self._db.close()

    def _execute(self, sql: str, params: Iterable[object] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, tuple(params))
        except sqlite3.Error as exc:
            raise StoreError(f"{self._where}: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._execute("COMMIT")

    def _migrate(self) -> None:
        self._execute(
            "CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, applied_at TEXT)"
        )
        row = self._execute("SELECT MAX(version) FROM migrations").fetchone()
        current = row[0] or 0
        if current > len(MIGRATIONS):
            raise StoreError(
                f"{self._where}: state file is from a newer inbox-guard (schema {current}, "
                f"this version knows {len(MIGRATIONS)}); upgrade inbox-guard"
            )
        for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
            with self.transaction():
                for statement in filter(str.strip, script.split(";")):
                    self._execute(statement)
                self._execute(
                    "INSERT INTO migrations VALUES (?, ?)",
                    (version, datetime.now(UTC).isoformat()),
                )

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

    def known(self, keys: Iterable[str]) -> set[str]:
        keys = list(keys)
        found: set[str] = set()
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._execute(f"SELECT key FROM contact WHERE key IN ({marks})", chunk)
            found.update(r[0] for r in rows)
        return found

    def drafted_windows(self) -> set[tuple[str, str]]:
        rows = self._execute("SELECT DISTINCT client, window FROM contact WHERE draft = 1")
        return {(r[0], r[1]) for r in rows}

    def add(self, c: Contact, now: datetime) -> None:
        self._execute(
            "INSERT INTO contact (key, client, mailbox, uidvalidity, uid, received, address, "
            "message_id, refs, subject, draft, suppressed, window, session, agenda, risk, "
            "alert, planned_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                c.key, c.client, c.mailbox, c.uidvalidity, c.uid,
                c.received.astimezone(UTC).isoformat(),  # UTC: comparable as text
                c.address, c.message_id, " ".join(c.refs), c.subject, int(c.draft),
                c.suppressed, c.window, c.session.isoformat() if c.session else None,
                c.agenda, int(c.risk), int(c.alert), now.isoformat(),
            ),
        )

    def has_pending(self) -> bool:
        row = self._execute(
            "SELECT 1 FROM contact WHERE done_at IS NULL AND attempts < ? LIMIT 1",
            (MAX_ATTEMPTS,),
        ).fetchone()
        return row is not None

    def pending(self) -> list[Contact]:
        rows = self._execute(
            "SELECT * FROM contact WHERE done_at IS NULL AND attempts < ? "
            "ORDER BY received, key",
            (MAX_ATTEMPTS,),
        )
        return [_row(r) for r in rows]

    def mark(self, keys: Iterable[str], step: str) -> None:
        """Record that a step (keyword, agenda, draft tried/done, alert) happened."""
        if step not in ("keyword_done", "agenda_done", "draft_tried", "draft_done", "alert_done"):
            raise ValueError(step)
        with self.transaction():
            for key in keys:
                self._execute(f"UPDATE contact SET {step} = 1 WHERE key = ?", (key,))

    def failed(self, key: str, error: str) -> None:
        self._execute(
            "UPDATE contact SET attempts = attempts + 1, last_error = ? WHERE key = ?",
            (error, key),
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

    def contacts_since(self, since: datetime) -> list[Contact]:
        rows = self._execute(
            "SELECT * FROM contact WHERE received >= ? ORDER BY received, key",
            (since.astimezone(UTC).isoformat(),),
        )
        return [_row(r) for r in rows]

    def contacts(self, keys: Iterable[str]) -> list[Contact]:
        keys = list(keys)
        out: list[Contact] = []
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            rows = self._execute(
                f"SELECT * FROM contact WHERE key IN ({','.join('?' * len(chunk))})", chunk
            )
            out.extend(_row(r) for r in rows)
        return sorted(out, key=lambda c: (c.received, c.key))

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
            for key in (row[0].split() if row else []):
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
            if not seen and self._execute("SELECT COUNT(*) FROM problem").fetchone()[0] \
                    < MAX_PROBLEMS:
                self._execute("INSERT INTO problem VALUES (?, ?, ?, 1)", (what, at, at))

    def problems(self) -> list[Problem]:
        rows = self._execute("SELECT * FROM problem ORDER BY first, what")
        return [Problem(r["what"], datetime.fromisoformat(r["first"]),
                        datetime.fromisoformat(r["last"]), r["times"]) for r in rows]

    def clear_problems(self, reported: list[Problem]) -> None:
        """Forget what a delivered digest reported (anything newer stays for the next)."""
        with self.transaction():
            for p in reported:
                self._execute(
                    "DELETE FROM problem WHERE what = ? AND times = ?", (p.what, p.times)
                )

    def last_digest_at(self) -> datetime | None:
        row = self._execute("SELECT MAX(delivered_at) FROM digest").fetchone()
        return _dt(row[0])

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
        return int(gone)
