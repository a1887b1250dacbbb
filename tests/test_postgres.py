"""The state in PostgreSQL (``[state] url``): the same guarantees as the SQLite file,
against a real PostgreSQL the fixture starts privately on loopback."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from inbox_guard import config
from inbox_guard.errors import BusyError, ConfigError
from inbox_guard.model import Problem
from inbox_guard.pgstate import tls_options
from inbox_guard.service import Service
from inbox_guard.store import Store

from .conftest import (
    KW,
    MONDAY_8,
    PASSWORD_ENV,
    SAM,
    SUNDAY_NIGHT,
    Account,
    Capsys,
    Practice,
    cli,
    drafts,
    fire,
    group_on_postgres,
    kill_at,
    message,
    on_postgres,
    out_of_hours_recently,
    started,
    wait_for,
)
from .dovecot import Dovecot
from .postgres import Postgres


def rows(url: str, sql: str, schema: str = "inbox_guard") -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        conn.execute(f"SET search_path TO {schema}")
        return conn.execute(sql).fetchall()


def test_a_pass_on_postgres_marks_drafts_and_notes_exactly_once(
    pg_practice: Practice, account: Account, pg_url: str, capsys: Capsys
) -> None:
    uid = account.append(message(), SUNDAY_NIGHT)
    first = pg_practice.once_json(capsys, "--now", MONDAY_8)
    assert [f["uid"] for f in first["flagged"]] == [uid]
    again = pg_practice.once_json(capsys, "--now", MONDAY_8)
    assert again["flagged"] == [] and again["errors"] == []
    assert account.snapshot()[uid]["flags"] == {KW}
    assert len(drafts(account)) == 1
    assert rows(pg_url, "SELECT count(*) FROM contact WHERE done_at IS NOT NULL") == [(1,)]
    # Nothing of it in a file: the state is in the database.
    assert not list(pg_practice.root.rglob("*.sqlite3"))


def test_a_dry_run_on_postgres_writes_nothing(
    pg_practice: Practice, account: Account, pg_url: str, capsys: Capsys
) -> None:
    account.append(message(), SUNDAY_NIGHT)
    r = pg_practice.once_json(capsys, "--dry-run", "--now", MONDAY_8)
    assert len(r["flagged"]) == 1
    with psycopg.connect(pg_url) as conn:
        found = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'inbox_guard'"
        ).fetchone()
    assert found == (0,)
    assert drafts(account) == []


def test_one_worker_per_practitioner_on_postgres(
    pg_practice: Practice, account: Account, capsys: Capsys
) -> None:
    settings = config.load(pg_practice.config)
    holder = Store.open_for(settings)
    try:
        with pytest.raises(BusyError, match="another inbox-guard is working on this state"):
            Store.open_for(settings, wait=0.3)
        done = cli(pg_practice, "once")
        assert done.returncode == 1
        [line] = done.stderr.strip().splitlines()
        assert "another inbox-guard is working on this state" in line
        assert "schema inbox_guard" in line
    finally:
        holder.close()
    Store.open_for(settings, wait=0).close()  # free again once the holder has gone


def test_a_killed_worker_leaves_no_duplicate_on_postgres(
    pg_practice: Practice, account: Account, capsys: Capsys
) -> None:
    """SIGKILLed right after the draft's APPEND, before its record: the next passes
    find the draft by its Message-ID instead of writing it twice."""
    pg_practice.config.write_text(
        pg_practice.config.read_text().replace('drafts = "per-window"', 'drafts = "per-message"')
    )
    one = account.append(message(), SUNDAY_NIGHT)
    two = account.append(message(sender=SAM), SUNDAY_NIGHT + timedelta(minutes=1))
    kill_at(pg_practice, b'APPEND "DRAFTS"', "once", "--now", MONDAY_8)
    for _ in range(2):
        r = pg_practice.once_json(capsys, "--now", MONDAY_8)
        assert r["errors"] == [], r
    assert sorted(d["To"] for d in drafts(account)) == sorted(["jane@example.org", SAM])
    snap = account.snapshot()
    assert KW in snap[one]["flags"] and KW in snap[two]["flags"]


def test_the_store_on_postgres_keeps_big_uids_transactions_and_trouble(
    pg_practice: Practice,
) -> None:
    settings = config.load(pg_practice.config)
    now = datetime(2026, 11, 16, 8, tzinfo=UTC)
    store = Store.open_for(settings)
    try:
        store.set_position("INBOX", 4_294_967_295, 4_294_967_294)  # UIDs are 32-bit unsigned
        assert store.position("INBOX") == (4_294_967_295, 4_294_967_294)
        with pytest.raises(RuntimeError), store.transaction():
            store.note_problem("kept?", now)
            raise RuntimeError
        with store.transaction():
            store.note_problem("outer", now)
            with pytest.raises(RuntimeError), store.transaction():
                store.note_problem("inner", now)
                raise RuntimeError
        store.note_problem("outer", now + timedelta(minutes=5))
    finally:
        store.close()
    store = Store.open_for(settings)  # a restarted worker still knows
    try:
        assert store.problems() == [Problem("outer", now, now + timedelta(minutes=5), 2)]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://alex:secret@db.example.org/ig", "keep the password out of the config"),
        ("mysql://db.example.org/ig", "is not a PostgreSQL URL"),
    ],
)
def test_a_bad_state_url_is_one_line(tmp_path: Path, account: Account, url: str, says: str) -> None:
    p = on_postgres(tmp_path, account, url)
    with pytest.raises(ConfigError, match=says) as caught:
        config.load(p.config)
    assert "\n" not in str(caught.value) and "secret" not in str(caught.value)


def test_an_unreachable_database_is_one_line(
    tmp_path: Path, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .dovecot import free_port

    monkeypatch.setenv(PASSWORD_ENV, account.password)
    p = on_postgres(tmp_path, account, f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    done = cli(p, "once")
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert "cannot connect" in line and "schema inbox_guard" in line


class Worker:
    """``inbox-guard run`` as a process of its own, its log read as it comes."""

    def __init__(self, group: Path, name: str) -> None:
        self.log = group.parent / f"{name}.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "inbox_guard", "--config", str(group), "run"],
                stderr=log,
                stdout=subprocess.DEVNULL,
            )

    def serving(self) -> set[str]:
        """The practitioners this worker has passed for, and not let go since."""
        held: set[str] = set()
        for line in self.log.read_text().splitlines():
            m = re.search(r"\[(p\d+)\] (pass: scanned|leases: letting go|stopped)", line)
            if m:
                (held.add if m.group(2).startswith("pass") else held.discard)(m.group(1))
        return held

    def marked(self, name: str) -> bool:
        return bool(
            re.search(rf"\[{name}\] pass: scanned \d+, flagged [1-9]", self.log.read_text())
        )


def until(check: Callable[[], bool], timeout: float, what: str, *workers: Worker) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            logs = "\n".join(w.log.read_text()[-3000:] for w in workers)
            raise AssertionError(f"{what} not within {timeout} s:\n{logs}")
        time.sleep(0.1)  # polling a log file another process writes


def test_workers_share_the_practitioners_and_take_over_from_a_killed_one(
    dovecot: Dovecot, tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    n = 6
    group = group_on_postgres(tmp_path, dovecot, pg_url, n)
    names = {f"p{i}" for i in range(n)}
    a, b = Worker(group, "a"), Worker(group, "b")
    try:
        until(lambda: a.serving() | b.serving() == names, 60, "all served", a, b)
        until(lambda: len(a.serving()) == len(b.serving()) == n // 2, 30, "shared evenly", a, b)
        assert not a.serving() & b.serving()

        a.proc.kill()
        a.proc.wait()
        # Mail for every practitioner, after the kill: worker b must take over a's
        # share (a's locks went with its sessions) and mark every message once.
        for i in range(n):
            Account(dovecot, f"lease{i}", dovecot.password).append(
                message(subject=f"for p{i}"), out_of_hours_recently()
            )
        taken = time.monotonic()
        until(lambda: b.serving() == names, 30, "taken over", b)
        took = time.monotonic() - taken
        until(lambda: all(b.marked(x) for x in names), 30, "every message marked", b)
        assert took < 2 * 2 + 10  # two rounds of lease_seconds, and a pass
    finally:
        for w in (a, b):
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
                w.proc.wait(timeout=30)
    assert b.proc.returncode == 0
    for i in range(n):
        account = Account(dovecot, f"lease{i}", dovecot.password)
        assert len(drafts(account)) == 1  # exactly once, whoever served it
        assert all(m["flags"] == {KW} for m in account.snapshot().values())


def test_the_service_carries_on_after_postgresql_restarts(
    tmp_path: Path, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session that held the practitioner's lock is gone with the restart: the
    service opens a new one, takes the lock again and goes on; nothing is doubled."""
    monkeypatch.setenv(PASSWORD_ENV, account.password)
    with Postgres() as pg:  # its own, to restart (in a folder the server's user can reach)
        p = on_postgres(tmp_path / "practice", account, pg.url)
        service = Service(config.load(p.config))
        try:
            assert started(service)
            pg.stop()
            pg.start()
            uid = account.append(message(), out_of_hours_recently())
            deadline = time.monotonic() + 60
            fire(service, "triage")
            while not wait_for(service, "triage", timeout=deadline - time.monotonic()):
                pass  # the first try may meet the dead session; a retry follows
            assert account.snapshot()[uid]["flags"] == {KW}
            assert len(drafts(account)) == 1
            fire(service, "triage")
            assert wait_for(service, "triage")
            assert len(drafts(account)) == 1
        finally:
            service.stop()
        assert rows(pg.url, "SELECT count(*) FROM contact WHERE done_at IS NOT NULL") == [(1,)]


