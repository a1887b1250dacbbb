"""Risk language: a keyword screen, not an assessment.

Pure functions: which listed phrases occur in a subject or the start of a message's
text. Matching is case-insensitive, on word boundaries ("skill" never matches "kill"),
tolerant of curly apostrophes and runs of white space. The built-in list is plain
words people actually write about suicide, self-harm, overdose and harm to others;
the practitioner adds their own with ``risk.phrases``.
"""

from __future__ import annotations

import html
import quopri
import re
from base64 import b64decode
from binascii import Error as BinasciiError
from collections.abc import Iterable
from functools import lru_cache
from html.parser import HTMLParser

from .text import decode, scrub

DISCLAIMER = "keyword screen, not an assessment"
WINDOW = 64 * 1024  # bytes of the text part that are ever read

BUILT_IN: tuple[str, ...] = (
    # suicide
    "suicide",
    "suicidal",
    "kill myself",
    "killing myself",
    "end my life",
    "ending my life",
    "end it all",
    "ending it all",
    "take my own life",
    "taking my own life",
    "want to die",
    "wanna die",
    "wish i was dead",
    "wish i were dead",
    "better off dead",
    "better off without me",
    "don't want to be here anymore",
    "don't want to be alive",
    "no reason to live",
    "nothing to live for",
    "can't go on",
    "not worth living",
    "say goodbye to everyone",
    "wrote a note",
    "written a note",
    # self-harm
    "self-harm",
    "self harm",
    "selfharm",
    "self-harming",
    "hurt myself",
    "hurting myself",
    "harm myself",
    "harming myself",
    "cut myself",
    "cutting myself",
    "cutting again",
    "burn myself",
    "burning myself",
    # overdose
    "overdose",
    "overdosed",
    "overdosing",
    "took too many pills",
    "taken too many pills",
    "took all my pills",
    "take all my pills",
    "swallowed pills",
    "stockpiling pills",
    # harm to others
    "kill him",
    "kill her",
    "kill them",
    "kill someone",
    "kill somebody",
    "hurt someone",
    "hurt somebody",
    "hurt my child",
    "hurt the baby",
    "harm my child",
    "harm someone",
)

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})


def normalise(text: str) -> str:
    return " ".join(text.translate(_APOSTROPHES).lower().split())


@lru_cache(maxsize=32)
def _pattern(phrases: tuple[str, ...]) -> re.Pattern[str]:
    parts = []
    for p in sorted({normalise(p) for p in phrases if p.strip()}, key=len, reverse=True):
        # A space in a phrase matches any run of white space; \b keeps words whole.
        parts.append(r"\s+".join(re.escape(w) for w in p.split(" ")))
    if not parts:
        return re.compile(r"(?!x)x")  # matches nothing
    return re.compile(r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)")


def screen(texts: Iterable[str], extra: Iterable[str] = ()) -> list[str]:
    """The listed phrases found in ``texts``, in order of first appearance, each once."""
    pattern = _pattern(BUILT_IN + tuple(extra))
    found: list[str] = []
    for text in texts:
        for m in pattern.finditer(normalise(text)):
            hit = " ".join(m.group(0).split())
            if hit not in found:
                found.append(hit)
    return found


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in ("br", "p", "div", "li", "tr"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    parser = _Text()
    try:
        parser.feed(markup)
        parser.close()
    except Exception:  # the parser's own asserts on hostile markup: strip tags instead
        return html.unescape(re.sub(r"<[^>]*>", " ", markup))
    return "".join(parser.parts)


def decode_part(raw: bytes, encoding: str, charset: str, subtype: str) -> str:
    """Text of (the start of) one MIME part, whatever its transfer encoding and charset.

    ``raw`` may be cut anywhere (it is at most :data:`WINDOW` bytes): a partial base64
    quantum or multibyte character at the end is dropped, never an error; any charset
    name decodes (see :mod:`inbox_guard.text`).
    """
    enc = encoding.lower()
    if enc == "base64":
        compact = re.sub(rb"[^A-Za-z0-9+/=]", b"", raw)
        compact = compact[: len(compact) - len(compact) % 4]
        try:
            data = b64decode(compact)
        except (BinasciiError, ValueError):
            data = b""
    elif enc == "quoted-printable":
        data = quopri.decodestring(raw)
    else:
        data = raw
    text = decode(data, charset)
    return scrub(html_to_text(text)) if subtype.lower() == "html" else text
