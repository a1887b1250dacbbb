"""What a message's headers say: who wrote it, to whom, and whether a machine did.

Pure functions over the raw header block that the mailbox fetched. Parsing never
raises: a header that cannot be read counts as absent, so a hostile or broken message
is at worst left alone, never a crash.

Machine-written mail (RFC 3834 section 2, and what Sieve vacation implementations
such as Pigeonhole treat as automatic) is named by :func:`machine_reason`.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses

# The header fields a triage pass fetches (BODY.PEEK[HEADER.FIELDS (...)]).
FIELDS = (
    "From", "Sender", "To", "Cc", "Subject", "Message-ID", "References", "In-Reply-To",
    "Auto-Submitted", "X-Auto-Response-Suppress", "Precedence", "Return-Path",
    "Content-Type", "List-Id", "List-Unsubscribe", "List-Post", "List-Owner", "List-Help",
    "List-Subscribe", "List-Archive",
)

_MACHINE_LOCALS = {"mailer-daemon", "postmaster", "listserv", "majordomo"}
_BULK_PRECEDENCE = {"bulk", "list", "junk"}
_MSGID = re.compile(r"<[^<>\s]+>")
_RE_PREFIX = re.compile(r"^\s*(?:re\s*(?:\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class Headers:
    from_addr: str | None
    sender_addr: str | None
    recipients: tuple[str, ...]  # To and Cc, lowercased
    subject: str  # decoded, one line
    message_id: str | None  # "<...>"
    references: tuple[str, ...]
    auto_submitted: str | None
    auto_response_suppress: str | None
    precedence: str | None
    return_path: str | None  # None when absent; "" when present but empty
    content_type: str
    has_list_header: bool


def normalise_address(addr: str) -> str:
    """Lower case, and an internationalised domain in its ASCII (IDNA) form, so
    ``jane@bücher.example`` and ``jane@xn--bcher-kva.example`` are one address."""
    local, _, domain = addr.strip().lower().rpartition("@")
    with contextlib.suppress(UnicodeError):
        domain = domain.encode("idna").decode("ascii")
    return f"{local}@{domain}" if local else domain


def _addresses(msg: Message, name: str) -> list[str]:
    values = [str(v) for v in msg.get_all(name, [])]
    out = []
    for _display, addr in getaddresses(values):
        if "@" in addr:
            out.append(normalise_address(addr))
    return out


def _text(msg: Message, name: str) -> str | None:
    value = msg.get(name)
    if value is None:
        return None
    return one_line(decode_words(str(value)))


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words; undecodable ones are kept as written."""
    try:
        return str(make_header(decode_header(value)))
    except (LookupError, ValueError, UnicodeError):
        return value


def one_line(value: str) -> str:
    """Fold any CR, LF or other white space to single spaces (no header injection)."""
    return _WS.sub(" ", value).strip()


def _header_text(raw: bytes) -> str:
    # 8-bit headers: UTF-8 (RFC 6532) when they are valid UTF-8, else Latin-1, which
    # never fails; either way a later encoded word still decodes.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def parse(raw: bytes) -> Headers:
    msg = HeaderParser().parsestr(_header_text(raw))
    froms = _addresses(msg, "From")
    senders = _addresses(msg, "Sender")
    mid = _MSGID.search(str(msg.get("Message-ID", "")))
    rp = msg.get("Return-Path")
    return Headers(
        from_addr=froms[0] if len(froms) == 1 else None,
        sender_addr=senders[0] if senders else None,
        recipients=tuple(_addresses(msg, "To") + _addresses(msg, "Cc")),
        subject=_text(msg, "Subject") or "",
        message_id=mid.group(0) if mid else None,
        references=tuple(_MSGID.findall(str(msg.get("References", "")))),
        auto_submitted=_text(msg, "Auto-Submitted"),
        auto_response_suppress=_text(msg, "X-Auto-Response-Suppress"),
        precedence=_text(msg, "Precedence"),
        return_path=None if rp is None else str(rp).strip(),
        content_type=(_text(msg, "Content-Type") or "").lower(),
        has_list_header=any(k.lower().startswith("list-") for k in msg),
    )


def _is_machine_address(addr: str | None) -> bool:
    if not addr:
        return False
    local = addr.split("@", 1)[0]
    return (
        local in _MACHINE_LOCALS or local.startswith("owner-") or local.endswith("-request")
    )


def machine_reason(h: Headers) -> str | None:
    """``"auto-submitted"``, ``"mailing-list"``, ``"bounce"`` or None for a person."""
    auto = (h.auto_submitted or "").split(";")[0].strip().lower()
    if auto and auto != "no":
        return "auto-submitted"
    suppress = {p.strip().lower() for p in (h.auto_response_suppress or "").split(",")}
    if suppress & {"all", "oof"}:
        return "auto-submitted"
    if (h.precedence or "").strip().lower() in _BULK_PRECEDENCE:
        return "auto-submitted"
    if h.has_list_header:
        return "mailing-list"
    if h.return_path is not None and h.return_path in ("", "<>"):
        return "bounce"
    if _is_machine_address(h.from_addr) or _is_machine_address(h.sender_addr):
        return "bounce"
    ct = h.content_type
    if "multipart/report" in ct and "delivery-status" in ct:
        return "bounce"
    if ct.startswith("message/delivery-status"):
        return "bounce"
    return None


def reply_subject(subject: str) -> str:
    """``"Re: "`` + the original subject, never ``"Re: Re: "``."""
    return "Re: " + _RE_PREFIX.sub("", one_line(subject))
