"""More of the wild: what an adversarial review of the reliability work found (a Bcc
smuggled into a draft through a Message-ID, one unreadable file holding back an alert
or a first pass, a message moved out and back counted twice, ...), each against a real
Dovecot, and two probes that held (a kill after the draft APPEND with an alert, a
flood in one pass)."""

from __future__ import annotations

import email
import os
from datetime import timedelta
from email.policy import default as default_policy
from pathlib import Path

import pytest

from .conftest import (
    KW,
    MONDAY_8,
    PASSWORD_ENV,
    RISK_KW,
    SAM,
    SUNDAY_NIGHT,
    Account,
    Capsys,
    Practice,
    drafts,
    kill_at,
    message,
    unreadable,
    write_practice,
)
from .faults import CutProxy

EVIL = "<=?utf-8?q?=0D=0ABcc:_mallory@evil.example=0D=0AX-Ig:?=>"

# A Message-ID (or References) holding an RFC 2047 encoded word: the email package
# would decode it when the draft's In-Reply-To or References is set, and a CR LF
# inside would start new header lines in the draft (a Bcc to an outsider, which the
# practitioner's mail program would honour). Such an id is treated as absent.


@pytest.mark.parametrize("where", ["Message-ID", "References"])
def test_a_hostile_message_id_cannot_add_headers_to_the_draft(
    practice: Practice, account: Account, capsys: Capsys, where: str
) -> None:
    plain = message(message_id="<plain@example.org>")
    if where == "Message-ID":
        raw = plain.replace(b"<plain@example.org>", EVIL.encode())
    else:
        raw = plain.replace(b"Message-ID:", b"References: " + EVIL.encode() + b"\r\nMessage-ID:")
    assert EVIL.encode() in raw
    uid = account.append(raw, SUNDAY_NIGHT)
    result = practice.once_json(capsys, "--now", MONDAY_8)
    assert [f["uid"] for f in result["flagged"]] == [uid]
    [d] = account.snapshot("Drafts").values()
    head = d["bytes"].split(b"\r\n\r\n", 1)[0].decode()
    print(head)
    parsed = email.message_from_bytes(d["bytes"], policy=default_policy)
    assert parsed["Bcc"] is None, head
    assert "\nBcc:" not in head.replace("\r\n", "\n"), head


# With deliver = "imap" the alert first looks for itself in the inbox (SEARCH
# HEADER); one message file anywhere that Dovecot cannot read makes that SEARCH
# fail. The alert goes anyway: twice is better than never.


