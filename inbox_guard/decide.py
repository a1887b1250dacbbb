"""The decision: is this an out-of-hours client message, and what do we do with it?

Pure functions of the parsed headers, the arrival time (IMAP INTERNALDATE), the
settings and ``now``. Nothing here touches the network, the disk or the clock; the
triage pass does what these functions say and records it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from . import hours, rules
from .model import Client, Settings
from .sessions import next_session


@dataclass(frozen=True)
class Arrival:
    """One message as the mailbox reports it."""

    uid: int
    received: datetime  # INTERNALDATE, aware
    headers: rules.Headers
    flags: tuple[str, ...] = ()  # as the pass found them

    @property
    def flagged(self) -> bool:
        """Flagged before the pass saw it (by the practitioner, or a rule of theirs)."""
        return any(f.lower() == "\\flagged" for f in self.flags)


@dataclass(frozen=True)
class Candidate:
    """Out-of-hours mail from a known client."""

    arrival: Arrival
    client: Client
    address: str  # the client address that matched; the draft goes To it
    ignored: str | None  # "auto-submitted" | "mailing-list" | "bounce" | None


@dataclass(frozen=True)
class Decision:
    uid: int
    client: str
    received: datetime
    address: str
    draft: bool
    suppressed: str | None  # "not-addressed" | "duplicate" | "window" | "off" | None
    window: str
    session: datetime | None
    risk: bool
    reply_from: str  # the practitioner's address the client wrote to; the draft's From


def classify(arrival: Arrival, settings: Settings) -> Candidate | None:
    """Who and when: None for anything that is not out-of-hours client mail."""
    addr = arrival.headers.from_addr
    client = settings.client_by_email.get(addr) if addr else None
    if client is None or addr is None:
        return None
    if hours.is_open(arrival.received, settings.schedule_for(client)):
        return None
    return Candidate(arrival, client, addr, rules.machine_reason(arrival.headers))


def _suppression(
    c: Candidate,
    settings: Settings,
    window: str,
    drafted: set[tuple[str, str]],
    duplicate: bool,
) -> str | None:
    mode = settings.main.triage.drafts
    if not set(c.arrival.headers.recipients) & set(settings.main.therapist.all_addresses):
        return "not-addressed"
    if duplicate:
        return "duplicate"
    if mode == "per-window" and (c.client.id, window) in drafted:
        return "window"
    if mode == "off" or c.client.notes_only:
        return "off"
    return None


def plan(
    candidates: Iterable[Candidate],
    settings: Settings,
    now: datetime,
    drafted: Iterable[tuple[str, str]] = (),
    risky: Mapping[int, bool] | None = None,
    drafted_ids: Iterable[str] = (),
    copies: Iterable[int] = (),
) -> list[Decision]:
    """Decide every candidate that is not machine-written, in order of arrival.

    ``drafted`` holds the (client id, window) pairs that already have a draft, from
    earlier passes; drafts planned here are added as they are decided, so one pass
    never plans two drafts for one client's window. Likewise ``drafted_ids``, the
    Message-IDs that have a draft: a message delivered twice, or sent again, is marked
    and noted each time it arrives but drafted at most once. ``copies`` are the UIDs
    of second and later copies of one message (same Message-ID and arrival time).
    """
    done = set(drafted)
    done_ids = set(drafted_ids)
    later_copies = set(copies)
    out = []
    for c in sorted(candidates, key=lambda c: (c.arrival.received, c.arrival.uid)):
        if c.ignored:
            continue
        window = hours.window_key(c.arrival.received, settings.schedule_for(c.client))
        mid = c.arrival.headers.message_id
        duplicate = c.arrival.uid in later_copies or (mid is not None and mid in done_ids)
        suppressed = _suppression(c, settings, window, done, duplicate)
        if suppressed is None:
            done.add((c.client.id, window))
            if mid is not None:
                done_ids.add(mid)
        after = max(c.arrival.received, now)
        mine = settings.main.therapist.all_addresses
        wrote_to = next(
            (a for a in c.arrival.headers.recipients if a in mine), settings.main.therapist.email
        )
        out.append(
            Decision(
                uid=c.arrival.uid,
                client=c.client.id,
                received=c.arrival.received,
                address=c.address,
                draft=suppressed is None,
                suppressed=suppressed,
                window=window,
                session=next_session(c.client.sessions, after, settings.tz),
                risk=bool(risky and risky.get(c.arrival.uid)),
                reply_from=wrote_to,
            )
        )
    return out
