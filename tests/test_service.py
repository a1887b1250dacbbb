"""`inbox-guard run`: scheduled passes and digests, recovery, clean shutdown."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from imapclient import IMAPClient

from inbox_guard import config
from inbox_guard.errors import BusyError
from inbox_guard.mailbox import Mailbox
from inbox_guard.service import Service
from inbox_guard.store import Store
from inbox_guard.timing import IDLE_SECONDS, backoff, digest_trigger

from .conftest import (
    PASSWORD_ENV,
    Account,
    Practice,
    fire,
    message,
    out_of_hours_recently,
    started,
    wait_for,
    write_practice,
)
from .dovecot import Dovecot

KW = b"$OutOfHours"


def practice_on(
    server: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Account, Practice, Service]:
    """The test practice on a server of the test's own, and its (unstarted) service."""
    user, password = server.user("alex")
    account = Account(server, user, password)
    monkeypatch.setenv(PASSWORD_ENV, password)
    p = write_practice(tmp_path, account)
    return account, p, Service(config.load(p.config))


@pytest.fixture
def service(practice: Practice) -> Iterator[Service]:
    s = Service(config.load(practice.config))
    try:
        yield s
    finally:
        if s.scheduler.running:
            s.stop()


def test_scheduled_pass_and_digest_fire(
    practice: Practice, account: Account, service: Service
) -> None:
    first = account.append(message(subject="first"), out_of_hours_recently())
    assert started(service)  # the pass at start-up
    assert KW in account.snapshot()[first]["flags"]

    second = account.append(
        message(subject="second"), out_of_hours_recently() + timedelta(seconds=5)
    )
    fire(service, "triage")
    assert wait_for(service, "triage")
    assert KW in account.snapshot()[second]["flags"]

    fire(service, "digest")
    assert wait_for(service, "digest")
    digests = [m for m in account.snapshot().values() if b"Out-of-hours digest" in m["bytes"]]
    assert len(digests) == 1
    assert b"2 out-of-hours contacts" in digests[0]["bytes"]


def test_service_recovers_when_the_server_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Dovecot() as server:
        account, p, service = practice_on(server, tmp_path, monkeypatch)
        try:
            assert started(service)

            server.stop()
            fire(service, "triage")
            assert not wait_for(service, "triage")  # logged, retried, not dead
            server.start()

            uid = account.append(message(), out_of_hours_recently())
            fire(service, "triage")
            assert wait_for(service, "triage")
            fire(service, "triage")
            assert wait_for(service, "triage")
            assert account.snapshot()[uid]["flags"] == {KW}
            assert len(account.snapshot("Drafts")) == 1  # nothing duplicated

            # The outage is in the next digest, not only in the log, even when the
            # service was restarted in between (it is kept in the state file).
            service.stop()
            service = Service(config.load(p.config))
            assert started(service)
            fire(service, "digest")
            assert wait_for(service, "digest")
            [digest] = [
                m["bytes"]
                for m in account.snapshot().values()
                if b"Out-of-hours digest" in m["bytes"]
            ]
            assert b"inbox-guard had trouble since the last digest" in digest
            assert b"triage: " in digest
            assert service.problems() == []  # reported once, then forgotten
        finally:
            service.stop()


def test_digest_schedule_is_local_across_daylight_saving(practice: Practice) -> None:
    trigger = digest_trigger(config.load(practice.config))
    tz = trigger.timezone
    # Tue 20 Oct (summer time) -> Wed 21 Oct 07:30 BST, which is 06:30 UTC.
    summer = trigger.get_next_fire_time(None, datetime(2026, 10, 20, 12, 0, tzinfo=tz))
    assert (summer.day, summer.hour, summer.minute, summer.utcoffset()) == (
        21,
        7,
        30,
        timedelta(hours=1),
    )
    # Fri 23 Oct -> past the weekend and the clock change -> Mon 26 Oct 07:30 GMT.
    winter = trigger.get_next_fire_time(None, datetime(2026, 10, 23, 12, 0, tzinfo=tz))
    assert (winter.day, winter.hour, winter.minute, winter.utcoffset()) == (26, 7, 30, timedelta(0))


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(n, 60) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


def test_run_stops_cleanly_on_sigterm(practice: Practice, account: Account) -> None:
    account.append(message(), out_of_hours_recently())
    proc = subprocess.Popen(
        [sys.executable, "-m", "inbox_guard", "--config", str(practice.config), "run"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, PASSWORD_ENV: account.password},
    )
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:  # read until the first pass is logged
        lines.append(line)
        if "pass: scanned" in line:
            break
    begun = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert time.monotonic() - begun < 10
    log = "".join(lines) + rest
    assert "INFO pass: scanned 1, flagged 1" in log
    assert "received SIGTERM, stopping" in log and log.rstrip().endswith("INFO stopped")
    assert account.password not in log


