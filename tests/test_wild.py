"""Reliability in the wild: a forged message, a refusing server, a second process or a
lost state file never stops triage, loses a draft, doubles one, or holds back an alert.
Each test here reproduces a way the product broke against a real Dovecot."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from inbox_guard.errors import StoreError
from inbox_guard.store import Store

from .conftest import (
    JANE,
    KW,
    MONDAY_8,
    PASSWORD_ENV,
    RISK_KW,
    SAM,
    SUNDAY_NIGHT,
    THERAPIST,
    TUESDAY_9,
    Account,
    Capsys,
    Practice,
    cli,
    drafts,
    message,
    unreadable,
    write_practice,
)
from .dovecot import Dovecot
from .faults import Cut, CutProxy
from .hostile_corpus import corpus


def with_setting(p: Practice, after: str, line: str) -> None:
    """Add ``line`` to the main file after the line that starts with ``after``."""
    text = p.config.read_text()
    head, sep, tail = text.partition(after)
    first, nl, rest = tail.partition("\n")
    p.config.write_text(head + sep + first + nl + line + "\n" + rest)


# -- 1. a forged message never stops triage ------------------------------------------


def test_a_hostile_corpus_from_a_clients_address_never_stops_triage(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    hostile = {}
    for i, (name, raw) in enumerate(corpus(JANE, THERAPIST).items()):
        hostile[name] = account.append(raw, SUNDAY_NIGHT + timedelta(seconds=i))
    normal = account.append(
        message(sender=SAM, subject="see you Wednesday"), SUNDAY_NIGHT + timedelta(minutes=30)
    )

    result = practice.once_json(capsys, "--now", MONDAY_8)

    assert result["errors"] == []
    flagged = {f["uid"]: f for f in result["flagged"]}
    assert set(flagged) == {*hostile.values(), normal}
    assert flagged[normal]["draft"] is True
    for name in ("charset-undefined", "charset-utf7-surrogate", "html-hostile", "multipart-nested"):
        assert flagged[hostile[name]]["risk"] is True, name
    snap = account.snapshot()
    assert all(KW in snap[u]["flags"] for u in flagged)
    note = (practice.agendas / "jane-doe" / "2026-11-18.md").read_text(encoding="utf-8")
    assert f"Out-of-hours contacts: {len(hostile)}" in note
    for bad in ("\u202e", "\u200b", "\x1b", "<img", "\ud800"):
        assert bad not in note
    assert "![x](https://evil.example/pixel.png)" in note  # as text, inside a code span
    # The other commands read what was stored without tripping either.
    code, out, err = practice.run("agenda", capsys=capsys)
    assert code == 0 and "\x1b" not in out
    code, out, err = practice.run("digest", "--dry-run", "--now", MONDAY_8, capsys=capsys)
    assert code == 0, err
    assert "NEEDS ATTENTION" in out and "\u202e" not in out
    # And the next pass finds nothing more to do (it reads only the alerts it sent).
    again = practice.once_json(capsys, "--now", MONDAY_8)
    assert (again["flagged"], again["ignored"], again["errors"]) == ([], [], [])


def test_a_message_the_server_cannot_read_is_retried_alone(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    practice.once_json(capsys, "--now", MONDAY_8)  # the position is known: later passes FETCH
    bad = account.append(message(body="unique-unreadable-token\n"), SUNDAY_NIGHT)
    good = account.append(message(sender=SAM), SUNDAY_NIGHT + timedelta(minutes=1))
    with unreadable(account, b"unique-unreadable-token"):
        result = practice.once_json(capsys, "--now", MONDAY_8)
    assert [f["uid"] for f in result["flagged"]] == [good]
    assert [e["uid"] for e in result["errors"]] == [bad]
    assert result["errors"][0]["error"].startswith("reading: ")
    assert KW not in account.snapshot()[bad]["flags"]
    # Readable again: the next pass picks it up, once.
    result = practice.once_json(capsys, "--now", MONDAY_8)
    assert [f["uid"] for f in result["flagged"]] == [bad] and result["errors"] == []
    assert practice.once_json(capsys, "--now", MONDAY_8)["flagged"] == []


# -- 2. two copies of one message ----------------------------------------------------


def test_two_copies_of_one_message_are_both_marked_and_drafted_once(
    tmp_path: Path, account: Account, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, account.password)
    p = write_practice(tmp_path, account, drafts="per-message")
    raw = message(message_id="<twice@example.org>")
    first = account.append(raw, SUNDAY_NIGHT)
    second = account.append(raw, SUNDAY_NIGHT)  # a duplicate delivery: same second

    result = p.once_json(capsys, "--now", MONDAY_8)

    assert result["errors"] == []
    by_uid = {f["uid"]: f for f in result["flagged"]}
    assert set(by_uid) == {first, second}
    assert by_uid[first]["suppressed"] is None
    assert by_uid[second]["suppressed"] == "duplicate" and by_uid[second]["draft"] is False
    assert len(drafts(account)) == 1
    # Sent again later (same Message-ID, a new arrival): marked and noted, not drafted.
    third = account.append(raw, SUNDAY_NIGHT + timedelta(hours=2))
    [again] = p.once_json(capsys, "--now", MONDAY_8)["flagged"]
    assert again["uid"] == third and again["suppressed"] == "duplicate"
    assert all(KW in account.snapshot()[u]["flags"] for u in (first, second, third))
    assert len(drafts(account)) == 1
    note = (p.agendas / "jane-doe" / "2026-11-18.md").read_text()
    assert "Out-of-hours contacts: 3" in note


# -- 3. every server answer is checked ------------------------------------------------


def test_a_refused_append_is_not_recorded_as_a_draft(
    tmp_path: Path, account: Account, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, account.password)
    p = write_practice(tmp_path, account, drafts="per-message")
    uids = [
        account.append(message(subject=f"n{i}"), SUNDAY_NIGHT + timedelta(minutes=i))
        for i in range(2)
    ]  # two drafts: one MULTIAPPEND
    drafts(account)  # the Drafts folder exists now
    tmp = account.server.maildir(account.user) / ".Drafts" / "tmp"
    tmp.chmod(0o555)
    try:
        code, out, err = p.run("once", "--json", "--now", MONDAY_8, capsys=capsys)
    finally:
        tmp.chmod(0o700)
    assert code == 0, err
    result = json.loads(out)
    assert result["flagged"] == []
    assert [e["uid"] for e in result["errors"]] == uids
    assert all(e["error"].startswith("draft: ") for e in result["errors"])
    assert drafts(account) == []
    code, out, _ = p.run("digest", "--dry-run", "--now", MONDAY_8, capsys=capsys)
    assert "waiting in Drafts" not in out
    # The server takes them now: the next pass makes them, and says so.
    result = p.once_json(capsys, "--now", MONDAY_8)
    assert sorted(f["uid"] for f in result["flagged"]) == uids
    assert all(f["draft"] for f in result["flagged"])
    assert len(drafts(account)) == 2


def test_one_draft_the_server_refuses_holds_back_no_other(
    tmp_path: Path, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    quota = """
