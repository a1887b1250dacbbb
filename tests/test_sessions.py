"""Next session: RRULE or dates, strictly after an instant, local across DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inbox_guard.sessions import Sessions, next_session, parse_rrule

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")


def weekly(day: str = "WE", start: datetime = datetime(2026, 9, 2, 10, 0)) -> Sessions:
    return Sessions(rule=parse_rrule(f"FREQ=WEEKLY;BYDAY={day}", start))


def test_weekly_rule_gives_the_next_wednesday() -> None:
    sunday_night = datetime(2026, 11, 22, 23, 40, tzinfo=LONDON)
    assert next_session(weekly(), sunday_night, LONDON) == datetime(
        2026, 11, 25, 10, 0, tzinfo=LONDON
    )


def test_a_session_starting_exactly_now_is_not_next() -> None:
    at = datetime(2026, 11, 25, 10, 0, tzinfo=LONDON)
    assert next_session(weekly(), at, LONDON) == datetime(2026, 12, 2, 10, 0, tzinfo=LONDON)


def test_weekly_session_stays_at_local_time_across_dst() -> None:
    # 10:00 London is 09:00 UTC in summer and 10:00 UTC in winter.
    before = next_session(weekly(), datetime(2026, 10, 20, tzinfo=UTC), LONDON)
    after = next_session(weekly(), datetime(2026, 10, 27, tzinfo=UTC), LONDON)
    assert before is not None and after is not None
    assert before.astimezone(UTC).hour == 9 and after.astimezone(UTC).hour == 10
    assert (before.hour, after.hour) == (10, 10)


def test_date_list_and_exhausted_list() -> None:
    s = Sessions(dates=(datetime(2026, 11, 25, 10), datetime(2026, 12, 2, 10)))
    assert next_session(s, datetime(2026, 11, 26, tzinfo=LONDON), LONDON) == datetime(
        2026, 12, 2, 10, tzinfo=LONDON
    )
    assert next_session(s, datetime(2026, 12, 3, tzinfo=LONDON), LONDON) is None
    assert next_session(Sessions(), datetime(2026, 12, 3, tzinfo=LONDON), LONDON) is None


def test_finite_rule_ends() -> None:
    s = Sessions(rule=parse_rrule("FREQ=WEEKLY;COUNT=2", datetime(2026, 11, 2, 18, 0)))
    assert next_session(s, datetime(2026, 11, 20, tzinfo=NEW_YORK), NEW_YORK) is None


def test_session_in_repeated_hour_after_first_pass_through_it() -> None:
    # New York falls back on 2026-11-01: 01:30 happens twice. A session at 01:30
    # (first occurrence) is "after" 01:10 of the first pass, not after 01:40 of the second.
    s = Sessions(dates=(datetime(2026, 11, 1, 1, 30),))
    first_pass = datetime(2026, 11, 1, 1, 10, tzinfo=NEW_YORK)
    second_pass = datetime(2026, 11, 1, 1, 40, tzinfo=NEW_YORK).replace(fold=1)
    assert next_session(s, first_pass, NEW_YORK) is not None
    assert next_session(s, second_pass, NEW_YORK) is None


@pytest.mark.parametrize("bad", ["FREQ=FORTNIGHTLY", "BYDAY=XX;FREQ=WEEKLY", "nonsense"])
def test_bad_rrules_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="RRULE"):
        parse_rrule(bad, datetime(2026, 9, 2, 10))


@given(
    after=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
    ),
    day=st.sampled_from(["MO", "TU", "WE", "TH", "FR", "SA", "SU"]),
)
def test_next_weekly_session_is_after_and_within_a_week(after: datetime, day: str) -> None:
    nxt = next_session(weekly(day, datetime(2025, 12, 29, 10, 0)), after, LONDON)
    assert nxt is not None
    assert after < nxt.astimezone(UTC) <= after + timedelta(days=7, hours=1)
    assert (nxt.hour, nxt.minute) == (10, 0)


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ("FREQ=SECONDLY", "repeats more often than daily"),
        ("FREQ=MINUTELY;INTERVAL=1440", "repeats more often than daily"),
        ("RRULE:FREQ=HOURLY;BYHOUR=10", "repeats more often than daily"),
        ("freq=hourly", "repeats more often than daily"),
        ("FREQ=DAILY;BYHOUR=8,9,10,11,12", "gives 5 start times a day"),
        ("FREQ=WEEKLY;BYMINUTE=0,15,30;BYSECOND=0,30", "gives 6 start times a day"),
    ],
)
def test_rules_finer_than_daily_are_refused(rule: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_rrule(rule, datetime(2026, 11, 16, 7, 59))


def test_up_to_four_sessions_a_day_are_allowed() -> None:
    s = Sessions(
        rule=parse_rrule("FREQ=WEEKLY;BYDAY=MO;BYHOUR=9,11,14,16", datetime(2026, 11, 16, 9))
    )
    assert next_session(s, datetime(2026, 11, 16, 12, tzinfo=LONDON), LONDON) == datetime(
        2026, 11, 16, 14, tzinfo=LONDON
    )


def test_a_session_in_the_year_9999_is_no_next_session() -> None:
    # Every 7973 years from New Year's Eve 2026 at 22:00 New York: next in 9999, whose
    # 22:00 in New York is already the year 10000 in UTC.
    s = Sessions(rule=parse_rrule("FREQ=YEARLY;INTERVAL=7973", datetime(2026, 12, 31, 22)))
    assert next_session(s, datetime(2027, 1, 1, tzinfo=NEW_YORK), NEW_YORK) is None


def test_a_next_session_more_than_ten_years_ahead_is_none() -> None:
    s = Sessions(rule=parse_rrule("FREQ=YEARLY;INTERVAL=11", datetime(2026, 1, 5, 10)))
    assert next_session(s, datetime(2026, 2, 1, tzinfo=LONDON), LONDON) is None
    s = Sessions(rule=parse_rrule("FREQ=YEARLY;INTERVAL=9", datetime(2026, 1, 5, 10)))
    assert next_session(s, datetime(2026, 2, 1, tzinfo=LONDON), LONDON) == datetime(
        2035, 1, 5, 10, tzinfo=LONDON
    )


@settings(max_examples=60, deadline=None)
@given(
    freq=st.sampled_from(["DAILY", "WEEKLY", "MONTHLY", "YEARLY"]),
    interval=st.integers(min_value=1, max_value=20_000),
    byday=st.sampled_from(["", ";BYDAY=MO", ";BYDAY=TU,FR"]),
    start=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 12, 31)),
    after=st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 12, 31),
        timezones=st.sampled_from([UTC, LONDON, NEW_YORK]),
    ),
    tz=st.sampled_from([LONDON, NEW_YORK, ZoneInfo("Pacific/Kiritimati")]),
)
def test_any_accepted_rule_gives_a_later_session_or_none(
    freq: str, interval: int, byday: str, start: datetime, after: datetime, tz: ZoneInfo
) -> None:
    if freq == "DAILY" and byday:
        byday = ""  # a daily rule with an interval can skip every listed weekday forever
    s = Sessions(rule=parse_rrule(f"FREQ={freq};INTERVAL={interval}{byday}", start))
    nxt = next_session(s, after, tz)
    if nxt is not None:
        assert after < nxt <= after + timedelta(days=10 * 366 + 1)


def walked(sessions: Sessions, after: datetime, tz: ZoneInfo) -> datetime | None:
    """The oracle: walk the rule from its start (dateutil's own ``xafter``)."""
    assert sessions.rule is not None
    after_utc = after.astimezone(UTC)
    start = after.astimezone(tz).replace(tzinfo=None) - timedelta(hours=3)
    for occ in sessions.rule.xafter(start, inc=True):
        if occ - start > timedelta(days=10 * 366):
            return None
        found: datetime = occ.replace(tzinfo=tz)
        if found.astimezone(UTC) > after_utc:
            return found
    return None


@settings(max_examples=300, deadline=None)
@given(
    rule=st.sampled_from(
        [
            "FREQ=WEEKLY;BYDAY=WE",
            "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH",
            "FREQ=DAILY;BYHOUR=8,20",
            "FREQ=MONTHLY;BYMONTHDAY=31",
            "FREQ=WEEKLY;COUNT=30",
            "FREQ=WEEKLY;UNTIL=20270301T000000",
            "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29",
        ]
    ),
    start=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
    asks=st.lists(
        st.datetimes(min_value=datetime(2015, 1, 1), max_value=datetime(2045, 1, 1)),
        min_size=1,
        max_size=6,
    ),
    tz=st.sampled_from([LONDON, NEW_YORK]),
)
def test_the_expanded_rule_answers_as_walking_it_would(
    rule: str, start: datetime, asks: list[datetime], tz: ZoneInfo
) -> None:
    """Lookups bisect a rule expanded a year at a time; in any order of questions,
    the answers are those of walking the rule from its start."""
    sessions = Sessions(rule=parse_rrule(rule, start.replace(microsecond=0)))
    for ask in asks:
        after = ask.replace(tzinfo=tz)
        assert next_session(sessions, after, tz) == walked(sessions, after, tz)