def test_an_unreadable_stranger_message_does_not_hold_back_a_risk_alert(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    practice.once_json(capsys, "--now", MONDAY_8)  # the position is known
    account.append(
        message(sender="news@shop.example", body="unique-unreadable-token\n"), SUNDAY_NIGHT
    )
    risky = account.append(
        message(body="I want to end it all\n"), SUNDAY_NIGHT + timedelta(minutes=1)
    )
    with unreadable(account, b"unique-unreadable-token"):
        results = [practice.once_json(capsys, "--now", MONDAY_8) for _ in range(4)]
    assert RISK_KW in account.snapshot()[risky]["flags"]
    alerts = [m for m in drafts(account, "INBOX") if "inbox-guard.alert." in m["Message-ID"]]
    assert len(alerts) == 1, [r["errors"] for r in results]


# The first pass (and the rescan after a UIDVALIDITY change) asks for client mail
# with SEARCH FROM, which makes Dovecot open every file in range; when one cannot be
# read, the pass falls back to SEARCH SINCE and picks out client mail itself.


def test_one_unreadable_message_does_not_stop_the_first_pass(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    account.append(message(body="unique-unreadable-token\n"), SUNDAY_NIGHT)
    good = account.append(
        message(sender=SAM, body="I want to end it all\n"), SUNDAY_NIGHT + timedelta(minutes=1)
    )
    with unreadable(account, b"unique-unreadable-token"):
        runs = [practice.run("once", "--json", "--now", MONDAY_8, capsys=capsys) for _ in range(2)]
    assert [code for code, _, _ in runs] == [0, 0], [err for _, _, err in runs]
    assert KW in account.snapshot()[good]["flags"]


# Many unreadable messages use up a pass's logins-again budget: the rest of the
# batch is reported as not read this time, and the pass still records its progress.


def test_many_unreadable_messages_do_not_stall_triage_forever(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    n = 12  # enough to use up a pass's budget of logins again
    practice.once_json(capsys, "--now", MONDAY_8)  # position known
    bad = []
    for i in range(n):
        bad.append(
            account.append(
                message(body=f"bad-token-{i:03d}\n"), SUNDAY_NIGHT + timedelta(seconds=i)
            )
        )
        account.append(
            message(sender=SAM, subject=f"fine {i}"),
            SUNDAY_NIGHT + timedelta(seconds=i, milliseconds=500),
        )
    risky = account.append(
        message(sender=SAM, body="I want to end it all\n"), SUNDAY_NIGHT + timedelta(minutes=5)
    )
    codes = []
    with unreadable(account, *(f"bad-token-{i:03d}".encode() for i in range(n))):
        for _ in range(3):
            code, out, err = practice.run("once", "--json", "--now", MONDAY_8, capsys=capsys)
            codes.append((code, err.strip().splitlines()[-1:] if code else out[:200]))
    # The good messages, including the risk one, must have been triaged by now.
    assert KW in account.snapshot()[risky]["flags"], codes
    assert all(c == 0 for c, _ in codes), codes


# The practitioner archives a handled message and moves it back (an "undo" on the
# phone): same Message-ID and INTERNALDATE, a new UID. It is the same contact, not
# a second copy: no second agenda line, no second alert.


def test_moving_a_handled_message_out_and_back_is_not_a_new_contact(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    uid = account.append(message(body="I want to end it all\n"), SUNDAY_NIGHT)
    first = practice.once_json(capsys, "--now", MONDAY_8)
    assert [f["uid"] for f in first["flagged"]] == [uid]
    practice.once_json(capsys, "--now", MONDAY_8)  # reads its own alert
    note = practice.agendas / "jane-doe" / "2026-11-18.md"
    before = note.read_text()
    with account.client() as c:
        c.create_folder("Archive")
        c.select_folder("INBOX")
        c.move([uid], "Archive")
        c.select_folder("Archive")
        c.move(c.search(["ALL"]), "INBOX")

    again = practice.once_json(capsys, "--now", MONDAY_8)

    print(again)
    alerts = [m for m in drafts(account, "INBOX") if "inbox-guard.alert." in m["Message-ID"]]
    assert (len(alerts), note.read_text().count("<!--")) == (1, before.count("<!--"))


# With risk mail the first APPEND of a pass is the alert, so here the worker is
# SIGKILLed right after the *draft* APPEND; two clean passes must then leave one
# alert, one draft per message and one agenda line each.


def test_kill_between_draft_append_and_its_record_with_an_alert(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    practice.config.write_text(
        practice.config.read_text().replace('drafts = "per-window"', 'drafts = "per-message"')
    )
    risky = account.append(message(body="I want to end it all\n"), SUNDAY_NIGHT)
    other = account.append(message(sender=SAM), SUNDAY_NIGHT + timedelta(minutes=1))
    kill_at(practice, b'APPEND "DRAFTS"', "once", "--now", MONDAY_8)
    for _ in range(2):
        r = practice.once_json(capsys, "--now", MONDAY_8)
        assert r["errors"] == [], r
    alerts = [m for m in drafts(account, "INBOX") if "inbox-guard.alert." in m["Message-ID"]]
    assert len(alerts) == 1
    assert sorted(d["To"] for d in drafts(account)) == sorted(["jane@example.org", SAM])
    snap = account.snapshot()
    assert KW in snap[risky]["flags"] and KW in snap[other]["flags"]
    note = (practice.agendas / "jane-doe" / "2026-11-18.md").read_text()
    assert note.count("<!--") == 1


# Very many out-of-hours client messages in one pass (a forged flood).


def test_a_flood_of_client_mail_in_one_pass(
    tmp_path: Path, account: Account, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, account.password)
    p = write_practice(tmp_path, account, drafts="per-message")
    p.once_json(capsys, "--now", MONDAY_8)
    n = 600
    with account.client() as c:
        for i in range(n):
            c.append(
                "INBOX",
                message(subject=f"n{i}", body="I want to die\n" if i % 50 == 0 else "x\n"),
                msg_time=SUNDAY_NIGHT - timedelta(seconds=i),
            )
    r = p.once_json(capsys, "--now", MONDAY_8)
    assert r["errors"] == [] and len(r["flagged"]) == n
    assert len(drafts(account)) == n
    again = p.once_json(capsys, "--now", MONDAY_8)
    assert again["flagged"] == [] and again["errors"] == []


# The newest inbox message expunged before a pass saw it: the position still
# catches up with UIDNEXT, so later quiet passes stay CAPABILITY, LOGIN, STATUS,
# LOGOUT.


def test_quiet_pass_stays_quiet_after_the_newest_message_was_expunged(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    account.append(message(), SUNDAY_NIGHT)
    practice.once_json(capsys, "--now", MONDAY_8)
    practice.once_json(capsys, "--now", MONDAY_8)  # reads its own alerts, if any
    gone = account.append(message(subject="moved away"), SUNDAY_NIGHT)
    with account.client() as c:  # the practitioner files it on the phone
        c.select_folder("INBOX")
        c.delete_messages([gone])
        c.expunge()
    with CutProxy(account.port) as proxy:
        original = practice.config.read_text()
        practice.config.write_text(
            original.replace(f"port = {account.port}", f"port = {proxy.port}")
        )
        try:
            practice.once_json(capsys, "--now", MONDAY_8)  # this one may look
            seen = []
            for _ in range(3):
                proxy.reset_counts()
                practice.once_json(capsys, "--now", MONDAY_8)
                seen.append([ln.split(b" ", 2)[1].decode() for ln in proxy.commands])
        finally:
            practice.config.write_text(original)
    for cmds in seen:
        assert "SELECT" not in cmds and "UID" not in cmds, seen


# A state path with '#' or '?' in it (a folder named "Practice #2"): the dry run
# reads the real state file and creates nothing.


@pytest.mark.parametrize("folder", ["Practice #2", "what?"])
def test_dry_run_reads_the_real_state_and_writes_nothing(
    tmp_path: Path,
    account: Account,
    capsys: Capsys,
    monkeypatch: pytest.MonkeyPatch,
    folder: str,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, account.password)
    p = write_practice(tmp_path / folder, account)
    account.append(message(), SUNDAY_NIGHT)
    done = p.once_json(capsys, "--now", MONDAY_8)
    assert len(done["flagged"]) == 1
    before = sorted(os.listdir(tmp_path))

    dry = p.once_json(capsys, "--dry-run", "--now", MONDAY_8)

    assert (sorted(os.listdir(tmp_path)), dry["flagged"]) == (before, []), (
        "the dry run created a file / did not see the state file"
    )
