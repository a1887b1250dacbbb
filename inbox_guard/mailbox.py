"""The one module that talks IMAP (imapclient).

Everything IMAP-specific lives here: TLS, login, SPECIAL-USE, UIDVALIDITY, batching
into compact UID sets. Library and socket exceptions are translated once, at this
boundary, into :mod:`inbox_guard.errors`. Client messages are only ever read with
BODY.PEEK (their \\Seen flag never changes) and only ever given keywords/flags.
"""

from __future__ import annotations

import ast
import imaplib
import logging
import re
import ssl
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

import imapclient
from imapclient.exceptions import IMAPClientError, LoginError
from imapclient.imapclient import DRAFTS

from .credentials import Fixed, Secret
from .errors import AuthError, ConnectError, ConnectionLost, MailboxError
from .fetchparse import parse_fetch
from .schema import Account

log = logging.getLogger(__name__)


class _TokenRefused(AuthError):
    """The server said no to an OAuth2 access token (not to a password)."""

FETCH_BATCH = 2000
TEXT_BATCH = 250
T = TypeVar("T")
_COMMON_DRAFTS = ("Drafts", "INBOX.Drafts", "INBOX/Drafts", "[Gmail]/Drafts", "Draft")


@dataclass(frozen=True)
class Status:
    uidvalidity: int
    uidnext: int | None
    exists: int
    permanent_flags: tuple[bytes, ...]
    read_only: bool


    def allows(self, flag: str) -> bool:
        """Can ``flag`` be stored permanently? (``\\*`` admits any new keyword.)"""
        names = {f.decode().lower() for f in self.permanent_flags}
        return flag.lower() in names or (not flag.startswith("\\") and "\\*" in names)


@dataclass(frozen=True)
class TextWindow:
    raw: bytes  # at most the requested number of bytes, still transfer-encoded
    encoding: str
    charset: str
    subtype: str  # "plain" or "html"


@dataclass(frozen=True)
class Fetched:
    uid: int
    internaldate: datetime  # aware, as the server gave it
    header: bytes
    flags: tuple[str, ...] = ()  # as they were when the pass read the message


