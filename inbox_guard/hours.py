"""Opening hours: is an instant inside them, and which closed stretch is it in?

Pure functions of an aware instant and a :class:`Schedule`. Comparisons are made on
local wall-clock time, which handles daylight saving without special cases: in the
skipped hour no instant exists, and both passes through a repeated hour read the same
wall clock, so they get the same answer.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal, get_args
from zoneinfo import ZoneInfo

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = get_args(Weekday)  # Monday first, as date.weekday()

_INTERVAL = re.compile(r"^([0-2]\d):([0-5]\d)-([0-2]\d):([0-5]\d)$")

# A stretch out of hours can be long (leave, a practice closed on weekends), but a
# schedule with no opening at all within this many days is treated as always closed.
_LOOK_BACK_DAYS = 800

# Dates a practitioner can mean: a year far off (9999-12-31) is a typo that would
# overflow later, when it meets a time zone or a horizon is added to it.
EARLIEST = date(2000, 1, 1)
LATEST = date(2100, 12, 31)
DATE_RANGE = f"dates from {EARLIEST} to {LATEST}"


def in_range(day: date) -> bool:
    """Whether ``day`` (or a datetime's date) is one inbox-guard accepts."""
    return EARLIEST <= day <= LATEST


@dataclass(frozen=True)
class Interval:
    """Half-open [start, end) in minutes after local midnight; end may be 1440."""

    start: int
    end: int

    def __str__(self) -> str:
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"


@dataclass(frozen=True)
class Schedule:
    tz: ZoneInfo
    # weekday (0 = Monday) -> sorted, non-overlapping intervals
    days: dict[int, tuple[Interval, ...]] = field(default_factory=dict)
    closed: tuple[tuple[date, date], ...] = ()

    def intervals_on(self, day: date) -> tuple[Interval, ...]:
        if any(first <= day <= last for first, last in self.closed):
            return ()
        return self.days.get(day.weekday(), ())


def parse_interval(text: str) -> Interval:
    """Parse ``"09:00-17:00"``; raises ValueError with a message a person can act on."""
    m = _INTERVAL.match(text)
    if not m:
        raise ValueError(f'{text!r} is not an interval like "09:00-17:00"')
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or h2 > 24 or (h2 == 24 and m2 != 0):
        raise ValueError(f"{text!r} has an hour out of range")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if end <= start:
        raise ValueError(f"{text!r} ends before it starts (intervals cannot cross midnight)")
    return Interval(start, end)


def parse_day(texts: list[str]) -> tuple[Interval, ...]:
    intervals = sorted((parse_interval(t) for t in texts), key=lambda i: i.start)
    for before, after in itertools.pairwise(intervals):
        if after.start < before.end:
            raise ValueError(f"intervals {before} and {after} overlap")
    return tuple(intervals)


def parse_closed(text: str) -> tuple[date, date]:
    """``"2026-12-24..2027-01-02"`` (inclusive) or a single ``"2027-04-03"``."""
    first_s, sep, last_s = text.partition("..")
    try:
        first = date.fromisoformat(first_s)
        last = date.fromisoformat(last_s) if sep else first
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date (YYYY-MM-DD) or a range (YYYY-MM-DD..YYYY-MM-DD)"
        ) from None
    if last < first:
        raise ValueError(f"{text!r} ends before it starts")
    if not (in_range(first) and in_range(last)):
        raise ValueError(f"{text!r} is out of range ({DATE_RANGE})")
    return first, last


def _minutes(local: datetime) -> float:
    return local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def is_open(instant: datetime, schedule: Schedule) -> bool:
    """True when ``instant`` (aware) falls inside an opening interval."""
    local = instant.astimezone(schedule.tz)
    now = _minutes(local)
    return any(i.start <= now < i.end for i in schedule.intervals_on(local.date()))


def is_out_of_hours(instant: datetime, schedule: Schedule) -> bool:
    return not is_open(instant, schedule)


def window_key(instant: datetime, schedule: Schedule) -> str:
    """Name the closed stretch that ``instant`` lies in, by when it began.

    Two out-of-hours instants share a key exactly when no opening time lies between
    them. The key is the local wall-clock time at which the practice last closed
    (``"2026-11-20T17:00"``), or ``"always"`` if it has not opened within ~2 years.
    """
    local = instant.astimezone(schedule.tz)
    now = _minutes(local)
    day = local.date()
    for back in range(_LOOK_BACK_DAYS):
        d = day - timedelta(days=back)
        ends = [i.end for i in schedule.intervals_on(d) if back > 0 or i.end <= now]
        if ends:
            end = max(ends)
            if end == 24 * 60:
                return f"{(d + timedelta(days=1)).isoformat()}T00:00"
            return f"{d.isoformat()}T{_hhmm(end)}"
    return "always"
