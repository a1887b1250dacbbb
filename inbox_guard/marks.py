"""How a mark is shown in the practitioner's mail app: pure choices, no IMAP here.

An IMAP keyword such as ``$OutOfHours`` is what other tools and a later pass can
search, but almost no mail app shows one: Gmail shows labels (``X-GM-LABELS``,
capability ``X-GM-EXT-1``), Outlook and Microsoft 365 keep no client-defined keywords
at all (PERMANENTFLAGS without ``\\*``) and show ``\\Flagged`` as a red flag, Apple
Mail colours a flag with the keywords ``$MailFlagBit0``-``2`` (the mail-flag-colors
draft: the bits, read as a number, 0 red, 1 orange, 2 yellow, 3 green, 4 blue,
5 purple, 6 grey), Thunderbird shows a keyword as a tag once the tag is defined in its
preferences, and Fastmail shows labels that are folders. So a style is chosen per
server (``[mark] show``), and the keyword is set as well wherever the server keeps
keywords.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

STYLES = ("keyword", "gmail-label", "flag", "flag-colour", "folder")
FLAGGED = "\\Flagged"
# Apple Mail's flag colours (mail-flag-colors draft, section 3): colour -> number
# whose bits are $MailFlagBit0..2.
COLOURS = {"red": 0, "orange": 1, "yellow": 2, "green": 3, "blue": 4, "purple": 5, "grey": 6}
COLOUR_BITS = ("$MailFlagBit0", "$MailFlagBit1", "$MailFlagBit2")


def choose(show: str, capabilities: Iterable[bytes], keeps_keywords: bool) -> str:
    """The style for this server: ``show`` itself unless it is ``"auto"``, which picks
    Gmail labels where the server has X-GM-EXT-1, a flag where it keeps no keywords
    (Exchange, Microsoft 365), and else the keyword."""
    if show != "auto":
        return show
    if b"X-GM-EXT-1" in {c.upper() for c in capabilities}:
        return "gmail-label"
    return "keyword" if keeps_keywords else "flag"


def colour_bits(colour: str) -> tuple[str, ...]:
    """The ``$MailFlagBit`` keywords that make a flag ``colour`` in Apple Mail."""
    n = COLOURS[colour]
    return tuple(bit for i, bit in enumerate(COLOUR_BITS) if n >> i & 1)


@dataclass(frozen=True)
class Marks:
    """What one step adds to a message: flags and keywords (STORE +FLAGS), Gmail
    labels (STORE +X-GM-LABELS), and folders it is copied into. Nothing is ever
    removed: a flag the practitioner set stays as it is."""

    flags: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.flags or self.labels or self.folders)


def _with(flags: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for f in flags:
        if f not in out:
            out.append(f)
    return tuple(out)


def out_of_hours(
    style: str,
    keyword: str,
    keeps_keywords: bool,
    label: str,
    colour: str,
    already_flagged: bool,
    risk: bool = False,
) -> Marks:
    """The mark every out-of-hours client message gets. A risk message gets
    :func:`needs_attention` too, and no colour bits: its flag stays red."""
    kw = (keyword,) if keeps_keywords else ()
    if style == "gmail-label":
        return Marks(flags=kw, labels=(label,))
    if style == "flag":
        return Marks(flags=_with((*kw, FLAGGED)))
    if style == "flag-colour":
        # A flag the practitioner set before the pass saw the message keeps its colour.
        bits = colour_bits(colour) if keeps_keywords and not (already_flagged or risk) else ()
        return Marks(flags=_with((*kw, FLAGGED, *bits)))
    if style == "folder":
        return Marks(flags=kw, folders=(label,))
    # "keyword": where the server keeps none, \Flagged is all that can be seen.
    return Marks(flags=kw or (FLAGGED,))


def needs_attention(style: str, keyword: str, keeps_keywords: bool, label: str) -> Marks:
    """The risk mark: always \\Flagged (red in Apple Mail, a star in Gmail), the risk
    keyword where kept, and the risk label or folder in those styles."""
    kw = (keyword,) if keeps_keywords else ()
    flags = _with((*kw, FLAGGED))
    if style == "gmail-label":
        return Marks(flags=flags, labels=(label,))
    if style == "folder":
        return Marks(flags=flags, folders=(label,))
    return Marks(flags=flags)


def what_you_will_see(
    style: str, keyword: str, label: str, risk_label: str, colour: str, keeps_keywords: bool
) -> str:
    """One sentence for ``check --connect``: how the marks will look in mail apps."""
    if style == "gmail-label":
        return (
            f"marks will show as the Gmail label '{label}' (Gmail web and apps); "
            f"risk as the label '{risk_label}' and a star"
        )
    if style == "folder":
        return (
            f"marks will show as a copy in the folder '{label}' (a label in Fastmail, "
            f"a folder in Outlook and other apps); risk also in '{risk_label}', flagged"
        )
    if style == "flag-colour" and keeps_keywords:
        return (
            f"marks will show as a {colour} flag in Apple Mail (a flag in other apps); "
            "risk as a red flag; your own flags keep their colour and are never removed"
        )
    if style in ("flag", "flag-colour") or not keeps_keywords:
        return (
            "marks will show as a flag (\\Flagged): a flag in Outlook, Apple Mail and "
            "Thunderbird, a star in Gmail, the same as your own flags; inbox-guard "
            "never removes a flag"
        )
    return (
        f"marks will show as the keyword {keyword}: as a tag in Thunderbird once the "
        "tag is defined (see `inbox-guard thunderbird-tags`); most other apps do not "
        'show keywords, so consider [mark] show = "flag-colour" or "folder"'
    )
