"""Header parsing and the RFC 3834 machine-mail rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inbox_guard import rules


def parse(text: str) -> rules.Headers:
    return rules.parse(text.replace("\n", "\r\n").encode() + b"\r\n")


def test_from_address_ignores_display_name_encoded_words_and_case() -> None:
    h = parse("From: =?utf-8?q?J=C3=A4ne_D=C3=B6e?= <Jane@EXAMPLE.org>\nTo: a@b.org, C <c@d.org>")
    assert h.from_addr == "jane@example.org"
    assert h.recipients == ("a@b.org", "c@d.org")


def test_subject_encoded_words_are_decoded_onto_one_line() -> None:
    h = parse("Subject: =?utf-8?b?w5xiZXIgZGllIFdvY2hl?=\n folded part")
    assert h.subject == "Über die Woche folded part"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Auto-Submitted: auto-replied", "auto-submitted"),
        ("Auto-Submitted: auto-generated; owner-email=x@y.org", "auto-submitted"),
        ("X-Auto-Response-Suppress: OOF, AutoReply", "auto-submitted"),
        ("X-Auto-Response-Suppress: All", "auto-submitted"),
        ("Precedence: bulk", "auto-submitted"),
        ("Precedence: junk", "auto-submitted"),
        ("Precedence: list", "auto-submitted"),
        ("List-Id: <news.example.org>", "mailing-list"),
        ("List-Unsubscribe: <mailto:u@example.org>", "mailing-list"),
        ("Return-Path: <>", "bounce"),
        ("Return-Path: ", "bounce"),
        ("Sender: MAILER-DAEMON@example.org", "bounce"),
        ("Sender: owner-group@example.org", "bounce"),
        ("Sender: group-request@example.org", "bounce"),
        ("Content-Type: multipart/report; report-type=delivery-status; boundary=x", "bounce"),
    ],
)
def test_machine_written_mail_is_named(header: str, reason: str) -> None:
    assert rules.machine_reason(parse(f"From: jane@example.org\n{header}")) == reason


@pytest.mark.parametrize(
    "header",
    [
        "Auto-Submitted: no",
        "Precedence: first-class",
        "X-Auto-Response-Suppress: DR",
        "Return-Path: <jane@example.org>",
        "Content-Type: text/plain",
    ],
)
def test_person_written_mail_is_not(header: str) -> None:
    assert rules.machine_reason(parse(f"From: jane@example.org\n{header}")) is None


def test_postmaster_from_is_a_bounce() -> None:
    assert rules.machine_reason(parse("From: postmaster@example.org")) == "bounce"


@pytest.mark.parametrize(
    ("subject", "reply"),
    [
        ("Hello", "Re: Hello"),
        ("Re: Hello", "Re: Hello"),
        ("RE: re:Hello", "Re: Hello"),
        ("Re[2]: Hi", "Re: Hi"),
        ("", "Re: "),
        ("Regarding x", "Re: Regarding x"),
    ],
)
def test_reply_subject_has_one_re(subject: str, reply: str) -> None:
    assert rules.reply_subject(subject) == reply


def test_two_from_addresses_is_nobody() -> None:
    assert parse("From: jane@example.org, sam@example.net").from_addr is None


@given(st.binary(max_size=2000))
def test_any_header_bytes_parse_without_raising(raw: bytes) -> None:
    h = rules.parse(raw)
    rules.machine_reason(h)
    assert "\n" not in h.subject and "\r" not in h.subject


@given(st.dictionaries(st.sampled_from(list(rules.FIELDS)), st.text(max_size=200), max_size=8))
def test_any_header_text_parses_without_raising(fields: dict[str, str]) -> None:
    raw = "".join(f"{k}: {v}\r\n" for k, v in fields.items()).encode("utf-8", "surrogateescape")
    h = rules.parse(raw)
    assert "\n" not in rules.reply_subject(h.subject)
