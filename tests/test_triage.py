"""A triage pass against a real Dovecot: what SPEC "What a triage pass does" promises."""

from __future__ import annotations

import email
import sqlite3
from datetime import UTC, datetime, timedelta
from email.policy import default as default_policy
from pathlib import Path

import pytest

from .conftest import JANE, PAT, SAM, THERAPIST, Account, Practice, message, write_practice

SUNDAY_NIGHT = datetime(2026, 11, 15, 23, 40, tzinfo=UTC)  # London = UTC in November
MONDAY_8 = "2026-11-16T08:00:00+00:00"
KW = b"$OutOfHours"

Capsys = pytest.CaptureFixture[str]


def drafts(account: Account) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(m["bytes"], policy=default_policy)
        for m in account.snapshot("Drafts").values()
    ]


def test_out_of_hours_client_mail_is_marked_drafted_and_noted(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    uid = account.append(
        message(
            subject="Re: About Wednesday",
            message_id="<m1@example.org>",
            headers={"References": "<m0@example.org>"},
        ),
        SUNDAY_NIGHT,
    )
    result = practice.once_json(capsys, "--now", MONDAY_8)

    assert result == {
        "scanned": 1,
        "flagged": [
            {
                "uid": uid,
                "message_id": "<m1@example.org>",
                "client": "jane-doe",
                "received": "2026-11-15T23:40:00+00:00",
                "draft": True,
                "agenda": "agendas/jane-doe/2026-11-18.md",
                "risk": False,
                "suppressed": None,
            }
        ],
        "ignored": [],
        "errors": [],
    }
    assert account.snapshot()[uid]["flags"] == {KW}

    [draft] = drafts(account)
    draft_flags = next(iter(account.snapshot("Drafts").values()))["flags"]
    assert {b"\\Draft", b"\\Seen"} <= draft_flags
    assert draft["From"] == "Alex Morgan <alex@example.org>"
    assert draft["To"] == JANE
    assert draft["Subject"] == "Re: About Wednesday"
    assert draft["In-Reply-To"] == "<m1@example.org>"
    assert draft["References"] == "<m0@example.org> <m1@example.org>"
    assert draft["Date"] is not None and draft["Message-ID"].startswith("<inbox-guard.")
    body = draft.get_content()
    assert "Wednesday 18 November at 10:00" in body
    assert "not monitored for emergencies" in body
    assert "In an emergency call 999, or Samaritans on 116 123." in body
    assert "Synthetic test message body" not in body  # never quotes the client

    note = (practice.agendas / "jane-doe" / "2026-11-18.md").read_text()
    assert note.startswith("# Jane Doe — session Wed 2026-11-18 10:00\n")
    assert "Out-of-hours contacts: 1\n" in note
    assert "- Sun 2026-11-15 23:40 — out-of-hours email: `Re: About Wednesday`" in note


def test_other_mail_is_left_entirely_alone(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    account.append(message(sender="stranger@example.org"), SUNDAY_NIGHT)
    account.append(message(sender=THERAPIST, to=JANE), SUNDAY_NIGHT)
    account.append(message(sender=PAT), SUNDAY_NIGHT)  # inactive client
    account.append(message(), datetime(2026, 11, 16, 10, 0, tzinfo=UTC))  # in hours
    account.append(message(), datetime(2026, 11, 16, 16, 59, 59, tzinfo=UTC))
    before = account.snapshot()

    result = practice.once_json(capsys, "--now", MONDAY_8)

    # Only mail from active client addresses is read at all (the two in-hours ones).
    assert (result["scanned"], result["flagged"], result["ignored"]) == (2, [], [])
    assert account.snapshot() == before
    assert drafts(account) == []
    assert not practice.agendas.exists()


def test_interval_end_and_closed_dates_are_out_of_hours(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    at_five = account.append(message(), datetime(2026, 11, 16, 17, 0, 0, tzinfo=UTC))
    closed_day = account.append(message(), datetime(2026, 11, 5, 11, 0, tzinfo=UTC))
    result = practice.once_json(capsys, "--now", "2026-11-16T18:00")
    assert sorted(f["uid"] for f in result["flagged"]) == sorted([at_five, closed_day])


def test_seen_and_other_flags_are_never_changed(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    seen = account.append(message(), SUNDAY_NIGHT, flags=("\\Seen", "\\Answered"))
    unseen = account.append(message(), SUNDAY_NIGHT + timedelta(minutes=5), flags=("$Label1",))
    practice.once_json(capsys, "--now", MONDAY_8)
    after = account.snapshot()
    assert after[seen]["flags"] == {b"\\Seen", b"\\Answered", KW}
    assert after[unseen]["flags"] == {b"$Label1", KW}


def test_mailbox_is_not_damaged_and_second_pass_changes_nothing(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    for i in range(4):
        account.append(message(subject=f"m{i}"), SUNDAY_NIGHT + timedelta(hours=i))
    account.append(message(sender="stranger@example.org"), SUNDAY_NIGHT)
    before = account.snapshot()

    first = practice.once_json(capsys, "--now", MONDAY_8)
    after_first = account.snapshot()
    assert after_first.keys() == before.keys()
    for uid, m in before.items():
        assert after_first[uid]["bytes"] == m["bytes"]
        assert after_first[uid]["date"] == m["date"]
        assert after_first[uid]["flags"] - m["flags"] <= {KW}
    assert len(first["flagged"]) == 4
    files_after_first = practice.files()
    drafts_after_first = account.snapshot("Drafts")

    second = practice.once_json(capsys, "--now", MONDAY_8)
    assert second == {"scanned": 0, "flagged": [], "ignored": [], "errors": []}
    assert account.snapshot() == after_first
    assert account.snapshot("Drafts").keys() == drafts_after_first.keys()
    assert practice.files() == files_after_first


def test_dry_run_changes_nothing_anywhere(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    uid = account.append(message(), SUNDAY_NIGHT)
    before = account.snapshot()
    result = practice.once_json(capsys, "--dry-run", "--now", MONDAY_8)
    assert [f["uid"] for f in result["flagged"]] == [uid]
    assert result["flagged"][0]["draft"] is True
    assert account.snapshot() == before
    assert drafts(account) == []
    assert not practice.agendas.exists()
    assert not practice.state.exists()
    # ... and the real pass afterwards still does the work.
    assert [f["uid"] for f in practice.once_json(capsys, "--now", MONDAY_8)["flagged"]] == [uid]


def test_dry_run_after_real_pass_leaves_state_untouched(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    account.append(message(), SUNDAY_NIGHT)
    practice.once_json(capsys, "--now", MONDAY_8)
    account.append(message(subject="later"), SUNDAY_NIGHT + timedelta(hours=1))
    state_before = practice.state.read_bytes()
    assert len(practice.once_json(capsys, "--dry-run", "--now", MONDAY_8)["flagged"]) == 1
    assert practice.state.read_bytes() == state_before
    assert len(practice.once_json(capsys, "--now", MONDAY_8)["flagged"]) == 1


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Auto-Submitted": "auto-replied"}, "auto-submitted"),
        ({"X-Auto-Response-Suppress": "OOF"}, "auto-submitted"),
        ({"Precedence": "bulk"}, "auto-submitted"),
        ({"List-Id": "<parents.example.org>"}, "mailing-list"),
        ({"Return-Path": "<>"}, "bounce"),
    ],
)
def test_machine_written_client_mail_is_ignored_with_reason(
    practice: Practice, account: Account, capsys: Capsys, headers: dict[str, str], reason: str
) -> None:
    uid = account.append(message(headers=headers), SUNDAY_NIGHT)
    before = account.snapshot()
    result = practice.once_json(capsys, "--now", MONDAY_8)
    assert result["flagged"] == []
    assert result["ignored"] == [{"uid": uid, "client": "jane-doe", "reason": reason}]
    assert account.snapshot() == before
    assert drafts(account) == []
    assert not practice.agendas.exists()


def test_client_matching_ignores_case_display_name_and_encoded_words(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    uid = account.append(
        message(
            sender="=?utf-8?q?J=C3=A4ne?= <J.DOE@Work.Example>",
            to="Practice <PRACTICE@example.org>",
        ),
        SUNDAY_NIGHT,
    )
    [flag] = practice.once_json(capsys, "--now", MONDAY_8)["flagged"]
    assert (flag["uid"], flag["client"], flag["draft"]) == (uid, "jane-doe", True)
    assert drafts(account)[0]["To"] == "j.doe@work.example"


def test_bcc_or_alias_mail_is_marked_and_noted_but_not_drafted(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    uid = account.append(message(to="group@example.net"), SUNDAY_NIGHT)
    [flag] = practice.once_json(capsys, "--now", MONDAY_8)["flagged"]
    assert (flag["draft"], flag["suppressed"]) == (False, "not-addressed")
    assert account.snapshot()[uid]["flags"] == {KW}
    assert drafts(account) == []
    assert (practice.agendas / "jane-doe" / "2026-11-18.md").exists()


def test_one_draft_per_client_per_out_of_hours_window(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    friday_night = account.append(message(subject="a"), datetime(2026, 11, 13, 22, 0, tzinfo=UTC))
    sunday = account.append(message(subject="b"), SUNDAY_NIGHT)
    sam = account.append(message(sender=SAM, subject="c"), SUNDAY_NIGHT)
    first = practice.once_json(capsys, "--now", "2026-11-15T23:59")
    monday_night = account.append(message(subject="d"), datetime(2026, 11, 16, 19, 0, tzinfo=UTC))
    second = practice.once_json(capsys, "--now", "2026-11-16T19:30")

    decided = {f["uid"]: f["suppressed"] for f in first["flagged"] + second["flagged"]}
    assert decided == {friday_night: None, sunday: "window", sam: None, monday_night: None}
    assert sorted(d["Subject"] for d in drafts(account)) == ["Re: a", "Re: c", "Re: d"]
    note = (practice.agendas / "jane-doe" / "2026-11-18.md").read_text()
    assert "Out-of-hours contacts: 3" in note
    # The pattern, rewritten as contacts are added: Friday 22:00 and Sunday 23:40 late.
    assert note.count("Pattern: ") == 1
    assert "\nPattern: 3 out-of-hours contacts since the session of 11 Nov " in note
    assert note.split("Pattern: ")[1].split("\n")[0].endswith("; 2 late at night")


@pytest.mark.parametrize(("mode", "made"), [("per-message", 2), ("off", 0)])
def test_draft_modes(
    tmp_path: Path,
    account: Account,
    capsys: Capsys,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    made: int,
) -> None:
    monkeypatch.setenv("IG_TEST_PASSWORD", account.password)
    p = write_practice(tmp_path, account, drafts=mode)
    account.append(message(), SUNDAY_NIGHT)
    account.append(message(), SUNDAY_NIGHT + timedelta(minutes=3))
    result = p.once_json(capsys, "--now", MONDAY_8)
    assert len(drafts(account)) == made
    expected = [None, None] if mode == "per-message" else ["off", "off"]
    assert [f["suppressed"] for f in result["flagged"]] == expected


def test_no_future_session_goes_to_unscheduled(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    account.append(message(sender=SAM), datetime(2026, 11, 19, 22, 0, tzinfo=UTC))
    [flag] = practice.once_json(capsys, "--now", "2026-11-20T08:00")["flagged"]
    assert flag["agenda"] == "agendas/sam-lee/unscheduled.md"
    text = (practice.agendas / "sam-lee" / "unscheduled.md").read_text()
    assert text.startswith("# Sam — contacts with no session scheduled")
    body = drafts(account)[0].get_content()
    assert "at our next session." in body


def test_first_pass_leaves_history_older_than_lookback_alone(
    tmp_path: Path, account: Account, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IG_TEST_PASSWORD", account.password)
    p = write_practice(tmp_path, account, lookback=7)
    old = account.append(message(subject="old"), datetime(2026, 10, 4, 23, 0, tzinfo=UTC))
    edge = account.append(message(subject="edge"), datetime(2026, 11, 9, 7, 59, tzinfo=UTC))
    recent = account.append(message(subject="recent"), SUNDAY_NIGHT)
    before = account.snapshot()
    result = p.once_json(capsys, "--now", MONDAY_8)
    assert [f["uid"] for f in result["flagged"]] == [recent]
    after = account.snapshot()
    assert after[old] == before[old] and after[edge] == before[edge]
    assert p.once_json(capsys, "--now", MONDAY_8)["scanned"] == 0


def test_uidvalidity_change_rescans_without_duplicates(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    account.append(message(message_id="<a@example.org>"), SUNDAY_NIGHT)
    practice.once_json(capsys, "--now", MONDAY_8)
    with account.client() as c:
        old_validity = c.select_folder("INBOX")[b"UIDVALIDITY"]
    account.server.doveadm(
        "mailbox", "update", "-u", account.user, "--uid-validity", str(old_validity + 7), "INBOX"
    )
    account.append(message(message_id="<b@example.org>"), SUNDAY_NIGHT + timedelta(days=1))
    with account.client() as c:
        assert c.select_folder("INBOX")[b"UIDVALIDITY"] != old_validity

    result = practice.once_json(capsys, "--now", "2026-11-17T08:00")
    assert [f["message_id"] for f in result["flagged"]] == ["<b@example.org>"]
    assert len(drafts(account)) == 2
    note = (practice.agendas / "jane-doe" / "2026-11-18.md").read_text()
    assert "Out-of-hours contacts: 2" in note


def test_draft_appended_before_a_crash_is_not_made_twice(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    account.append(message(), SUNDAY_NIGHT)
    practice.once_json(capsys, "--now", MONDAY_8)
    # Put the store back to the moment after APPEND and before it was recorded.
    with sqlite3.connect(practice.state) as db:
        db.execute("UPDATE contact SET draft_done = 0, agenda_done = 0, done_at = NULL")
    result = practice.once_json(capsys, "--now", MONDAY_8)
    assert len(result["flagged"]) == 1
    assert len(drafts(account)) == 1
    assert (
        "Out-of-hours contacts: 1" in (practice.agendas / "jane-doe" / "2026-11-18.md").read_text()
    )


def test_files_written_are_owner_only(practice: Practice, account: Account, capsys: Capsys) -> None:
    account.append(message(), SUNDAY_NIGHT)
    practice.once_json(capsys, "--now", MONDAY_8)
    for path in [practice.state, practice.agendas / "jane-doe" / "2026-11-18.md"]:
        assert path.stat().st_mode & 0o777 == 0o600, path
    for folder in [practice.state.parent, practice.agendas, practice.agendas / "jane-doe"]:
        assert folder.stat().st_mode & 0o777 == 0o700, folder


def test_state_holds_no_message_body(practice: Practice, account: Account, capsys: Capsys) -> None:
    account.append(message(body="UNIQUE-BODY-MARKER-4711\n"), SUNDAY_NIGHT)
    practice.once_json(capsys, "--now", MONDAY_8)
    raw = practice.state.read_bytes() + b"".join(
        p.read_bytes() for p in practice.state.parent.iterdir()
    )
    assert b"UNIQUE-BODY-MARKER-4711" not in raw


def test_human_output_without_json(practice: Practice, account: Account, capsys: Capsys) -> None:
    account.append(message(), SUNDAY_NIGHT)
    code, out, _ = practice.run("once", "--now", MONDAY_8, capsys=capsys)
    assert code == 0
    assert out.startswith("scanned 1; flagged 1; ignored 0; errors 0\n")
    lines = out.splitlines()
    assert len(lines) == 2 and lines[1].startswith("  ")  # the count, then one line each
    assert lines[1].endswith("jane-doe  draft  -> agendas/jane-doe/2026-11-18.md")


def test_bookkeeping_older_than_retain_days_is_purged(
    tmp_path: Path, account: Account, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IG_TEST_PASSWORD", account.password)
    p = write_practice(
        tmp_path,
        account,
        extra="""
        [state]
        retain_days = 30
        """,
    )
    account.append(message(message_id="<old@example.org>"), SUNDAY_NIGHT)
    p.once_json(capsys, "--now", MONDAY_8)
    with sqlite3.connect(p.state) as db:
        assert db.execute("SELECT COUNT(*) FROM contact").fetchone()[0] == 1
    p.once_json(capsys, "--now", "2026-12-15T08:00")  # 29 days on: kept
    with sqlite3.connect(p.state) as db:
        assert db.execute("SELECT COUNT(*) FROM contact").fetchone()[0] == 1
    p.once_json(capsys, "--now", "2026-12-16T08:00")  # 30 days on: forgotten
    with sqlite3.connect(p.state) as db:
        assert db.execute("SELECT COUNT(*) FROM contact").fetchone()[0] == 0


def test_a_clients_own_draft_template_and_notes_only(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    templates = practice.config.parent / "templates"
    templates.mkdir()
    (templates / "coaching.txt.j2").write_text(
        "Hi,\n\nGot it, thanks. Let's pick this up on {{ session_text }}.\n\n"
        "{{ emergency_text }}\n\n{{ therapist_name }}\n"
    )
    clients = practice.config.parent / "clients"
    (clients / "jane-doe.toml").write_text(
        (clients / "jane-doe.toml").read_text() + 'draft_template = "coaching.txt.j2"\n'
    )
    (clients / "sam-lee.toml").write_text(
        (clients / "sam-lee.toml").read_text() + "notes_only = true\n"
    )
    account.append(message(), SUNDAY_NIGHT)
    account.append(message(sender=SAM), SUNDAY_NIGHT)
    result = practice.once_json(capsys, "--now", MONDAY_8)
    assert {f["client"]: f["suppressed"] for f in result["flagged"]} == {
        "jane-doe": None,
        "sam-lee": "off",
    }
    [draft] = drafts(account)
    assert (
        draft.get_content()
        .replace("\r\n", "\n")
        .startswith("Hi,\n\nGot it, thanks. Let's pick this up on Wednesday 18 November")
    )
    assert (practice.agendas / "sam-lee" / "2026-11-18.md").exists()
