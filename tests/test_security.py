"""Secure by default: TLS verified, passwords never shown, owner-only files, a state
file that cannot be read is an error (never silent loss), and nothing sent to clients."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from inbox_guard import config
from inbox_guard.mailbox import Mailbox
from inbox_guard.service import Service

from .conftest import (
    PASSWORD_ENV,
    SAM,
    Account,
    Practice,
    fire,
    message,
    out_of_hours_recently,
    started,
    wait_for,
    write_practice,
)
from .dovecot import Dovecot, free_port

MONDAY_8 = "2026-11-16T08:00:00+00:00"
SUNDAY_NIGHT = datetime(2026, 11, 15, 23, 40, tzinfo=UTC)


def cli(p: Practice, *args: str, password: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inbox_guard", "--config", str(p.config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, PASSWORD_ENV: password},
    )


@pytest.fixture(scope="module")
def tls_dovecot() -> Iterator[Dovecot]:
    with Dovecot(tls=True) as server:
        yield server


def tls_practice(tmp_path: Path, server: Dovecot, security: str, ca: bool) -> tuple[Practice, str]:
    user, password = server.user(f"tls-{security}-{ca}")
    account = Account(server, user, password)
    p = write_practice(tmp_path, account)
    port = server.tls_port if security == "tls" else server.port
    extra = f'\nca_file = "{server.cert}"' if ca else ""
    text = p.config.read_text().replace(f"port = {server.port}", f"port = {port}")
    text = text.replace('security = "plain"', f'security = "{security}"{extra}')
    text = text.replace('host = "127.0.0.1"', 'host = "localhost"')
    p.config.write_text(text)
    return p, password


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_self_signed_certificate_is_refused_unless_its_ca_is_configured(
    tmp_path: Path, tls_dovecot: Dovecot, security: str
) -> None:
    p, password = tls_practice(tmp_path / "no-ca", tls_dovecot, security, ca=False)
    done = cli(p, "once", password=password)
    assert done.returncode == 3
    assert "certificate" in done.stderr and done.stderr.count("\n") == 1

    p, password = tls_practice(tmp_path / "ca", tls_dovecot, security, ca=True)
    done = cli(p, "check", "--connect", password=password)
    assert done.returncode == 0, done.stderr
    assert f"({security}) login ok" in done.stdout


def test_push_over_tls_waits_quietly_and_hears_new_mail(
    tmp_path: Path, tls_dovecot: Dovecot
) -> None:
    p, password = tls_practice(tmp_path, tls_dovecot, "tls", ca=True)
    settings = config.load(p.config)
    box = Mailbox.connect(settings.main.account, password)
    stop = threading.Event()
    try:
        # Nothing new: IDLE lasts its full time (TLS records that carry no whole line
        # must not end it early) and ends cleanly.
        started = time.monotonic()
        assert not box.wait_for_news("INBOX", 1.5, stop, tick=0.5)
        assert time.monotonic() - started >= 1.5
        account = Account(tls_dovecot, settings.main.account.username, password)
        later = threading.Timer(0.5, account.append, (message(), out_of_hours_recently()))
        later.start()  # lands while IDLE is under way
        started = time.monotonic()
        assert box.wait_for_news("INBOX", 10, stop, tick=0.5)
        assert time.monotonic() - started < 5
        later.join()
    finally:
        box.logout()


def test_passwords_appear_in_no_output_or_log(practice: Practice, account: Account) -> None:
    account.append(message(), SUNDAY_NIGHT)
    account.append(
        message(body="I want to die\n", subject="x"), SUNDAY_NIGHT + timedelta(minutes=1)
    )
    outputs = []
    for args in (
        ["--debug", "check", "--connect"],
        ["--debug", "once", "--json", "--now", MONDAY_8],
        ["--debug", "digest", "--now", MONDAY_8],
        ["--debug", "agenda"],
    ):
        done = cli(practice, *args, password=account.password)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout + done.stderr)
    text = "".join(outputs)
    assert "DEBUG" in text  # the debug log really was on
    assert account.password not in text
    for f in practice.root.rglob("*"):
        if f.is_file():
            assert account.password.encode() not in f.read_bytes(), f


def test_corrupt_state_file_is_a_clear_error_and_is_left_for_inspection(
    practice: Practice, account: Account
) -> None:
    practice.state.parent.mkdir(parents=True)
    damaged = b"SQLite format 3\x00" + b"this is not a database" * 100
    practice.state.write_bytes(damaged)
    done = cli(practice, "once", password=account.password)
    assert done.returncode == 1
    assert done.stderr.startswith(f"inbox-guard: {practice.state}: cannot use the state file")
    assert done.stderr.count("\n") == 1
    assert practice.state.read_bytes() == damaged
    # Not SQLite at all: state.path names the wrong file, a configuration error.
    practice.state.write_bytes(b"this is not a database" * 100)
    done = cli(practice, "once", password=account.password)
    assert done.returncode == 2
    assert "is not an inbox-guard state file (left as it is)" in done.stderr
    assert done.stderr.count("\n") == 1
    assert practice.state.read_bytes() == b"this is not a database" * 100


def test_state_file_from_a_newer_version_is_refused(practice: Practice, account: Account) -> None:
    assert cli(practice, "once", password=account.password).returncode == 0
    with sqlite3.connect(practice.state) as db:
        db.execute("INSERT INTO migrations VALUES (99, 'future')")
    done = cli(practice, "once", password=account.password)
    assert done.returncode == 1
    assert "state file is from a newer inbox-guard (schema 99" in done.stderr


def test_the_whole_service_sends_only_to_the_practitioner(
    tmp_path: Path, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, list[str]]] = []

    class Record:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            seen.append((envelope.mail_from, list(envelope.rcpt_tos)))  # type: ignore[attr-defined]
            return "250 OK"

    port = free_port()
    controller = Controller(Record(), hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv(PASSWORD_ENV, account.password)
    p = write_practice(
        tmp_path,
        account,
        extra=f"""
        [digest]
        deliver = "smtp"

        [smtp]
        host = "127.0.0.1"
        port = {port}
        security = "plain"
        """,
    )
    t = out_of_hours_recently()
    account.append(message(body="thinking about suicide\n"), t)
    account.append(
        message(sender=SAM, headers={"Reply-To": "someone-else@example.net"}),
        t + timedelta(seconds=10),
    )
    account.append(
        message(to="group@example.net", cc="alex@example.org"), t + timedelta(seconds=20)
    )
    service = Service(config.load(p.config))
    try:
        assert started(service)
        fire(service, "digest")
        assert wait_for(service, "digest")
    finally:
        service.stop()
        controller.stop()
    addresses = set(config.load(p.config).main.therapist.all_addresses)
    assert len(seen) == 2  # one alert, one digest
    assert all(set(rcpt) <= addresses for _, rcpt in seen), seen
