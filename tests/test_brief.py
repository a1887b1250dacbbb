"""The pre-session brief's pure core: which session gets a brief and when, the contacts
since the previous session, the pattern against earlier intervals, and one key per
session (a moved session is another)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from inbox_guard.brief import content as brief
from inbox_guard.model import Client, Contact, Settings
from inbox_guard.schema import MainConfig
from inbox_guard.sessions import Sessions, between, parse_rrule

LONDON = ZoneInfo("Europe/London")
BASE: dict[str, Any] = {
    "timezone": "Europe/London",
    "therapist": {"name": "Alex", "email": "alex@example.org", "emergency_text": "Call 999."},
    "account": {"host": "localhost", "security": "plain", "username": "a", "password_env": "X"},
    "hours": {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
}
WEEKLY = Sessions(rule=parse_rrule("FREQ=WEEKLY;BYDAY=WE", datetime(2026, 9, 2, 10)))


def practice(sessions: Sessions = WEEKLY, include_subjects: bool = True) -> Settings:
    main = MainConfig.model_validate({**BASE, "agenda": {"include_subjects": include_subjects}})
    jane = Client(
        id="jane", name="Jane", emails=("jane@example.org",), active=True, sessions=sessions
    )
    return Settings(path=Path("config/inbox-guard.toml"), main=main, clients={"jane": jane})


def contact(received: datetime, n: int = 0, risk: bool = False, client: str = "jane") -> Contact:
    return Contact(
        key=f"k{received.timestamp():.0f}-{n}",
        client=client,
        mailbox="INBOX",
        uidvalidity=1,
        uid=n,
        received=received,
        address="jane@example.org",
        message_id=None,
        refs=(),
        subject=f"message {n}",
        draft=True,
        suppressed=None,
        window="w",
        session=None,
        agenda="a.md",
        risk=risk,
    )


WED_18_NOV = datetime(2026, 11, 18, 10, tzinfo=LONDON)
WED_25_NOV = datetime(2026, 11, 25, 10, tzinfo=LONDON)


def test_the_brief_holds_the_contacts_since_the_previous_session_risk_first() -> None:
    s = practice()
    contacts = [
        contact(datetime(2026, 11, 17, 23, 0, tzinfo=UTC), 1),  # before the 18th: not this one
        contact(datetime(2026, 11, 20, 22, 30, tzinfo=UTC), 2),
        contact(datetime(2026, 11, 22, 23, 40, tzinfo=UTC), 3, risk=True),
        contact(datetime(2026, 11, 23, 19, 0, tzinfo=UTC), 4),
    ]
    b = brief.brief_for(s.clients["jane"], WED_25_NOV, contacts, s)
    assert b is not None
    assert b.previous == WED_18_NOV and b.since == WED_18_NOV
    assert [line.subject for line in b.contacts] == ["message 3", "message 2", "message 4"]
    assert b.counts[0] == 3 and b.counts[1] == 1  # the week before had one
    assert b.late == 2  # 22:30 and 23:40; 19:00 is evening, not late at night
    assert b.send_at == WED_25_NOV - timedelta(minutes=60)
    assert brief.pattern_line(b) == (
        "3 out-of-hours contacts since the session of 18 Nov "
        "(the 4 intervals before: 1, 0, 0, 0); 2 late at night"
    )


def test_no_brief_for_a_client_without_contacts_since_the_previous_session() -> None:
    s = practice()
    old = [contact(datetime(2026, 11, 10, 23, 0, tzinfo=UTC))]
    assert brief.brief_for(s.clients["jane"], WED_25_NOV, old, s) is None


def test_subjects_only_with_agenda_include_subjects() -> None:
    s = practice(include_subjects=False)
    b = brief.brief_for(
        s.clients["jane"], WED_25_NOV, [contact(datetime(2026, 11, 20, 22, tzinfo=UTC))], s
    )
    assert b is not None and [line.subject for line in b.contacts] == [None]


def test_a_moved_session_gets_its_own_key_and_the_same_session_the_same() -> None:
    assert brief.brief_key("jane", WED_25_NOV) == brief.brief_key(
        "jane", WED_25_NOV.astimezone(UTC)
    )
    assert brief.brief_key("jane", WED_25_NOV) != brief.brief_key(
        "jane", WED_25_NOV + timedelta(hours=2)
    )
    assert brief.brief_key("jane", WED_25_NOV) != brief.brief_key("sam", WED_25_NOV)


def test_a_cancelled_session_rolls_its_contacts_into_the_next_interval() -> None:
    # Sessions on the 11th and 25th; the 18th was cancelled (not in the list).
    dates = (datetime(2026, 11, 11, 10), datetime(2026, 11, 25, 10))
    s = practice(Sessions(dates=dates))
    contacts = [
        contact(datetime(2026, 11, 13, 23, tzinfo=UTC), 1),
        contact(datetime(2026, 11, 20, 23, tzinfo=UTC), 2),
    ]
    b = brief.brief_for(s.clients["jane"], WED_25_NOV, contacts, s)
    assert b is not None and b.counts[0] == 2
    assert b.previous == datetime(2026, 11, 11, 10, tzinfo=LONDON)


def test_due_sends_before_the_session_and_skips_one_that_has_begun() -> None:
    s = practice()
    contacts = [contact(datetime(2026, 11, 20, 22, tzinfo=UTC))]
    send_at = WED_25_NOV - timedelta(minutes=60)
    send, skipped = brief.due(s, contacts, send_at - timedelta(minutes=5), send_at)
    assert [b.session for b in send] == [WED_25_NOV] and skipped == []
    # The service was down from before the send time until after the session began.
    send, skipped = brief.due(
        s, contacts, send_at - timedelta(minutes=5), WED_25_NOV + timedelta(minutes=10)
    )
    assert send == [] and [b.session for b in skipped] == [WED_25_NOV]
    # Nothing twice: the next check starts where this one ended.
    assert brief.due(s, contacts, send_at, send_at + timedelta(minutes=30)) == ([], [])


def test_across_the_clock_change_the_session_keeps_its_local_time() -> None:
    # Europe/London leaves summer time on Sunday 25 October 2026.
    s = practice()
    before, after = (
        datetime(2026, 10, 21, 10, tzinfo=LONDON),
        datetime(2026, 10, 28, 10, tzinfo=LONDON),
    )
    contacts = [contact(datetime(2026, 10, 25, 23, tzinfo=UTC))]
    b = brief.brief_for(s.clients["jane"], after, contacts, s)
    assert b is not None and b.previous == before
    assert b.session.hour == 10 and b.session.utcoffset() == timedelta(0)
    assert after.astimezone(UTC) - b.send_at.astimezone(UTC) == timedelta(hours=1)


ARRIVALS = st.lists(
    st.datetimes(
        min_value=datetime(2026, 9, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(arrivals=ARRIVALS)
def test_every_contact_belongs_to_exactly_one_interval(arrivals: list[datetime]) -> None:
    s = practice()
    contacts = [contact(t, i) for i, t in enumerate(arrivals)]
    sessions = between(
        WEEKLY,
        datetime(2026, 9, 1, tzinfo=UTC),
        datetime(2027, 1, 7, tzinfo=UTC),
        LONDON,
    )
    seen: dict[str, int] = {}
    for session in sessions[1:]:
        b = brief.brief_for(s.clients["jane"], session, contacts, s)
        for line in b.contacts if b else []:
            seen[line.key] = seen.get(line.key, 0) + 1
            assert b is not None and b.since <= line.local < b.session
    inside = [c for c in contacts if sessions[0] <= c.received < sessions[-1]]
    assert sorted(seen) == sorted(c.key for c in inside)
    assert set(seen.values()) <= {1}


@settings(max_examples=100, deadline=None)
@given(arrivals=ARRIVALS)
def test_earlier_counts_agree_with_the_earlier_briefs(arrivals: list[datetime]) -> None:
    s = practice()
    contacts = [contact(t, i) for i, t in enumerate(arrivals)]
    sessions = between(
        WEEKLY, datetime(2026, 9, 1, tzinfo=UTC), datetime(2027, 1, 7, tzinfo=UTC), LONDON
    )
    own = {}
    for session in sessions[1:]:
        b = brief.brief_for(s.clients["jane"], session, contacts, s)
        own[session] = b.counts[0] if b else 0
    for i, session in enumerate(sessions[6:], start=6):
        b = brief.brief_for(s.clients["jane"], session, contacts, s)
        if b is None:
            continue
        assert b.counts[1:] == [own[sessions[i - k]] for k in range(1, 5)]