def uid_set(uids: Iterable[int]) -> str:
    """Compact IMAP sequence set: [1,2,3,7,9,10] -> "1:3,7,9:10"."""
    out: list[str] = []
    run: list[int] = []
    for u in sorted(set(uids)):
        if run and u == run[-1] + 1:
            run.append(u)
            continue
        if run:
            out.append(f"{run[0]}:{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [u]
    if run:
        out.append(f"{run[0]}:{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def _batches(items: Sequence[T], size: int) -> Iterator[list[T]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def _ssl_context(account: Account) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=account.ca_file or None)


def _announces_mail(responses: list[Any]) -> bool:
    """Whether IDLE responses include an EXISTS (the inbox grew)."""
    return any(len(r) > 1 and r[1] == b"EXISTS" for r in responses)


@contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except TimeoutError as exc:
        raise ConnectError(f"IMAP server timed out during {what}") from exc
    except ssl.SSLError as exc:
        raise ConnectError(f"TLS failed during {what}: {exc.reason or exc}") from exc
    except (imaplib.IMAP4.abort, ConnectionError, OSError) as exc:
        raise ConnectionLost(f"lost the IMAP connection during {what}: {exc}") from exc
    except IMAPClientError as exc:
        raise MailboxError(f"IMAP {what} failed: {exc}") from exc


class Mailbox:
    """A logged-in IMAP connection and the few operations a pass needs."""

    def __init__(
        self, client: imapclient.IMAPClient, account: Account | None = None,
        secret: str | Secret = "",
    ) -> None:
        self._c = client
        self._account = account  # kept for reconnect()
        self._secret = secret
        self._selected: str | None = None
        self._status: Status | None = None
        self._exists = 0  # messages in the selected folder, as last announced
        self._warned: set[str] = set()

    # -- connection --------------------------------------------------------------

    @classmethod
    def connect(cls, account: Account, secret: str | Secret) -> Mailbox:
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
    def _connect(cls, account: Account, source: Secret, password: str) -> Mailbox:
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
                _quietly_close(client)
                what = "password" if not password.isascii() else "username"
                raise AuthError(
                    f"cannot log in to {where} as {account.username!r}: the {what} has "
                    "non-ASCII characters, which need AUTHENTICATE PLAIN, and the server "
                    "offers no AUTH=PLAIN"
                )
        except LoginError as exc:
            _quietly_close(client)
            # The server's text is kept, the secret never is.
            said = _text(exc).replace(password, "***") if password else _text(exc)
            if account.auth in ("xoauth2", "oauth2"):
                raise _TokenRefused(
                    f"{where} refused the OAuth2 token for {account.username!r} (expired, "
                    f"revoked, or issued for another account?): {said}"
                ) from None
            raise AuthError(
                f"{where} refused the login for {account.username!r}: {said}"
            ) from None
        except UnicodeError:  # say, a password from an environment that is not UTF-8
            _quietly_close(client)
            raise AuthError(
                f"cannot log in to {where} as {account.username!r}: the username or password "
                "is not valid text (it cannot be sent as UTF-8)"
            ) from None
        except (OSError, imaplib.IMAP4.error, IMAPClientError) as exc:
            _quietly_close(client)
            raise ConnectError(f"cannot log in to {where}: {exc}") from exc
        # Most servers send their capabilities with the LOGIN reply; reading them now
        # (no command is sent) keeps them, where imapclient would otherwise lose them at
        # the first SELECT and ask CAPABILITY before its next raw command.
        with _translated("CAPABILITY"):
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
        _quietly_close(self._c)
        self._c = Mailbox.connect(self._account, self._secret)._c
        self._selected, self._status, self._exists = None, None, 0
        if folder is not None:
            again = self.open(folder, read_only=status.read_only if status else True)
            if status is not None and again.uidvalidity != status.uidvalidity:
                raise ConnectError(f"{folder} was renumbered (UIDVALIDITY) while reconnecting")

    def logout(self) -> None:
        try:
            self._c.logout()
        except (OSError, imaplib.IMAP4.error, IMAPClientError):
            _quietly_close(self._c)

    def capabilities(self) -> tuple[bytes, ...]:
        with _translated("CAPABILITY"):
            return tuple(self._c.capabilities())

    # -- the inbox ---------------------------------------------------------------

    def is_open(self, folder: str, read_only: bool) -> bool:
        """Is ``folder`` selected on this connection already, in this mode?"""
        st = self._status
        return self._selected == folder and st is not None and st.read_only == read_only

    def _search(self, criteria: list[Any], charset: str | None = None) -> list[int]:
        """SEARCH, without the answer of an earlier SEARCH that failed: imaplib keeps
        untagged responses when a command ends in NO, and imapclient would read them
        as part of the next answer."""
        self._c._imap.untagged_responses.pop("SEARCH", None)
        return list(self._c.search(criteria, charset=charset))

    def _forget_news(self) -> tuple[list[bytes], list[bytes]]:
        """Take the EXISTS and EXPUNGE announcements imaplib has collected so far."""
        untagged = self._c._imap.untagged_responses
        return untagged.pop("EXISTS", []), untagged.pop("EXPUNGE", [])

    def has_news(self) -> bool:
        """On a kept selection: has mail arrived or gone since we last looked?

        One NOOP (RFC 3501 7.3.1: new mail is announced by EXISTS). Announcements that
        came with any earlier command count too: a SEARCH can be answered before the
        server announces a message that arrived meanwhile."""
        with _translated("NOOP"):
            self._c.noop()
        exists, expunged = self._forget_news()
        changed = bool(expunged) or (bool(exists) and int(exists[-1]) != self._exists)
        if exists:
            self._exists = int(exists[-1])
        return changed

    def wait_for_news(
        self, folder: str, seconds: float, stop: threading.Event, tick: float = 1.0
    ) -> bool:
        """IDLE (RFC 2177) on ``folder`` for up to ``seconds``: True as soon as the
        server announces new mail, False on timeout or ``stop``. Servers drop IDLE
        after 30 minutes, so callers keep ``seconds`` under that and call again."""
        if not self.is_open(folder, read_only=True):
            self.open(folder, read_only=True)
        deadline = time.monotonic() + seconds
        # Mail that arrived since the last command (say, between two IDLEs) is told
        # on the next command; if that were IDLE, it could come in one packet with
        # the "+ idling" and sit unread in imaplib's buffer while IDLE waits on the
        # socket. A NOOP first collects it.
        with _translated("NOOP"):
            _, pending = self._c.noop()
        news = _announces_mail(pending)
        if news:
            return True
        with _translated("IDLE"):
            self._c.idle()
            try:
                while not news and not stop.is_set() and time.monotonic() < deadline:
                    woke = time.monotonic()
                    heard = self._c.idle_check(timeout=tick)
                    news = _announces_mail(heard)
                    if not heard and time.monotonic() - woke < tick / 2:
                        # Woken without a whole line: imapclient returns nothing when
                        # the server has closed the connection. Ending IDLE tells:
                        # DONE fails on a closed connection, else IDLE starts again.
                        break
            finally:
                _, late = self._c.idle_done()
        return news or _announces_mail(late)  # also mail announced as IDLE ended

    def quick_status(self, folder: str) -> tuple[int, int | None]:
        """(UIDVALIDITY, UIDNEXT) by STATUS: about 0.2 ms whatever the mailbox size,
        where a SELECT of 100k messages costs over 100 ms."""
        with _translated("STATUS"):
            r = self._c.folder_status(folder, [b"UIDVALIDITY", b"UIDNEXT"])
        nxt = r.get(b"UIDNEXT")
        return int(r[b"UIDVALIDITY"]), int(nxt) if nxt is not None else None

    def open(self, folder: str, read_only: bool) -> Status:
        """SELECT (or EXAMINE, for dry runs) ``folder``; nothing is sent when this
        connection has it selected already (the service's kept connection)."""
        if self.is_open(folder, read_only):
            assert self._status is not None
            return self._status
        with _translated(f"{'EXAMINE' if read_only else 'SELECT'} {folder}"):
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
                raise MailboxError(f"cannot open folder {folder!r}: {_text(exc)}") from None
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

    def uids_after(self, last_uid: int) -> list[int]:
        # "UID n:*" always includes the highest UID even when it is below n (RFC 3501
        # 6.4.8), so the answer is filtered.
        with _translated("SEARCH"):
            found = self._search(["UID", f"{last_uid + 1}:*"])
        return sorted(u for u in found if u > last_uid)

    def uids_since_from(self, day: date, senders: Sequence[str]) -> list[int]:
        """UIDs since ``day`` whose From contains one of ``senders``, in one SEARCH.

        Narrows a first pass to the few messages that can matter; SEARCH FROM matches
        substrings of the decoded header, so callers re-check each address locally.
        """
        if not senders:
            return []
        criteria: list[Any] = ["SINCE", day]
        for i, sender in enumerate(senders):
            if i < len(senders) - 1:
                criteria.append("OR")
            criteria += ["FROM", sender]
        charset = None if all(s.isascii() for s in senders) else "UTF-8"
        with _translated("SEARCH"):
            return sorted(self._search(criteria, charset=charset))

    def existing_uids(self, uids: Iterable[int]) -> set[int]:
        """Which of ``uids`` are still in the selected folder."""
        wanted = set(uids)
        if not wanted:
            return set()
        with _translated("SEARCH"):
            return wanted & set(self._search(["UID", uid_set(wanted)]))

    def uids_since(self, day: date) -> list[int]:
        """UIDs since ``day`` (by INTERNALDATE, which the server keeps in its index, so
        no message file is opened)."""
        with _translated("SEARCH"):
            return sorted(self._search(["SINCE", day]))

    def highest_uid(self) -> int:
        with _translated("SEARCH"):
            found = self._search(["UID", "*"])
        return max(found, default=0)

    def fetch_headers(
        self, uids: Sequence[int], fields: Sequence[str], *, header_first: bool = False
    ) -> Iterator[Fetched]:
        """INTERNALDATE, FLAGS and the named header fields, never a body, never \\Seen.

        Asked for as UID, FLAGS, INTERNALDATE, then the header: the order of Dovecot's answers,
        so servers that answer in the order asked (Courier, pymap) answer alike, in the
        shape the fast parser reads. ``header_first`` asks for the header before
        INTERNALDATE, which those servers then send after the header's literal."""
        names = " ".join(f.upper() for f in fields)
        section = f"BODY.PEEK[HEADER.FIELDS ({names})]"
        parts = ["UID", "FLAGS", "INTERNALDATE", section]
        if header_first:
            parts = ["UID", "FLAGS", section, "INTERNALDATE"]
        for batch in _batches(sorted(uids), FETCH_BATCH):
            with _translated("FETCH"):
                data = self._fetch(uid_set(batch), parts)
            for uid in batch:
                item = data.get(uid)
                if item is None or b"INTERNALDATE" not in item:
                    continue  # expunged meanwhile, or an unsolicited FLAGS update
                if item[b"INTERNALDATE"] is None:
                    # Not "expunged": a fault of this message, which the pass reports
                    # and tries again, rather than skipping it for good.
                    raise MailboxError(f"the server sent no readable INTERNALDATE for uid {uid}")
                header = _section(item, f"HEADER.FIELDS ({names})")
                flags = tuple(_s(f) for f in item.get(b"FLAGS") or ())
                yield Fetched(uid=uid, internaldate=item[b"INTERNALDATE"], header=header or b"",
                              flags=flags)

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

    def text_windows(
        self, parts: dict[int, tuple[str, str, str] | None], limit: int
    ) -> dict[int, TextWindow]:
        """The first ``limit`` bytes of each message's text part (BODY.PEEK, partial).

        ``parts`` maps a UID to its (transfer encoding, charset, subtype) when its
        headers said it is a single text part, else None: only those get one FETCH of
        BODYSTRUCTURE to find the text/plain (else text/html) part. Then one partial
        FETCH per distinct part number. Attachments are never downloaded.
        """
        if not parts:
            return {}
        wanted: dict[str, list[tuple[int, tuple[str, str, str]]]] = {}
        for uid, spec in parts.items():
            if spec is not None:
                wanted.setdefault("1", []).append((uid, spec))
        unknown = [uid for uid, spec in parts.items() if spec is None]
        structures: dict[int, dict[bytes, Any]] = {}
        if unknown:
            with _translated("FETCH BODYSTRUCTURE"):
                structures = self._fetch(uid_set(unknown), ["BODYSTRUCTURE"])
        for uid in unknown:
            bs = structures.get(uid, {}).get(b"BODYSTRUCTURE")
            found = _text_part(bs) if bs is not None else None
            if found:
                section, encoding, charset, subtype = found
                wanted.setdefault(section, []).append((uid, (encoding, charset, subtype)))
        out: dict[int, TextWindow] = {}
        for section, all_items in wanted.items():
            # Batches bound the memory a backlog's text windows take at once.
            for items in _batches(all_items, TEXT_BATCH):
                self._text_batch(section, items, limit, out)
        return out

    def _text_batch(
        self, section: str, items: list[tuple[int, tuple[str, str, str]]], limit: int,
        out: dict[int, TextWindow],
    ) -> None:
        with _translated("FETCH text"):
            data = self._fetch(
                uid_set(u for u, _ in items), ["UID", f"BODY.PEEK[{section}]<0.{limit}>"]
            )
        for uid, (encoding, charset, subtype) in items:
            raw = _section(data.get(uid, {}), section)
            if raw is not None:
                out[uid] = TextWindow(raw[:limit], encoding, charset, subtype)

    def warn_once(self, text: str) -> None:
        """Log ``text`` once for this connection (not at every pass)."""
        if text not in self._warned:
            log.warning("%s", text)
            self._warned.add(text)

    def _storable(self, flags: Sequence[str]) -> list[str]:
        """``flags`` as the open folder can keep them: a keyword the server will not keep
        (PERMANENTFLAGS without \\*) becomes \\Flagged, and the log says so once."""
        status = self._status
        out: list[str] = []
        for flag in flags:
            if status is not None and not status.allows(flag):
                if flag not in self._warned:
                    log.warning(
                        "the server does not keep the keyword %s (PERMANENTFLAGS has no \\*); "
                        "marking with \\Flagged instead", flag,
                    )
                    self._warned.add(flag)
                flag = "\\Flagged"
            if flag not in out:
                out.append(flag)
        return out

    def add_flags(self, uids: Iterable[int], flags: Sequence[str]) -> None:
        """One STORE +FLAGS.SILENT per batch of UIDs; other flags are untouched."""
        flags = self._storable(flags)
        uids = sorted(set(uids))
        for batch in _batches(uids, 10_000):
            with _translated("STORE"):
                self._c.add_flags(uid_set(batch), list(flags), silent=True)

    def add_labels(self, uids: Iterable[int], labels: Sequence[str]) -> None:
        """Gmail labels (STORE +X-GM-LABELS, Google's IMAP extensions); a label the
        message has already is kept once (labels are a set)."""
        if b"X-GM-EXT-1" not in {c.upper() for c in self.capabilities()}:
            raise MailboxError("[mark] show = \"gmail-label\" needs Gmail (the server has "
                               "no X-GM-EXT-1)")
        for batch in _batches(sorted(set(uids)), 10_000):
            with _translated("STORE X-GM-LABELS"):
                self._c.add_gmail_labels(uid_set(batch), list(labels), silent=True)

    def ensure_folder(self, name: str) -> None:
        """Create (and subscribe) ``name`` unless it exists."""
        with _translated(f"CREATE {name}"):
            if not self._c.folder_exists(name):
                self._c.create_folder(name)
                with suppress(IMAPClientError):
                    self._c.subscribe_folder(name)

    def copy(self, uids: Iterable[int], folder: str) -> None:
        """COPY from the selected folder (flags and INTERNALDATE go along, RFC 3501)."""
        with _translated(f"COPY {folder}"):
            self._c.copy(uid_set(uids), folder)

    def in_folder(self, folder: str, message_id: str | None, sender: str,
                  received: datetime) -> bool:
        """Is this message (by Message-ID, or sender, and arrival time) in ``folder``?
        Selects ``folder`` read-only; reopen the inbox before working there again."""
        with _translated(f"EXAMINE {folder}"):
            self._look_in(folder)
        return bool(self.find_uids(message_id, sender, received))

    # -- drafts ------------------------------------------------------------------

    def find_drafts(self, configured: str) -> str:
        """The Drafts folder: as configured, else SPECIAL-USE \\Drafts, else a common name."""
        with _translated("LIST"):
            if configured:
                if not self._c.folder_exists(configured):
                    raise MailboxError(f"account.drafts: folder {configured!r} does not exist")
                return configured
            found = special_folder(self._c.list_folders(), DRAFTS)
            if not found:  # imapclient's heuristics: common names in the namespace
                found = self._c.find_special_folder(DRAFTS)
            if not found:
                for name in _COMMON_DRAFTS:
                    if self._c.folder_exists(name):
                        found = name
                        break
        if not found:
            raise MailboxError(
                "no Drafts folder found (no SPECIAL-USE \\Drafts, no common name); "
                "create one or set account.drafts"
            )
        return str(found)

    def _look_in(self, folder: str) -> None:
        """Make ``folder`` the selected one, read-only unless it is selected already."""
        if self._selected != folder:
            self._c.select_folder(folder, readonly=True)
            self._selected, self._status = folder, None

    def has_message_id(self, folder: str, message_id: str) -> bool:
        with _translated(f"SEARCH {folder}"):
            self._look_in(folder)
            return bool(self._search(["HEADER", "Message-ID", message_id]))

    def existing_message_ids(self, folder: str, message_ids: Sequence[str]) -> set[str]:
        """Which of ``message_ids`` are in ``folder`` already: one SEARCH per 40 (an OR
        chain of HEADER Message-ID), then the Message-ID header of what matched (SEARCH
        HEADER matches substrings, so each is checked whole)."""
        wanted = set(message_ids)
        if not wanted:
            return set()
        uids: set[int] = set()
        with _translated(f"SEARCH {folder}"):
            self._look_in(folder)
            for chunk in _batches(sorted(wanted), 40):
                criteria: list[Any] = []
                for i, mid in enumerate(chunk):
                    if i < len(chunk) - 1:
                        criteria.append("OR")
                    criteria += ["HEADER", "Message-ID", mid]
                uids.update(self._search(criteria))
        if not uids:
            return set()
        with _translated(f"FETCH {folder}"):
            data = self._fetch(uid_set(uids), ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
        found: set[str] = set()
        for item in data.values():
            raw = next((v for k, v in item.items() if k.startswith(b"BODY[")), b"") or b""
            found.update(m.decode("ascii", "replace") for m in _MESSAGE_IDS.findall(raw))
        return found & wanted

    def find_uids(self, message_id: str | None, sender: str, received: datetime) -> list[int]:
        """The UIDs, in the selected folder and in order, of the messages with this
        Message-ID (or, with none, this sender) that arrived at ``received``: for steps
        planned before the server renumbered the folder (a UIDVALIDITY change)."""
        if message_id:
            criteria: list[Any] = ["HEADER", "Message-ID", message_id]
        else:
            day = received.date()
            criteria = ["FROM", sender, "SINCE", day - timedelta(days=1),
                        "BEFORE", day + timedelta(days=2)]
        with _translated("SEARCH"):
            uids = self._search(criteria)
        if not uids:
            return []
        with _translated("FETCH"):
            data = self._fetch(uid_set(uids), ["INTERNALDATE"])
        return sorted(uid for uid, item in data.items()
                      if item.get(b"INTERNALDATE") == received)

    def append(self, folder: str, message: bytes, flags: Sequence[str], when: datetime) -> None:
        with _translated(f"APPEND {folder}"):
            self._c.append(folder, message, flags=list(flags), msg_time=when)

    def append_each(
        self, folder: str, messages: Sequence[bytes], flags: Sequence[str], when: datetime
    ) -> list[MailboxError | None]:
        """Append every message; per message, None when the server took it, or the
        error it answered. MULTIAPPEND (RFC 3502) where the server has it, one command
        per batch; it is all or nothing, so a refused batch is sent again one APPEND at
        a time, and one message the server will not take holds back no other. A lost
        connection raises :class:`ConnectError` (the caller looks before resending)."""
        out: list[MailboxError | None] = [None] * len(messages)
        multi = len(messages) > 1 and b"MULTIAPPEND" in self.capabilities()
        start = 0
        for batch in _batches(list(messages), 500 if multi else 1):
            try:
                if multi and len(batch) > 1:
                    with _translated(f"MULTIAPPEND {folder}"):
                        typ, said = self._c.multiappend(
                            folder,
                            [{"msg": m, "flags": list(flags), "date": when} for m in batch],
                        )
                    if typ != "OK":
                        # imapclient returns a NO instead of raising it.
                        raise MailboxError(
                            f"the server refused MULTIAPPEND to {folder}: {_said(said)}"
                        )
                else:
                    self.append(folder, batch[0], flags, when)
            except ConnectError:
                raise
            except MailboxError as exc:
                if multi and len(batch) > 1:
                    for i, m in enumerate(batch):
                        try:
                            self.append(folder, m, flags, when)
                        except ConnectError:
                            raise
                        except MailboxError as one:
                            out[start + i] = one
                else:
                    out[start] = exc
            start += len(batch)
        return out


_MESSAGE_IDS = re.compile(rb"<[^<>\s]+>")


def _said(data: Any) -> str:
    """A server's response text, for an error line."""
    items = data if isinstance(data, list) else [data]
    return " ".join(_s(d) for d in items if d is not None)[:200] or "no reason given"


def _section(item: dict[bytes, Any], section: str) -> Any:
    """The value of ``BODY[section]`` in a parsed FETCH answer, however the server
    spelt the section (Courier quotes header field names: ``("FROM" "TO")``; a partial
    fetch's key ends in ``<0>``); else of any ``BODY[...]``, else None."""
    wanted = section.upper().encode()
    bodies = {k: v for k, v in item.items() if k.startswith(b"BODY[")}
    for key, value in bodies.items():
        if key[5:].split(b"]")[0].replace(b'"', b"") == wanted:
            return value
    return next(iter(bodies.values()), None)


def special_folder(listing: Iterable[tuple[Any, Any, Any]], flag: bytes) -> str | None:
    """The first folder in a LIST answer with the SPECIAL-USE ``flag`` (RFC 6154),
    compared without regard to case as IMAP's attributes are (Cyrus answers
    ``\\drafts`` for a folder its configuration names)."""
    wanted = flag.lower()
    for flags, _delimiter, name in listing:
        if any(bytes(f).lower() == wanted for f in flags or ()):
            return str(name)
    return None


def _s(value: Any) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value or "")


def _params(value: Any) -> dict[str, str]:
    items = list(value) if isinstance(value, (list, tuple)) else []
    return {_s(k).lower(): _s(v) for k, v in zip(items[::2], items[1::2], strict=False)}


def _text_part(bs: Any, prefix: str = "") -> tuple[str, str, str, str] | None:
    """(section, transfer encoding, charset, subtype) of the first text part,
    preferring text/plain over text/html, skipping attachments."""
    plain: tuple[str, str, str, str] | None = None
    html: tuple[str, str, str, str] | None = None
    if getattr(bs, "is_multipart", False):
        for i, part in enumerate(bs[0], start=1):
            found = _text_part(part, f"{prefix}{i}.")
            if found and found[3] == "plain":
                return found
            html = html or found
        return html
    try:
        maintype, subtype = _s(bs[0]).lower(), _s(bs[1]).lower()
        params, encoding = _params(bs[2]), _s(bs[5]).lower()
    except (IndexError, TypeError):
        return None
    # The disposition follows md5, at index 9 for text/* (which has a line count).
    if any(
        isinstance(d, (list, tuple)) and d and _s(d[0]).lower() == "attachment"
        for d in bs[8:10]
    ):
        return None
    if maintype == "text" and subtype in ("plain", "html"):
        section = prefix.rstrip(".") or "1"
        found = (section, encoding, params.get("charset", "utf-8"), subtype)
        plain = found if subtype == "plain" else None
        html = found if subtype == "html" else None
    return plain or html


def _text(exc: BaseException) -> str:
    s = str(exc)
    if s.startswith("b'") or s.startswith('b"'):
        s = s[2:-1]
    return s


def _quietly_close(client: imapclient.IMAPClient) -> None:
    with suppress(OSError, imaplib.IMAP4.error, IMAPClientError):
        client.shutdown()


# -- protocol logging ----------------------------------------------------------------
#
# imapclient turns on imaplib's own tracing (imaplib.debug = 5) and sends it, with its
# own, to the loggers below. With --debug that would log every server line, every
# literal (headers: subjects; text windows: bodies), the drafts appended and the
# search arguments (client addresses). The filter keeps the commands, the shape of
# the answers and the sizes; it drops literals, quoted strings and login arguments.
# (A logger's filters see only the records of that very logger, hence each by name.)

_PROTOCOL_LOGGERS = ("imapclient", "imapclient.imapclient", "imapclient.imaplib", "imapclient.util")
_UNTAGGED = re.compile(r"(untagged_responses\[[\w-]*\]) (?:\d+ )?(\+=|=>) (.*)", re.S)
_LITERAL_SENT = re.compile(r"\{(\d+)\+?\}\\r\\n.*", re.S)  # a literal after its {size}
_LOGIN = re.compile(r"\b(LOGIN|AUTHENTICATE)\b.*", re.S)
_BYTES_REPR = re.compile(r"""(?<!\w)(?:b'(?:[^'\\]|\\.)*'|b"(?:[^"\\]|\\.)*")""", re.S)
_QUOTED = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_SEARCH = re.compile(rb"\S+ (?:UID )?SEARCH ", re.I)
_SEARCH_STRING = re.compile(rb"\b(BCC|BODY|CC|FROM|SUBJECT|TEXT|TO|HEADER \S+) \S+", re.I)


class _ProtocolLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = _without_private(record.getMessage()), ()
        return True


def _without_private(text: str) -> str:
    """A protocol log line with sizes where contents, credentials or strings were."""
    untagged = _UNTAGGED.match(text)
    if untagged:
        what, op, data = untagged.groups()
        payload = data[2:-2] if op == "+=" else data  # '+= ["%r"]' or '=> %s'
        return f"{what} {op} [{_size(payload)}, not logged]"
    if "(literal) >" in text:
        return text.split("(literal) >")[0] + "(literal) > [not logged]"
    text = _LITERAL_SENT.sub(lambda m: f"{{{m[1]}}} [literal of {m[1]} bytes, not logged]", text)
    if text.startswith(">"):
        text = _LOGIN.sub(r"\1 [arguments not logged]", text)
    return _BYTES_REPR.sub(_elide_strings, text)


def _elide_strings(found: re.Match[str]) -> str:
    """A logged bytes value (imaplib logs lines as ``b'...'``) without its quoted
    strings, which can be subjects, file names, addresses or folder names, and
    without the strings a SEARCH looks for (client addresses, as atoms or quoted)."""
    try:
        value = ast.literal_eval(found[0])
    except (ValueError, SyntaxError):
        return "b'[not logged]'"
    value = _QUOTED.sub(b'"..."', value)
    if _SEARCH.match(value):
        value = _SEARCH_STRING.sub(rb"\1 ...", value)
    return repr(value)


def _size(logged: str) -> str:
    try:
        value = ast.literal_eval(logged)
    except (ValueError, SyntaxError):
        return f"{len(logged)} characters"
    return f"{_nbytes(value)} bytes"


def _nbytes(value: Any) -> int:
    if isinstance(value, (bytes, str)):
        return len(value)
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    return 0


_PROTOCOL_LOG_FILTER = _ProtocolLogFilter()
for _name in _PROTOCOL_LOGGERS:
    logging.getLogger(_name).addFilter(_PROTOCOL_LOG_FILTER)
