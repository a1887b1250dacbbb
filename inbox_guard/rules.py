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
from email.utils import getaddresses

from .text import decode_words, shown

# The header fields a triage pass fetches (BODY.PEEK[HEADER.FIELDS (...)]).
FIELDS = (
    "From",
    "Sender",
    "To",
    "Cc",
    "Subject",
    "Message-ID",
    "References",
    "Auto-Submitted",
    "X-Auto-Response-Suppress",
    "Precedence",
    "Return-Path",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Id",
    "List-Unsubscribe",
    "List-Post",
    "List-Owner",
    "List-Help",
    "List-Subscribe",
    "List-Archive",
)

_MACHINE_LOCALS = {"mailer-daemon", "postmaster", "listserv", "majordomo"}
_BULK_PRECEDENCE = {"bulk", "list", "junk"}
# A Message-ID as it may be repeated in a draft's headers: printable ASCII, bounded,
# and never an encoded word ("=?"), which the email package would decode (CR LF and all)
# when the draft's In-Reply-To or References is set.
_MSGID = re.compile(r"<(?:[\x21-\x3b\x40-\x7e]|=(?!\?)|(?<!=)\?){1,250}>")
MAX_REFERENCES = 20  # the newest are kept; a reply needs no more
_RE_PREFIX = re.compile(r"^\s*(?:re\s*(?:\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_WS = re.compile(r"\s+")
_CHARSET = re.compile(r"charset\s*=\s*(\"[^\"]*\"|[^;\s]+)", re.IGNORECASE)


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
    transfer_encoding: str
    has_list_header: bool


def normalise_address(addr: str) -> str:
    """Lower case, and an internationalised domain in its ASCII (IDNA) form, so
    ``jane@bücher.example`` and ``jane@xn--bcher-kva.example`` are one address."""
    local, _, domain = addr.strip().lower().rpartition("@")
    with contextlib.suppress(UnicodeError):
        domain = domain.encode("idna").decode("ascii")
    return f"{local}@{domain}" if local else domain


Fields = dict[str, list[str]]  # lower-case name -> values, in order


def _fields(text: str) -> Fields:
    """Unfold and split a header block (RFC 5322 2.2.3); lines that are not fields
    are skipped. Much lighter than the email package, and as forgiving."""
    out: Fields = {}
    current: list[str] | None = None
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            if current is None and not out:
                continue
            break  # the blank line that ends the header
        if line[0] in " \t":
            if current is not None:
                current[-1] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        name = name.strip().lower()
        if not colon or not name or any(c.isspace() for c in name):
            current = None
            continue
        current = out.setdefault(name, [])
        current.append(value.strip())
    return out


def _addresses(fields: Fields, name: str) -> list[str]:
    out = []
    for _display, addr in getaddresses(fields.get(name, [])):
        if "@" in addr:
            out.append(normalise_address(addr))
    return out


def _text(fields: Fields, name: str) -> str | None:
    values = fields.get(name)
    if not values:
        return None
    return shown(decode_words(values[0]))


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
    f = _fields(_header_text(raw))
    froms = _addresses(f, "from")
    senders = _addresses(f, "sender")
    mid = _MSGID.search(" ".join(f.get("message-id", [])))
    rp = f.get("return-path")
    return Headers(
        from_addr=froms[0] if len(froms) == 1 else None,
        sender_addr=senders[0] if senders else None,
        recipients=tuple(_addresses(f, "to") + _addresses(f, "cc")),
        subject=_text(f, "subject") or "",
        message_id=mid.group(0) if mid else None,
        references=tuple(_MSGID.findall(" ".join(f.get("references", []))))[-MAX_REFERENCES:],
        auto_submitted=_text(f, "auto-submitted"),
        auto_response_suppress=_text(f, "x-auto-response-suppress"),
        precedence=_text(f, "precedence"),
        return_path=None if rp is None else rp[0].strip(),
        content_type=(_text(f, "content-type") or "").lower(),
        transfer_encoding=(_text(f, "content-transfer-encoding") or "").lower(),
        has_list_header=any(k.startswith("list-") for k in f),
    )


def _is_machine_address(addr: str | None) -> bool:
    if not addr:
        return False
    local = addr.split("@", 1)[0]
    return local in _MACHINE_LOCALS or local.startswith("owner-") or local.endswith("-request")


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


def text_part(h: Headers) -> tuple[str, str, str] | None:
    """(transfer encoding, charset, subtype) when the top-level headers already say
    where the text is (a single text/plain or text/html part, or no Content-Type,
    which means text/plain); None when the structure must be asked for (multipart)."""
    ct = h.content_type or "text/plain"
    kind = ct.split(";", 1)[0].strip()
    if kind not in ("text/plain", "text/html"):
        return None
    m = _CHARSET.search(ct)
    charset = m.group(1).strip("\"'") if m else "us-ascii"
    return h.transfer_encoding or "7bit", charset, kind.split("/")[1]
