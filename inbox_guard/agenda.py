"""Agenda notes: one Markdown file per client session, one line per contact.

Each line carries an HTML comment naming the message (invisible when the Markdown is
rendered), so adding the same message twice adds one line, and the practitioner may
edit the rest of the file freely.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path, PurePosixPath

from .files import write_private
from .text import shown

_COUNT = re.compile(r"^Out-of-hours contacts: \d+$", re.MULTILINE)
_PATTERN = re.compile(r"^Pattern: .*$", re.MULTILINE)
_MARKER = re.compile(r"<!-- inbox-guard:([0-9a-f]+) -->")
UNSCHEDULED = "unscheduled"
MARKER_LEN = 12  # hex digits of the message key: unique enough within one file


def relpath(client_id: str, session: datetime | None) -> PurePosixPath:
    name = session.date().isoformat() if session else UNSCHEDULED
    return PurePosixPath(client_id, f"{name}.md")


def inert(text: str) -> str:
    """Sender text as a Markdown code span: shown as written, never a link, an image,
    HTML or emphasis in any Markdown viewer (CommonMark 6.1; GFM autolinks skip code
    spans). The fence is one backtick longer than any run inside (CommonMark's rule)."""
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


RISK_MARK = "**risk words**"


def note_line(received_local: datetime, subject: str | None, key: str, risk: bool = False) -> str:
    """One contact; with ``risk``, marked so it is not read past in the room either."""
    when = f"{received_local:%a} {received_local:%Y-%m-%d %H:%M}"
    # Angle brackets are softened too, so a subject can never forge or close a marker.
    safe = shown(subject or "").replace("<", "‹").replace(">", "›")
    about = f": {inert(safe)}" if safe else ""
    mark = f"{RISK_MARK} " if risk else ""
    return f"- {when} — {mark}out-of-hours email{about} <!-- inbox-guard:{key[:MARKER_LEN]} -->"


def _title(client_name: str, session: datetime | None) -> str:
    if session is None:
        return f"# {client_name} — contacts with no session scheduled"
    return f"# {client_name} — session {session:%a} {session:%Y-%m-%d %H:%M}"


def add_notes(
    agenda_dir: Path,
    client_id: str,
    client_name: str,
    session: datetime | None,
    lines: list[tuple[str, str]],
    pattern: str | None = None,
) -> bool:
    """Add each (line, key) whose key has no line yet, in one write; True if changed.
    ``pattern`` (how this interval's contacts compare with earlier ones) goes on the
    line after the count, replacing the one written before."""
    path = agenda_dir / relpath(client_id, session)
    text = (
        path.read_text(encoding="utf-8")
        if path.exists()
        else (f"{_title(client_name, session)}\n\nOut-of-hours contacts: 0\n\n")
    )
    present = set(_MARKER.findall(text))
    new = []
    for line, key in lines:
        if key[:MARKER_LEN] not in present:
            new.append(line)
            present.add(key[:MARKER_LEN])
    if not new:
        return False
    if not text.endswith("\n"):
        text += "\n"
    text += "".join(line + "\n" for line in new)
    count = f"Out-of-hours contacts: {len(_MARKER.findall(text))}"
    if _COUNT.search(text):
        text = _COUNT.sub(count, text, count=1)
    else:
        head, _, rest = text.partition("\n")
        text = f"{head}\n\n{count}\n{rest}"
    if pattern is not None:
        line = "Pattern: " + pattern.replace("\n", " ")
        if _PATTERN.search(text):
            text = _PATTERN.sub(lambda _: line, text, count=1)
        else:
            found = _COUNT.search(text)
            assert found is not None
            text = f"{text[: found.end()]}\n{line}{text[found.end() :]}"
    write_private(path, text)
    return True


def upcoming(agenda_dir: Path, client_id: str | None, today: date) -> list[Path]:
    """Agenda files for sessions from ``today`` on, and the unscheduled notes."""
    dirs = (
        [agenda_dir / client_id]
        if client_id
        else sorted(p for p in agenda_dir.glob("*") if p.is_dir())
    )
    out = []
    for d in dirs:
        for f in sorted(d.glob("*.md")):
            if f.stem == UNSCHEDULED:
                out.append(f)
                continue
            try:
                if date.fromisoformat(f.stem) >= today:
                    out.append(f)
            except ValueError:
                continue
    return out
