"""A client's sessions: the first one starting after a given instant.

Sessions are local wall-clock times in the practice's zone, either a list of dates or
an RFC 5545 RRULE expanded by dateutil. A weekly 10:00 session stays at 10:00 local
across daylight-saving changes.
"""

from __future__ import annotations

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
        for seen, occ in enumerate(sessions.rule.xafter(after_local - _SLACK, inc=True)):
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
