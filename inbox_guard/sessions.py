"""A client's sessions: the first one starting after a given instant.

Sessions are local wall-clock times in the practice's zone, either a list of dates or
an RFC 5545 RRULE expanded by dateutil. A weekly 10:00 session stays at 10:00 local
across daylight-saving changes.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from dateutil.rrule import DAILY, rrule, rrulestr

# A repeated local hour can make naive and aware order disagree by up to an hour,
# so the RRULE search starts a little early and filters on aware times.
_SLACK = timedelta(hours=3)
_MAX_OCCURRENCES = 10_000
# A session further ahead than this is no "next session" (and a rule walking towards
# the year 9999 would overflow when converted to UTC).
_SEARCH_AHEAD = timedelta(days=10 * 366)
# Sessions repeat at most daily, with this many start times a day at most: a rule
# such as FREQ=SECONDLY would make every lookup walk millions of occurrences.
MAX_TIMES_A_DAY = 4


@dataclass(frozen=True)
class Sessions:
    """Either ``rule`` (with its naive local start) or ``dates`` (naive local)."""

    rule: rrule | None = None
    dates: tuple[datetime, ...] = ()


def parse_rrule(text: str, start: datetime) -> rrule:
    """Parse an RRULE anchored at naive local ``start``; ValueError when invalid."""
    body = text.removeprefix("RRULE:")
    try:
        rule = rrulestr(body, dtstart=start, cache=True)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{text!r} is not a valid RRULE ({exc})") from None
    if not isinstance(rule, rrule):
        raise ValueError(f"{text!r} must be a single RRULE")
    if rule._freq > DAILY:  # HOURLY, MINUTELY, SECONDLY
        raise ValueError(
            f"{text!r} repeats more often than daily; sessions use FREQ=DAILY, WEEKLY, "
            "MONTHLY or YEARLY"
        )
    times = len(rule._timeset or ())
    if times > MAX_TIMES_A_DAY:
        raise ValueError(
            f"{text!r} gives {times} start times a day (BYHOUR, BYMINUTE, BYSECOND); "
            f"at most {MAX_TIMES_A_DAY}"
        )
    return rule


class _Expansion:
    """A rule's occurrences from its start, expanded once and a year at a time as
    later ones are asked for, so that each lookup is a bisection instead of a walk
    from the rule's start (a weekly rule two years old: 100 steps a lookup)."""

    def __init__(self, rule: rrule) -> None:
        self._rule = rule
        self._seen: list[datetime] = []
        self._until: datetime | None = None  # every occurrence up to here is in _seen
        self._over = False  # the rule has no occurrences after _until
        self._lock = threading.Lock()

    def _grow(self, to: datetime) -> None:
        with self._lock:
            while not self._over and (self._until is None or self._until < to):
                start = self._until if self._until is not None else datetime.min
                end = max(to, start) + timedelta(days=366)
                if end.year > 9998:
                    end = datetime(9998, 12, 31)
                more = self._rule.between(start, end, inc=True)
                if self._seen and more and more[0] == self._seen[-1]:
                    more = more[1:]
                self._seen.extend(more)
                self._until = end
                last = self._rule.after(end)
                self._over = last is None or end.year >= 9998

    def since(self, start: datetime) -> Iterator[datetime]:
        """Occurrences at or after naive local ``start``, in order."""
        self._grow(start)
        i = bisect.bisect_left(self._seen, start)
        while True:
            while i >= len(self._seen):
                if self._over or self._until is None:
                    return
                self._grow(self._until + timedelta(days=1))
            yield self._seen[i]
            i += 1


@lru_cache(maxsize=1024)
def _expanded(rule: rrule) -> _Expansion:
    return _Expansion(rule)


def _aware(naive: datetime, tz: ZoneInfo) -> datetime:
    # In a skipped hour (spring forward) fold=0 maps forward the way clocks do.
    return naive.replace(tzinfo=tz)


@lru_cache(maxsize=4096)
def next_session(sessions: Sessions, after: datetime, tz: ZoneInfo) -> datetime | None:
    """The first session starting strictly after ``after`` (aware), as aware local time.

    Cached: a first pass over a backlog asks the same question (the session after
    ``now``) for most of its messages, and an RRULE is walked from its start.
    """
    # Compared in UTC: Python compares two datetimes sharing a tzinfo by wall clock,
    # ignoring fold, which is wrong inside a repeated hour.
    after_utc = after.astimezone(UTC)
    after_local = after.astimezone(tz).replace(tzinfo=None)
    candidates: list[datetime] = []
    for d in sorted(sessions.dates):
        a = _aware(d, tz)
        if a.astimezone(UTC) > after_utc:
            candidates.append(a)
            break
    if sessions.rule is not None:
        for seen, occ in enumerate(_expanded(sessions.rule).since(after_local - _SLACK)):
            if occ - after_local > _SEARCH_AHEAD:
                break
            a = _aware(occ, tz)
            if a.astimezone(UTC) > after_utc:
                candidates.append(a)
                break
            if seen > _MAX_OCCURRENCES:
                break
    return min(candidates, key=lambda c: c.astimezone(UTC)) if candidates else None


def between(sessions: Sessions, start: datetime, end: datetime, tz: ZoneInfo) -> list[datetime]:
    """Every session starting in [``start``, ``end``), in order, as aware local times."""
    out: list[datetime] = []
    after = start - timedelta(microseconds=1)
    while len(out) < _MAX_OCCURRENCES:
        nxt = next_session(sessions, after, tz)
        if nxt is None or nxt.astimezone(UTC) >= end.astimezone(UTC):
            break
        out.append(nxt)
        after = nxt
    return out
