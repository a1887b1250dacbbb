"""Opening the state file safely: one worker at a time (an exclusive ``flock`` on
``<state>.lock``), and never a file that is not ours — a folder, a non-SQLite file or
some other program's SQLite database is refused without being touched."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self

from .errors import BusyError, StoreError
from .files import FILE_MODE, private_dir
from .migrations import MIGRATIONS

if TYPE_CHECKING:
    from .model import Settings


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Any: ...


class Conn(Protocol):
    """sqlite3's connection, or :class:`inbox_guard.pgstate.Connection`."""

    def execute(self, sql: str, params: Any = ..., /) -> Any: ...
    def close(self) -> None: ...


class Releasable(Protocol):
    def release(self) -> None: ...


LOCK_WAIT_SECONDS = 10.0
SQLITE_HEADER = b"SQLite format 3\x00"


class Lock:
    """One worker per state file: an exclusive ``flock`` on ``<state>.lock``, held
    while the store is open (a pass, a digest, or the whole life of ``run``). The OS
    releases it when the process dies, so a killed worker never leaves it stuck."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def acquire(cls, state: Path, wait: float) -> Lock:
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


def take_lock(path: Path, wait: float) -> Lock:
    """The state file's lock alone (its folder made, 0700, if need be)."""
    try:
        private_dir(path.parent)
        return Lock.acquire(path, wait)
    except OSError as exc:
        raise StoreError(f"{path}: cannot take the state file's lock: {exc.strerror}") from exc


def check_existing(path: Path) -> bool:
    """Is ``path`` absent (False) or a state file we may use (True)? Anything else is
    refused without being touched: a folder, or a file that is not SQLite."""
    if not path.exists() and not path.is_symlink():
        return False
    if not path.is_file():
        raise StoreError(f"{path}: state.path is not a file (it was left as it is)")
    with path.open("rb") as fh:
        head = fh.read(len(SQLITE_HEADER))
    if head and head != SQLITE_HEADER:
        raise StoreError(
            f"{path}: state.path is not an inbox-guard state file (it was left as it is)"
        )
    return True


def connect(path: Path, wait: float, held: Lock | None = None) -> tuple[sqlite3.Connection, Lock]:
    """The state file's connection (creating the file, 0600 in a 0700 folder), holding
    its lock (taken now, or ``held`` already); WAL, autocommit (the store opens
    transactions itself)."""
    lock: Lock | None = None
    try:
        private_dir(path.parent)
        lock = held or Lock.acquire(path, wait)
        existed = check_existing(path)
        if not existed:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        # The service's jobs run on scheduler threads, one at a time (its lock).
        conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        if existed:
            _ours(conn, path)
            path.chmod(FILE_MODE)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    except sqlite3.Error as exc:
        if lock is not None and lock is not held:
            lock.release()
        raise StoreError(
            f"{path}: cannot use the state file: {exc} (it was left as it is; move it "
            "aside to start afresh, and the first pass will look back lookback_days)"
        ) from exc
    except OSError as exc:
        if lock is not None and lock is not held:
            lock.release()
        raise StoreError(f"{path}: cannot create the state file: {exc.strerror}") from exc
    except BaseException:
        if lock is not None and lock is not held:
            lock.release()
        raise
    return conn, lock


def _ours(conn: sqlite3.Connection, path: Path) -> None:
    """An existing SQLite file with tables but no migrations table is some other
    program's database: refuse it rather than add our tables to it."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if tables and "migrations" not in tables:
        conn.close()
        raise StoreError(
            f"{path}: state.path is an SQLite database of some other program, "
            "not an inbox-guard state file (it was left as it is)"
        )


def snapshot(path: Path) -> sqlite3.Connection:
    """An in-memory copy of the state file for dry runs (never written back)."""
    mem = sqlite3.connect(":memory:", isolation_level=None)
    if path.exists():
        try:
            # as_uri() escapes '#', '?' and '%', which SQLite would read as URI syntax.
            src = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            src.backup(mem)
            src.close()
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot read the state file: {exc}") from exc
    return mem


class Database:
    """The state file's connection, with the one transaction rule (see
    :mod:`inbox_guard.store`): every query method is atomic, and transactions nest."""

    def __init__(self, conn: Conn, where: str, lock: Releasable | None = None) -> None:
        self._db = conn
        self._where = where
        if isinstance(conn, sqlite3.Connection):
            conn.row_factory = sqlite3.Row
        self._lock = lock
        self._depth = 0  # open transactions: 0 none, 1 BEGIN, more are SAVEPOINTs
        self._discard = False  # a dry run on PostgreSQL: roll everything back at close

    @classmethod
    def open_for(cls, settings: Settings, wait: float = LOCK_WAIT_SECONDS) -> Self:
        """The practitioner's state: the SQLite file, or their schema at ``state.url``."""
        if not settings.main.state.url:
            return cls.open(settings.state_path, wait)
        from . import pgstate

        # The lock is the session's own: closing the connection releases it.
        conn, where = pgstate.connect(settings.main.state.url, settings.state_schema, wait)
        return cls(conn, where)._migrated()

    @classmethod
    def snapshot_for(cls, settings: Settings) -> Self:
        """For dry runs: a copy of the SQLite file, or one transaction on PostgreSQL
        that is rolled back at close (so nothing is ever written)."""
        if not settings.main.state.url:
            return cls.snapshot(settings.state_path)
        from . import pgstate

        conn, where = pgstate.connect(settings.main.state.url, settings.state_schema, 0, lock=False)
        return cls(conn, where)._migrated(discard=True)

    @classmethod
    def open(cls, path: Path, wait: float = LOCK_WAIT_SECONDS, held: Lock | None = None) -> Self:
        """Open (creating, 0600 in a 0700 folder) and migrate the state file, holding
        its lock; :class:`BusyError` if another process holds it for ``wait`` seconds.
        With ``held`` (the lock, already taken), closing leaves the lock alone.
        A file the program did not create is never changed or chmod-ed."""
        conn, lock = connect(path, wait, held)
        return cls(conn, str(path), None if held else lock)._migrated()

    def _migrated(self, discard: bool = False) -> Self:
        """Migrated (with ``discard``, inside one transaction rolled back at close), or
        closed and the error raised."""
        try:
            if discard:
                self._discard = True
                self._execute("BEGIN")
                self._depth = 1
            self._migrate()
        except BaseException:
            self.close()
            raise
        return self

    @classmethod
    def snapshot(cls, path: Path) -> Self:
        """An in-memory copy for dry runs: reads the file if any, never writes it."""
        return cls(snapshot(path), str(path))._migrated()

    def close(self) -> None:
        if self._discard:
            with suppress(StoreError):
                self._db.execute("ROLLBACK")
        self._db.close()
        if self._lock is not None:
            self._lock.release()

    def _execute(self, sql: str, params: Iterable[object] = ()) -> Cursor:
        try:
            cursor: Cursor = self._db.execute(sql, tuple(params))
            return cursor
        except sqlite3.Error as exc:
            raise StoreError(f"{self._where}: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing for the block; nested, the inner block is a SAVEPOINT."""
        depth = self._depth
        name = f"sp{depth}"
        self._execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT {name}")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth = depth
            if depth == 0:
                self._db.execute("ROLLBACK")
            else:
                self._db.execute(f"ROLLBACK TO {name}")
                self._db.execute(f"RELEASE {name}")
            raise
        self._depth = depth
        self._execute("COMMIT" if depth == 0 else f"RELEASE {name}")

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
