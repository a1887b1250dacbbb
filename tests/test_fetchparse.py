"""The FETCH parser: the same answer as imapclient's parser for any FETCH response, in
any attribute order, and a fast path only where the answer is regular.

Responses are written as a server sends them and read by imaplib's own reader, so the
parser sees exactly the list of lines and (line, literal) pairs it gets in use.
"""

from __future__ import annotations

import imaplib
import io
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from imapclient.datetime_util import datetime_to_INTERNALDATE
from imapclient.response_parser import parse_fetch_response

from inbox_guard import config, rules, schema
from inbox_guard.embedded import EmbeddedServer, Seeder
from inbox_guard.mailbox import Mailbox
from inbox_guard.mailbox.parse import parse_fetch, parse_fetch_fast

from .conftest import Account, Practice, message

SUNDAY_NIGHT = datetime(2026, 11, 15, 23, 40, tzinfo=UTC)


class _Reader(imaplib.IMAP4):
    """imaplib's response reader over bytes a server would have sent."""

    def __init__(self, raw: bytes) -> None:
        self._raw = raw
        super().__init__()

    def open(self, host: str = "", port: int = 143, timeout: float | None = None) -> None:
        self.host, self.port, self.file = host, port, io.BytesIO(self._raw)

    def _connect(self) -> None:  # no greeting, no CAPABILITY: just the answer below
        # imaplib matches tagged lines as bytes (its stubs say str)
        self.tagre = re.compile(rb"(?P<tag>T\d+) (?P<type>[A-Z]+) (?P<data>.*)", re.ASCII)  # type: ignore[arg-type]
        self._cmd_log: dict[int, object] = {}
        self._cmd_log_len, self._cmd_log_idx = 10, 0


def imaplib_data(untagged: bytes) -> list[Any]:
    """The FETCH data imaplib collects from ``untagged`` and a tagged OK, as
    imapclient's ``_raw_command_untagged`` takes it."""
    reader = _Reader(untagged + b"T1 OK FETCH completed\r\n")
    reader.tagged_commands[b"T1"] = None
    while reader.tagged_commands[b"T1"] is None:
        reader._get_response()
    _, data = reader._untagged_response("OK", [None], "FETCH")
    assert isinstance(data, list)
    return data


def imapclient_parse(data: list[Any]) -> dict[int, dict[bytes, Any]]:
    return dict(parse_fetch_response(data, normalise_times=False, uid_is_key=True))


# -- responses as servers write them -------------------------------------------------


def _quoted(text: str) -> bytes:
    return b'"' + text.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


dates = st.one_of(
    st.datetimes(
        min_value=datetime(1990, 1, 1),
        max_value=datetime(2090, 1, 1),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=5, minutes=30))]
        ),
    ).map(lambda d: datetime_to_INTERNALDATE(d.replace(microsecond=0))),
    st.just(" 5-Nov-2026 08:00:00 +0000"),  # day padded with a space (RFC 3501 date-day-fixed)
    st.just("not a date"),
)
sections = st.sampled_from(
    [
        "",
        "TEXT",
        "1",
        "1.2",
        "HEADER",
        "HEADER.FIELDS (FROM TO)",
        "header.fields (from)",
        "HEADER.FIELDS (MESSAGE-ID SUBJECT)",
        "HEADER.FIELDS.NOT (RECEIVED)",
        'HEADER.FIELDS ("FROM" "TO")',
        'HEADER.FIELDS ("Message-ID")',  # as Courier quotes them
    ]
)
body_values = st.one_of(
    st.binary(max_size=40).map(_literal),
    st.binary(max_size=40).map(_literal),  # literals are the usual case: twice as likely
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20).map(_quoted),
    st.just(b"NIL"),
)
flag_lists = st.lists(
    st.sampled_from(["\\Seen", "\\Answered", "\\Flagged", "$OutOfHours", "NonJunk", "$label1"]),
    unique=True,
    max_size=4,
)


def _body() -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda section, origin, value: b"BODY[%s]%s %s" % (section.encode(), origin, value),
        sections,
        st.sampled_from([b"", b"<0>", b"<100>"]),
        body_values,
    )


