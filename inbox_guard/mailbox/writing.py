"""What inbox-guard writes to a mailbox, and nothing else: flags and keywords (never
removing one), Gmail labels, a copy in a folder, and drafts APPENDed to Drafts, each
found by Message-ID first so that nothing is written twice."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any

from imapclient.exceptions import IMAPClientError
from imapclient.imapclient import DRAFTS

from ..errors import ConnectError, MailboxError
from .parse import MESSAGE_IDS, batches, said, special_folder, uid_set
from .session import Session, translated

log = logging.getLogger("inbox_guard.mailbox")

_COMMON_DRAFTS = ("Drafts", "INBOX.Drafts", "INBOX/Drafts", "[Gmail]/Drafts", "Draft")


class Writing(Session):
    """The operations of :class:`~inbox_guard.mailbox.Mailbox` that add to a mailbox."""

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
                        "marking with \\Flagged instead",
                        flag,
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
        for batch in batches(uids, 10_000):
            with translated("STORE"):
                self._c.add_flags(uid_set(batch), list(flags), silent=True)

    def add_labels(self, uids: Iterable[int], labels: Sequence[str]) -> None:
        """Gmail labels (STORE +X-GM-LABELS, Google's IMAP extensions); a label the
        message has already is kept once (labels are a set)."""
        if b"X-GM-EXT-1" not in {c.upper() for c in self.capabilities()}:
            raise MailboxError(
                '[mark] show = "gmail-label" needs Gmail (the server has no X-GM-EXT-1)'
            )
        for batch in batches(sorted(set(uids)), 10_000):
            with translated("STORE X-GM-LABELS"):
                self._c.add_gmail_labels(uid_set(batch), list(labels), silent=True)

    def ensure_folder(self, name: str) -> None:
        """Create (and subscribe) ``name`` unless it exists."""
        with translated(f"CREATE {name}"):
            if not self._c.folder_exists(name):
                self._c.create_folder(name)
                with suppress(IMAPClientError):
                    self._c.subscribe_folder(name)

    def copy(self, uids: Iterable[int], folder: str) -> None:
        """COPY from the selected folder (flags and INTERNALDATE go along, RFC 3501)."""
        with translated(f"COPY {folder}"):
            self._c.copy(uid_set(uids), folder)

    def in_folder(
        self, folder: str, message_id: str | None, sender: str, received: datetime
    ) -> bool:
        """Is this message (by Message-ID, or sender, and arrival time) in ``folder``?
        Selects ``folder`` read-only; reopen the inbox before working there again."""
        with translated(f"EXAMINE {folder}"):
            self._look_in(folder)
        return bool(self.find_uids(message_id, sender, received))

    def find_drafts(self, configured: str) -> str:
        """The Drafts folder: as configured, else SPECIAL-USE \\Drafts, else a common name."""
        with translated("LIST"):
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

    def has_message_id(self, folder: str, message_id: str) -> bool:
        with translated(f"SEARCH {folder}"):
            self._look_in(folder)
            return bool(self._search(["HEADER", "Message-ID", message_id]))

    def existing_message_ids(
        self, folder: str, message_ids: Sequence[str], *, deleted: bool = True
    ) -> set[str]:
        """Which of ``message_ids`` are in ``folder`` already: one SEARCH per 40 (an OR
        chain of HEADER Message-ID), then the Message-ID header of what matched (SEARCH
        HEADER matches substrings, so each is checked whole). ``deleted=False`` leaves
        out messages flagged \\Deleted: a mail app that deletes by flagging expunges
        later, and meanwhile shows them as deleted or not at all."""
        wanted = set(message_ids)
        if not wanted:
            return set()
        uids: set[int] = set()
        with translated(f"SEARCH {folder}"):
            self._look_in(folder)
            for chunk in batches(sorted(wanted), 40):
                criteria: list[Any] = [] if deleted else ["UNDELETED"]
                for i, mid in enumerate(chunk):
                    if i < len(chunk) - 1:
                        criteria.append("OR")
                    criteria += ["HEADER", "Message-ID", mid]
                uids.update(self._search(criteria))
        if not uids:
            return set()
        with translated(f"FETCH {folder}"):
            data = self._fetch(uid_set(uids), ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
        found: set[str] = set()
        for item in data.values():
            raw = next((v for k, v in item.items() if k.startswith(b"BODY[")), b"") or b""
            found.update(m.decode("ascii", "replace") for m in MESSAGE_IDS.findall(raw))
        return found & wanted

    def find_uids(self, message_id: str | None, sender: str, received: datetime) -> list[int]:
        """The UIDs, in the selected folder and in order, of the messages with this
        Message-ID (or, with none, this sender) that arrived at ``received``: for steps
        planned before the server renumbered the folder (a UIDVALIDITY change)."""
        if message_id:
            criteria: list[Any] = ["HEADER", "Message-ID", message_id]
        else:
            day = received.date()
            criteria = [
                "FROM",
                sender,
                "SINCE",
                day - timedelta(days=1),
                "BEFORE",
                day + timedelta(days=2),
            ]
        with translated("SEARCH"):
            uids = self._search(criteria)
        if not uids:
            return []
        with translated("FETCH"):
            data = self._fetch(uid_set(uids), ["INTERNALDATE"])
        return sorted(uid for uid, item in data.items() if item.get(b"INTERNALDATE") == received)

    def append(self, folder: str, message: bytes, flags: Sequence[str], when: datetime) -> None:
        with translated(f"APPEND {folder}"):
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
        for batch in batches(list(messages), 500 if multi else 1):
            try:
                if multi and len(batch) > 1:
                    with translated(f"MULTIAPPEND {folder}"):
                        typ, answer = self._c.multiappend(
                            folder,
                            [{"msg": m, "flags": list(flags), "date": when} for m in batch],
                        )
                    if typ != "OK":
                        # imapclient returns a NO instead of raising it.
                        raise MailboxError(
                            f"the server refused MULTIAPPEND to {folder}: {said(answer)}"
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
