"""What --debug and login errors may show: protocol commands and sizes, never what
clients wrote, their addresses, or a password; and logins with non-ASCII passwords."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from .conftest import JANE, PASSWORD_ENV, SAM, Account, Practice, message, write_practice
from .dovecot import Dovecot

SUNDAY_NIGHT = datetime(2026, 11, 15, 23, 40, tzinfo=UTC)
MONDAY_8 = "2026-11-16T08:00:00+00:00"


def run(*args: str, password: str) -> subprocess.CompletedProcess[str]:
    """The real command line, in its own process: its logging is configured as a
    user's would be (under pytest, the root logger already has handlers)."""
    return subprocess.run(
        [sys.executable, "-m", "inbox_guard", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, PASSWORD_ENV: password},
    )


def test_debug_log_shows_commands_not_contents_addresses_or_password(
    practice: Practice, account: Account
) -> None:
    secrets = {
        "subject": "SUBJ-kestrel-4471",
        "body": "BODY-heron-9013",
        "subject2": "SUBJ-plover-2218",
        "body2": "BODY-wren-5530",
    }
    account.append(
        message(
            subject=f"About {secrets['subject']}",
            body=f"I keep thinking {secrets['body']} and I want to die.\n",
        ),
        SUNDAY_NIGHT,
    )
    account.append(
        message(
            sender=SAM,
            subject=f"Re: {secrets['subject2']}",
            body=f"{secrets['body2']}\n",
        ),
        SUNDAY_NIGHT + timedelta(minutes=5),
    )

    done = run(
        "--config",
        str(practice.config),
        "--debug",
        "once",
        "--now",
        MONDAY_8,
        password=account.password,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("scanned 2; flagged 2;"), done.stdout
    out = done.stdout + done.stderr
    # The debug log was on and shows the protocol: the header fetch, the text
    # window (so a body was read), the drafts appended, and the sizes read.
    assert re.search(
        r"UID FETCH \S+ \((?:UID )?(?:FLAGS )?INTERNALDATE BODY\.PEEK\[HEADER\.FIELDS ", out
    )
    assert re.search(r"UID FETCH \S+ \((?:UID )?BODY\.PEEK\[1\]<0\.\d+>\)", out)
    assert "APPEND" in out
    assert re.search(r"read literal size \d+", out)
    # ... but nothing a client wrote, no client address, no password.
    for name, token in secrets.items():
        assert token not in out, name
    assert "want to die" not in out
    assert JANE not in out.lower() and SAM not in out.lower()
    assert account.password not in out


def test_protocol_lines_are_rewritten() -> None:
    """The rewriting itself, on the lines imaplib and imapclient log."""
    from inbox_guard.mailbox.protocol_log import without_private

    assert (
        without_private(
            "untagged_responses[FETCH] 0 += [\"(b'1 (UID 5 BODY[TEXT] {5}', b'hello')\"]"
        )
        == "untagged_responses[FETCH] += [28 bytes, not logged]"
    )
    assert without_private("   (literal) > b'From: jane'") == "   (literal) > [not logged]"
    assert without_private("> b' {11+}\\r\\nFrom: jane'") == (
        "> b' {11} [literal of 11 bytes, not logged]"
    )
    assert without_private("> b'A1 LOGIN alex \"s3cret\"'") == (
        "> b'A1 LOGIN [arguments not logged]"
    )
    assert (
        without_private('< b\'* 1 FETCH (BODYSTRUCTURE ("TEXT" "PLAIN" ("NAME" "scan.pdf")))\'')
        == '< b\'* 1 FETCH (BODYSTRUCTURE ("..." "..." ("..." "...")))\''
    )
    assert (
        without_private(
            "> b'A2 UID SEARCH SINCE 1-Nov-2026 OR FROM jane@example.org FROM \"Sam Lee\"'"
        )
        == "> b'A2 UID SEARCH SINCE 1-Nov-2026 OR FROM ... FROM ...'"
    )


# -- passwords that are not ASCII ----------------------------------------------------

NON_ASCII = "pässwörd-Ωµ-" + "ł" * 3  # RFC 4616: SASL PLAIN carries UTF-8


class _Dovecot(Dovecot):
    """A private Dovecot with a password and SASL mechanisms of the test's choosing."""

    def __init__(self, password: str, mechanisms: str = "plain login") -> None:
        super().__init__()
        self.password = password
        self.mechanisms = mechanisms

    def write_config(self, extra: str = "") -> None:
        # A later setting overrides the one before it.
        super().write_config(f"{extra}\nauth_mechanisms = {self.mechanisms}\n")


@pytest.fixture(scope="module")
def unicode_dovecot() -> Iterator[Dovecot]:
    with _Dovecot(NON_ASCII) as server:
        yield server


@pytest.fixture(scope="module")
def no_plain_dovecot() -> Iterator[Dovecot]:
    with _Dovecot(NON_ASCII, mechanisms="login") as server:
        yield server


def _practice(tmp_path: Path, server: Dovecot) -> Practice:
    user, password = server.user("alex")
    return write_practice(tmp_path, Account(server, user, password))


def _shows_any_of(text: str, password: str) -> bool:
    """Does ``text`` show any non-ASCII character of ``password``, or it escaped?"""
    return any(ch in text or ascii(ch)[1:-1] in text for ch in password if not ch.isascii())


def test_a_non_ascii_password_logs_in(tmp_path: Path, unicode_dovecot: Dovecot) -> None:
    p = _practice(tmp_path, unicode_dovecot)
    done = run("--config", str(p.config), "check", "--connect", password=NON_ASCII)
    assert done.returncode == 0, done.stderr
    assert "login ok" in done.stdout
    done = run("--config", str(p.config), "once", "--json", "--now", MONDAY_8, password=NON_ASCII)
    assert done.returncode == 0, done.stderr


def test_a_wrong_non_ascii_password_is_status_3_and_never_shown(
    tmp_path: Path, unicode_dovecot: Dovecot
) -> None:
    p = _practice(tmp_path, unicode_dovecot)
    wrong = "ÄÖÜßæøåΩжł"  # only non-ASCII characters, so none may appear at all
    for debug in ([], ["--debug"]):
        done = run("--config", str(p.config), *debug, "check", "--connect", password=wrong)
        assert done.returncode == 3, done.stderr
        assert "refused the login for 'alex'" in done.stderr
        assert not _shows_any_of(done.stdout + done.stderr, wrong)
        assert not _shows_any_of(done.stdout + done.stderr, NON_ASCII)


def test_non_ascii_password_without_auth_plain_is_a_clear_error(
    tmp_path: Path, no_plain_dovecot: Dovecot
) -> None:
    p = _practice(tmp_path, no_plain_dovecot)
    for debug in ([], ["--debug"]):
        done = run("--config", str(p.config), *debug, "check", "--connect", password=NON_ASCII)
        assert done.returncode == 3, done.stderr
        line = done.stderr.splitlines()[-1]
        assert line == (
            f"inbox-guard: cannot log in to 127.0.0.1:{no_plain_dovecot.port} as 'alex': "
            "the password has non-ASCII characters, which need AUTHENTICATE PLAIN, "
            "and the server offers no AUTH=PLAIN"
        )
        assert not _shows_any_of(done.stdout + done.stderr, NON_ASCII)
