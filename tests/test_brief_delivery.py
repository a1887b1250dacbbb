"""The pre-session brief reaches the practitioner's inbox (a real Dovecot): one per
qualifying session at its local time through a fortnight across the clock change,
never twice (restarts, a brief delivered just before a crash), a missed one sent at
start-up if its session has not begun and noted for the digest if it has, and
`inbox-guard brief` showing the same text."""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo

from inbox_guard import config
from inbox_guard.brief import next_brief, run_briefs
from inbox_guard.errors import ConnectError
from inbox_guard.mailbox import Mailbox
from inbox_guard.service import Service
from inbox_guard.store import Store
from inbox_guard.triage import run_pass

from .conftest import (
    SAM,
    Account,
    Capsys,
    Practice,
    SmtpSink,
    fire,
    kill_at,
    message,
    out_of_hours_recently,
    wait_for,
)

BRIEF = "\n[brief]\nenabled = true\nminutes_before = 60\n"


def briefs(account: Account) -> list[EmailMessage]:
    found = []
    for m in account.snapshot().values():
        msg = email.message_from_bytes(m["bytes"], policy=default_policy)
        if str(msg["Message-ID"]).startswith("<inbox-guard.brief."):
            found.append(msg)
    return found


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


class Clock:
    """The service's brief job and passes, driven through time by the test."""

    def __init__(self, practice: Practice) -> None:
        if "[brief]" not in practice.config.read_text():
            practice.config.write_text(practice.config.read_text() + BRIEF)
        self.settings = config.load(practice.config)
        self.account = practice.account
        self.mailbox = Mailbox.connect(self.settings.main.account, practice.account.password)
        self.store = Store.open(self.settings.state_path)

    def pass_at(self, now: datetime) -> None:
        run_pass(self.settings, self.mailbox, self.store, now)

    def briefs_at(self, now: datetime) -> list[str]:
        run = run_briefs(self.settings, lambda: self.mailbox, self.store, now)
        return [b.client for b, _ in run.sent]

    def close(self) -> None:
        self.store.close()
        self.mailbox.logout()


def test_a_fortnight_across_the_clock_change_brings_one_brief_per_session(
    practice: Practice, account: Account
) -> None:
    # Jane's sessions: Wednesdays 10:00 London. Europe/London leaves summer time on
    # Sunday 25 October 2026, so 10:00 is 09:00 UTC on the 21st and 10:00 UTC on the 28th.
    mails = [
        (datetime(2026, 10, 17, 22, 0, tzinfo=UTC), "Saturday night"),
        (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), "the night of the clock change"),
        (datetime(2026, 10, 25, 23, 10, tzinfo=UTC), "Sunday night again"),
    ]
    clock = Clock(practice)
    try:
        t = datetime(2026, 10, 17, 12, 0, tzinfo=UTC)
        sent: list[tuple[datetime, list[str]]] = []
        while t < datetime(2026, 11, 5, 12, 0, tzinfo=UTC):
            for when, subject in mails:
                if when <= t < when + timedelta(minutes=10):
                    account.append(message(subject=subject), when)
                    clock.pass_at(t)
            got = clock.briefs_at(t)
            if got:
                sent.append((t, got))
            t += timedelta(minutes=10)
    finally:
        clock.close()

    assert sent == [
        (datetime(2026, 10, 21, 8, 0, tzinfo=UTC), ["jane-doe"]),  # 09:00 BST, an hour ahead
        (datetime(2026, 10, 28, 9, 0, tzinfo=UTC), ["jane-doe"]),  # 09:00 GMT
    ]  # and none for 4 November: nothing since the 28th
    first, second = sorted(briefs(account), key=lambda m: parsedate_to_datetime(m["Date"]))
    assert first["To"] == "alex@example.org" and second["To"] == "alex@example.org"
    assert "Jane Doe" in str(first["Subject"])
    one, two = text_of(first), text_of(second)
    assert "1 out-of-hours contact since the previous session (Wed 14 Oct 10:00)" in one
    assert '"Saturday night"' in one
    assert "2 out-of-hours contacts since the previous session (Wed 21 Oct 10:00)" in two
    assert "In the intervals between the sessions before, most recent first: 1, 0, 0, 0." in two
    assert "Late at night (22:00 to 06:00): 2 of 2." in two
    assert "holding reply waiting in Drafts" in two
    html_part = second.get_body(preferencelist=("html",))
    assert html_part is not None
    html = str(html_part.get_content()).lower()
    assert 'class="bar"' in html and "<script" not in html and "src=" not in html
    assert "http" not in html  # self-contained: nothing fetched when it is opened


