"""Trying to break the hub (one process, many practitioners), push on the hub's IDLE
watcher, and the state in PostgreSQL shared by leases: each test here reproduces a
bug that was found that way. All mail is synthetic."""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

import psycopg

from inbox_guard import config
from inbox_guard.errors import ConfigError
from inbox_guard.pgstate import Slots
from inbox_guard.store import Store

from .conftest import (
    KW,
    MONDAY_8,
    SAM,
    SUNDAY_NIGHT,
    Account,
    Capsys,
    Practice,
    message,
    unreadable,
)
from .dovecot import Dovecot
from .postgres import Postgres
from .test_postgres import group_on_postgres, pg_practice  # noqa: F401  (a fixture)

# -- the SQL as PostgreSQL reads it ------------------------------------------------------


def test_an_unreadable_message_does_not_fail_every_pass_on_postgres(
    pg_practice: Practice,  # noqa: F811
    account: Account,
    capsys: Capsys,
) -> None:
    """The second try at a message the server cannot read updates its row in
    ``unread`` (an upsert): PostgreSQL refused the SQLite upsert's unqualified
    ``attempts`` ("column reference is ambiguous"), so every pass failed, and no mail
    at all was marked, for as long as the message stayed unreadable."""
    pg_practice.once_json(capsys, "--now", MONDAY_8)  # the position is known
    account.append(message(body="unique-unreadable-token\n"), SUNDAY_NIGHT)
    good = account.append(message(sender=SAM), SUNDAY_NIGHT + timedelta(minutes=1))
    with unreadable(account, b"unique-unreadable-token"):
        runs = [
            pg_practice.run("once", "--json", "--now", MONDAY_8, capsys=capsys) for _ in range(3)
        ]
    assert [code for code, _, _ in runs] == [0, 0, 0], [err for _, _, err in runs]
    assert KW in account.snapshot()[good]["flags"]


# -- leases --------------------------------------------------------------------------


def other_database(postgres: Postgres) -> str:
    name = f"t{secrets.token_hex(6)}"
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return postgres.url.rsplit("/", 1)[0] + "/" + name


def test_workers_of_another_database_on_the_server_are_not_counted(
    postgres: Postgres, pg_url: str
) -> None:
    """Two inbox-guard installations (say, two practices, or staging and production)
    on one PostgreSQL server, each in its own database: pg_locks shows every
    database's locks, so each worker counted the other installation's workers as its
    own and served too small a share; some practitioners were served by nobody."""
    elsewhere = [Slots(other_database(postgres)) for _ in range(3)]
    mine = Slots(pg_url)
    try:
        assert mine.live() == 1
    finally:
        mine.close()
        for s in elsewhere:
            s.close()


def test_two_practitioners_never_share_a_schema(
    tmp_path: Path, dovecot: Dovecot, pg_url: str
) -> None:
    """PostgreSQL cuts names at 63 bytes: two ids (at most 64 characters each) that
    differ only past the 51st went to one schema ``inbox_guard_<id>``, under two
    different advisory locks. Both could be served at once, each overwriting the
    other's position in the inbox (mail missed) and contacts. A config that does it is
    refused, or each gets a schema of their own."""
    group = group_on_postgres(tmp_path, dovecot, pg_url, 2)
    long = "practitioner-with-a-really-quite-long-identifier-abc"  # 52 characters
    group.write_text(
        group.read_text()
        .replace('id = "p0"', f'id = "{long}-one"')
        .replace('id = "p1"', f'id = "{long}-two"')
    )
    for i, suffix in enumerate(("one", "two")):
        (tmp_path / "clients" / f"p{i}").rename(tmp_path / "clients" / f"{long}-{suffix}")
    try:
        first, second = config.load_all(group)
    except ConfigError:
        return  # refused: fine
    a = Store.open_for(first, wait=0)
    try:
        b = Store.open_for(second, wait=0)
        try:
            a.set_position("INBOX", 1, 100)
            assert b.position("INBOX") is None  # the other practitioner's own state
        finally:
            b.close()
    finally:
        a.close()
