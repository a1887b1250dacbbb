"""A server's answer reads as the server's answer: a command refused with NO or BAD is
the server saying no (the connection is fine, the pass goes on), a BYE is the server
ending the session with its reason, and only a dropped connection reads as lost."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from inbox_guard import schema
from inbox_guard.errors import ConnectionLost, MailboxError
from inbox_guard.mailbox import Mailbox

from .conftest import Account, message
from .faults import Cut, CutProxy

WHEN = datetime(2026, 11, 16, 22, 30, tzinfo=UTC)


def _connect(port: int, account: Account) -> Mailbox:
    config = schema.Account(
        host="127.0.0.1", port=port, security="plain", username=account.user, password_env="UNUSED"
    )
    return Mailbox.connect(config, account.password)


@pytest.fixture
def proxy(account: Account) -> Iterator[CutProxy]:
    with CutProxy(account.port) as p:
        yield p


def test_a_refused_append_reads_as_the_servers_answer_and_the_connection_goes_on(
    account: Account,
) -> None:
    box = _connect(account.port, account)
    try:
        with pytest.raises(MailboxError) as refused:
            box.append("No such folder", message(), (), WHEN)
        assert not isinstance(refused.value, ConnectionLost)
        text = str(refused.value)
        assert text.startswith("the server refused APPEND No such folder: ")
        assert "TRYCREATE" in text  # Dovecot's own words, not the library's wrapping
        assert "append failed" not in text and "b'" not in text
        assert box.open("INBOX", read_only=True).exists == 0  # still logged in
    finally:
        box.logout()


def test_a_refused_store_names_the_command_and_the_servers_reason(
    account: Account,
    proxy: CutProxy,
) -> None:
    uid = account.append(message(), WHEN)
    box = _connect(proxy.port, account)
    try:
        box.open("INBOX", read_only=False)
        proxy.set(Cut(refuse=lambda line: b" UID STORE " in line))
        with pytest.raises(MailboxError) as refused:
            box.add_flags([uid], ["$OutOfHours"])
        assert not isinstance(refused.value, ConnectionLost)
        assert str(refused.value) == (
            "the server refused STORE: [SERVERBUG] refused by the test proxy"
        )
    finally:
        box.logout()


def test_a_bye_reads_as_the_server_ending_the_session_with_its_reason(
    account: Account,
    proxy: CutProxy,
) -> None:
    account.append(message(), WHEN)
    box = _connect(proxy.port, account)
    try:
        proxy.set(
            Cut(
                bye=lambda line: b" SELECT " in line,
                bye_text=b"[UNAVAILABLE] Server shutting down.",
            )
        )
        with pytest.raises(ConnectionLost) as ended:
            box.open("INBOX", read_only=False)
        assert str(ended.value) == (
            "the server closed the connection during SELECT INBOX: "
            "[UNAVAILABLE] Server shutting down."
        )
    finally:
        box.logout()


def test_only_a_dropped_connection_reads_as_lost(account: Account, proxy: CutProxy) -> None:
    uid = account.append(message(), WHEN)
    box = _connect(proxy.port, account)
    try:
        box.open("INBOX", read_only=False)
        proxy.set(Cut(at_command=b"UID STORE", forward_first=False))
        with pytest.raises(ConnectionLost) as lost:
            box.add_flags([uid], ["$OutOfHours"])
        assert str(lost.value).startswith("lost the IMAP connection during STORE: ")
    finally:
        box.logout()
