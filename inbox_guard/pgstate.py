"""The state in PostgreSQL (``[state] url = "postgresql://…"``, psycopg 3), so that
several ``run`` processes, on one machine or several, can share a set of practitioners.

Each practitioner's state is a schema of its own (``inbox_guard``, or
``inbox_guard_<id>`` in a group practice) with the same tables as the SQLite file, and
the same SQL: :class:`Connection` adapts the few words where the dialects differ.

**One worker per practitioner** is a session advisory lock, taken when the state is
opened and held on the very connection every write goes through. It is PostgreSQL's
own lease: when a worker dies, the server closes its session and the lock is free for
another worker at once; a worker that has lost its connection has lost the lock with
it, and cannot write until it has taken the lock again.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from functools import cache
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .errors import BusyError, StoreError

# The advisory-lock namespace of worker slots (two-int form; a practitioner's lock is
# a bigint key, which PostgreSQL keeps apart from the two-int form).
WORKER_SLOTS = 0x49470001


def where(url: str, schema: str) -> str:
    """The state's name in messages: the URL without any password, and the schema."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path} (schema {schema})"


def tls_options(url: str) -> dict[str, Any]:
    """Secure by default: a database on another machine is spoken to over TLS with its
    certificate checked against the system's authorities (libpq's own default,
    ``prefer``, falls back to plain text). Loopback and Unix sockets, or a ``sslmode``
    given in the URL or in ``PGSSLMODE``, are left as they are."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = parts.hostname or query.get("host", [""])[0]
    if "sslmode" in query or "PGSSLMODE" in os.environ:
        return {}
    if not host or host.startswith("/") or host == "localhost":
        return {}
    with suppress(ValueError):
        if ipaddress.ip_address(host).is_loopback:
            return {}
    return {
        "sslmode": "verify-full",
        **({} if "sslrootcert" in query else {"sslrootcert": "system"}),
    }


def lock_key(schema: str) -> int:
    """The practitioner's advisory-lock key: 64 bits of a hash of the schema name."""
    return int.from_bytes(
        hashlib.blake2b(schema.encode(), digest_size=8).digest(), "big", signed=True
    )


@cache
def translated(sql: str) -> str:
    """SQLite's SQL as PostgreSQL reads it: ``%s`` parameters, 64-bit integers (IMAP
    UIDs go up to 2**32 - 1), byte-order text comparison (ISO times sort as text), the
    reserved word ``window`` quoted, a plain ``BEGIN``."""
    sql = sql.replace("%", "%%").replace("?", "%s")
    sql = re.sub(r"\bINTEGER\b", "BIGINT", sql)
    sql = re.sub(r"\bTEXT\b", 'TEXT COLLATE "C"', sql)
    sql = re.sub(r"(?<![\"\w])window\b", '"window"', sql)
    return "BEGIN" if sql.strip() == "BEGIN IMMEDIATE" else sql


class Row(dict[str, Any]):
    """A row by column name (``r["key"]``) or by position (``r[0]``), as sqlite3.Row."""

    def __init__(self, names: Sequence[str], values: Sequence[Any]) -> None:
        super().__init__(zip(names, values, strict=True))
        self._values = tuple(values)

    def __getitem__(self, key: str | int) -> Any:
        if isinstance(key, int):
            return self._values[key]
        return super().__getitem__(key)


def _rows(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    names = [c.name for c in cursor.description or ()]
    return lambda values: Row(names, values)


class Connection:
    """A psycopg connection that speaks to the store like sqlite3 does: ``execute``
    returns a cursor; errors become :class:`StoreError` naming the state."""

    def __init__(self, conn: Any, name: str) -> None:
        self._conn = conn
        self._name = name

    def execute(self, sql: str, params: Iterable[object] = ()) -> Any:
        import psycopg

        try:
            return self._conn.execute(translated(sql), tuple(params))
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"{self._name}: {first}") from exc

    def close(self) -> None:
        self._conn.close()


def _bool_as_integer(conn: Any) -> None:
    """The tables keep flags as integers (as in SQLite): Python's True is 1."""
    from psycopg.adapt import Dumper
    from psycopg.postgres import types
    from psycopg.pq import Format

    class BoolDumper(Dumper):
        format = Format.TEXT
        oid = types["int8"].oid

        def dump(self, obj: Any) -> bytes:
            return b"1" if obj else b"0"

    conn.adapters.register_dumper(bool, BoolDumper)


def connect(url: str, schema: str, wait: float, lock: bool = True) -> tuple[Connection, str]:
    """A session on ``url`` in ``schema`` (created if need be), holding the
    practitioner's advisory lock unless ``lock`` is False (dry runs)."""
    name = where(url, schema)
    try:
        import psycopg
        from psycopg import sql
    except ImportError:
        raise StoreError(
            f"{name}: state.url needs psycopg: pip install 'inbox-guard[postgresql]'"
        ) from None
    try:
        raw = psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=10,
            application_name=f"inbox-guard, pid {os.getpid()}",
            **tls_options(url),
        )
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreError(f"{name}: cannot connect: {first}") from exc
    raw.row_factory = _rows
    _bool_as_integer(raw)
    conn = Connection(raw, name)
    try:
        if lock:
            key = lock_key(schema)
            deadline = time.monotonic() + wait
            while not conn.execute("SELECT pg_try_advisory_lock(?::bigint)", (key,)).fetchone()[0]:
                if time.monotonic() >= deadline:
                    raise BusyError(
                        f"{name}: another inbox-guard is working on this state; nothing was "
                        "done, try again when it has finished"
                    )
                time.sleep(0.1)  # the holder's pass usually ends within seconds
        ident = sql.Identifier(schema)
        try:
            raw.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
            raw.execute(sql.SQL("SET search_path TO {}").format(ident))
        except psycopg.Error as exc:
            raise StoreError(f"{name}: cannot use the schema: {exc}") from exc
    except BaseException:
        raw.close()
        raise
    return conn, name


class Slots:
    """This worker's slot among the workers sharing one PostgreSQL: an advisory lock
    on a session of its own, so the live workers can be counted (a dead one's slot is
    freed with its session)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: Any = None
        self.slot = self._take()

    def _take(self) -> int:
        import psycopg

        self._conn = psycopg.connect(
            self._url,
            autocommit=True,
            connect_timeout=10,
            application_name=f"inbox-guard slot, pid {os.getpid()}",
            **tls_options(self._url),
        )
        return next(
            i
            for i in range(1_000_000)
            if self._conn.execute(
                "SELECT pg_try_advisory_lock(%s::int, %s::int)", (WORKER_SLOTS, i)
            ).fetchone()[0]
        )

    def live(self) -> int:
        """How many workers hold a slot now (this one included). A lost session (the
        server restarted) is made again, and a slot taken again, first."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            with suppress(Exception):
                self._conn.close()
            self.slot = self._take()
        row = self._conn.execute(
            # pg_locks shows every database's locks: only this database's workers.
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s::oid "
            "AND objsubid = 2 AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (WORKER_SLOTS,),
        ).fetchone()
        return max(1, int(row[0])) if row else 1

    def close(self) -> None:
        self._conn.close()
