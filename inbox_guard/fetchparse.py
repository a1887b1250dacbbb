"""FETCH answers as imaplib hands them over, parsed as imapclient parses them.

imaplib gives the untagged FETCH data as a list whose items are either a line
(``bytes``) or a line ending in a literal's ``{size}`` with the literal
(``(line, literal)``); the response then goes on in the next item, which is just
``b")"`` when the literal came last. imapclient's ``parse_fetch_response`` reads any
of it but a character at a time: too slow for a backlog of thousands of headers.

:func:`parse_fetch` reads the regular answers to header and text fetches directly and
hands everything else to imapclient, with exactly the same result either way. Servers
answer in their own order (Dovecot) or in the order asked (Courier, pymap), so the
direct reading accepts only what it fully understands: whole responses made of UID,
INTERNALDATE, RFC822.SIZE and FLAGS, with at most one ``BODY[...]`` literal, last.

Pure: no sockets, no client object.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from imapclient.datetime_util import parse_to_datetime
from imapclient.response_parser import parse_fetch_response

Parsed = dict[int, dict[bytes, Any]]

_START = re.compile(rb"([0-9]+) \(")
_NUMBER = re.compile(rb"(UID|RFC822\.SIZE) (0|[1-9][0-9]*)")
_DATE = re.compile(rb'INTERNALDATE "([^"\\]*)"')
_FLAG = rb"\\?[A-Za-z$][\w$.-]*"
_FLAGS = re.compile(rb"FLAGS \(((?:" + _FLAG + rb"(?: " + _FLAG + rb")*)?)\)")
# Unquoted section names only: Courier quotes header field names, imapclient keeps the
# quotes in the key, and such answers go to imapclient.
_BODY = re.compile(
    rb"(BODY\[[A-Za-z0-9.]*(?: \([A-Za-z0-9-]+(?: [A-Za-z0-9-]+)*\))?\](?:<[0-9]+>)?)"
    rb" \{([0-9]+)\}"
)


def parse_fetch(data: list[Any]) -> Parsed:
    """UID -> {attribute: value} as ``parse_fetch_response(data, normalise_times=False,
    uid_is_key=True)`` gives it (keys as the server sent them, upper-cased, plus
    ``b"SEQ"``; INTERNALDATE aware), taking the direct path where it applies."""
    fast = parse_fetch_fast(data)
    if fast is not None:
        return fast
    return dict(parse_fetch_response(data, normalise_times=False, uid_is_key=True))


def parse_fetch_fast(data: list[Any]) -> Parsed | None:
    """The direct path alone: the parsed answer, or None where it does not apply."""
    if data == [None]:  # imaplib's "no FETCH response at all"
        return {}
    out: Parsed = {}
    i = 0
    while i < len(data):
        item = data[i]
        if isinstance(item, bytes):
            line, literal, i = item, None, i + 1
        elif (
            isinstance(item, tuple) and len(item) == 2
            and isinstance(item[0], bytes) and isinstance(item[1], bytes)
            and data[i + 1 : i + 2] == [b")"]  # nothing after the literal but ")"
        ):
            (line, literal), i = item, i + 2
        else:
            return None
        found = _response(line, literal)
        if found is None:
            return None
        key, attributes = found
        out.setdefault(key, {}).update(attributes)  # as imapclient merges repeated keys
    return out


def _response(line: bytes, literal: bytes | None) -> tuple[int, dict[bytes, Any]] | None:
    """(key, attributes) of one whole FETCH response in the direct shape, else None.

    ``line`` is ``n (`` and attributes separated by single spaces, then ``)``, or, with
    a ``literal``, a last ``BODY[...] {size}`` whose literal ends the response."""
    start = _START.match(line)
    if start is None:
        return None
    key = seq = int(start[1])
    attributes: dict[bytes, Any] = {b"SEQ": seq}
    pos = start.end()
    while not (literal is None and line[pos:] == b")"):
        if literal is not None and (body := _BODY.fullmatch(line, pos)):
            if int(body[2]) != len(literal):
                return None
            attributes[body[1].upper()] = literal
            return key, attributes
        if m := _NUMBER.match(line, pos):
            if m[1] == b"UID":
                key = int(m[2])
            else:
                attributes[b"RFC822.SIZE"] = int(m[2])
        elif m := _DATE.match(line, pos):
            attributes[b"INTERNALDATE"] = _internaldate(m[1])
        elif (m := _FLAGS.match(line, pos)) and b"NIL" not in m[1].split():
            attributes[b"FLAGS"] = tuple(m[1].split())
        else:
            return None
        pos = m.end()
        if line.startswith(b" ", pos):
            pos += 1
        elif not line.startswith(b")", pos):
            return None  # "UID 5X": not the tokens the regular expressions saw
    return key, attributes


def _internaldate(value: bytes) -> datetime | None:
    """As imapclient converts it: aware, or None when it cannot be read."""
    try:
        when: datetime = parse_to_datetime(value, normalise=False)
    except ValueError:
        return None
    return when