# What the fast path reads: no NIL, no quoted or bracketed strings but the date.
REGULAR: list[st.SearchStrategy[bytes]] = [
    st.integers(1, 40).map(lambda u: b"UID %d" % u),
    dates.map(lambda d: b"INTERNALDATE " + _quoted(d)),
    st.integers(0, 10**6).map(lambda n: b"RFC822.SIZE %d" % n),
    flag_lists.map(lambda fs: b"FLAGS (%s)" % " ".join(fs).encode()),
]
ATTRIBUTES: list[st.SearchStrategy[bytes]] = [
    *REGULAR,
    st.just(b"INTERNALDATE NIL"),
    _body(),
    _body(),  # a second section: two literals in one response
    st.sampled_from(
        [
            b"MODSEQ (12345)",
            b"X-GM-MSGID 1278455344230334865",
            b'BODYSTRUCTURE ("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 12 1 NIL NIL NIL)',
        ]
    ),
]


@st.composite
def fetch_responses(draw: st.DrawFn) -> bytes:
    """One ``* n FETCH (...)`` line: some attributes, in any order."""
    chosen = [draw(a) for a in ATTRIBUTES if draw(st.booleans())]
    ordered = draw(st.permutations(chosen))
    return b"* %d FETCH (%s)\r\n" % (draw(st.integers(1, 40)), b" ".join(ordered))


unsolicited = st.sampled_from(
    [
        b"* 3 EXPUNGE\r\n",
        b"* 41 EXISTS\r\n",
        b"* 2 RECENT\r\n",
        b"* 7 FETCH (FLAGS (\\Seen))\r\n",
        b"* 9 FETCH (UID 9 FLAGS ())\r\n",
        b"* OK [HIGHESTMODSEQ 99] Highest\r\n",
    ]
)


@st.composite
def regular_responses(draw: st.DrawFn) -> bytes:
    """A response of the shape the fast path is for: simple attributes in any order,
    then at most one unquoted BODY section with a literal."""
    simple = [draw(a) for a in REGULAR if draw(st.booleans())]
    ordered = draw(st.permutations(simple))
    if draw(st.booleans()):
        section = draw(st.sampled_from(["TEXT", "1", "HEADER.FIELDS (FROM TO SUBJECT)"]))
        ordered.append(
            b"BODY[%s]%s %s"
            % (
                section.encode(),
                draw(st.sampled_from([b"", b"<0>"])),
                _literal(draw(st.binary(max_size=40))),
            )
        )
    return b"* %d FETCH (%s)\r\n" % (draw(st.integers(1, 40)), b" ".join(ordered))


# -- the parser ----------------------------------------------------------------------


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(fetch_responses(), fetch_responses(), unsolicited), max_size=6))
def test_parse_fetch_gives_what_imapclient_gives(lines: list[bytes]) -> None:
    data = imaplib_data(b"".join(lines))
    assert parse_fetch(data) == imapclient_parse(data)


@settings(max_examples=300)
@given(st.lists(st.one_of(regular_responses(), regular_responses(), unsolicited), max_size=6))
def test_regular_answers_take_the_fast_path(lines: list[bytes]) -> None:
    data = imaplib_data(b"".join(lines))
    fast = parse_fetch_fast(data)
    assert fast is not None, data
    assert fast == imapclient_parse(data)


def test_courier_order_keeps_internaldate_and_size() -> None:
    """Courier answers in the order asked: attributes asked after the header section
    come after its literal, on the line that ends the response."""
    header = b"From: jane@example.org\r\nTo: alex@example.org\r\n\r\n"
    data = imaplib_data(
        b'* 1 FETCH (UID 5 BODY[HEADER.FIELDS ("FROM" "TO")] '
        + _literal(header)
        + b' INTERNALDATE "15-Nov-2026 23:40:00 +0000" RFC822.SIZE 456)\r\n'
    )
    assert data == [
        (b'1 (UID 5 BODY[HEADER.FIELDS ("FROM" "TO")] {48}', header),
        b' INTERNALDATE "15-Nov-2026 23:40:00 +0000" RFC822.SIZE 456)',
    ]
    parsed = parse_fetch(data)
    assert parsed == {
        5: {
            b"SEQ": 1,
            b'BODY[HEADER.FIELDS ("FROM" "TO")]': header,
            b"INTERNALDATE": SUNDAY_NIGHT,
            b"RFC822.SIZE": 456,
        }
    }
    assert parsed[5][b"INTERNALDATE"].utcoffset() == timedelta(0)  # aware, as sent
    assert parse_fetch_fast(data) is None  # a continuation after the literal


