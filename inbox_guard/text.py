"""Text a sender wrote, made safe to keep and to show.

Anyone can write anything in a header or a charset name: ``charset=idna``,
``=?utf-7?q?+2AA-?=``, ``=?unicode_escape?q?=5Cud800?=``. Decoding here is total: any
bytes in any charset name decode to text, with replacement characters where they do
not fit, and never a lone surrogate (which SQLite, JSON, templates and files refuse).
The standard library's ``email.header.decode_header`` raises on broken base64 and
passes unencoded parts through ``raw-unicode-escape``, so encoded words (RFC 2047) are
decoded here with a small regular expression instead.

Text that is shown to the practitioner (subjects in agendas and digests) also loses
bidirectional and zero-width controls (which can make a subject read differently from
what it is) and control characters (a terminal escape in ``inbox-guard agenda``).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata

REPLACEMENT = "\ufffd"

# Codec names Python knows that are not character sets a message can be written in:
# they raise on error handling, decode escapes into any code point, or are quadratic.
_NOT_CHARSETS = frozenset(
    {
        "idna",
        "punycode",
        "undefined",
        "unicode-escape",
        "raw-unicode-escape",
        "mbcs",
        "oem",
    }
)
_SURROGATES = re.compile("[\ud800-\udfff]")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([qQbB])\?([^?\s]*)\?=")
_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")


def _codec(charset: str | None) -> str:
    """The codec for a MIME charset name, or UTF-8 for anything unknown or unsafe."""
    name = (charset or "").strip().strip("\"'").split("*", 1)[0]
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError, TypeError):
        return "utf-8"
    if info.name.replace("_", "-") in _NOT_CHARSETS or not getattr(info, "_is_text_encoding", True):
        return "utf-8"
    return info.name


def scrub(text: str) -> str:
    """``text`` with any lone surrogate replaced by U+FFFD."""
    return _SURROGATES.sub(REPLACEMENT, text)


def decode(data: bytes, charset: str | None) -> str:
    """``data`` as text in ``charset`` (a name a sender wrote): never raises."""
    try:
        text = data.decode(_codec(charset), errors="replace")
    except Exception:  # a codec that fails in a way of its own: UTF-8 never does
        text = data.decode("utf-8", errors="replace")
    return scrub(text)


def _q_word(text: str) -> bytes:
    raw = text.replace("_", " ").encode("ascii", "replace")
    return _QP_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), raw)


def _b_word(text: str) -> bytes:
    compact = re.sub(r"[^A-Za-z0-9+/]", "", text)
    if len(compact) % 4 == 1:
        compact = compact[:-1]  # a lone trailing sextet holds no whole byte
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4))
    except (binascii.Error, ValueError):
        return b""


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words in a header value; never raises.

    White space between two adjacent encoded words is dropped (RFC 2047 section 6.2);
    an encoded word in an unknown charset is decoded as UTF-8 with replacements."""
    out: list[str] = []
    pos = 0
    after_word = False
    for m in _ENCODED_WORD.finditer(value):
        gap = value[pos : m.start()]
        if not (after_word and not gap.strip()):
            out.append(gap)
        charset, kind, payload = m.groups()
        data = _q_word(payload) if kind in "qQ" else _b_word(payload)
        out.append(decode(data, charset))
        pos = m.end()
        after_word = True
    out.append(value[pos:])
    return scrub("".join(out))


def _shown(ch: str) -> str:
    cat = unicodedata.category(ch)
    if cat == "Cf":
        return ""  # bidi embeddings and isolates, zero-width joiners, BOM, soft hyphen
    if cat == "Cc" or cat in ("Zl", "Zp"):
        return " "  # controls and line breaks: white space, folded by one_line
    return ch


_WS = re.compile(r"\s+")


def shown(text: str, limit: int = 998) -> str:
    """One line of sender text as it may be shown or kept: no controls, no bidi or
    zero-width characters, white space folded, at most ``limit`` characters, and no
    encoded-word opener left in it: a subject that decodes to another encoded word
    would be decoded again by the ``email`` package when a draft's Subject is set,
    and a CR LF inside would start a new header (a Bcc, say)."""
    text = "".join(_shown(ch) for ch in scrub(text))
    text = _WS.sub(" ", text).strip().replace("=?", "= ?")
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
