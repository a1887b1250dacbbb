"""The mark shows where the practitioner reads mail: each [mark] style against a real
Dovecot (the server-side state each mail app displays), the pure choice of style, and
what `check --connect` and `thunderbird-tags` say."""

from __future__ import annotations

import email
from datetime import timedelta
from email.policy import default as default_policy

import pytest

from inbox_guard import marks

from .conftest import (
    KW,
    MONDAY_8,
    RISK_KW,
    SAM,
    SUNDAY_NIGHT,
    THERAPIST,
    Account,
    Capsys,
    Practice,
    drafts,
    message,
)
from .faults import Cut, CutProxy

FLAGGED = b"\\Flagged"
BIT0, BIT1, BIT2 = b"$MailFlagBit0", b"$MailFlagBit1", b"$MailFlagBit2"


def show(p: Practice, style: str, extra: str = "") -> None:
    p.config.write_text(p.config.read_text() + f'\n[mark]\nshow = "{style}"\n{extra}')


# -- the pure choice -------------------------------------------------------------------


def test_auto_picks_gmail_labels_then_a_flag_where_no_keywords_are_kept() -> None:
    assert marks.choose("auto", [b"IMAP4rev1", b"X-GM-EXT-1"], True) == "gmail-label"
    assert marks.choose("auto", [b"IMAP4rev1"], False) == "flag"
    assert marks.choose("auto", [b"IMAP4rev1"], True) == "keyword"
    assert marks.choose("folder", [b"X-GM-EXT-1"], False) == "folder"


@pytest.mark.parametrize(
    ("colour", "bits"),
    [
        ("orange", ("$MailFlagBit0",)),
        ("yellow", ("$MailFlagBit1",)),
        ("green", ("$MailFlagBit0", "$MailFlagBit1")),
        ("blue", ("$MailFlagBit2",)),
        ("purple", ("$MailFlagBit0", "$MailFlagBit2")),
        ("grey", ("$MailFlagBit1", "$MailFlagBit2")),
        ("red", ()),
    ],
)
def test_apple_mail_colours_are_the_drafts_bit_patterns(colour: str, bits: tuple[str, ...]) -> None:
    assert marks.colour_bits(colour) == bits


def test_a_flag_the_practitioner_set_and_a_risk_flag_keep_their_red() -> None:
    def m(already: bool, risk: bool) -> marks.Marks:
        return marks.out_of_hours(
            "flag-colour", "$OutOfHours", True, "Out of hours", "blue", already, risk
        )

    assert m(False, False).flags == ("$OutOfHours", "\\Flagged", "$MailFlagBit2")
    assert m(True, False).flags == ("$OutOfHours", "\\Flagged")
    assert m(False, True).flags == ("$OutOfHours", "\\Flagged")


def test_without_keywords_every_style_still_shows_something() -> None:
    for style in marks.STYLES:
        assert marks.out_of_hours(style, "$OutOfHours", False, "L", "blue", False)
        assert "\\Flagged" in marks.needs_attention(style, "$N", False, "R").flags


# -- each style against Dovecot ----------------------------------------------------------