mail_plugins = $mail_plugins quota
plugin {
  quota = maildir:User quota
  quota_max_mail_size = 20k
}
"""
    server = Dovecot()  # its own folder: the mail user must reach it
    server.write_config(quota)
    with server:
        user, password = server.user("alex")
        account = Account(server, user, password)
        monkeypatch.setenv(PASSWORD_ENV, password)
        p = write_practice(tmp_path / "p", account, drafts="per-message")
        templates = p.config.parent / "templates"
        templates.mkdir()
        (templates / "long.txt.j2").write_text("Thank you.\n" + "More words. " * 3000 + "\n")
        sam = p.config.parent / "clients" / "sam-lee.toml"
        sam.write_text(sam.read_text() + 'draft_template = "long.txt.j2"\n')
        jane = account.append(message(), SUNDAY_NIGHT)
        big = account.append(message(sender=SAM), SUNDAY_NIGHT + timedelta(minutes=1))

        code, out, err = p.run("once", "--json", "--now", MONDAY_8, capsys=capsys)

        assert code == 0, err
        result = json.loads(out)
        assert [f["uid"] for f in result["flagged"]] == [jane]
        [refused] = result["errors"]
        assert refused["uid"] == big and refused["error"].startswith("draft: ")
        assert [d["To"] for d in drafts(account)] == [JANE]


def _in_uid_set(uid: int, line: bytes) -> bool:
    """Is ``uid`` in the UID set of a ``UID STORE`` command line?"""
    words = line.split(b" ")
    if len(words) < 4 or words[1:3] != [b"UID", b"STORE"]:
        return False
    for part in words[3].split(b","):
        low, _, high = part.partition(b":")
        if int(low) <= uid <= int(high or low):
            return True
    return False


def test_a_refused_store_is_one_messages_fault_and_its_other_steps_go_on(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    jane = account.append(message(), SUNDAY_NIGHT)
    sam = account.append(message(sender=SAM), SUNDAY_NIGHT + timedelta(minutes=1))
    with CutProxy(account.port) as proxy:
        proxy.set(Cut(refuse=lambda line: _in_uid_set(sam, line)))
        original = practice.config.read_text()
        practice.config.write_text(
            original.replace(f"port = {account.port}", f"port = {proxy.port}")
        )
        result = practice.once_json(capsys, "--now", MONDAY_8)
        practice.config.write_text(original)
    assert [f["uid"] for f in result["flagged"]] == [jane]
    assert result["errors"] == [
        {
            "uid": sam,
            "error": "mark: the server refused STORE: [SERVERBUG] refused by the test proxy",
        }
    ]
    snap = account.snapshot()
    assert KW in snap[jane]["flags"] and KW not in snap[sam]["flags"]
    assert sorted(d["To"] for d in drafts(account)) == [JANE, SAM]  # its draft went on
    result = practice.once_json(capsys, "--now", MONDAY_8)
    assert [f["uid"] for f in result["flagged"]] == [sam]
    assert KW in account.snapshot()[sam]["flags"] and len(drafts(account)) == 2


# -- 4. safety first -------------------------------------------------------------------


def test_the_risk_alert_does_not_wait_for_the_draft(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    with_setting(practice, "password_env", 'drafts = "Missing"')
    uid = account.append(message(body="I want to end it all\n"), SUNDAY_NIGHT)

    result = practice.once_json(capsys, "--now", MONDAY_8)

    assert [e["uid"] for e in result["errors"]] == [uid]
    assert result["errors"][0]["error"].startswith("draft: account.drafts: folder 'Missing'")
    flags = account.snapshot()[uid]["flags"]
    assert {KW, RISK_KW, b"\\Flagged"} <= flags
    alerts = [m for m in drafts(account, "INBOX") if "inbox-guard.alert." in m["Message-ID"]]
    assert len(alerts) == 1 and alerts[0]["To"] == THERAPIST
    # Retried on the next passes, then daily; meanwhile every digest lists it.
    for _ in range(2):
        assert [e["uid"] for e in practice.once_json(capsys, "--now", MONDAY_8)["errors"]] == [uid]
    assert practice.once_json(capsys, "--now", MONDAY_8)["errors"] == []
    for _ in range(2):
        code, out, err = practice.run("digest", "--now", MONDAY_8, capsys=capsys)
        assert code == 0, err
    digests = [m for m in drafts(account, "INBOX") if "inbox-guard.digest." in m["Message-ID"]]
    assert len(digests) == 2
    for d in digests:
        text = d.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
        assert "COULD NOT COMPLETE" in text and "folder 'Missing' does not exist" in text
    with account.client() as c:
        c.create_folder("Missing")
    result = practice.once_json(capsys, "--now", TUESDAY_9)  # a day on: tried again
    assert [f["uid"] for f in result["flagged"]] == [uid]
    assert len(drafts(account, "Missing")) == 1
    assert len([m for m in drafts(account, "INBOX") if "alert" in m["Message-ID"]]) == 1
    code, out, _ = practice.run("digest", "--dry-run", "--now", TUESDAY_9, capsys=capsys)
    assert "COULD NOT COMPLETE" not in out


# -- 5. one worker per state file --------------------------------------------------------


def test_two_passes_started_together_make_each_draft_once(
    tmp_path: Path, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, account.password)
    p = write_practice(tmp_path, account, drafts="per-message")
    with account.client() as c:
        for i in range(120):
            c.append(
                "INBOX", message(subject=f"n{i}"), msg_time=SUNDAY_NIGHT + timedelta(seconds=i)
            )
    cmd = [
        sys.executable,
        "-m",
        "inbox_guard",
        "--config",
        str(p.config),
        "once",
        "--now",
        MONDAY_8,
    ]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    errors = [proc.communicate(timeout=120)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], errors
    ids = [d["Message-ID"] for d in drafts(account)]
    assert len(ids) == 120 and len(set(ids)) == 120


def test_a_pass_while_another_works_on_the_state_file_says_so_in_one_line(
    practice: Practice, account: Account
) -> None:
    account.append(message(), SUNDAY_NIGHT)
    holder = Store.open(practice.state)
    try:
        done = cli(practice, "once", "--now", MONDAY_8)
    finally:
        holder.close()
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(
        f"inbox-guard: {practice.state}: another inbox-guard is "
        f"working on this state file (pid {os.getpid()})"
    )
    assert KW not in account.snapshot()[1]["flags"]
    Store.open(practice.state, wait=0).close()  # released with its holder


# -- 6. lost state ----------------------------------------------------------------------


def test_a_lost_state_file_never_makes_a_second_draft(
    tmp_path: Path, account: Account, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, account.password)
    p = write_practice(tmp_path, account, drafts="per-message")
    for i in range(3):
        account.append(
            message(subject=f"n{i}", body="I want to die\n" if i == 0 else "x\n"),
            SUNDAY_NIGHT + timedelta(minutes=i),
        )
    p.once_json(capsys, "--now", MONDAY_8)
    before = {
        "inbox": account.snapshot(),
        "drafts": account.snapshot("Drafts"),
        "agendas": p.files(),
    }
    for f in p.state.parent.glob(p.state.name + "*"):
        if not f.name.endswith(".lock"):
            f.rename(f.with_name(f.name + ".moved-aside"))

    result = p.once_json(capsys, "--now", MONDAY_8)

    assert len(result["flagged"]) == 3 and result["errors"] == []
    assert account.snapshot("Drafts") == before["drafts"]
    assert p.files() == before["agendas"]
    assert account.snapshot() == before["inbox"]  # no second alert either


# -- 7. steps planned under an old UIDVALIDITY ------------------------------------------


@pytest.mark.parametrize("lookback", [30, 0], ids=["found-by-rescan", "found-by-message-id"])
def test_marks_planned_before_the_inbox_was_renumbered_are_made_in_the_new_numbering(
    practice: Practice, account: Account, capsys: Capsys, lookback: int
) -> None:
    uid = account.append(message(), SUNDAY_NIGHT)
    with CutProxy(account.port) as proxy:
        proxy.set(Cut(at_command=b"UID STORE", forward_first=False))
        original = practice.config.read_text()
        practice.config.write_text(
            original.replace(f"port = {account.port}", f"port = {proxy.port}")
        )
        code, _, _ = practice.run("once", "--now", MONDAY_8, capsys=capsys)
        practice.config.write_text(original)
    assert code == 3  # planned and recorded, then cut before the STORE reached the server
    with account.client() as c:
        validity = c.select_folder("INBOX")[b"UIDVALIDITY"]
    account.server.doveadm(
        "mailbox", "update", "-u", account.user, "--uid-validity", str(validity + 7), "INBOX"
    )
    practice.config.write_text(
        practice.config.read_text().replace("lookback_days = 30", f"lookback_days = {lookback}")
    )

    result = practice.once_json(capsys, "--now", MONDAY_8)

    assert result["errors"] == []
    assert KW in account.snapshot()[uid]["flags"]
    assert len(drafts(account)) == 1


# -- 10. a state path that is not ours ---------------------------------------------------


def test_a_state_path_that_is_not_a_state_file_is_left_untouched(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("the practitioner's own notes\n")
    notes.chmod(0o644)
    other = tmp_path / "other.sqlite3"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE places (url TEXT)")
    other.chmod(0o644)
    folder = tmp_path / "folder"
    folder.mkdir(mode=0o755)
    for path in (notes, other, folder):
        before = (path.stat().st_mode, path.read_bytes() if path.is_file() else None)
        with pytest.raises(StoreError, match="left as it is"):
            Store.open(path)
        assert (path.stat().st_mode, path.read_bytes() if path.is_file() else None) == before
