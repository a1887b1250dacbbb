"""Reading the inbox without changing it: which UIDs are new, their headers
(BODY.PEEK: \\Seen never changes), a window of each text part for the risk screen,
and news of arriving mail (NOOP, IDLE)."""

from __future__ import annotations

import imaplib
import select
import ssl
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from typing import Any

from imapclient.imapclient import _parse_untagged_response

from ..errors import MailboxError
from .parse import Fetched, TextWindow, as_str, batches, body_section, text_part, uid_set
from .session import Session, translated

FETCH_BATCH = 2000
MAX_LINE = 1_000_000  # imaplib's limit on a line from the server
TEXT_BATCH = 250


def _announces_mail(responses: list[Any]) -> bool:
    """Whether IDLE responses include an EXISTS (the inbox grew)."""
    return any(len(r) > 1 and r[1] == b"EXISTS" for r in responses)


class Reading(Session):
    """The read-only operations of :class:`~inbox_guard.mailbox.Mailbox`."""

    _idle_rest = b""  # during IDLE: a line begun, its end not yet come

    def has_news(self) -> bool:
        """On a kept selection: has mail arrived or gone since we last looked?

        One NOOP (RFC 3501 7.3.1: new mail is announced by EXISTS). Announcements that
        came with any earlier command count too: a SEARCH can be answered before the
        server announces a message that arrived meanwhile."""
        with translated("NOOP"):
            self._c.noop()
        exists, expunged = self._forget_news()
        changed = bool(expunged) or (bool(exists) and int(exists[-1]) != self._exists)
        if exists:
            self._exists = int(exists[-1])
        return changed

    def idle_start(self, folder: str) -> bool:
        """Begin IDLE (RFC 2177) on ``folder``; True when news was already waiting.

        Mail that arrived since the last command (say, between two IDLEs) is told on
        the next command; if that were IDLE, it could come in one packet with the
        "+ idling" and sit unread in imaplib's buffer while IDLE waits on the socket.
        A NOOP first collects it."""
        if not self.is_open(folder, read_only=True):
            self.open(folder, read_only=True)
        with translated("NOOP"):
            _, pending = self._c.noop()
        with translated("IDLE"):
            self._c.idle()
            self._idle_rest = b""
            # What came in the same packet as "+ idling" is in imaplib's buffer now,
            # where waiting on the socket would never see it.
            early, _ = self._idle_lines()
        return _announces_mail(pending) or _announces_mail(early)

    def idle_heard(self) -> tuple[bool, bool]:
        """During IDLE, once the socket is readable: (news, heard), without waiting.
        ``heard`` is False when nothing at all came: the server may have closed the
        connection (ending IDLE tells), or a TLS record carried no data. Half a line
        is heard (TCP may split a line): its rest is read when it comes."""
        with translated("IDLE"):
            lines, heard = self._idle_lines()
        return _announces_mail(lines), heard

    def _idle_lines(self) -> tuple[list[Any], bool]:
        """The whole lines the server has sent during IDLE, imaplib's buffer first,
        without waiting, and whether any byte came; a line begun is kept for later."""
        imap = self._c._imap
        sock = self.socket()
        sock.setblocking(False)
        got = b""
        try:
            while True:
                try:
                    chunk = imap.file.read1(65536)
                except (ssl.SSLWantReadError, BlockingIOError):
                    break
                if not chunk:  # nothing more now, or the end of the connection
                    break
                got += chunk
        finally:
            sock.setblocking(True)
            self._c._set_read_timeout()
        *whole, self._idle_rest = (self._idle_rest + got).split(b"\r\n")
        if len(self._idle_rest) > MAX_LINE:
            raise imaplib.IMAP4.abort(f"socket error: a line of over {MAX_LINE} bytes")
        return [_parse_untagged_response(line) for line in whole], bool(got)

    def idle_end(self) -> bool:
        """End IDLE; True when mail was announced as it ended. Raises on a dead
        connection."""
        with translated("IDLE"):
            early: list[Any] = []
            if self._idle_rest:  # the rest of a line begun: before the answer to DONE
                rest = self._c._imap._get_line()
                early = [_parse_untagged_response(self._idle_rest + rest)]
                self._idle_rest = b""
            _, late = self._c.idle_done()
        return _announces_mail(early) or _announces_mail(late)

    def socket(self) -> Any:
        """The connection's socket, to wait on (never to read or write)."""
        return self._c.socket()

    def wait_for_news(
        self, folder: str, seconds: float, stop: threading.Event, tick: float = 1.0
    ) -> bool:
        """IDLE on ``folder`` for up to ``seconds`` in this thread: True as soon as the
        server announces new mail, False on timeout or ``stop``. Servers drop IDLE
        after 30 minutes, so callers keep ``seconds`` under that and call again. (The
        service waits on many connections at once instead: see ``hub.Watcher``.)"""
        news = self.idle_start(folder)
        deadline = time.monotonic() + seconds
        try:
            while not news and not stop.is_set() and time.monotonic() < deadline:
                if not select.select([self.socket()], [], [], tick)[0]:
                    continue
                news, heard = self.idle_heard()
                if not heard:
                    break  # perhaps closed: ending IDLE tells, else IDLE starts again
        finally:
            late = self.idle_end()
        return news or late

    def quick_status(self, folder: str) -> tuple[int, int | None]:
        """(UIDVALIDITY, UIDNEXT) by STATUS: about 0.2 ms whatever the mailbox size,
        where a SELECT of 100k messages costs over 100 ms."""
        with translated("STATUS"):
            r = self._c.folder_status(folder, [b"UIDVALIDITY", b"UIDNEXT"])
        nxt = r.get(b"UIDNEXT")
        return int(r[b"UIDVALIDITY"]), int(nxt) if nxt is not None else None

    def uids_after(self, last_uid: int) -> list[int]:
        # "UID n:*" always includes the highest UID even when it is below n (RFC 3501
        # 6.4.8), so the answer is filtered.
        with translated("SEARCH"):
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
        with translated("SEARCH"):
            return sorted(self._search(criteria, charset=charset))

    def existing_uids(self, uids: Iterable[int]) -> set[int]:
        """Which of ``uids`` are still in the selected folder."""
        wanted = set(uids)
        if not wanted:
            return set()
        with translated("SEARCH"):
            return wanted & set(self._search(["UID", uid_set(wanted)]))

    def uids_since(self, day: date) -> list[int]:
        """UIDs since ``day`` (by INTERNALDATE, which the server keeps in its index, so
        no message file is opened)."""
        with translated("SEARCH"):
            return sorted(self._search(["SINCE", day]))

    def highest_uid(self) -> int:
        with translated("SEARCH"):
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
        for batch in batches(sorted(uids), FETCH_BATCH):
            with translated("FETCH"):
                data = self._fetch(uid_set(batch), parts)
            for uid in batch:
                item = data.get(uid)
                if item is None or b"INTERNALDATE" not in item:
                    continue  # expunged meanwhile, or an unsolicited FLAGS update
                if item[b"INTERNALDATE"] is None:
                    # Not "expunged": a fault of this message, which the pass reports
                    # and tries again, rather than skipping it for good.
                    raise MailboxError(f"the server sent no readable INTERNALDATE for uid {uid}")
                header = body_section(item, f"HEADER.FIELDS ({names})")
                flags = tuple(as_str(f) for f in item.get(b"FLAGS") or ())
                yield Fetched(
                    uid=uid, internaldate=item[b"INTERNALDATE"], header=header or b"", flags=flags
                )

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
            with translated("FETCH BODYSTRUCTURE"):
                structures = self._fetch(uid_set(unknown), ["BODYSTRUCTURE"])
        for uid in unknown:
            bs = structures.get(uid, {}).get(b"BODYSTRUCTURE")
            found = text_part(bs) if bs is not None else None
            if found:
                section, encoding, charset, subtype = found
                wanted.setdefault(section, []).append((uid, (encoding, charset, subtype)))
        out: dict[int, TextWindow] = {}
        for section, all_items in wanted.items():
            # Batches bound the memory a backlog's text windows take at once.
            for items in batches(all_items, TEXT_BATCH):
                self._text_batch(section, items, limit, out)
        return out

    def _text_batch(
        self,
        section: str,
        items: list[tuple[int, tuple[str, str, str]]],
        limit: int,
        out: dict[int, TextWindow],
    ) -> None:
        with translated("FETCH text"):
            data = self._fetch(
                uid_set(u for u, _ in items), ["UID", f"BODY.PEEK[{section}]<0.{limit}>"]
            )
        for uid, (encoding, charset, subtype) in items:
            raw = body_section(data.get(uid, {}), section)
            if raw is not None:
                out[uid] = TextWindow(raw[:limit], encoding, charset, subtype)
