"""A small valid practice config written to a temporary folder, for the config tests."""

from __future__ import annotations

from pathlib import Path

GOOD = """\
timezone = "Europe/London"
[therapist]
name = "Alex"
email = "alex@example.org"
emergency_text = "Call 999."
[account]
host = "imap.example.org"
username = "alex"
password_env = "IG_PW"
[hours]
mon = ["09:00-17:00"]
"""
JANE = 'name = "Jane"\nemails = ["jane@example.org"]\n'


def write(tmp: Path, main: str = GOOD, clients: dict[str, str] | None = None) -> Path:
    (tmp / "clients").mkdir(exist_ok=True)
    for name, text in (clients if clients is not None else {"jane": JANE}).items():
        (tmp / "clients" / f"{name}.toml").write_text(text)
    (tmp / "main.toml").write_text(main)
    return tmp / "main.toml"
