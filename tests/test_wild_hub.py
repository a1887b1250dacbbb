"""Trying to break the hub (one process, many practitioners), push on the hub's IDLE
watcher, and the state in PostgreSQL shared by leases: each test here reproduces a
bug that was found that way. All mail is synthetic."""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import timedelta
from pathlib import Path
from typing import cast

import psycopg
import pytest

from inbox_guard import config
from inbox_guard.errors import ConfigError
from inbox_guard.pgstate import Slots
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
    SilentServer,
    group_on_postgres,
    message,
    out_of_hours_recently,
    started,
    unreadable,
    wait_for,
    write_practice,
)
from .dovecot import Dovecot
from .postgres import Postgres

# -- the SQL as PostgreSQL reads it ------------------------------------------------------


def test_an_unreadable_message_does_not_fail_every_pass_on_postgres(
    pg_practice: Practice,
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
    group = group_on_postgres(tmp_path, dovecot, pg_url, 2, users="long")
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


# -- push on the hub: what the network does to the IDLE connection -------------------


class IdleRelay:
    """A loopback relay to the test Dovecot that reshapes what the server sends on the
    connection that IDLEs (the one whose client has sent IDLE), as a network may:

    - ``coalesce``: from the ``hold_from``-th "+ idling" of a connection on, that line
      is held until the server's next EXISTS and both reach the client in one packet;
      ``on_hold`` runs when one is held, ``before_release`` just before it is sent.
    - ``split``: each EXISTS line reaches the client in two packets, the second once
      the client has hung up or after ``split_gap`` seconds (the network's delay).
    """

    def __init__(
        self,
        target_port: int,
        mode: str,
        hold_from: int = 1,
        split_gap: float = 1.0,
    ) -> None:
        self.target = target_port
        self.mode = mode
        self.hold_from = hold_from
        self.split_gap = split_gap
        self.held = threading.Event()
        self.split_done = threading.Event()
        self.before_release: Callable[[], None] = lambda: None
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()
        for s in self._socks:
            with suppress(OSError):
                s.close()

    def _accept(self) -> None:
        with suppress(OSError):
            while True:
                client, _ = self._listener.accept()
                server = socket.create_connection(("127.0.0.1", self.target), timeout=10)
                self._socks += [client, server]
                idling = threading.Event()
                threading.Thread(
                    target=self._up, args=(client, server, idling), daemon=True
                ).start()
                threading.Thread(
                    target=self._down, args=(server, client, idling), daemon=True
                ).start()

    def _up(self, client: socket.socket, server: socket.socket, idling: threading.Event) -> None:
        with suppress(OSError):
            while data := client.recv(65536):
                if re.search(rb"^\S+ IDLE\r\n", data, re.M):
                    idling.set()
                server.sendall(data)
        with suppress(OSError):
            server.shutdown(socket.SHUT_WR)

    def _down(self, server: socket.socket, client: socket.socket, idling: threading.Event) -> None:
        rest = b""
        held = b""
        idles = 0
        with suppress(OSError):
            while data := server.recv(65536):
                if not idling.is_set():
                    client.sendall(data)
                    continue
                rest += data
                *lines, rest = rest.split(b"\r\n")
                release = False
                for line in (x + b"\r\n" for x in lines):
                    if self.mode == "coalesce" and line.startswith(b"+ "):
                        idles += 1
                        if idles >= self.hold_from:
                            held = line
                            self.held.set()
                            continue
                    if self.mode == "coalesce" and held:
                        held += line
                        if b"EXISTS" in line:
                            release = True
                        continue
                    if self.mode == "split" and b"EXISTS" in line:
                        client.sendall(line[:4])
                        client.settimeout(self.split_gap)
                        with suppress(TimeoutError):
                            client.recv(1, socket.MSG_PEEK)  # the client hanging up
                        client.settimeout(None)
                        self.split_done.set()
                        client.sendall(line[4:])
                        continue
                    client.sendall(line)
                if release:  # with whatever else came in this packet (say, RECENT)
                    self.before_release()
                    client.sendall(held)
                    held = b""
        with suppress(OSError):
            client.shutdown(socket.SHUT_WR)


def relayed_push_service(practice: Practice, relay: IdleRelay) -> Service:
    """The practice's service, through ``relay``, polling only hourly (so a pass soon
    after new mail is push's doing)."""
    practice.config.write_text(
        practice.config.read_text()
        .replace(f"port = {practice.account.port}", f"port = {relay.port}")
        .replace("[triage]\n", "[triage]\npoll_minutes = 60\n")
    )
    return Service(config.load(practice.config))


def test_news_in_the_same_packet_as_the_idle_go_ahead_is_not_left_unread(
    practice: Practice, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mail that lands as an IDLE is renewed is announced right after "+ idling"; when
    both come in one packet, imaplib reads both into its buffer and returns the first.
    The watcher then waits on the socket, which has nothing more to say: the news sat
    unread until the next renewal (25 minutes) or poll."""
    import inbox_guard.push

    monkeypatch.setattr(inbox_guard.push, "IDLE_SECONDS", 1.0)  # the first IDLE only
    relay = IdleRelay(account.port, "coalesce", hold_from=2)
    # From the held IDLE on, renewals come at the usual time again.
    relay.before_release = lambda: monkeypatch.setattr(inbox_guard.push, "IDLE_SECONDS", 1500)
    service = relayed_push_service(practice, relay)
    try:
        assert started(service)
        assert relay.held.wait(30)  # the renewed IDLE's "+ idling" is held
        uid = account.append(message(subject="as IDLE was renewed"), out_of_hours_recently())
        assert wait_for(service, "triage", timeout=10)
        assert account.snapshot()[uid]["flags"] == {KW}
    finally:
        service.stop()
        relay.close()


def test_an_announcement_split_across_packets_is_read_whole(
    practice: Practice, account: Account, caplog: pytest.LogCaptureFixture
) -> None:
    """A line that comes in two TCP segments (any network may do it) woke the watcher
    with half a line: imaplib called that an "unterminated line", push dropped the
    connection as failed and came back after a backoff that a 25-minute renewal alone
    resets (5 s, then 10, 20 ... up to 5 minutes), the news held back meanwhile."""
    caplog.set_level(logging.INFO, logger="inbox_guard")
    relay = IdleRelay(account.port, "split")
    service = relayed_push_service(practice, relay)
    try:
        assert started(service)
        begun = time.monotonic()
        uid = account.append(message(subject="split"), out_of_hours_recently())
        assert wait_for(service, "triage", timeout=20)
        assert relay.split_done.is_set()
        assert "push: " not in "".join(
            r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
        )
        assert time.monotonic() - begun < 4  # not after a backoff (5 s, give or take)
        assert account.snapshot()[uid]["flags"] == {KW}
    finally:
        service.stop()
        relay.close()


@pytest.fixture(scope="module")
def tls_dovecot() -> Iterator[Dovecot]:
    with Dovecot(tls=True) as server:
        yield server


def test_push_over_tls_announces_mail_within_seconds(
    tmp_path: Path, tls_dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IDLE over TLS: the watcher is woken by TLS records, and reading without waiting
    ends in SSLWantReadError rather than an empty read."""
    user, password = tls_dovecot.user("tls-push")
    account = Account(tls_dovecot, user, password)
    monkeypatch.setenv(PASSWORD_ENV, password)
    p = write_practice(tmp_path, account)
    shutil.copy(tls_dovecot.cert, p.config.parent / "private-ca.pem")
    text = p.config.read_text().replace(
        f"port = {tls_dovecot.port}", f"port = {tls_dovecot.tls_port}"
    )
    text = text.replace('security = "plain"', 'security = "tls"\nca_file = "private-ca.pem"')
    text = text.replace('host = "127.0.0.1"', 'host = "localhost"')
    p.config.write_text(text.replace("[triage]\n", "[triage]\npoll_minutes = 60\n"))
    service = Service(config.load(p.config))
    try:
        assert started(service)
        for n in range(3):  # each announcement read, the IDLE going on
            uid = account.append(message(subject=f"over TLS {n}"), out_of_hours_recently())
            assert wait_for(service, "triage", timeout=10)
            assert account.snapshot()[uid]["flags"] == {KW}
            assert service.push.waiting.is_set()
    finally:
        service.stop()


# -- stopping ------------------------------------------------------------------------


def test_sigterm_while_a_pass_waits_on_a_hung_server_exits_within_seconds(
    tmp_path: Path,
    silent_server: SilentServer,
) -> None:
    """SIGTERM while the pass waits for a hung server's greeting: the process waited
    for that login to time out, and then for a second one (the pass reconnects once
    after a ConnectError, stopping or not): twice timeout_seconds (60 s by default;
    Docker's default grace before SIGKILL is 10 s)."""
    p = write_practice(tmp_path, Account(cast(Dovecot, silent_server), "alex", "synthetic"))
    p.config.write_text(
        p.config.read_text().replace(
            'security = "plain"\n', 'security = "plain"\ntimeout_seconds = 20\n'
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "inbox_guard", "--config", str(p.config), "run"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, PASSWORD_ENV: "synthetic"},
    )
    try:
        deadline = time.monotonic() + 30
        while not silent_server.accepted:  # the pass is waiting for a greeting
            assert time.monotonic() < deadline, "no login tried"
            time.sleep(0.05)  # polling what another process does
        begun = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=60)
        took = time.monotonic() - begun
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == 0
    assert took < 10, f"took {took:.0f} s to stop"
