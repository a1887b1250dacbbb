"""The pre-session brief, as data: before a client's session, the out-of-hours contacts
since their previous session and the pattern they make, so the practitioner can bring
the way the client reached out into the room.

Pure: sessions, contacts, settings and ``now`` in; no clock, no store, no mailbox. A
brief belongs to one session of one client, named by a key derived from the client and
the session's start, so the same session never gets two briefs and a moved session
gets its own. Sending it, exactly once, is the service's job.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from ..model import Client, Contact, Settings
from ..sessions import between

MINUTES_BEFORE = 60  # a brief is due this long before its session
INTERVALS_BACK = 4  # earlier intervals the pattern compares this one with
LATE_NIGHT = (22, 6)  # from 22:00 to 06:00 local time counts as late at night
FIRST_INTERVAL = timedelta(days=28)  # before a client's first session: this far back
LOOK_BACK = timedelta(days=400)  # how far back earlier sessions are looked for


def late_at_night(local: datetime) -> bool:
    start, end = LATE_NIGHT
    return local.hour >= start or local.hour < end


@dataclass(frozen=True)
class Line:
    """One contact in a brief."""

    local: datetime
    subject: str | None
    risk: bool
    draft: bool
    suppressed: str | None  # why no draft, when there is none
    key: str  # the contact's, to look for its draft in Drafts


@dataclass(frozen=True)
class Brief:
    client: str
    name: str
    session: datetime  # aware, local
    previous: datetime | None  # the session before, if any
    since: datetime  # the start of this interval (the previous session, or 28 days back)
    send_at: datetime
    contacts: list[Line]  # risk first, then in order of arrival
    counts: list[int]  # contacts this interval, then each earlier one, most recent first
    late: int  # of this interval's contacts, how many late at night
    hours: dict[int, int]  # this interval's contacts by local hour

    @property
    def key(self) -> str:
        return brief_key(self.client, self.session)

    def message_id(self, settings: Settings) -> str:
        return f"<inbox-guard.brief.{self.key}@{settings.mail_domain}>"


def brief_key(client: str, session: datetime) -> str:
    """Stable for one session of one client; another start (a move) is another key."""
    basis = f"{client}\x00{session.astimezone(UTC).isoformat()}".encode()
    return hashlib.sha256(basis).hexdigest()[:24]


def brief_for(
    client: Client,
    session: datetime,
    contacts: list[Contact],
    settings: Settings,
    minutes_before: int = MINUTES_BEFORE,
) -> Brief | None:
    """The brief for ``session`` of ``client``; None when the client had no
    out-of-hours contact since their previous session (nothing to bring up)."""
    tz = settings.tz
    earlier = between(client.sessions, session - LOOK_BACK, session, tz)
    bounds = [*earlier[-(INTERVALS_BACK + 1) :], session]  # oldest first, ending at session
    previous = earlier[-1] if earlier else None
    since = previous or session - FIRST_INTERVAL
    mine = sorted((c for c in contacts if c.client == client.id), key=lambda c: (c.received, c.key))
    now_interval = [c for c in mine if since <= c.received < session]
    if not now_interval:
        return None
    counts = [len(now_interval)]
    for start, end in reversed(list(pairwise(bounds[:-1]))):  # the earlier intervals
        counts.append(sum(1 for c in mine if start <= c.received < end))
    lines = [
        Line(
            local=c.received.astimezone(tz),
            subject=c.subject if settings.main.agenda.include_subjects else None,
            risk=c.risk,
            draft=c.draft,
            suppressed=c.suppressed,
            key=c.key,
        )
        for c in now_interval
    ]
    lines.sort(key=lambda line: not line.risk)  # stable: risk first, each in order
    return Brief(
        client=client.id,
        name=client.name,
        session=session.astimezone(tz),
        previous=previous.astimezone(tz) if previous else None,
        since=since.astimezone(tz),
        send_at=session - timedelta(minutes=minutes_before),
        contacts=lines,
        counts=counts,
        late=sum(1 for line in lines if late_at_night(line.local)),
        hours=dict(Counter(line.local.hour for line in lines)),
    )


def due(
    settings: Settings,
    contacts: list[Contact],
    after: datetime,
    now: datetime,
    minutes_before: int = MINUTES_BEFORE,
) -> tuple[list[Brief], list[Brief]]:
    """The briefs whose send time falls in (``after``, ``now``]: those whose session
    has not begun are to be sent now; those whose session has begun (the service was
    down at the time) are skipped, to be noted in the digest. ``contacts`` must reach
    back far enough (:data:`LOOK_BACK`) for the earlier intervals."""
    lead = timedelta(minutes=minutes_before)
    send: list[Brief] = []
    skipped: list[Brief] = []
    for client in settings.clients.values():
        if not client.active:
            continue
        window_end = now + lead + timedelta(microseconds=1)  # a send time at now is due
        for session in between(client.sessions, after + lead, window_end, settings.tz):
            if not after < session - lead <= now:
                continue  # a repeated local hour: compared in UTC
            brief = brief_for(client, session, contacts, settings, minutes_before)
            if brief is None:
                continue
            (send if session > now else skipped).append(brief)
    return sorted(send, key=lambda b: b.session), sorted(skipped, key=lambda b: b.session)


def pattern_line(brief: Brief) -> str:
    """One factual line for the top of an agenda file and the brief."""
    n = brief.counts[0]
    since = (
        f"since the session of {brief.previous:%-d %b}"
        if brief.previous
        else f"in the {FIRST_INTERVAL.days} days before the first session"
    )
    line = f"{n} out-of-hours contact{'s' if n != 1 else ''} {since}"
    if len(brief.counts) > 1:
        line += f" (the {len(brief.counts) - 1} intervals before: "
        line += ", ".join(str(c) for c in brief.counts[1:]) + ")"
    if brief.late:
        line += f"; {brief.late} late at night"
    return line
