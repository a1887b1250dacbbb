"""Decoding what a sender wrote is total: any charset name, any bytes, any header."""

from __future__ import annotations

import json
import re
import sqlite3
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from inbox_guard import agenda, risk, rules, text

from .hostile_corpus import CODEC_NAMES, charset_names

SURROGATE = re.compile("[\ud800-\udfff]")


def storable(s: str) -> None:
    """What SQLite, JSON with ensure_ascii=False and UTF-8 files all accept."""
    assert not SURROGATE.search(s)
    s.encode("utf-8")
    json.dumps(s, ensure_ascii=False).encode("utf-8")
    with sqlite3.connect(":memory:") as db:
        db.execute("SELECT ?", (s,)).fetchone()


def test_every_codec_python_knows_decodes_to_storable_text() -> None:
    hostile = [
        b"",
        b"+2AA-",
        b"\\ud800",
        b"\xff\xfe\x00\xd8",
        b"\x00\xd8",
        b"xn--",
        b"=?=",
        bytes(range(256)),
    ]
    for name in CODEC_NAMES:
        for data in hostile:
            storable(text.decode(data, name))


@settings(max_examples=400)
@given(data=st.binary(max_size=300), charset=charset_names)
def test_any_bytes_in_any_charset_decode(data: bytes, charset: str) -> None:
    storable(text.decode(data, charset))


@settings(max_examples=400)
@given(
    charset=charset_names,
    kind=st.sampled_from("qQbBx"),
    payload=st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="?"),
        max_size=60,
    ),
    around=st.text(max_size=20),
)
def test_any_encoded_word_decodes(charset: str, kind: str, payload: str, around: str) -> None:
    value = f"{around}=?{charset}?{kind}?{payload}?= {around}"
    storable(text.decode_words(value))


def test_the_encoded_words_found_in_the_wild_decode() -> None:
    assert text.decode_words("=?utf-7?q?+2AA-?=") == "\ufffd"
    assert text.decode_words("=?unicode_escape?q?=5Cud800?=") == "\\ud800"
    assert text.decode_words("=?utf-8?b?abc?=") == "i\ufffd"  # broken base64: no exception
    assert text.decode_words("=?idna?q?x?=") == "x"
    assert text.decode_words("=?iso-8859-1?q?caf=E9?= =?utf-8?q?_ol=C3=A9?=") == "café olé"
    assert text.decode_words("Re: =?UTF-8?B?R3LDvMOfZQ==?= again") == "Re: Grüße again"


@settings(max_examples=300)
@given(st.binary(max_size=2000))
def test_any_header_block_parses_and_its_subject_is_fit_to_show(raw: bytes) -> None:
    h = rules.parse(raw)
    storable(h.subject)
    assert not any(unicodedata.category(ch) in ("Cc", "Cf") for ch in h.subject)
    assert all(m.isascii() and len(m) <= 252 for m in (h.message_id or "", *h.references))


@settings(max_examples=300)
@given(
    raw=st.binary(max_size=2000),
    encoding=st.sampled_from(["base64", "quoted-printable", "7bit", "8bit", "x-uue", ""]),
    charset=charset_names,
    subtype=st.sampled_from(["plain", "html", "x"]),
)
def test_any_text_part_decodes_for_the_risk_screen(
    raw: bytes, encoding: str, charset: str, subtype: str
) -> None:
    decoded = risk.decode_part(raw, encoding, charset, subtype)
    storable(decoded)
    risk.screen([decoded])


def test_risk_words_are_found_in_a_utf7_body() -> None:
    body = "I want to die".encode("utf-7")
    assert risk.screen([risk.decode_part(body, "7bit", "utf-7", "plain")]) == ["want to die"]


def test_shown_text_loses_bidi_zero_width_and_control_characters() -> None:
    sneaky = "invoice\u202egpj.exe\u200b \x1b[31mred\x1b[0m\r\nBcc: x"
    assert text.shown(sneaky) == "invoicegpj.exe [31mred [0m Bcc: x"
    assert len(text.shown("long " * 1000)) == 998


@given(st.text(max_size=200))
def test_sender_text_in_an_agenda_line_is_one_inert_code_span(subject: str) -> None:
    line = agenda.note_line(
        __import__("datetime").datetime(2026, 11, 22, 23, 40), subject, "a" * 32
    )
    assert "\n" not in line and line.count("<!--") == 1
    safe = text.shown(subject).replace("<", "‹").replace(">", "›")
    if safe:
        # The span's fence is longer than any run of backticks inside it.
        span = line.split("out-of-hours email: ", 1)[1].rsplit(" <!--", 1)[0]
        fence = re.match("`+", span)
        assert fence is not None and span.endswith(fence.group(0))
        inner = span[len(fence.group(0)) : -len(fence.group(0))]
        assert fence.group(0) not in inner
        assert inner.strip(" ") == safe.strip(" ")


def test_markdown_in_a_subject_stays_text() -> None:
    from datetime import datetime

    line = agenda.note_line(
        datetime(2026, 11, 22, 23, 40),
        "![x](https://evil.example/p.png) [click](https://e.example) <img src=x> `code`",
        "b" * 32,
    )
    assert "out-of-hours email: `` ![x](https://evil.example/p.png) [click](" in line
    assert "‹img src=x›" in line and "<img" not in line
