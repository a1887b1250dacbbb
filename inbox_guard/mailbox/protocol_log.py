"""The IMAP protocol log, made safe to keep.

imapclient turns on imaplib's own tracing (imaplib.debug = 5) and sends it, with its
own, to the loggers below. With --debug that would log every server line, every
literal (headers: subjects; text windows: bodies), the drafts appended and the
search arguments (client addresses). The filter keeps the commands, the shape of
the answers and the sizes; it drops literals, quoted strings and login arguments.
(A logger's filters see only the records of that very logger, hence each by name.)
"""

from __future__ import annotations

import ast
import logging
import re
from typing import Any

_PROTOCOL_LOGGERS = ("imapclient", "imapclient.imapclient", "imapclient.imaplib", "imapclient.util")
_UNTAGGED = re.compile(r"(untagged_responses\[[\w-]*\]) (?:\d+ )?(\+=|=>) (.*)", re.S)
_LITERAL_SENT = re.compile(r"\{(\d+)\+?\}\\r\\n.*", re.S)  # a literal after its {size}
_LOGIN = re.compile(r"\b(LOGIN|AUTHENTICATE)\b.*", re.S)
_BYTES_REPR = re.compile(r"""(?<!\w)(?:b'(?:[^'\\]|\\.)*'|b"(?:[^"\\]|\\.)*")""", re.S)
_QUOTED = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_SEARCH = re.compile(rb"\S+ (?:UID )?SEARCH ", re.I)
_SEARCH_STRING = re.compile(rb"\b(BCC|BODY|CC|FROM|SUBJECT|TEXT|TO|HEADER \S+) \S+", re.I)


class _ProtocolLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = without_private(record.getMessage()), ()
        return True


def without_private(text: str) -> str:
    """A protocol log line with sizes where contents, credentials or strings were."""
    untagged = _UNTAGGED.match(text)
    if untagged:
        what, op, data = untagged.groups()
        payload = data[2:-2] if op == "+=" else data  # '+= ["%r"]' or '=> %s'
        return f"{what} {op} [{_size(payload)}, not logged]"
    if "(literal) >" in text:
        return text.split("(literal) >")[0] + "(literal) > [not logged]"
    text = _LITERAL_SENT.sub(lambda m: f"{{{m[1]}}} [literal of {m[1]} bytes, not logged]", text)
    if text.startswith(">"):
        text = _LOGIN.sub(r"\1 [arguments not logged]", text)
    return _BYTES_REPR.sub(_elide_strings, text)


def _elide_strings(found: re.Match[str]) -> str:
    """A logged bytes value (imaplib logs lines as ``b'...'``) without its quoted
    strings, which can be subjects, file names, addresses or folder names, and
    without the strings a SEARCH looks for (client addresses, as atoms or quoted)."""
    try:
        value = ast.literal_eval(found[0])
    except (ValueError, SyntaxError):
        return "b'[not logged]'"
    value = _QUOTED.sub(b'"..."', value)
    if _SEARCH.match(value):
        value = _SEARCH_STRING.sub(rb"\1 ...", value)
    return repr(value)


def _size(logged: str) -> str:
    try:
        value = ast.literal_eval(logged)
    except (ValueError, SyntaxError):
        return f"{len(logged)} characters"
    return f"{_nbytes(value)} bytes"


def _nbytes(value: Any) -> int:
    if isinstance(value, (bytes, str)):
        return len(value)
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    return 0


_PROTOCOL_LOG_FILTER = _ProtocolLogFilter()


def install() -> None:
    """Filter imapclient's protocol loggers (idempotent: a filter is added once)."""
    for name in _PROTOCOL_LOGGERS:
        logging.getLogger(name).addFilter(_PROTOCOL_LOG_FILTER)
