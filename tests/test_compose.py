"""Holding replies in each language, with localised dates; the practitioner's own wins."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from inbox_guard import compose
from inbox_guard.config import MainConfig, Settings

SESSION = datetime(2026, 11, 18, 10, 0, tzinfo=ZoneInfo("Europe/London"))
EMERGENCY = "Notruf 112, Telefonseelsorge 0800 111 0 111."


def settings(language: str) -> Settings:
    main = MainConfig.model_validate({
        "timezone": "Europe/London",
        "therapist": {"name": "Alex Morgan", "email": "alex@example.org",
                      "emergency_text": EMERGENCY, "language": language},
        "account": {"host": "localhost", "security": "plain", "username": "a", "password_env": "X"},
    })
    return Settings(path=Path("config/inbox-guard.toml"), main=main, clients={})


def body(language: str, risk: bool = False, templates: Path | None = None) -> str:
    msg = compose.draft(
        settings=settings(language), env=compose.template_env(templates), subject="x",
        message_id="<a@b>", references=(), to="jane@example.org", key="k" * 32,
        session=SESSION, risk=risk, now=datetime(2026, 11, 16, tzinfo=UTC),
    )
    return " ".join(msg.get_content().split())


@pytest.mark.parametrize(
    ("language", "greeting", "when"),
    [("en", "Hello,", "Wednesday 18 November at 10:00"),
     ("de", "Hallo,", "Mittwoch, 18. November um 10:00 Uhr"),
     ("fr", "Bonjour,", "mercredi 18 novembre à 10:00"),
     ("es", "Hola:", "miércoles 18 de noviembre a las 10:00")],
)
def test_holding_reply_in_each_language(language: str, greeting: str, when: str) -> None:
    text = body(language)
    assert text.startswith(greeting)
    assert when in text
    assert EMERGENCY in text


@pytest.mark.parametrize("language", ["en", "de", "fr", "es"])
def test_urgent_reply_leads_with_emergency_contacts_in_each_language(language: str) -> None:
    text = body(language, risk=True)
    assert text.index(EMERGENCY) < text.index("18")


def test_the_practitioners_own_template_wins(tmp_path: Path) -> None:
    (tmp_path / "draft.de.txt.j2").write_text("Guten Tag, bis {{ session_text }}.\n")
    assert body("de", templates=tmp_path) == "Guten Tag, bis Mittwoch, 18. November um 10:00 Uhr."
