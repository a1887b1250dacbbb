"""The IMAP connection: TLS, login (password, XOAUTH2, AUTHENTICATE PLAIN for
non-ASCII), logging in again after the server hung up, selecting a folder, and the
translation of every library and socket error into :mod:`inbox_guard.errors`, once.

A command the server answers with NO or BAD reads as the server's answer; only a
closed connection reads as a lost one (and the pass may log in again and go on).
"""

from __future__ import annotations

import imaplib
import logging
import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, Self

import imapclient
from imapclient.exceptions import IMAPClientError, LoginError

from ..credentials import Fixed, Secret
from ..errors import AuthError, ConnectError, ConnectionLost, MailboxError
from ..schema import Account
from .parse import Status, parse_fetch

log = logging.getLogger("inbox_guard.mailbox")


class _TokenRefused(AuthError):
    """The server said no to an OAuth2 access token (not to a password)."""


def _ssl_context(account: Account) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=account.ca_file or None)


@contextmanager
def translated(what: str) -> Iterator[None]:
    try:
        yield
    except TimeoutError as exc:
        raise ConnectError(f"IMAP server timed out during {what}") from exc
    except ssl.SSLError as exc:
        raise ConnectError(f"TLS failed during {what}: {exc.reason or exc}") from exc
    except imaplib.IMAP4.abort as exc:
        text = re.sub(r"^command: [\w ]+ => ", "", text_of(exc))
        if text.startswith("socket error"):  # imaplib's own words: the line went dead
            raise ConnectionLost(f"lost the IMAP connection during {what}: {text}") from exc
        # BYE: the server's own reason for ending the session.
        raise ConnectionLost(f"the server closed the connection during {what}: {text}") from exc
    except (ConnectionError, OSError) as exc:
        raise ConnectionLost(f"lost the IMAP connection during {what}: {exc}") from exc
    except IMAPClientError as exc:  # a tagged NO or BAD: the connection is fine
        raise MailboxError(f"the server refused {what}: {server_text(exc)}") from exc


_COMMAND_FAILED = re.compile(r"^[\w.-]+ (?:failed|command error): (?:(?:NO|BAD) )?", re.I)
_BYTES_LIST = re.compile(r"""\[b(['"])(.*)\1\]""", re.S)


def server_text(exc: BaseException) -> str:
    """What the server said, without the library's wrapping: imapclient's "select
    failed: ..." and imaplib's "FETCH command error: BAD [b'...']" both become the
    server's own text."""
    text = _COMMAND_FAILED.sub("", text_of(exc), count=1)
    wrapped = _BYTES_LIST.fullmatch(text)
    return (wrapped[2] if wrapped else text).strip() or "no reason given"


def text_of(exc: BaseException) -> str:
    s = str(exc)
    if s.startswith("b'") or s.startswith('b"'):
        s = s[2:-1]
    return s


def quietly_close(client: imapclient.IMAPClient) -> None:
    with suppress(OSError, imaplib.IMAP4.error, IMAPClientError):
        client.shutdown()


