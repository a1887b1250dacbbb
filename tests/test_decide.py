"""The decision, as pure code: who, when, machine mail, suppression, sessions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from inbox_guard import rules, schema
from inbox_guard.decide import Arrival, classify, plan
from inbox_guard.model import Client, Settings
from inbox_guard.schema import MainConfig
from inbox_guard.sessions import Sessions, parse_rrule

BASE: dict[str, Any] = {
    "timezone": "Europe/London",
    "therapist": {
        "name": "Alex",
        "email": "alex@example.org",
        "addresses": ["practice@example.org"],
        "emergency_text": "Call 999.",
    },
    "account": {"host": "localhost", "security": "plain", "username": "a", "password_env": "X"},
    "hours": {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
}


def settings(drafts: str = "per-window") -> Settings:
    main = MainConfig.model_validate({**BASE, "triage": {"drafts": drafts}})
    jane = Client(
        id="jane",
        name="Jane",
        emails=("jane@example.org",),
        active=True,
        sessions=Sessions(rule=parse_rrule("FREQ=WEEKLY;BYDAY=WE", datetime(2026, 9, 2, 10))),
    )
    pat = Client(
        id="pat", name="Pat", emails=("pat@example.com",), active=False, sessions=Sessions()
    )
    return Settings(
        path=Path("config/inbox-guard.toml"), main=main, clients={"jane": jane, "pat": pat}
    )


def arrival(
    uid: int,
    when: datetime,
    sender: str = "jane@example.org",
    to: str = "alex@example.org",
    extra: str = "",
) -> Arrival:
    raw = f"From: {sender}\r\nTo: {to}\r\nSubject: s{uid}\r\n{extra}".encode()
    return Arrival(uid, when, rules.parse(raw))


SUNDAY = datetime(2026, 11, 22, 23, 40, tzinfo=UTC)
MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_in_hours_unknown_inactive_and_own_mail_are_not_candidates() -> None:
    s = settings()
    assert classify(arrival(1, MONDAY_NOON), s) is None
    assert classify(arrival(2, SUNDAY, sender="stranger@example.org"), s) is None
    assert classify(arrival(3, SUNDAY, sender="pat@example.com"), s) is None
    assert classify(arrival(4, SUNDAY, sender="alex@example.org"), s) is None


def test_out_of_hours_client_mail_is_drafted_and_goes_to_next_session() -> None:
    s = settings()
    c = classify(arrival(1, SUNDAY), s)
    assert c is not None and c.ignored is None
    [d] = plan([c], s, now=SUNDAY)
    assert (d.client, d.draft, d.suppressed, d.address) == ("jane", True, None, "jane@example.org")
    assert d.session is not None and d.session.isoformat() == "2026-11-25T10:00:00+00:00"


def test_next_session_counts_from_now_when_now_is_later() -> None:
    s = settings()
    c = classify(arrival(1, SUNDAY), s)
    assert c is not None
    [d] = plan([c], s, now=datetime(2026, 11, 25, 10, 30, tzinfo=UTC))
    assert d.session is not None and d.session.date().isoformat() == "2026-12-02"


def test_machine_mail_is_a_candidate_with_a_reason_but_never_planned() -> None:
    s = settings()
    c = classify(arrival(1, SUNDAY, extra="Auto-Submitted: auto-replied\r\n"), s)
    assert c is not None and c.ignored == "auto-submitted"
    assert plan([c], s, now=SUNDAY) == []


def test_suppression_reasons_in_order() -> None:
    s = settings()
    bcc = classify(arrival(1, SUNDAY, to="someone@example.net"), s)
    first = classify(arrival(2, SUNDAY + timedelta(minutes=1)), s)
    second = classify(arrival(3, SUNDAY + timedelta(minutes=2)), s)
    assert bcc and first and second
    decided = {d.uid: d.suppressed for d in plan([bcc, first, second], s, now=SUNDAY)}
    assert decided == {1: "not-addressed", 2: None, 3: "window"}
    off = {d.uid: d.suppressed for d in plan([bcc, first], settings("off"), now=SUNDAY)}
    assert off == {1: "not-addressed", 2: "off"}
    per_msg = plan([first, second], settings("per-message"), now=SUNDAY)
    assert [d.draft for d in per_msg] == [True, True]


def test_earlier_passes_drafts_suppress_the_same_window_only() -> None:
    s = settings()
    c = classify(arrival(1, SUNDAY), s)
    assert c is not None
    [same] = plan([c], s, now=SUNDAY, drafted=[("jane", "2026-11-20T17:00")])
    [other] = plan([c], s, now=SUNDAY, drafted=[("jane", "2026-11-19T17:00")])
    assert (same.suppressed, other.suppressed) == ("window", None)


@given(
    offsets=st.lists(st.integers(min_value=0, max_value=14 * 24 * 60), min_size=1, max_size=30),
    mode=st.sampled_from(["per-window", "per-message", "off"]),
)
def test_never_two_drafts_for_one_window(offsets: list[int], mode: str) -> None:
    s = settings(mode)
    start = datetime(2026, 11, 2, tzinfo=UTC)
    cands = [
        c
        for i, m in enumerate(offsets)
        if (c := classify(arrival(i + 1, start + timedelta(minutes=m)), s)) is not None
    ]
    decisions = plan(cands, s, now=start)
    assert len(decisions) == len(cands)
    drafted = [(d.client, d.window) for d in decisions if d.draft]
    if mode == "per-window":
        assert len(drafted) == len(set(drafted))
        assert {d.window for d in decisions} == {w for _, w in drafted}
    if mode == "off":
        assert drafted == []


def settings_with(**client_fields: object) -> Settings:
    base = settings()
    jane = Client(
        id="jane",
        name="Jane",
        emails=("jane@example.org",),
        active=True,
        sessions=base.clients["jane"].sessions,
        **client_fields,  # type: ignore[arg-type]
    )
    return Settings(path=base.path, main=base.main, clients={"jane": jane})


def test_a_clients_own_contact_window_replaces_the_practices_hours() -> None:
    evening = schema.Hours(mon=("18:00-20:00",), closed=("2026-11-30",))
    s = settings_with(hours=evening)
    monday_noon = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    monday_7pm = datetime(2026, 11, 23, 19, 0, tzinfo=UTC)
    assert classify(arrival(1, monday_noon), s) is not None  # outside her agreed window
    assert classify(arrival(2, monday_7pm), s) is None  # inside it
    # The practice's own closed dates still apply, and so do the client's.
    s2 = settings_with(hours=schema.Hours(mon=("18:00-20:00",)))
    practice_closed = Settings(
        path=s2.path,
        clients=s2.clients,
        main=s2.main.model_copy(update={"hours": schema.Hours(closed=("2026-11-23",))}),
    )
    assert classify(arrival(3, monday_7pm), practice_closed) is not None
    assert classify(arrival(4, datetime(2026, 11, 30, 19, 0, tzinfo=UTC)), s) is not None


def test_notes_only_client_is_marked_and_noted_but_never_drafted() -> None:
    s = settings_with(notes_only=True)
    c = classify(arrival(1, SUNDAY), s)
    assert c is not None
    [d] = plan([c], s, now=SUNDAY)
    assert (d.draft, d.suppressed) == (False, "off")
