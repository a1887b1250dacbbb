"""The risk screen: hits, near misses, decoding of the text window."""

from __future__ import annotations

import base64
import quopri

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inbox_guard.risk import decode_part, screen


@pytest.mark.parametrize(
    ("text", "hit"),
    [
        ("I keep thinking about ending it all", "ending it all"),
        ("i don’t want to be here anymore", "don't want to be here anymore"),
        ("I Want To\n  Die", "want to die"),
        ("started cutting myself again", "cutting myself"),
        ("I think I took too many pills", "took too many pills"),
        ("feeling suicidal tonight", "suicidal"),
        ("sometimes I could kill him", "kill him"),
        ("self-harm urges are back", "self-harm"),
    ],
)
def test_risk_phrases_are_found(text: str, hit: str) -> None:
    assert screen([text]) == [hit]


@pytest.mark.parametrize(
    "text",
    [
        "I learnt a new skill this week",
        "the killer whale documentary",
        "this workload is killing me",  # idiom, not on the list
        "a die-cast model",
        "suicidesquad is a film",  # not a whole word
        "Thank you for yesterday's session",
    ],
)
def test_near_misses_are_not(text: str) -> None:
    assert screen([text]) == []


def test_practitioner_phrases_are_added_and_matched_whole() -> None:
    assert screen(["The Bridge again"], extra=["the bridge"]) == ["the bridge"]
    assert screen(["thebridge"], extra=["the bridge"]) == []


def test_each_hit_is_reported_once_in_order() -> None:
    assert screen(["overdose", "suicide and overdose"]) == ["overdose", "suicide"]


def test_base64_cut_mid_quantum_and_charset_decode() -> None:
    raw = base64.encodebytes("Ich möchte nicht mehr leben. I want to die.".encode("latin-1"))
    cut = decode_part(raw[:-3], "base64", "iso-8859-1", "plain")
    text = decode_part(raw, "base64", "iso-8859-1", "plain")
    assert text.startswith(cut) and len(cut) < len(text)
    assert "möchte" in text and screen([text]) == ["want to die"]


def test_quoted_printable_and_html_are_reduced_to_text() -> None:
    markup = "<p>I want to <b>end</b>\n my life</p><script>kill them</script>"
    raw = quopri.encodestring(markup.encode())
    text = decode_part(raw, "quoted-printable", "utf-8", "html")
    assert screen([text]) == ["end my life"]


def test_unknown_charset_falls_back_without_error() -> None:
    assert decode_part(b"hello", "7bit", "x-unknown-charset", "plain") == "hello"


@given(
    st.binary(max_size=3000),
    st.sampled_from(["base64", "quoted-printable", "8bit", "x"]),
    st.sampled_from(["utf-8", "latin-1", "bogus", ""]),
    st.sampled_from(["plain", "html"]),
)
def test_decoding_never_raises(raw: bytes, enc: str, charset: str, subtype: str) -> None:
    screen([decode_part(raw, enc, charset, subtype)])