def test_a_brief_delivered_just_before_a_crash_is_not_delivered_again(
    practice: Practice, account: Account
) -> None:
    account.append(message(subject="late"), datetime(2026, 10, 25, 23, 10, tzinfo=UTC))
    clock = Clock(practice)
    try:
        clock.pass_at(datetime(2026, 10, 26, 8, 0, tzinfo=UTC))
        send_at = datetime(2026, 10, 28, 9, 0, tzinfo=UTC)
        assert clock.briefs_at(send_at) == ["jane-doe"]
        # As if the process had died after the APPEND, before recording it: the record
        # says planned, not delivered; the next look finds it in the inbox by Message-ID.
        clock.store._execute("UPDATE brief SET delivered_at = NULL")
        clock.store._execute("DELETE FROM meta")
        assert clock.briefs_at(send_at + timedelta(minutes=1)) == []
        assert clock.briefs_at(send_at + timedelta(minutes=2)) == []  # a restart, again
    finally:
        clock.close()
    assert len(briefs(account)) == 1


def test_a_brief_missed_while_down_goes_at_start_up_unless_its_session_has_begun(
    practice: Practice, account: Account
) -> None:
    account.append(message(subject="late"), datetime(2026, 10, 25, 23, 10, tzinfo=UTC))
    account.append(
        message(sender=SAM, subject="also late"), datetime(2026, 10, 25, 23, 20, tzinfo=UTC)
    )
    clock = Clock(practice)
    try:
        clock.pass_at(datetime(2026, 10, 26, 8, 0, tzinfo=UTC))
        clock.briefs_at(datetime(2026, 10, 28, 7, 0, tzinfo=UTC))  # then down until ...
        # ... 09:30 UTC: Jane's session (10:00 GMT) has not begun: her brief goes now.
        assert clock.briefs_at(datetime(2026, 10, 28, 9, 30, tzinfo=UTC)) == ["jane-doe"]
        # Down again past a session that has begun: skipped, and said in the digest.
        clock.briefs_at(datetime(2026, 11, 3, 7, 0, tzinfo=UTC))
        account.append(message(subject="later"), datetime(2026, 10, 29, 23, 0, tzinfo=UTC))
        clock.pass_at(datetime(2026, 11, 3, 7, 0, tzinfo=UTC))
        assert clock.briefs_at(datetime(2026, 11, 4, 10, 30, tzinfo=UTC)) == []
        problems = [p.what for p in clock.store.problems()]
        assert any(
            p.startswith("brief: not sent for the session with Jane Doe on Wed 04 Nov")
            for p in problems
        ), problems
    finally:
        clock.close()
    assert len(briefs(account)) == 1