def test_push_marks_and_drafts_new_mail_within_seconds(
    practice: Practice, account: Account
) -> None:
    practice.config.write_text(
        practice.config.read_text().replace("[triage]\n", "[triage]\npoll_minutes = 60\n")
    )
    service = Service(config.load(practice.config))
    try:
        assert started(service)  # the pass at start-up; the next poll is an hour away
        begun = time.monotonic()
        uid = account.append(message(subject="late"), out_of_hours_recently())
        assert wait_for(service, "triage", timeout=5)
        elapsed = time.monotonic() - begun
        assert account.snapshot()[uid]["flags"] == {KW}
        assert len(account.snapshot("Drafts")) == 1
        assert elapsed < 5
    finally:
        service.stop()


def test_idle_ends_on_time_is_issued_again_and_misses_nothing(
    practice: Practice, account: Account
) -> None:
    assert IDLE_SECONDS < 29 * 60  # servers may drop an IDLE after 30 minutes
    box = Mailbox.connect(config.load(practice.config).main.account, account.password)
    stop = threading.Event()
    try:
        # Nothing new: each IDLE ends on time and the connection is ready for the next.
        assert not box.wait_for_news("INBOX", 0.3, stop, tick=0.1)
        assert not box.wait_for_news("INBOX", 0.3, stop, tick=0.1)
        # Mail that lands between two IDLEs is announced by the next one.
        account.append(message(subject="between"), out_of_hours_recently())
        begun = time.monotonic()
        assert box.wait_for_news("INBOX", 10, stop, tick=0.1)
        assert time.monotonic() - begun < 5

        # Mail that lands during an IDLE.
        def append_later() -> None:
            account.append(message(subject="during"), out_of_hours_recently())

        later = threading.Timer(0.5, append_later)
        later.start()
        assert box.wait_for_news("INBOX", 10, stop, tick=0.1)
        later.join()
        # A stop request ends the wait at once.
        stop.set()
        assert not box.wait_for_news("INBOX", 600, stop, tick=0.1)
    finally:
        box.logout()


def test_without_idle_the_service_polls(
    tmp_path: Path,
    account: Account,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="inbox_guard")
    # The capabilities of the test Dovecot, less IDLE.
    with IMAPClient("127.0.0.1", port=account.port, ssl=False) as probe:
        probe.login(account.user, account.password)
        caps = [c.decode() for c in probe.capabilities() if c != b"IDLE"]
    server = Dovecot()
    server.write_config(extra=f"imap_capability = {' '.join(caps)}\n")
    server.start()
    try:
        plain, _, service = practice_on(server, tmp_path, monkeypatch)
        try:
            assert started(service)
            assert service.push.off.wait(timeout=10)  # it gives up on push at once
            assert "the server has no IDLE: polling every 5 min" in caplog.text
            uid = plain.append(message(), out_of_hours_recently())
            fire(service, "triage")  # the poll
            assert wait_for(service, "triage")
            assert plain.snapshot()[uid]["flags"] == {KW}
        finally:
            service.stop()
    finally:
        server.cleanup()


def test_push_comes_back_after_the_connection_drops_and_catches_up(
    practice: Practice, account: Account, caplog: pytest.LogCaptureFixture
) -> None:
    practice.config.write_text(
        practice.config.read_text().replace("[triage]\n", "[triage]\npoll_minutes = 60\n")
    )
    caplog.set_level(logging.INFO, logger="inbox_guard")
    service = Service(config.load(practice.config))
    try:
        assert started(service)
        # Every connection of the user is dropped: the kept one and the IDLE one.
        account.server.doveadm("kick", account.user)
        uid = account.append(message(subject="while push was down"), out_of_hours_recently())
        # Not the next poll (an hour away): push reconnects after its first backoff
        # (5 s, give or take a quarter) and makes a pass due at once.
        begun = time.monotonic()
        assert wait_for(service, "triage", timeout=20)
        assert account.snapshot()[uid]["flags"] == {KW}
        assert time.monotonic() - begun < 15
        assert re.search(r"push: .*; polling meanwhile, retrying IDLE in [456] s", caplog.text)
    finally:
        service.stop()


def test_the_running_service_holds_the_state_file_between_jobs(
    practice: Practice, account: Account
) -> None:
    """Its SQLite connection is closed between jobs (a thousand practitioners would
    otherwise hold 150 MB), but never its lock: a `once` meanwhile is refused."""
    service = Service(config.load(practice.config))
    try:
        assert started(service)
        with pytest.raises(BusyError, match="another inbox-guard is working on this state file"):
            Store.open(practice.state, wait=0)
    finally:
        service.stop()
    Store.open(practice.state, wait=0).close()  # released when the service stops