def test_dovecot_order_takes_the_fast_path() -> None:
    header = b"From: jane@example.org\r\n\r\n"
    data = imaplib_data(
        b'* 1 FETCH (UID 5 INTERNALDATE "15-Nov-2026 23:40:00 +0000" '
        b"BODY[HEADER.FIELDS (FROM)] " + _literal(header) + b")\r\n"
        b"* 2 FETCH (UID 6 FLAGS (\\Seen) BODY[1]<0> " + _literal(b"text") + b")\r\n"
    )
    expected = {
        5: {b"SEQ": 1, b"INTERNALDATE": SUNDAY_NIGHT, b"BODY[HEADER.FIELDS (FROM)]": header},
        6: {b"SEQ": 2, b"FLAGS": (b"\\Seen",), b"BODY[1]<0>": b"text"},
    }
    assert parse_fetch_fast(data) == expected == imapclient_parse(data)


@pytest.mark.parametrize(
    "response",
    [
        b"* 1 FETCH (UID 5 BODY[TEXT] NIL)\r\n",
        b'* 1 FETCH (UID 5 BODY[TEXT] "quoted")\r\n',
        b"* 1 FETCH (UID 5 MODSEQ (7) BODY[TEXT] {1}\r\nx)\r\n",
        b"* 1 FETCH (UID 5 INTERNALDATE NIL BODY[TEXT] {1}\r\nx)\r\n",
        b"* 1 FETCH (UID 5 RFC822.SIZE 007 BODY[TEXT] {1}\r\nx)\r\n",  # imapclient keeps b"007"
        b"* 1 FETCH (UID 5 FLAGS (NIL) BODY[TEXT] {1}\r\nx)\r\n",
        b"* 1 FETCH (uid 5 BODY[TEXT] {1}\r\nx)\r\n",
    ],
)
def test_anything_irregular_goes_to_imapclient(response: bytes) -> None:
    data = imaplib_data(response)
    assert parse_fetch_fast(data) is None
    assert parse_fetch(data) == imapclient_parse(data)


# -- end to end ----------------------------------------------------------------------


def _check_fetch_headers(box: Mailbox, uids: dict[int, datetime]) -> None:
    box.open("INBOX", read_only=True)
    for header_first in (False, True):
        got = list(box.fetch_headers(sorted(uids), rules.FIELDS, header_first=header_first))
        assert {f.uid: f.internaldate for f in got} == uids, header_first
        for f in got:
            assert f.internaldate.utcoffset() is not None
            assert rules.parse(f.header).subject == "Thinking about last week"


def test_fetch_headers_on_dovecot_in_either_order(practice: Practice, account: Account) -> None:
    uids = {
        account.append(message(), SUNDAY_NIGHT + timedelta(minutes=i)): SUNDAY_NIGHT
        + timedelta(minutes=i)
        for i in range(3)
    }
    box = Mailbox.connect(config.load(practice.config).main.account, account.password)
    try:
        _check_fetch_headers(box, uids)
    finally:
        box.logout()


def test_fetch_headers_on_a_server_answering_in_the_order_asked() -> None:
    """pymap, like Courier, answers in the order asked: with the header asked first,
    INTERNALDATE comes after the header's literal, and no message may be skipped."""
    with EmbeddedServer("alex@example.org", "pw-embedded") as server:
        seeder = Seeder(server)
        uids = {
            seeder.append("INBOX", message(), SUNDAY_NIGHT + timedelta(minutes=i)): SUNDAY_NIGHT
            + timedelta(minutes=i)
            for i in range(3)
        }
        seeder.close()
        account = schema.Account(
            host="127.0.0.1",
            port=server.port,
            security="plain",
            username="alex@example.org",
            password_env="UNUSED",
        )
        box = Mailbox.connect(account, "pw-embedded")
        try:
            _check_fetch_headers(box, uids)
        finally:
            box.logout()


def test_special_use_attributes_are_matched_without_regard_to_case() -> None:
    from inbox_guard.mailbox import special_folder

    # Cyrus lists a folder its configuration makes the Drafts folder as "\drafts".
    listing = [
        ((b"\\HasNoChildren",), b"/", "Drafts"),
        ((b"\\HasNoChildren", b"\\drafts"), b"/", "Brouillons"),
    ]
    assert special_folder(listing, b"\\Drafts") == "Brouillons"
    assert special_folder(listing[:1], b"\\Drafts") is None
