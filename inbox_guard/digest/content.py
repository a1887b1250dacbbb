"""The daily digest, as data: pure functions of stored contacts, settings and ``now``.

Risk items first; then, per client, each out-of-hours contact since the last digest,
whether a holding reply was drafted, the next session, and the pattern of the last
28 days by hour of day. Rendering is :mod:`.render`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..model import Contact, Problem, Settings, Unread
from ..sessions import next_session

PATTERN_DAYS = 28
STRIP_START = 12  # the day's strip runs noon to noon, so each night is one stretch
LEVELS = 8  # heights of a bar in the strip, the 28-day busiest hour being the highest


def strip(counts: Mapping[int, int]) -> list[tuple[int, int]]:
    """(local hour, contacts) for all 24 hours in the order of the strip: noon, the
    evening, the night, the morning; hours without contacts too, so a cluster late at
    night shows as one."""
    return [((STRIP_START + i) % 24, counts.get((STRIP_START + i) % 24, 0)) for i in range(24)]


def level(n: int, peak: int) -> int:
    """A bar's height, 0 to LEVELS, in proportion to the busiest hour (``peak``); any
    contact at all is at least 1, so a single late message is never invisible."""
    return 0 if n <= 0 or peak <= 0 else max(1, round(n * LEVELS / peak))


@dataclass(frozen=True)
class Item:
    key: str
    client: str
    name: str
    local: datetime
    subject: str | None
    draft: bool
    suppressed: str | None
    risk: bool
    # With a draft: is it still in Drafts (True), sent or deleted since (False), or
    # could Drafts not be looked at (None)?
    in_drafts: bool | None = None


@dataclass(frozen=True)
class Unfinished:
    """A message inbox-guard could not finish with after several passes: listed in
    every digest until done (it is retried daily). ``name`` is None for a message
    that could not even be read (its sender is then unknown)."""

    local: datetime | None
    client: str | None
    name: str | None
    uid: int
    risk: bool
    error: str
    attempts: int


@dataclass(frozen=True)
class ClientSummary:
    client: str
    name: str
    items: list[Item]
    next_session: datetime | None
    # (local hour, contacts) over PATTERN_DAYS, hours with any, in the strip's order
    # (a night's 23h before its 00h)
    hours: list[tuple[int, int]]
    total: int  # contacts over PATTERN_DAYS

    @property
    def peak(self) -> int:
        return max((n for _, n in self.hours), default=0)

    @property
    def strip(self) -> list[tuple[int, int, int]]:
        """(local hour, contacts, bar height 0 to LEVELS) for all 24 hours, noon to noon."""
        return [(h, n, level(n, self.peak)) for h, n in strip(dict(self.hours))]

    @property
    def sparkline(self) -> str:
        """The strip in one line of text: a dot for a quiet hour, a block by height."""
        return "".join(" ▁▂▃▄▅▆▇█"[lv] if lv else "·" for _, _, lv in self.strip)


@dataclass(frozen=True)
class Digest:
    now: datetime
    since: datetime | None
    risk: list[Item]
    clients: list[ClientSummary] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # the service's, since the last one
    unfinished: list[Unfinished] = field(default_factory=list)  # risk first

    @property
    def keys(self) -> list[str]:
        return [i.key for c in self.clients for i in c.items]

    @property
    def empty(self) -> bool:
        return not self.clients

    @property
    def count(self) -> int:
        return len(self.keys)


def _item(c: Contact, settings: Settings, with_subject: bool, in_drafts: set[str] | None) -> Item:
    client = settings.clients.get(c.client)
    return Item(
        key=c.key,
        client=c.client,
        name=client.name if client else c.client,
        local=c.received.astimezone(settings.tz),
        subject=c.subject if with_subject and c.subject else None,
        draft=c.draft,
        suppressed=c.suppressed,
        risk=c.risk,
        in_drafts=(c.key in in_drafts) if c.draft and in_drafts is not None else None,
    )


def unfinished(
    contacts: list[Contact], unread: list[Unread], settings: Settings
) -> list[Unfinished]:
    """What could not be completed, risk first, then oldest first."""
    out = []
    for c in contacts:
        client = settings.clients.get(c.client)
        out.append(
            Unfinished(
                local=c.received.astimezone(settings.tz),
                client=c.client,
                name=client.name if client else c.client,
                uid=c.uid,
                risk=c.risk,
                error=c.last_error or "unknown",
                attempts=c.attempts,
            )
        )
    for u in unread:
        out.append(
            Unfinished(
                local=u.received.astimezone(settings.tz) if u.received else None,
                client=None,
                name=None,
                uid=u.uid,
                risk=False,
                error=u.error,
                attempts=u.attempts,
            )
        )
    return sorted(out, key=lambda u: (not u.risk, u.local is None, u.local or 0, u.uid))


def build(
    new: list[Contact],
    recent: list[Contact],
    settings: Settings,
    now: datetime,
    since: datetime | None,
    problems: list[Problem] | None = None,
    stuck: list[Unfinished] | None = None,
    in_drafts: set[str] | None = None,
) -> Digest:
    """``new``: contacts not yet digested; ``recent``: all contacts of the last 28 days;
    ``stuck``: what could not be completed (see :func:`unfinished`); ``in_drafts``: the
    keys of the contacts whose holding reply is still in Drafts (None: not known)."""
    with_subject = settings.main.digest.include_subjects
    items = [_item(c, settings, with_subject, in_drafts) for c in new]
    cutoff = now - timedelta(days=PATTERN_DAYS)
    clients = []
    for client_id in sorted({i.client for i in items}):
        mine = [i for i in items if i.client == client_id]
        pattern = Counter(
            c.received.astimezone(settings.tz).hour
            for c in recent
            if c.client == client_id and c.received >= cutoff
        )
        client = settings.clients.get(client_id)
        clients.append(
            ClientSummary(
                client=client_id,
                name=mine[0].name,
                items=mine,
                next_session=next_session(client.sessions, now, settings.tz) if client else None,
                hours=sorted(pattern.items(), key=lambda hn: (hn[0] - STRIP_START) % 24),
                total=sum(pattern.values()),
            )
        )
    return Digest(
        now=now,
        since=since,
        risk=[i for i in items if i.risk],
        clients=clients,
        problems=list(problems or []),
        unfinished=list(stuck or []),
    )
