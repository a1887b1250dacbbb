"""The state store: what was seen, decided and done, per mailbox and per message.

SQLite (stdlib) in WAL mode, owner-only, with numbered migrations applied at start-up
inside transactions. A contact is written as *planned* before anything is done to the
mailbox, and each step (keyword, agenda line, draft) is recorded as it completes, so a
crash at any point is finished by the next pass and nothing happens twice.

Only metadata is kept: times, client ids, Message-IDs, subjects (while a draft or a
digest still needs them). Never a message body.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .errors import BusyError, StoreError
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
    # 4: copies of one message (base), risk marks as their own step, retries spaced
    # out after the limit, and messages that could not even be read
    """
    ALTER TABLE contact ADD COLUMN base TEXT;
    UPDATE contact SET base = key;
    CREATE INDEX contact_base ON contact(base);
    CREATE INDEX contact_message_id ON contact(message_id);
    ALTER TABLE contact ADD COLUMN risk_done INTEGER NOT NULL DEFAULT 0;
    UPDATE contact SET risk_done = keyword_done;
    ALTER TABLE contact ADD COLUMN last_attempt TEXT;
    CREATE TABLE unread (
        mailbox TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL,
        uid INTEGER NOT NULL,
        received TEXT,
        error TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        first TEXT NOT NULL,
        last TEXT NOT NULL,
        PRIMARY KEY (mailbox, uidvalidity, uid)
    );
    """,
    # 5: what the practitioner's app will show: was the message flagged before the pass
    # saw it (its flag keeps its colour), and the address the client wrote to (the
    # draft comes from it)
    """
    ALTER TABLE contact ADD COLUMN was_flagged INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE contact ADD COLUMN reply_from TEXT;
    """,
)

# A message whose steps failed this many passes running is retried only once a day
# from then on, and listed in every digest until it is done.
MAX_ATTEMPTS = 3
RETRY_AFTER = timedelta(days=1)
MAX_PROBLEMS = 20  # distinct kinds of trouble kept between two digests
# Values of a mark step (keyword_done, risk_done): not yet, stored, or not possible
# because the message left the inbox before it could be marked.
DONE, GONE = 1, 2


@dataclass(frozen=True)
class Problem:
    """One kind of trouble the service had (a server down, a refused login, a calendar
    that could not be fetched): when it began, when it was last seen, how often."""

    what: str
    first: datetime
    last: datetime
    times: int


@dataclass(frozen=True)
class Unread:
    """A message that could not be read or screened: retried like a contact."""

    mailbox: str
    uidvalidity: int
    uid: int
    received: datetime | None
    error: str
    attempts: int
    first: datetime
    last: datetime


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
    keyword_done: int = 0
    agenda_done: bool = False
    draft_tried: bool = False
    draft_done: bool = False
    alert_done: bool = False
    attempts: int = 0
    base: str = ""  # the key of the first copy: copies of one message share it
    risk_done: int = 0
    last_error: str | None = None
    last_attempt: datetime | None = None
    was_flagged: bool = False
    reply_from: str | None = None

    @property
    def given_up(self) -> bool:
        """Failed :data:`MAX_ATTEMPTS` passes running: now retried once a day."""
        return self.attempts >= MAX_ATTEMPTS


def _chunks(items: list[str]) -> Iterator[list[str]]:
    """SQLite limits the parameters of one statement."""
    for i in range(0, len(items), 500):
        yield items[i : i + 500]


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _row(r: sqlite3.Row) -> Contact:
    return Contact(
        key=r["key"], client=r["client"], mailbox=r["mailbox"], uidvalidity=r["uidvalidity"],
        uid=r["uid"], received=datetime.fromisoformat(r["received"]), address=r["address"],
        message_id=r["message_id"], refs=tuple(r["refs"].split()), subject=r["subject"],
        draft=bool(r["draft"]), suppressed=r["suppressed"], window=r["window"],
        session=_dt(r["session"]), agenda=r["agenda"], risk=bool(r["risk"]),
        keyword_done=r["keyword_done"], agenda_done=bool(r["agenda_done"]),
        draft_tried=bool(r["draft_tried"]), draft_done=bool(r["draft_done"]),
        alert=bool(r["alert"]), alert_done=bool(r["alert_done"]), attempts=r["attempts"],
        base=r["base"] or r["key"], risk_done=r["risk_done"], last_error=r["last_error"],
        last_attempt=_dt(r["last_attempt"]), was_flagged=bool(r["was_flagged"]),
        reply_from=r["reply_from"],
    )


LOCK_WAIT_SECONDS = 10.0
_SQLITE_HEADER = b"SQLite format 3\x00"


class _Lock:
    """One worker per state file: an exclusive ``flock`` on ``<state>.lock``, held
    while the store is open (a pass, a digest, or the whole life of ``run``). The OS
    releases it when the process dies, so a killed worker never leaves it stuck."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def acquire(cls, state: Path, wait: float) -> _Lock:
        path = state.with_name(state.name + ".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                    os.close(fd)
                    raise BusyError(
                        f"{state}: another inbox-guard is working on this state file"
                        + (f" (pid {holder})" if holder.isdigit() else "")
                        + "; nothing was done, try again when it has finished"
                    ) from None
                time.sleep(0.1)  # the holder's pass usually ends within seconds
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return cls(fd)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = -1


def _check_existing(path: Path) -> bool:
    """Is ``path`` absent (False) or a state file we may use (True)? Anything else is
    refused without being touched: a folder, or a file that is not SQLite."""
    if not path.exists() and not path.is_symlink():
        return False
    if not path.is_file():
        raise StoreError(f"{path}: state.path is not a file (it was left as it is)")
    with path.open("rb") as fh:
        head = fh.read(len(_SQLITE_HEADER))
    if head and head != _SQLITE_HEADER:
        raise StoreError(
            f"{path}: state.path is not an inbox-guard state file (it was left as it is)"
        )
    return True


class Store:
    def __init__(self, conn: sqlite3.Connection, where: str, lock: _Lock | None = None) -> None:
        self._db = conn
        self._where = where
        self._db.row_factory = sqlite3.Row
        self._lock = lock

    # -- opening -----------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, wait: float = LOCK_WAIT_SECONDS) -> Store:
        """Open (creating, 0600 in a 0700 folder) and migrate the state file, holding
        its lock; :class:`BusyError` if another process holds it for ``wait`` seconds.
        A file the program did not create is never changed or chmod-ed."""
        lock: _Lock | None = None
        try:
            private_dir(path.parent)
            lock = _Lock.acquire(path, wait)
            existed = _check_existing(path)
            if not existed:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
            # The service's jobs run on scheduler threads, one at a time (its lock).
            conn = sqlite3.connect(
                path, isolation_level=None, timeout=30, check_same_thread=False
            )
            store = cls(conn, str(path), lock)
            if existed:
                store._ours()
                path.chmod(FILE_MODE)
            store._db.execute("PRAGMA journal_mode=WAL")
            store._db.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            if lock is not None:
                lock.release()
            raise StoreError(
                f"{path}: cannot use the state file: {exc} (it was left as it is; move it "
                "aside to start afresh, and the first pass will look back lookback_days)"
            ) from exc
        except OSError as exc:
            if lock is not None:
                lock.release()
            raise StoreError(f"{path}: cannot create the state file: {exc.strerror}") from exc
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        try:
            store._migrate()
        except BaseException:
            store.close()
            raise
        return store

    def _ours(self) -> None:
        """An existing SQLite file with tables but no migrations table is some other
        program's database: refuse it rather than add our tables to it."""
        tables = {r[0] for r in self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "migrations" not in tables:
            self._db.close()
            raise StoreError(
                f"{self._where}: state.path is an SQLite database of some other program, "
                "not an inbox-guard state file (it was left as it is)"
            )

    @classmethod
    def snapshot(cls, path: Path) -> Store:
        """An in-memory copy for dry runs: reads the file if any, never writes it."""
        mem = sqlite3.connect(":memory:", isolation_level=None)
        if path.exists():
            try:
                # as_uri() escapes '#', '?' and '%', which SQLite would read as URI syntax.
                src = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
                src.backup(mem)
                src.close()
            except sqlite3.Error as exc:
                raise StoreError(f"{path}: cannot read the state file: {exc}") from exc
        store = cls(mem, str(path))
        store._migrate()
        return store

    def close(self) -> None:
        self._db.close()
        if self._lock is not None:
            self._lock.release()

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

    def drafted_windows(self) -> set[tuple[str, str]]:
        rows = self._execute("SELECT DISTINCT client, window FROM contact WHERE draft = 1")
        return {(r[0], r[1]) for r in rows}

    def copies(self, bases: Iterable[str]) -> dict[str, list[tuple[str, int, int]]]:
        """Per base, the (key, UIDVALIDITY, UID) of every stored copy of that message."""
        out: dict[str, list[tuple[str, int, int]]] = {}
        for chunk in _chunks(list(bases)):
            rows = self._execute(
                "SELECT base, key, uidvalidity, uid FROM contact WHERE base IN "
                f"({','.join('?' * len(chunk))}) ORDER BY uid", chunk,
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
                f"({','.join('?' * len(chunk))})", chunk,
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
                c.key, c.base or c.key, c.client, c.mailbox, c.uidvalidity, c.uid,
                c.received.astimezone(UTC).isoformat(),  # UTC: comparable as text
                c.address, c.message_id, " ".join(c.refs), c.subject, int(c.draft),
                c.suppressed, c.window, c.session.isoformat() if c.session else None,
                c.agenda, int(c.risk), int(c.alert), now.isoformat(), int(c.was_flagged),
                c.reply_from,
            ),
        )

    _DUE = "done_at IS NULL AND (attempts < ? OR last_attempt IS NULL OR last_attempt <= ?)"

    def _due_args(self, now: datetime) -> tuple[int, str]:
        return MAX_ATTEMPTS, (now - RETRY_AFTER).astimezone(UTC).isoformat()

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
            "ORDER BY risk DESC, received, key", (MAX_ATTEMPTS,),
        )
        return [_row(r) for r in rows]

    def mark(self, keys: Iterable[str], step: str, value: int = DONE) -> None:
        """Record that a step (marks, agenda, draft tried/done, alert) happened."""
        if step not in ("keyword_done", "risk_done", "agenda_done", "draft_tried",
                        "draft_done", "alert_done"):
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

    # -- messages that could not be read ----------------------------------------

    def unread_due(self, mailbox: str, uidvalidity: int, now: datetime) -> list[int]:
        rows = self._execute(
            "SELECT uid FROM unread WHERE mailbox = ? AND uidvalidity = ? "
            "AND (attempts < ? OR last <= ?) ORDER BY uid",
            (mailbox, uidvalidity, *self._due_args(now)),
        )
        return [r[0] for r in rows]

    def note_unread(
        self, mailbox: str, uidvalidity: int, uid: int, received: datetime | None,
        error: str, now: datetime,
    ) -> None:
        at = now.astimezone(UTC).isoformat()
        self._execute(
            "INSERT INTO unread VALUES (?, ?, ?, ?, ?, 1, ?, ?) "
            "ON CONFLICT(mailbox, uidvalidity, uid) DO UPDATE SET "
            "attempts = attempts + 1, error = excluded.error, last = excluded.last, "
            "received = COALESCE(excluded.received, received)",
            (mailbox, uidvalidity, uid,
             received.astimezone(UTC).isoformat() if received else None, error, at, at),
        )

    def clear_unread(self, mailbox: str, uidvalidity: int, uids: Iterable[int]) -> None:
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
        return [Unread(r["mailbox"], r["uidvalidity"], r["uid"], _dt(r["received"]),
                       r["error"], r["attempts"], datetime.fromisoformat(r["first"]),
                       datetime.fromisoformat(r["last"])) for r in rows]

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
        out: list[Contact] = []
        for chunk in _chunks(list(keys)):
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

    def digests_made(self) -> int:
        return int(self._execute("SELECT COUNT(*) FROM digest").fetchone()[0])

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
            self._execute("DELETE FROM unread WHERE first < ?", (when,))
        return int(gone)