def test_a_worker_that_loses_its_sessions_lets_go_and_nothing_is_served_twice(
    dovecot: Dovecot, tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker a is frozen and its database sessions are cut (a long pause, a network
    blip): its locks go with them and b takes every practitioner. When a wakes, it
    finds them taken as soon as it touches their state, and lets go; then the two
    share again. Each message is drafted once, by b."""
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    n = 4
    group = group_on_postgres(tmp_path, dovecot, pg_url, n, users="cut")
    names = {f"p{i}" for i in range(n)}
    a, b = Worker(group, "a"), Worker(group, "b")
    try:
        until(lambda: len(a.serving()) == len(b.serving()) == n // 2, 60, "shared", a, b)
        had = a.serving()
        a.proc.send_signal(signal.SIGSTOP)
        with psycopg.connect(pg_url, autocommit=True) as admin:
            cut = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name LIKE %s",
                (f"inbox-guard%pid {a.proc.pid}",),
            ).fetchone()
        assert cut is not None and cut[0] == n // 2 + 1  # its practitioners' and its slot
        mark = b.log.stat().st_size
        until(
            lambda: all(f"[{x}] leases: serving" in b.log.read_text()[mark:] for x in had),
            30,
            "b takes a's share",
            b,
        )
        for i in range(n):
            Account(dovecot, f"cut{i}", dovecot.password).append(
                message(subject=f"after the cut, p{i}"), out_of_hours_recently()
            )
        until(lambda: all(b.marked(x) for x in names), 30, "b marks every message", b)
        a.proc.send_signal(signal.SIGCONT)
        until(
            lambda: "another worker serves this practitioner now" in a.log.read_text(),
            30,
            "a lets go",
            a,
            b,
        )
        until(lambda: len(a.serving()) == len(b.serving()) == n // 2, 60, "shared again", a, b)
    finally:
        for w in (a, b):
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGCONT)
                w.proc.send_signal(signal.SIGTERM)
                w.proc.wait(timeout=30)
    for i in range(n):
        account = Account(dovecot, f"cut{i}", dovecot.password)
        assert len(drafts(account)) == 1


@pytest.mark.parametrize(
    ("url", "options"),
    [
        (
            "postgresql://ig@db.example.org/ig",
            {"sslmode": "verify-full", "sslrootcert": "system"},
        ),
        ("postgresql://ig@10.0.0.5:5433/ig", {"sslmode": "verify-full", "sslrootcert": "system"}),
        (
            "postgresql://ig@db.example.org/ig?sslrootcert=/etc/ca.pem",
            {"sslmode": "verify-full"},
        ),
        ("postgresql://ig@db.example.org/ig?sslmode=disable", {}),  # said so in the URL
        ("postgresql://ig@127.0.0.1/ig", {}),
        ("postgresql://ig@localhost/ig", {}),
        ("postgresql://ig@[::1]/ig", {}),
        ("postgresql:///ig?host=/var/run/postgresql", {}),  # a Unix socket
    ],
)
def test_a_database_on_another_machine_is_spoken_to_over_checked_tls(
    url: str, options: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGSSLMODE", raising=False)
    assert tls_options(url) == options


def test_a_database_without_tls_is_refused_where_tls_is_asked(
    tmp_path: Path, account: Account, postgres: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The private server has no TLS: where the URL asks for it, nothing is written in
    plain text; one line says why."""
    monkeypatch.setenv(PASSWORD_ENV, account.password)
    p = on_postgres(tmp_path, account, postgres.url + "?sslmode=require")
    done = cli(p, "once")
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert "cannot connect" in line and "SSL" in line
