"""Holding replies in each language, with localised dates; the practitioner's own wins."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from inbox_guard import compose
from inbox_guard.digest.content import ClientSummary, Digest, Item
from inbox_guard.digest.render import digest_message
from inbox_guard.model import Problem, Settings
from inbox_guard.schema import MainConfig

SESSION = datetime(2026, 11, 18, 10, 0, tzinfo=ZoneInfo("Europe/London"))
EMERGENCY = "Notruf 112, Telefonseelsorge 0800 111 0 111."


def settings(language: str) -> Settings:
    main = MainConfig.model_validate(
        {
            "timezone": "Europe/London",
            "therapist": {
                "name": "Alex Morgan",
                "email": "alex@example.org",
                "emergency_text": EMERGENCY,
                "language": language,
            },
            "account": {
                "host": "localhost",
                "security": "plain",
                "username": "a",
                "password_env": "X",
            },
        }
    )
    return Settings(path=Path("config/inbox-guard.toml"), main=main, clients={})


def body(language: str, risk: bool = False, templates: Path | None = None) -> str:
    msg = compose.draft(
        settings=settings(language),
        env=compose.template_env(templates),
        subject="x",
        message_id="<a@b>",
        references=(),
        to="jane@example.org",
        key="k" * 32,
        session=SESSION,
        risk=risk,
        now=datetime(2026, 11, 16, tzinfo=UTC),
    )
    return " ".join(msg.get_content().split())


@pytest.mark.parametrize(
    ("language", "greeting", "when"),
    [
        ("en", "Hello,", "Wednesday 18 November at 10:00"),
        ("de", "Hallo,", "Mittwoch, 18. November um 10:00 Uhr"),
        ("fr", "Bonjour,", "mercredi 18 novembre à 10:00"),
        ("es", "Hola:", "miércoles 18 de noviembre a las 10:00"),
    ],
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


# -- digest and alert in each language ---------------------------------------------

LONDON = ZoneInfo("Europe/London")
LATE = datetime(2026, 11, 22, 23, 40, tzinfo=LONDON)  # a Sunday


def a_digest(items: int = 2, risk: bool = True, problems: bool = False) -> Digest:
    made = [
        Item(
            key=f"k{i}",
            client="jane-doe",
            name="Jane",
            local=LATE,
            subject=None,
            draft=i == 0,
            suppressed=None if i == 0 else "window",
            risk=risk and i == 0,
        )
        for i in range(items)
    ]
    summary = ClientSummary(
        client="jane-doe",
        name="Jane",
        items=made,
        next_session=SESSION,
        hours=[(23, items)],
        total=items,
    )
    trouble = [Problem("triage: cannot connect to imap.example.org:993", LATE, LATE, 3)]
    return Digest(
        now=LATE,
        since=LATE,
        risk=[i for i in made if i.risk],
        clients=[summary] if made else [],
        problems=trouble if problems else [],
    )


def digest_texts(
    language: str, digest: Digest, templates: Path | None = None
) -> tuple[str, str, str]:
    s = settings(language)
    msg = digest_message(s, compose.template_env(templates, language), digest, "<d@x>", LATE)
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return str(msg["Subject"]), text.get_content(), html.get_content()


@pytest.mark.parametrize(
    ("language", "subject", "phrases"),
    [
        (
            "en",
            "Out-of-hours digest: 2 contacts from 1 client, 1 with risk words",
            [
                "2 out-of-hours contacts from 1 client since Sun 22 Nov 23:40.",
                "NEEDS ATTENTION: risk words found (keyword screen, not an assessment)",
                "Next session: Wed 18 Nov 10:00",
                "no draft (one was already drafted",
            ],
        ),
        (
            "de",
            "Übersicht außerhalb der Sprechzeiten: 2 Kontakte von 1 Klient:in, 1 mit Risikowörtern",
            [
                "2 Kontakte außerhalb der Sprechzeiten von 1 Klient:in seit So. 22. Nov. 23:40.",
                "BITTE BEACHTEN: Risikowörter gefunden (Stichwortsuche, keine Einschätzung)",
                "Nächste Sitzung: Mi. 18. Nov. 10:00",
                "kein Entwurf (für diese Zeit",
            ],
        ),
        (
            "fr",
            "Résumé hors horaires : 2 contacts de 1 client, dont 1 avec des mots à risque",
            [
                "2 contacts hors horaires de 1 client depuis le dim. 22 nov. 23:40.",
                "À VÉRIFIER : mots à risque trouvés (repérage par mots-clés, pas une évaluation)",
                "Prochaine séance : mer. 18 nov. 10:00",
                "pas de brouillon (une réponse a déjà",
            ],
        ),
        (
            "es",
            "Resumen fuera de horario: 2 contactos de 1 cliente, 1 con palabras de riesgo",
            [
                "2 contactos fuera de horario de 1 cliente desde el dom 22 nov, 23:40.",
                "REQUIERE ATENCIÓN: se encontraron palabras de riesgo (búsqueda de palabras clave",
                "Próxima sesión: mié 18 nov, 10:00",
                "sin borrador (ya se preparó una",
            ],
        ),
    ],
)
def test_digest_in_each_language(language: str, subject: str, phrases: list[str]) -> None:
    got_subject, text, html = digest_texts(language, a_digest())
    assert got_subject == subject
    flat = " ".join(text.split())
    for phrase in phrases:
        assert phrase in flat
    assert f'<html lang="{language}">' in html
    if language != "en":  # nothing left in English but names and codes
        for english in ("out-of-hours", "Next session", "risk words", "Drafts", "none scheduled"):
            assert english not in text


@pytest.mark.parametrize(
    ("language", "one", "none"),
    [
        (
            "en",
            "1 out-of-hours contact from 1 client",
            "No out-of-hours contacts from clients since",
        ),
        (
            "de",
            "1 Kontakt außerhalb der Sprechzeiten von 1 Klient:in",
            "Keine Kontakte von Klient:innen",
        ),
        (
            "fr",
            "1 contact hors horaires de 1 client",
            "Aucun contact de client hors horaires depuis",
        ),
        (
            "es",
            "1 contacto fuera de horario de 1 cliente",
            "Ningún contacto de clientes fuera de horario",
        ),
    ],
)
def test_digest_counts_use_each_languages_plural_rules(language: str, one: str, none: str) -> None:
    assert one in digest_texts(language, a_digest(items=1, risk=False))[1]
    assert none in digest_texts(language, a_digest(items=0, problems=True))[1]


def test_french_counts_zero_as_singular() -> None:
    t = compose.translations("fr")
    assert t.ngettext("%(num)d contact", "%(num)d contacts", 0) % {"num": 0} == "0 contact"
    assert (
        compose.translations("de").ngettext("%(num)d contact", "%(num)d contacts", 0) % {"num": 0}
        == "0 Kontakte"
    )


@pytest.mark.parametrize("language", ["en", "de", "fr", "es"])
def test_digest_reports_problems_with_local_times(language: str) -> None:
    _, text, html = digest_texts(language, a_digest(problems=True))
    line = "triage: cannot connect to imap.example.org:993 (3×, "
    assert line + compose.when(LATE, language) in text
    assert line in html


@pytest.mark.parametrize(
    ("language", "opening", "subject_word"),
    [
        ("en", "A message from Jane (jane-doe) that arrived Sun 22 Nov 23:40", "risk words"),
        (
            "de",
            "Eine Nachricht von Jane (jane-doe), eingegangen am So. 22. Nov. 23:40",
            "Risikowörtern",
        ),
        ("fr", "Un message de Jane (jane-doe), arrivé le dim. 22 nov. 23:40", "mots à risque"),
        (
            "es",
            "Un mensaje de Jane (jane-doe), recibido el dom 22 nov, 23:40",
            "palabras de riesgo",
        ),
    ],
)
def test_alert_in_each_language(language: str, opening: str, subject_word: str) -> None:
    s = settings(language)
    msg = compose.alert_message(
        s,
        compose.env_for(s),
        client="jane-doe",
        name="Jane",
        received=LATE,
        draft=False,
        suppressed="window",
        session=None,
        message_id="<a@x>",
        now=LATE,
    )
    assert subject_word in str(msg["Subject"])
    body = " ".join(msg.get_content().split())
    assert body.startswith(opening)
    assert compose.translations(language).gettext(compose.REASONS["window"]) in body


def test_the_practitioners_own_digest_template_wins(tmp_path: Path) -> None:
    (tmp_path / "digest.txt.j2").write_text(
        "{{ digest.count }} — {{ _('Next session:') }} {{ digest.now | when }}\n"
    )
    _, text, _ = digest_texts("de", a_digest(), templates=tmp_path)
    assert text.strip() == "2 — Nächste Sitzung: So. 22. Nov. 23:40"


def test_unknown_suppression_codes_are_shown_as_they_are() -> None:
    env = compose.template_env(None, "de")
    assert env.filters["reason"]("something-new") == "something-new"


# -- the catalogues ------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def extracted() -> set[str]:
    """Every text marked for translation, found the way `scripts/messages` finds them."""
    from babel.messages.extract import extract_from_dir

    method_map = [
        ("inbox_guard/compose.py", "python"),
        ("inbox_guard/templates/digest.*.j2", "jinja2"),
        ("inbox_guard/templates/alert.*.j2", "jinja2"),
    ]
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT),
        method_map,
        keywords={"_": None, "ngettext": (1, 2)},
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


@pytest.mark.parametrize("language", ["de", "fr", "es"])
def test_catalogues_are_complete(language: str) -> None:
    """Adding an English text without translating it fails here (run scripts/messages,
    then translate the new entries)."""
    from babel.messages.pofile import read_po

    po = ROOT / "inbox_guard" / "locale" / language / "LC_MESSAGES" / "inbox_guard.po"
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=language)
    texts = extracted()
    assert len(texts) > 30
    for text in texts:
        entry = catalog.get(text)
        assert entry is not None, f"{po.name} ({language}) lacks {text!r}"
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        for s in strings:
            assert s, f"{language}: {text!r} is not translated"
            assert sorted(PLACEHOLDER.findall(str(s))) == sorted(PLACEHOLDER.findall(text)), (
                f"{language}: {text!r} -> {s!r} changes the placeholders"
            )
        assert "fuzzy" not in entry.flags


@pytest.mark.parametrize(
    ("language", "far", "near"),
    [
        ("en", "Wednesday 18 November 2026 at 10:00", "Wednesday 18 November at 10:00"),
        ("de", "Mittwoch, 18. November 2026 um 10:00 Uhr", "Mittwoch, 18. November um 10:00 Uhr"),
        ("fr", "mercredi 18 novembre 2026 à 10:00", "mercredi 18 novembre à 10:00"),
        (
            "es",
            "miércoles 18 de noviembre de 2026 a las 10:00",
            "miércoles 18 de noviembre a las 10:00",
        ),
    ],
)
def test_a_date_more_than_six_months_away_says_its_year(language: str, far: str, near: str) -> None:
    long_before = datetime(2026, 3, 1, tzinfo=UTC)
    assert compose.session_text(SESSION, language, long_before) == far
    assert compose.session_text(SESSION, language, datetime(2026, 11, 1, tzinfo=UTC)) == near
    assert "2026" in compose.when(SESSION, language, long_before)
    assert "2026" not in compose.when(SESSION, language, SESSION)


def test_the_digest_shows_the_year_of_a_contact_from_long_ago() -> None:
    d = a_digest(items=1, risk=False)
    late = Digest(now=datetime(2027, 8, 1, tzinfo=UTC), since=LATE, risk=[], clients=d.clients)
    _, text, html = digest_texts("en", late)
    assert "Sun 22 Nov 2026 23:40" in text and "Sun 22 Nov 2026 23:40" in html


@pytest.mark.parametrize(
    ("language", "heading"),
    [
        ("en", "COULD NOT COMPLETE"),
        ("de", "NICHT ABGESCHLOSSEN"),
        ("fr", "NON TERMINÉ"),
        ("es", "NO SE PUDO COMPLETAR"),
    ],
)
def test_the_digest_lists_what_could_not_be_completed_risk_first(
    language: str, heading: str
) -> None:
    from inbox_guard.digest.content import Unfinished

    stuck = [
        Unfinished(
            local=LATE,
            client="jane-doe",
            name="Jane",
            uid=7,
            risk=True,
            error="draft: account.drafts: folder 'Missing' does not exist",
            attempts=3,
        ),
        Unfinished(
            local=None,
            client=None,
            name=None,
            uid=9,
            risk=False,
            error="reading: lost the IMAP connection",
            attempts=5,
        ),
    ]
    quiet = Digest(now=LATE, since=LATE, risk=[], clients=[], unfinished=stuck)
    _, text, html = digest_texts(language, quiet)
    assert heading in text
    assert text.index("folder 'Missing'") < text.index("UID 9")
    assert "folder &#39;Missing&#39; does not exist" in html and "(UID 9)" in html