class Session:
    """A logged-in IMAP connection: login (and once more after the server hung up),
    the selected folder, and the two raw commands the operations are built on."""

    def __init__(
        self,
        client: imapclient.IMAPClient,
        account: Account | None = None,
        secret: str | Secret = "",
    ) -> None:
        self._c = client
        self._account = account  # kept for reconnect()
        self._secret = secret
        self._selected: str | None = None
        self._status: Status | None = None
        self._exists = 0  # messages in the selected folder, as last announced
        self._warned: set[str] = set()

    @classmethod
    def connect(cls, account: Account, secret: str | Secret) -> Self:
        """Log in with ``secret``: the password, or the OAuth2 access token. A token
        the server refuses is renewed once (``auth = "oauth2"``): the provider may
        have ended it early, or this machine's clock may be behind the server's."""
        source = Fixed(secret) if isinstance(secret, str) else secret
        try:
            return cls._connect(account, source, source.get())
        except _TokenRefused:
            if account.auth != "oauth2":
                raise
            log.info("the server refused the access token: renewing it once")
            return cls._connect(account, source, source.get(fresh=True))

    @classmethod
    def _connect(cls, account: Account, source: Secret, password: str) -> Self:
        where = f"{account.host}:{account.effective_port}"
        try:
            client = imapclient.IMAPClient(
                account.host,
                port=account.effective_port,
                ssl=account.security == "tls",
                ssl_context=_ssl_context(account) if account.security == "tls" else None,
                timeout=account.timeout_seconds,
            )
            client.normalise_times = False  # keep INTERNALDATE aware
            if account.security == "starttls":
                client.starttls(_ssl_context(account))
        except ssl.SSLCertVerificationError as exc:
            raise ConnectError(
                f"cannot verify the TLS certificate of {where}: {exc.verify_message}"
                " (set account.ca_file for a private CA)"
            ) from exc
        except (OSError, imaplib.IMAP4.error, IMAPClientError) as exc:
            raise ConnectError(f"cannot connect to {where}: {exc}") from exc
        try:
            if account.auth in ("xoauth2", "oauth2"):
                client.oauth2_login(account.username, password)
            elif account.username.isascii() and password.isascii():
                client.login(account.username, password)
            elif b"AUTH=PLAIN" in client.capabilities():
                # imaplib sends LOGIN's arguments as ASCII; SASL PLAIN carries UTF-8
                # (RFC 4616), and imaplib encodes the answer as UTF-8.
                client.plain_login(account.username, password)
            else:
                quietly_close(client)
                what = "password" if not password.isascii() else "username"
                raise AuthError(
                    f"cannot log in to {where} as {account.username!r}: the {what} has "
                    "non-ASCII characters, which need AUTHENTICATE PLAIN, and the server "
                    "offers no AUTH=PLAIN"
                )
        except LoginError as exc:
            quietly_close(client)
            # The server's text is kept, the secret never is.
            said = text_of(exc).replace(password, "***") if password else text_of(exc)
            if account.auth in ("xoauth2", "oauth2"):
                raise _TokenRefused(
                    f"{where} refused the OAuth2 token for {account.username!r} (expired, "
                    f"revoked, or issued for another account?): {said}"
                ) from None
            raise AuthError(f"{where} refused the login for {account.username!r}: {said}") from None
        except UnicodeError:  # say, a password from an environment that is not UTF-8
            quietly_close(client)
            raise AuthError(
                f"cannot log in to {where} as {account.username!r}: the username or password "
                "is not valid text (it cannot be sent as UTF-8)"
            ) from None
        except (OSError, imaplib.IMAP4.error, IMAPClientError) as exc:
            quietly_close(client)
            raise ConnectError(f"cannot log in to {where}: {exc}") from exc
        # Most servers send their capabilities with the LOGIN reply; reading them now
        # (no command is sent) keeps them, where imapclient would otherwise lose them at
        # the first SELECT and ask CAPABILITY before its next raw command.
        with translated("CAPABILITY"):
            client.capabilities()
        return cls(client, account, source)

    def reconnect(self) -> None:
        """Log in again after the server hung up, and select the folder that was
        selected, in the same mode. Dovecot, for one, answers a FETCH of a message it
        cannot read with NO and then closes the connection; reconnecting lets the pass
        find that message and go on without it."""
        if self._account is None:
            raise ConnectError("cannot reconnect: no account")
        folder, status = self._selected, self._status
        quietly_close(self._c)
        self._c = type(self).connect(self._account, self._secret)._c
        self._selected, self._status, self._exists = None, None, 0
        if folder is not None:
            again = self.open(folder, read_only=status.read_only if status else True)
            if status is not None and again.uidvalidity != status.uidvalidity:
                raise ConnectError(f"{folder} was renumbered (UIDVALIDITY) while reconnecting")

    def logout(self) -> None:
        try:
            self._c.logout()
        except (OSError, imaplib.IMAP4.error, IMAPClientError):
            quietly_close(self._c)

    def capabilities(self) -> tuple[bytes, ...]:
        with translated("CAPABILITY"):
            return tuple(self._c.capabilities())

    def warn_once(self, text: str) -> None:
        """Log ``text`` once for this connection (not at every pass)."""
        if text not in self._warned:
            log.warning("%s", text)
            self._warned.add(text)

    def is_open(self, folder: str, read_only: bool) -> bool:
        """Is ``folder`` selected on this connection already, in this mode?"""
        st = self._status
        return self._selected == folder and st is not None and st.read_only == read_only

    def open(self, folder: str, read_only: bool) -> Status:
        """SELECT (or EXAMINE, for dry runs) ``folder``; nothing is sent when this
        connection has it selected already (the service's kept connection)."""
        if self.is_open(folder, read_only):
            assert self._status is not None
            return self._status
        with translated(f"{'EXAMINE' if read_only else 'SELECT'} {folder}"):
            try:
                r = self._c.select_folder(folder, readonly=read_only)
            except imaplib.IMAP4.readonly:
                # imaplib's own check: SELECT answered [READ-ONLY].
                raise MailboxError(
                    f"the server opened {folder!r} read-only, so messages cannot be marked; "
                    "check the account's rights (nothing was changed)"
                ) from None
            except imaplib.IMAP4.abort:
                raise  # a dead connection, not a missing folder: translated below
            except IMAPClientError as exc:
                raise MailboxError(f"cannot open folder {folder!r}: {text_of(exc)}") from None
        self._selected = folder
        self._forget_news()
        self._status = Status(
            uidvalidity=int(r[b"UIDVALIDITY"]),
            uidnext=int(r[b"UIDNEXT"]) if b"UIDNEXT" in r else None,
            exists=int(r.get(b"EXISTS", 0)),
            permanent_flags=tuple(r.get(b"PERMANENTFLAGS", ())),
            read_only=bool(r.get(b"READ-ONLY", [False])) if b"READ-ONLY" in r else read_only,
        )
        self._exists = self._status.exists
        return self._status

    def _look_in(self, folder: str) -> None:
        """Make ``folder`` the selected one, read-only unless it is selected already."""
        if self._selected != folder:
            self._c.select_folder(folder, readonly=True)
            self._selected, self._status = folder, None

    def _search(self, criteria: list[Any], charset: str | None = None) -> list[int]:
        """SEARCH, without the answer of an earlier SEARCH that failed: imaplib keeps
        untagged responses when a command ends in NO, and imapclient would read them
        as part of the next answer."""
        self._c._imap.untagged_responses.pop("SEARCH", None)
        return list(self._c.search(criteria, charset=charset))

    def _fetch(self, uids: str, parts: list[str]) -> dict[int, dict[bytes, Any]]:
        # imapclient's fetch() insists on a list of single UIDs (a 100k-long argument
        # that servers reject); this sends the compact set and parses the same way,
        # taking a fast path for the regular answers to header and text fetches.
        # What an earlier FETCH that ended in NO left behind is not part of this answer.
        self._c._imap.untagged_responses.pop("FETCH", None)
        data = self._c._raw_command_untagged(
            b"FETCH", [uids.encode(), ("(" + " ".join(parts) + ")").encode()], uid=True
        )
        return parse_fetch(data)

    def _forget_news(self) -> tuple[list[bytes], list[bytes]]:
        """Take the EXISTS and EXPUNGE announcements imaplib has collected so far."""
        untagged = self._c._imap.untagged_responses
        return untagged.pop("EXISTS", []), untagged.pop("EXPUNGE", [])