def test_keyword_is_the_mark_where_the_server_keeps_keywords(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    uid = account.append(message(), SUNDAY_NIGHT)
    practice.once_json(capsys, "--now", MONDAY_8)
    assert account.snapshot()[uid]["flags"] == {KW}
    code, out, err = practice.run("check", "--connect", capsys=capsys)
    assert code == 0, err
    assert (
        "marks will show as the keyword $OutOfHours: as a tag in Thunderbird once the "
        "tag is defined (see `inbox-guard thunderbird-tags`)"
    ) in out


def test_flag_style_flags_and_keeps_the_keyword(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    show(practice, "flag")
    uid = account.append(message(), SUNDAY_NIGHT)
    practice.once_json(capsys, "--now", MONDAY_8)
    assert account.snapshot()[uid]["flags"] == {KW, FLAGGED}
    _code, out, _ = practice.run("check", "--connect", capsys=capsys)
    assert "marks will show as a flag (\\Flagged)" in out and "never removes a flag" in out


def test_flag_colour_is_blue_for_out_of_hours_red_for_risk_and_leaves_own_flags_red(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    show(practice, "flag-colour")
    plain = account.append(message(), SUNDAY_NIGHT)
    risky = account.append(
        message(sender=SAM, body="I want to end it all\n"), SUNDAY_NIGHT + timedelta(minutes=1)
    )
    own = account.append(
        message(subject="flagged on the phone"),
        SUNDAY_NIGHT + timedelta(minutes=2),
        flags=("\\Flagged",),
    )
    practice.once_json(capsys, "--now", MONDAY_8)
    snap = account.snapshot()
    assert snap[plain]["flags"] == {KW, FLAGGED, BIT2}  # blue in Apple Mail
    assert snap[risky]["flags"] == {KW, RISK_KW, FLAGGED}  # no bits: red
    assert snap[own]["flags"] == {KW, FLAGGED}  # the practitioner's red flag stays red
    _code, out, _ = practice.run("check", "--connect", capsys=capsys)
    assert "marks will show as a blue flag in Apple Mail" in out


def test_folder_style_copies_once_into_named_folders(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    show(practice, "folder", 'label = "Außer Haus"\n')
    plain = account.append(message(message_id="<p@example.org>"), SUNDAY_NIGHT)
    risky = account.append(
        message(sender=SAM, message_id="<r@example.org>", body="I want to end it all\n"),
        SUNDAY_NIGHT + timedelta(minutes=1),
    )
    no_id = account.append(
        b"From: jane@example.org\r\nTo: alex@example.org\r\nSubject: no id\r\n\r\nx\r\n",
        SUNDAY_NIGHT + timedelta(minutes=2),
    )
    result = practice.once_json(capsys, "--now", MONDAY_8)
    assert result["errors"] == []
    inbox = account.snapshot()
    assert all(KW in inbox[u]["flags"] for u in (plain, risky, no_id))
    copies = account.snapshot("Außer Haus")
    assert sorted(m["date"] for m in copies.values()) == sorted(
        inbox[u]["date"] for u in (plain, risky, no_id)
    )
    attention = account.snapshot("Needs attention")
    assert len(attention) == 1
    assert next(iter(attention.values()))["bytes"] == inbox[risky]["bytes"]
    _code, out, _ = practice.run("check", "--connect", capsys=capsys)
    assert "marks will show as a copy in the folder 'Außer Haus'" in out


def test_a_copy_made_just_before_a_crash_is_found_not_made_again(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    show(practice, "folder")
    account.append(message(), SUNDAY_NIGHT)
    with CutProxy(account.port) as proxy:
        proxy.set(Cut(at_command=b"UID COPY", forward_first=True))  # done, never heard
        original = practice.config.read_text()
        practice.config.write_text(
            original.replace(f"port = {account.port}", f"port = {proxy.port}")
        )
        code, _, _ = practice.run("once", "--now", MONDAY_8, capsys=capsys)
        practice.config.write_text(original)
    assert code == 3 and proxy.cuts == 1
    assert len(account.snapshot("Out of hours")) == 1
    practice.once_json(capsys, "--now", MONDAY_8)
    assert len(account.snapshot("Out of hours")) == 1


def test_labels_and_folders_speak_the_practitioners_language(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    text = practice.config.read_text().replace(
        'emergency_text = "', 'language = "de"\nemergency_text = "'
    )
    practice.config.write_text(text)
    show(practice, "folder")
    account.append(message(), SUNDAY_NIGHT)
    practice.once_json(capsys, "--now", MONDAY_8)
    assert len(account.snapshot("Außerhalb der Sprechzeiten")) == 1


# -- the draft comes from the address the client wrote to ------------------------------


def test_the_draft_comes_from_the_address_the_client_wrote_to(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    account.append(message(to="practice@example.org"), SUNDAY_NIGHT)
    account.append(
        message(sender=SAM, to="someone@else.example", cc=THERAPIST),
        SUNDAY_NIGHT + timedelta(minutes=1),
    )
    practice.once_json(capsys, "--now", MONDAY_8)
    froms = sorted(d["From"] for d in drafts(account))
    assert froms == ["Alex Morgan <alex@example.org>", "Alex Morgan <practice@example.org>"]


# -- Thunderbird ------------------------------------------------------------------------


def test_thunderbird_tags_defines_the_keywords_as_tags(practice: Practice, capsys: Capsys) -> None:
    show(practice, "keyword", 'colour = "green"\n')
    code, out, _ = practice.run("thunderbird-tags", capsys=capsys)
    assert code == 0
    lines = [ln for ln in out.splitlines() if not ln.startswith("//")]
    assert lines == [
        'user_pref("mailnews.tags.$outofhours.tag", "Out of hours");',
        'user_pref("mailnews.tags.$outofhours.color", "#009900");',
        'user_pref("mailnews.tags.$needsattention.tag", "Needs attention");',
        'user_pref("mailnews.tags.$needsattention.color", "#FF0000");',
    ]


def test_the_digest_is_never_marked(practice: Practice, account: Account, capsys: Capsys) -> None:
    show(practice, "flag")
    account.append(message(body="I want to end it all\n"), SUNDAY_NIGHT)
    practice.once_json(capsys, "--now", MONDAY_8)
    practice.run("digest", "--now", MONDAY_8, capsys=capsys)
    practice.once_json(capsys, "--now", MONDAY_8)
    for m in account.snapshot().values():
        parsed = email.message_from_bytes(m["bytes"], policy=default_policy)
        if "inbox-guard." in str(parsed["Message-ID"]):
            assert KW not in m["flags"] and FLAGGED not in m["flags"]


# -- Gmail and Exchange, through their stand-ins (tests/standins.py) -----------------


def through(p: Practice, port: int, proxy_port: int) -> None:
    p.config.write_text(p.config.read_text().replace(f"port = {port}", f"port = {proxy_port}"))


def test_on_gmail_marks_are_labels_risk_a_second_label_and_a_star(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    from .standins import GmailStandIn

    plain = account.append(message(), SUNDAY_NIGHT)
    risky = account.append(
        message(sender=SAM, body="I want to end it all\n"), SUNDAY_NIGHT + timedelta(minutes=1)
    )
    with GmailStandIn(account.port) as gmail:
        through(practice, account.port, gmail.port)
        for _ in range(2):  # a second pass adds nothing
            assert practice.once_json(capsys, "--now", MONDAY_8)["errors"] == []
        code, out, err = practice.run("check", "--connect", capsys=capsys)
    assert code == 0, err
    assert (
        "marks will show as the Gmail label 'Out of hours' (Gmail web and apps); risk as "
        "the label 'Needs attention' and a star"
    ) in out
    inbox = account.snapshot()
    assert inbox[plain]["flags"] == {KW}  # Gmail keeps keywords too
    assert inbox[risky]["flags"] == {KW, RISK_KW, FLAGGED}  # the star
    labelled = account.snapshot("Out of hours")  # a label is a folder in Gmail's IMAP
    assert sorted(m["bytes"] for m in labelled.values()) == sorted(
        inbox[u]["bytes"] for u in (plain, risky)
    )
    [attention] = account.snapshot("Needs attention").values()
    assert attention["bytes"] == inbox[risky]["bytes"]


def test_gmail_labels_on_a_server_without_them_is_a_config_error_at_check(
    practice: Practice, capsys: Capsys
) -> None:
    show(practice, "gmail-label")
    code, _, err = practice.run("check", "--connect", capsys=capsys)
    assert code == 2 and err.count("\n") == 1
    assert 'mark.show: "gmail-label" needs Gmail, and 127.0.0.1 does not offer' in err


@pytest.mark.parametrize("style", ["auto", "keyword"])
def test_on_exchange_marks_are_flags_and_check_says_so(
    practice: Practice, account: Account, capsys: Capsys, style: str
) -> None:
    from .standins import ExchangeStandIn

    show(practice, style)
    uid = account.append(message(), SUNDAY_NIGHT)
    risky = account.append(
        message(sender=SAM, body="I want to end it all\n"), SUNDAY_NIGHT + timedelta(minutes=1)
    )
    with ExchangeStandIn(account.port) as exchange:
        through(practice, account.port, exchange.port)
        result = practice.once_json(capsys, "--now", MONDAY_8)
        _code, out, _ = practice.run("check", "--connect", capsys=capsys)
    assert result["errors"] == [] and len(result["flagged"]) == 2
    assert exchange.refused == []  # no keyword was ever sent to it
    snap = account.snapshot()
    assert snap[uid]["flags"] == {FLAGGED} and snap[risky]["flags"] == {FLAGGED}
    assert "marks will show as a flag (\\Flagged)" in out


def test_a_keyword_the_server_refuses_although_it_keeps_keywords_becomes_a_flag(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    # Dovecot announces \* but refuses a keyword over 50 characters (Cyrus likewise once
    # a mailbox holds 100 keywords): the mark is then \Flagged, not an error every pass.
    long_kw = "$" + "k" * 60
    practice.config.write_text(
        practice.config.read_text().replace("[triage]", f'[triage]\nkeyword = "{long_kw}"')
    )
    uid = account.append(message(), SUNDAY_NIGHT)
    result = practice.once_json(capsys, "--now", MONDAY_8)
    assert result["errors"] == [] and [f["uid"] for f in result["flagged"]] == [uid]
    assert account.snapshot()[uid]["flags"] == {FLAGGED}
    assert practice.once_json(capsys, "--now", MONDAY_8)["flagged"] == []


def test_a_mailbox_full_of_keywords_still_shows_the_mark(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    # Cyrus keeps at most 100 keywords per mailbox yet still announces \*: the 101st is
    # refused ("Too many user flags in mailbox"). On any server the mark must show.
    filler = account.append(message(sender="stranger@example.org"), SUNDAY_NIGHT)
    with account.client() as c:
        c.select_folder("INBOX")
        c.add_flags([filler], [f"$K{i:03d}" for i in range(100)], silent=True)
    uid = account.append(message(), SUNDAY_NIGHT + timedelta(minutes=1))
    result = practice.once_json(capsys, "--now", MONDAY_8)
    assert result["errors"] == [] and [f["uid"] for f in result["flagged"]] == [uid]
    assert account.snapshot()[uid]["flags"] & {KW, FLAGGED}
