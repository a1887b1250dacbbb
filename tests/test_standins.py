"""The Gmail and Exchange stand-ins (tests/standins.py), against the test Dovecot: what a
client sees through them, and what they leave in Dovecot."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from .conftest import Account, message
from .dovecot import Dovecot
from .standins import ExchangeStandIn, GmailStandIn, StandIn

WHEN = datetime.now(UTC) - timedelta(days=1)
LABELS = ["OutOfHours", "Außer Haus"]


@pytest.fixture(autouse=True)
def _on_dovecot(dovecot: Dovecot) -> None:
    """The stand-ins are built on Dovecot's answers (a test matrix may swap the server)."""
    if type(dovecot) is not Dovecot:
        pytest.skip("the stand-ins sit in front of Dovecot")


def proxied(proxy: StandIn, account: Account) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=proxy.port, ssl=False, timeout=10)
    client.login(account.user, account.password)
    return client


class Raw:
    """A bare IMAP connection, to see the exact lines."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")
        self.greeting = self.file.readline().rstrip(b"\r\n")

    def line(self) -> bytes:
        line = self.file.readline()
        assert line, "connection closed"
        return line.rstrip(b"\r\n")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, tag: bytes, text: bytes) -> list[bytes]:
        """Send one command; every line up to and including its tagged answer."""
        self.send(tag + b" " + text + b"\r\n")
        return self.until(tag)

    def until(self, tag: bytes) -> list[bytes]:
        lines = [self.line()]
        while not lines[-1].startswith(tag + b" "):
            lines.append(self.line())
        return lines

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def folder_messages(account: Account, folder: str) -> list[bytes]:
    """The Message-ID header lines of the messages in ``folder``, straight from Dovecot."""
    with account.client() as c:
        if not c.folder_exists(folder):
            return []
        c.select_folder(folder, readonly=True)
        data = c.fetch(c.search(["ALL"]), ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
    return [d[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"].strip() for d in data.values()]


# -- Gmail -------------------------------------------------------------------------------


def test_gmail_announces_x_gm_ext_1_everywhere(dovecot: Dovecot, account: Account) -> None:
    direct = Raw(dovecot.port)
    assert b"X-GM-EXT-1" not in direct.greeting  # Dovecot has no such thing itself
    direct.close()
    with GmailStandIn(dovecot.port) as proxy:
        raw = Raw(proxy.port)
        assert raw.greeting.startswith(b"* OK [CAPABILITY ")
        assert b" X-GM-EXT-1]" in raw.greeting
        login = raw.command(
            b"a1", b'LOGIN "%s" "%s"' % (account.user.encode(), account.password.encode())
        )
        assert login[-1].startswith(b"a1 OK [CAPABILITY ") and b" X-GM-EXT-1]" in login[-1]
        after = raw.command(b"a2", b"CAPABILITY")
        assert after[0].startswith(b"* CAPABILITY ") and after[0].endswith(b" X-GM-EXT-1")
        assert after[0].split().count(b"X-GM-EXT-1") == 1
        raw.close()
        raw = Raw(proxy.port)  # before login (Dovecot then leaves it out of LOGIN's OK)
        before = raw.command(b"a1", b"CAPABILITY")
        assert before[0].startswith(b"* CAPABILITY ") and before[0].endswith(b" X-GM-EXT-1")
        raw.close()

        client = IMAPClient("127.0.0.1", port=proxy.port, ssl=False, timeout=10)
        assert b"X-GM-EXT-1" in client.capabilities()
        client.login(account.user, account.password)
        assert client.has_capability("X-GM-EXT-1")
        client.logout()


def test_gmail_labels_are_folders_holding_one_copy(dovecot: Dovecot, account: Account) -> None:
    uid = account.append(message(message_id="<label-me@example.org>"), WHEN)
    with GmailStandIn(dovecot.port) as proxy:
        client = proxied(proxy, account)
        client.select_folder("INBOX")
        assert client.add_gmail_labels([uid], LABELS, silent=True) is None
        assert client.add_gmail_labels([uid], LABELS, silent=True) is None  # a set: no-op
        # The exact bytes imapclient 4.x sends: quoted strings, modified UTF-7.
        assert f'UID STORE {uid} +X-GM-LABELS.SILENT ("OutOfHours" "Au&AN8-er Haus")'.encode() in [
            c.split(b" ", 1)[1] for c in proxy.commands
        ]
        # Another connection, the labels answered back without .SILENT: still one copy.
        other = proxied(proxy, account)
        other.select_folder("INBOX")
        assert other.add_gmail_labels([uid], LABELS) == {uid: ["\\Inbox", *LABELS]}
        assert client.get_gmail_labels([uid]) == {uid: ["\\Inbox", *LABELS]}
        other.logout()
        client.logout()
    for label in LABELS:
        assert folder_messages(account, label) == [b"Message-ID: <label-me@example.org>"]
    with account.client() as c:
        assert c.folder_exists("Außer Haus")  # named in modified UTF-7, as IMAP does
        c.select_folder("INBOX", readonly=True)
        assert c.search(["ALL"]) == [uid]  # the original stays where it was


def test_gmail_label_as_literal_and_fetched_with_other_items(
    dovecot: Dovecot, account: Account
) -> None:
    first = account.append(message(message_id="<one@example.org>"), WHEN)
    second = account.append(message(message_id="<two@example.org>"), WHEN, flags=(r"\Seen",))
    with GmailStandIn(dovecot.port) as proxy:
        raw = Raw(proxy.port)
        raw.command(b"a1", b'LOGIN "%s" "%s"' % (account.user.encode(), account.password.encode()))
        raw.command(b"a2", b"SELECT INBOX")
        raw.send(b"a3 UID STORE %d +X-GM-LABELS.SILENT ({6}\r\n" % first)
        assert raw.line().startswith(b"+ ")  # the stand-in takes the literal itself
        raw.send(b"Urgent)\r\n")
        assert raw.until(b"a3") == [b"a3 OK Success"]
        raw.close()

        client = proxied(proxy, account)
        client.select_folder("INBOX")
        data = client.fetch([first, second], ["FLAGS", "X-GM-LABELS", "BODY.PEEK[HEADER]"])
        assert data[first][b"X-GM-LABELS"] == (b"\\Inbox", b"Urgent")
        assert data[second][b"X-GM-LABELS"] == (b"\\Inbox",)
        assert b"\\Seen" in data[second][b"FLAGS"]
        assert b"<two@example.org>" in data[second][b"BODY[HEADER]"]
        client.logout()
    assert folder_messages(account, "Urgent") == [b"Message-ID: <one@example.org>"]


def test_gmail_serves_connections_at_once_with_idle(dovecot: Dovecot, account: Account) -> None:
    uid = account.append(message(message_id="<idle@example.org>"), WHEN)
    with GmailStandIn(dovecot.port) as proxy:
        idler = proxied(proxy, account)
        idler.select_folder("INBOX")
        idler.idle()
        worker = proxied(proxy, account)
        worker.select_folder("INBOX")
        worker.add_gmail_labels([uid], ["OutOfHours"], silent=True)
        account.append(message(message_id="<new@example.org>"), WHEN)
        assert (2, b"EXISTS") in idler.idle_check(timeout=10)
        idler.idle_done()
        assert worker.get_gmail_labels([uid]) == {uid: ["\\Inbox", "OutOfHours"]}
        worker.logout()
        idler.logout()
        assert proxy.connections == 2
    assert folder_messages(account, "OutOfHours") == [b"Message-ID: <idle@example.org>"]


def test_gmail_keeps_flags_and_keywords_and_never_removes(
    dovecot: Dovecot, account: Account
) -> None:
    uid = account.append(message(), WHEN)
    with GmailStandIn(dovecot.port) as proxy:
        client = proxied(proxy, account)
        assert b"\\*" in client.select_folder("INBOX")[b"PERMANENTFLAGS"]
        client.add_flags([uid], [r"\Flagged", "$OutOfHours"], silent=True)
        client.add_gmail_labels([uid], ["OutOfHours"], silent=True)
        with pytest.raises(IMAPClientError, match="only adds labels"):
            client.remove_gmail_labels([uid], ["OutOfHours"], silent=True)
        client.logout()
    (state,) = account.snapshot().values()
    assert state["flags"] == {b"\\Flagged", b"$OutOfHours"}
    assert len(folder_messages(account, "OutOfHours")) == 1


# -- Exchange ----------------------------------------------------------------------------


def test_exchange_has_no_keywords(dovecot: Dovecot, account: Account) -> None:
    uid = account.append(message(), WHEN, flags=("$Seen-elsewhere",))
    with account.client() as c:  # Dovecot itself allows keywords and lists them
        direct = c.select_folder("INBOX")
    assert b"\\*" in direct[b"PERMANENTFLAGS"] and b"$Seen-elsewhere" in direct[b"FLAGS"]
    with ExchangeStandIn(dovecot.port) as proxy:
        client = proxied(proxy, account)
        selected = client.select_folder("INBOX")
        system = {b"\\Answered", b"\\Flagged", b"\\Deleted", b"\\Seen", b"\\Draft"}
        assert set(selected[b"PERMANENTFLAGS"]) == system
        assert set(selected[b"FLAGS"]) == system
        assert client.get_flags([uid]) == {uid: ()}
        for silent in (True, False):
            with pytest.raises(IMAPClientError, match=r"Command Argument Error\. 11"):
                client.add_flags([uid], ["$OutOfHours"], silent=silent)
        client.add_flags([uid], [r"\Flagged"], silent=True)
        assert client.get_flags([uid]) == {uid: (b"\\Flagged",)}
        client.logout()
        assert [c.split(b" ", 1)[1] for c in proxy.refused] == [
            f"UID STORE {uid} +FLAGS.SILENT ($OutOfHours)".encode(),
            f"UID STORE {uid} +FLAGS ($OutOfHours)".encode(),
        ]
    (state,) = account.snapshot().values()
    assert state["flags"] == {b"\\Flagged", b"$Seen-elsewhere"}  # never reached Dovecot


def test_exchange_keyword_reply_can_be_a_no(dovecot: Dovecot, account: Account) -> None:
    uid = account.append(message(), WHEN)
    with ExchangeStandIn(dovecot.port, keyword_reply=b"NO [CANNOT] no keywords") as proxy:
        raw = Raw(proxy.port)
        raw.command(b"a1", b'LOGIN "%s" "%s"' % (account.user.encode(), account.password.encode()))
        raw.command(b"a2", b"SELECT INBOX")
        assert raw.command(b"a3", b"UID STORE %d +FLAGS (\\Seen $MDNSent Junk)" % uid) == [
            b"a3 NO [CANNOT] no keywords"
        ]
        answer = raw.command(b"a4", b"UID STORE %d +FLAGS (\\Seen $MDNSent)" % uid)
        assert answer[-1].startswith(b"a4 OK")  # $MDNSent is Exchange's own keyword
        raw.close()
    (state,) = account.snapshot().values()
    assert state["flags"] == {b"\\Seen", b"$MDNSent"}