def test_the_brief_command_shows_the_same_text_and_then_it_is_not_sent_twice(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    account.append(message(subject="late"), datetime(2026, 10, 25, 23, 10, tzinfo=UTC))
    practice.config.write_text(practice.config.read_text() + BRIEF)
    practice.once_json(capsys, "--now", "2026-10-26T08:00:00+00:00")

    code, out, err = practice.run(
        "brief", "jane-doe", "--dry-run", "--now", "2026-10-27T12:00", capsys=capsys
    )
    assert code == 0, err
    assert out.startswith("Subject: inbox-guard: before the session with Jane Doe, Wed 28 Oct")
    assert "1 out-of-hours contact since the previous session (Wed 21 Oct 10:00)." in out
    assert briefs(account) == []  # a dry run delivers nothing
    shown = out.split("\n\n", 1)[1].strip()  # after the Subject and To lines

    code, out, err = practice.run("brief", "--now", "2026-10-27T12:00", capsys=capsys)
    assert code == 0, err
    assert "jane-doe: brief for the session Wed 28 Oct 10:00 delivered to alex@example.org" in out
    assert "sam-lee: no out-of-hours contact before Wed 18 Nov 16:00, so no brief" in out
    [sent] = briefs(account)
    assert text_of(sent).replace("\r\n", "\n").strip() == shown  # the very text shown

    settings = config.load(practice.config)
    store = Store.open(settings.state_path)
    mailbox = Mailbox.connect(settings.main.account, account.password)
    try:
        run = run_briefs(settings, lambda: mailbox, store, datetime(2026, 10, 28, 9, 0, tzinfo=UTC))
        assert run.sent == []  # delivered by the command already
        session, found = next_brief(
            settings, settings.clients["jane-doe"], store, datetime(2026, 10, 27, 12, tzinfo=UTC)
        )
        assert session is not None and found is not None
    finally:
        store.close()
        mailbox.logout()
    assert len(briefs(account)) == 1


def test_a_worker_killed_as_its_brief_is_appended_leaves_exactly_one_brief(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    account.append(message(subject="late"), datetime(2026, 10, 25, 23, 10, tzinfo=UTC))
    practice.config.write_text(practice.config.read_text() + BRIEF)
    practice.once_json(capsys, "--now", "2026-10-26T08:00:00+00:00")
    kill_at(practice, b'APPEND "INBOX"', "brief", "--now", "2026-10-27T12:00")
    assert len(briefs(account)) == 1  # it did reach the inbox

    code, out, err = practice.run("brief", "--now", "2026-10-27T12:05", capsys=capsys)
    assert code == 0, err
    assert "jane-doe: the brief for the session Wed 28 Oct 10:00 was delivered before" in out
    clock = Clock(practice)
    try:
        assert clock.briefs_at(datetime(2026, 10, 28, 9, 0, tzinfo=UTC)) == []  # and at its time
    finally:
        clock.close()
    assert len(briefs(account)) == 1


def test_the_service_sends_a_due_brief_once_its_first_pass_has_run(
    practice: Practice, account: Account
) -> None:
    # Jane's next session is in half an hour, so its send time (an hour before) passed
    # while the service was not running: the first look after the first pass sends it.
    london = ZoneInfo("Europe/London")
    soon = (datetime.now(UTC) + timedelta(minutes=30)).astimezone(london)
    (practice.root / "config" / "clients" / "jane-doe.toml").write_text(
        'name = "Jane Doe"\nemails = ["jane@example.org"]\n'
        f'sessions = {{ dates = ["{soon:%Y-%m-%dT%H:%M}"] }}\n'
    )
    account.append(message(subject="late"), out_of_hours_recently())
    practice.config.write_text(practice.config.read_text() + BRIEF)
    service = Service(config.load(practice.config))
    service.start()
    try:
        assert wait_for(service, "triage")
        fire(service, "briefs")
        assert wait_for(service, "briefs")
        [sent] = briefs(account)
        assert "1 out-of-hours contact in the four weeks before this first session." in text_of(
            sent
        )
        fire(service, "briefs")  # the next minute's look: nothing twice
        assert wait_for(service, "briefs")
    finally:
        service.stop()
    assert len(briefs(account)) == 1


MOVED_AND_CANCELLED = """\
BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//inbox-guard tests//EN
BEGIN:VEVENT
UID:jane-weekly@example.org
DTSTART;TZID=Europe/London:20261104T100000
DTEND;TZID=Europe/London:20261104T105000
RRULE:FREQ=WEEKLY;BYDAY=WE
SUMMARY:Session
ATTENDEE:mailto:jane@example.org
END:VEVENT
BEGIN:VEVENT
UID:jane-weekly@example.org
RECURRENCE-ID;TZID=Europe/London:20261118T100000
DTSTART;TZID=Europe/London:20261119T140000
DTEND;TZID=Europe/London:20261119T145000
SUMMARY:Session (moved to Thursday)
ATTENDEE:mailto:jane@example.org
END:VEVENT
BEGIN:VEVENT
UID:jane-weekly@example.org
RECURRENCE-ID;TZID=Europe/London:20261125T100000
DTSTART;TZID=Europe/London:20261125T100000
STATUS:CANCELLED
SUMMARY:Session
ATTENDEE:mailto:jane@example.org
END:VEVENT
END:VCALENDAR
"""


def test_briefs_follow_the_calendar_a_moved_session_and_a_cancelled_one(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    cfg = practice.config.parent
    (cfg / "calendar.ics").write_text(MOVED_AND_CANCELLED)
    (cfg / "clients" / "jane-doe.toml").write_text(
        'name = "Jane Doe"\nemails = ["jane@example.org"]\n'
    )
    practice.config.write_text(
        practice.config.read_text() + BRIEF + '\n[calendar]\nics = "calendar.ics"\n'
    )
    account.append(message(subject="sunday"), datetime(2026, 11, 15, 23, 0, tzinfo=UTC))
    practice.once_json(capsys, "--now", "2026-11-16T08:00:00+00:00")

    def shown(now: str) -> str:
        code, out, err = practice.run("brief", "jane-doe", "--dry-run", "--now", now, capsys=capsys)
        assert code == 0, err
        return out

    # The session of the 18th was moved to Thursday the 19th at 14:00: the brief is for then.
    out = shown("2026-11-19T09:00")
    assert "Before the session with Jane Doe (jane-doe), Thu 19 Nov 14:00." in out
    assert "1 out-of-hours contact since the previous session (Wed 11 Nov 10:00)." in out

    # The 25th is cancelled: Saturday's contact belongs to the session of 2 December.
    account.append(message(subject="saturday"), datetime(2026, 11, 21, 23, 0, tzinfo=UTC))
    practice.once_json(capsys, "--now", "2026-11-23T08:00:00+00:00")
    out = shown("2026-11-27T09:00")
    assert "Before the session with Jane Doe (jane-doe), Wed 2 Dec 10:00." in out
    assert "1 out-of-hours contact since the previous session (Thu 19 Nov 14:00)." in out
    assert "most recent first: 1, 0." in out  # 11th to 19th held Sunday's; 4th to 11th none
    assert '"saturday"' in out and '"sunday"' not in out


def test_a_brief_by_smtp_goes_even_when_the_imap_server_cannot_be_reached(
    practice: Practice, account: Account, smtp_server: SmtpSink
) -> None:
    port, received = smtp_server
    account.append(message(subject="late"), datetime(2026, 10, 25, 23, 10, tzinfo=UTC))
    practice.config.write_text(
        practice.config.read_text()
        + '\n[brief]\nenabled = true\ndeliver = "smtp"\n'
        + f'\n[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "plain"\n'
    )
    clock = Clock(practice)
    try:
        clock.pass_at(datetime(2026, 10, 26, 8, 0, tzinfo=UTC))

        def unreachable() -> Mailbox:
            raise ConnectError("cannot connect to 127.0.0.1:1: connection refused")

        run = run_briefs(
            clock.settings, unreachable, clock.store, datetime(2026, 10, 28, 9, 0, tzinfo=UTC)
        )
    finally:
        clock.close()
    assert [b.client for b, _ in run.sent] == ["jane-doe"]
    [(_sender, to, raw)] = received
    assert to == ["alex@example.org"]
    assert b"holding reply saved in Drafts" in raw.replace(b"=\r\n", b"")  # could not look
