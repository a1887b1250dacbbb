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

Also the rest of IMAP's syntax the mailbox needs: compact UID sets, BODYSTRUCTURE's text
part, SPECIAL-USE folders, a response's text.

Pure: no sockets, no client object.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

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
            isinstance(item, tuple)
            and len(item) == 2
            and isinstance(item[0], bytes)
            and isinstance(item[1], bytes)
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


T = TypeVar("T")


@dataclass(frozen=True)
class Status:
    uidvalidity: int
    uidnext: int | None
    exists: int
    permanent_flags: tuple[bytes, ...]
    read_only: bool

    def allows(self, flag: str) -> bool:
        """Can ``flag`` be stored permanently? (``\\*`` admits any new keyword.)"""
        names = {f.decode().lower() for f in self.permanent_flags}
        return flag.lower() in names or (not flag.startswith("\\") and "\\*" in names)


@dataclass(frozen=True)
class TextWindow:
    raw: bytes  # at most the requested number of bytes, still transfer-encoded
    encoding: str
    charset: str
    subtype: str  # "plain" or "html"


@dataclass(frozen=True)
class Fetched:
    uid: int
    internaldate: datetime  # aware, as the server gave it
    header: bytes
    flags: tuple[str, ...] = ()  # as they were when the pass read the message


def uid_set(uids: Iterable[int]) -> str:
    """Compact IMAP sequence set: [1,2,3,7,9,10] -> "1:3,7,9:10"."""
    out: list[str] = []
    run: list[int] = []
    for u in sorted(set(uids)):
        if run and u == run[-1] + 1:
            run.append(u)
            continue
        if run:
            out.append(f"{run[0]}:{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [u]
    if run:
        out.append(f"{run[0]}:{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def batches(items: Sequence[T], size: int) -> Iterator[list[T]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


MESSAGE_IDS = re.compile(rb"<[^<>\s]+>")


def said(data: Any) -> str:
    """A server's response text, for an error line."""
    items = data if isinstance(data, list) else [data]
    return " ".join(as_str(d) for d in items if d is not None)[:200] or "no reason given"


def body_section(item: dict[bytes, Any], section: str) -> Any:
    """The value of ``BODY[section]`` in a parsed FETCH answer, however the server
    spelt the section (Courier quotes header field names: ``("FROM" "TO")``; a partial
    fetch's key ends in ``<0>``); else of any ``BODY[...]``, else None."""
    wanted = section.upper().encode()
    bodies = {k: v for k, v in item.items() if k.startswith(b"BODY[")}
    for key, value in bodies.items():
        if key[5:].split(b"]")[0].replace(b'"', b"") == wanted:
            return value
    return next(iter(bodies.values()), None)


def special_folder(listing: Iterable[tuple[Any, Any, Any]], flag: bytes) -> str | None:
    """The first folder in a LIST answer with the SPECIAL-USE ``flag`` (RFC 6154),
    compared without regard to case as IMAP's attributes are (Cyrus answers
    ``\\drafts`` for a folder its configuration names)."""
    wanted = flag.lower()
    for flags, _delimiter, name in listing:
        if any(bytes(f).lower() == wanted for f in flags or ()):
            return str(name)
    return None


def as_str(value: Any) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value or "")


def parameters(value: Any) -> dict[str, str]:
    items = list(value) if isinstance(value, (list, tuple)) else []
    return {as_str(k).lower(): as_str(v) for k, v in zip(items[::2], items[1::2], strict=False)}


def text_part(bs: Any, prefix: str = "") -> tuple[str, str, str, str] | None:
    """(section, transfer encoding, charset, subtype) of the first text part,
    preferring text/plain over text/html, skipping attachments."""
    plain: tuple[str, str, str, str] | None = None
    html: tuple[str, str, str, str] | None = None
    if getattr(bs, "is_multipart", False):
        for i, part in enumerate(bs[0], start=1):
            found = text_part(part, f"{prefix}{i}.")
            if found and found[3] == "plain":
                return found
            html = html or found
        return html
    try:
        maintype, subtype = as_str(bs[0]).lower(), as_str(bs[1]).lower()
        params, encoding = parameters(bs[2]), as_str(bs[5]).lower()
    except (IndexError, TypeError):
        return None
    # The disposition follows md5, at index 9 for text/* (which has a line count).
    if any(
        isinstance(d, (list, tuple)) and d and as_str(d[0]).lower() == "attachment"
        for d in bs[8:10]
    ):
        return None
    if maintype == "text" and subtype in ("plain", "html"):
        section = prefix.rstrip(".") or "1"
        found = (section, encoding, params.get("charset", "utf-8"), subtype)
        plain = found if subtype == "plain" else None
        html = found if subtype == "html" else None
    return plain or html
