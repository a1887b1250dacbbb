"""Compose messages: the holding-reply draft and the risk and sign-in alerts, and what
the digest's rendering shares with them (templates, translations, dates).

Pure: the caller passes ``now``. Headers are built with the standard ``email``
package; every value taken from a client's message is folded onto one line first, so
CR/LF in a subject can never start a new header.
"""

from __future__ import annotations

import functools
import gettext
import hashlib
import io
import textwrap
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.policy import default as default_policy
from email.utils import format_datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from . import rules
from .model import Settings

if TYPE_CHECKING:  # jinja2 is imported when a message is written, not by every pass
    import jinja2


def message_key(h: rules.Headers, received: datetime) -> str:
    """A stable name for one client message, the same under any UID or UIDVALIDITY."""
    when = received.astimezone(UTC).isoformat()
    basis = "\x00".join([h.message_id or "", h.from_addr or "", when])
    return hashlib.sha256(basis.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def copy_key(base: str, n: int) -> str:
    """The key of the ``n``-th copy of one message (a duplicate delivery: the same
    Message-ID, sender and arrival time); the first copy keeps the message's key."""
    if n == 1:
        return base
    return hashlib.sha256(f"{base}\x00copy {n}".encode()).hexdigest()[:32]


def draft_message_id(key: str, settings: Settings) -> str:
    domain = settings.mail_domain
    return f"<inbox-guard.{key}@{domain}>"


# How each language says "Wednesday 18 November at 10:00": CLDR patterns, with the
# weekday and month names from Babel's locale data, not hand-written tables. A date
# more than about six months from now also says its year.
_SESSION = {
    "en": ("EEEE d MMMM", "{day} at {time}"),
    "de": ("EEEE, d. MMMM", "{day} um {time} Uhr"),
    "fr": ("EEEE d MMMM", "{day} à {time}"),
    "es": ("EEEE d 'de' MMMM", "{day} a las {time}"),
}
_YEAR = {"en": " y", "de": " y", "fr": " y", "es": " 'de' y"}
FAR = timedelta(days=183)


def _far(value: datetime, now: datetime | None) -> bool:
    return now is not None and abs(value - now) > FAR


def session_text(
    session: datetime | None, language: str = "en", now: datetime | None = None
) -> str | None:
    if session is None:
        return None
    from babel.dates import format_datetime

    pattern, phrase = _SESSION.get(language, _SESSION["en"])
    if _far(session, now):
        pattern += _YEAR.get(language, " y")
    day = format_datetime(session, pattern, tzinfo=session.tzinfo, locale=language)
    return phrase.format(day=day, time=f"{session:%H:%M}")


def draft_template(env: jinja2.Environment, base: str, language: str) -> str:
    """``draft.de.txt.j2`` for German where there is one (the practitioner's own or
    ours), else ``draft.txt.j2``."""
    import jinja2

    if language != "en":
        localised = base.replace(".txt.j2", f".{language}.txt.j2")
        try:
            env.get_template(localised)  # cached by Jinja after the first look
        except jinja2.TemplateNotFound:
            return base
        return localised
    return base


def wrap(text: str, width: int = 72) -> str:
    """Wrap long template lines so the draft stays readable plain text when edited."""
    return "\n".join(
        textwrap.fill(line, width, break_long_words=False, break_on_hyphens=False)
        if len(line) > width
        else line
        for line in text.split("\n")
    )


def _(message: str) -> str:
    """Marks a text for the message catalogue; it is translated where it is used."""
    return message


ALERT_SUBJECT = _("inbox-guard: a client's message has risk words, please read it")
SIGNIN_SUBJECT = _("inbox-guard: sign-in needed, mail is not being checked")
SIGNIN_TEXT = _(
    "inbox-guard can no longer sign in to %(account)s, so out-of-hours mail is "
    "not being marked or drafted. On the machine where inbox-guard runs, sign in "
    "again with: %(command)s"
)
SIGNIN_DETAILS = _("Details: %(why)s")
DISCLAIMER_TEXT = _("keyword screen, not an assessment")  # = risk.DISCLAIMER, for the catalogue

# The names of the marks where a mail app shows a name (a Gmail label, a folder, a
# Thunderbird tag), in the practitioner's language unless [mark] names them.
OUT_OF_HOURS_LABEL = _("Out of hours")
NEEDS_ATTENTION_LABEL = _("Needs attention")


def mark_labels(settings: Settings) -> tuple[str, str]:
    """(out-of-hours label, risk label) for this practitioner."""
    t = translations(settings.main.therapist.language)
    m = settings.main.mark
    return (
        m.label or t.gettext(OUT_OF_HOURS_LABEL),
        m.risk_label or t.gettext(NEEDS_ATTENTION_LABEL),
    )


# Why no draft was saved, as the digest says it (the codes are the JSON output's).
REASONS = {
    "window": _("one was already drafted for this out-of-hours stretch"),
    "duplicate": _("this message arrived before and already has one"),
    "not-addressed": _("the message was not addressed to you"),
    "off": _("drafts are off"),
}


# Short local times as people read them in each language: "Sun 22 Nov 23:40"; with
# the year ("Sun 22 Nov 2026 23:40") when more than about six months from now.
_WHEN = {
    "en": ("EEE d MMM", " y", " HH:mm"),
    "de": ("EEE d. MMM", " y", " HH:mm"),
    "fr": ("EEE d MMM", " y", " HH:mm"),
    "es": ("EEE d MMM", " 'de' y", ", HH:mm"),
}


def when(value: datetime, language: str = "en", now: datetime | None = None) -> str:
    from babel.dates import format_datetime

    day, year, clock = _WHEN.get(language, _WHEN["en"])
    pattern = day + (year if _far(value, now) else "") + clock
    return str(format_datetime(value, pattern, tzinfo=value.tzinfo, locale=language))


@functools.cache
def translations(language: str) -> gettext.NullTranslations:
    """The message catalogue for the digest and alert texts (``locale/<lang>/.../*.po``,
    compiled in memory with Babel); English needs none."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po
    from babel.support import Translations

    po = resources.files("inbox_guard") / "locale" / language / "LC_MESSAGES" / "inbox_guard.po"
    if language == "en" or not po.is_file():
        return gettext.NullTranslations()
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=language)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(buf, domain="inbox_guard")


def template_env(override_dir: Path | None, language: str = "en") -> jinja2.Environment:
    """Templates shipped in the package, overridden by same-named files in config/templates/.
    Texts marked for translation (``{% trans %}``, ``_()``) come out in ``language``."""
    import jinja2

    loaders: list[jinja2.BaseLoader] = []
    if override_dir is not None and override_dir.is_dir():
        loaders.append(jinja2.FileSystemLoader(str(override_dir)))
    loaders.append(jinja2.PackageLoader("inbox_guard", "templates"))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        extensions=["jinja2.ext.i18n"],
    )
    t = translations(language)
    env.install_gettext_translations(t, newstyle=True)  # type: ignore[attr-defined]

    @jinja2.pass_context
    def _when(ctx: jinja2.runtime.Context, value: datetime) -> str:
        # The template's clock: ``now``, or the digest's.
        now = ctx.get("now") or getattr(ctx.get("digest"), "now", None)
        return when(value, language, now)

    env.filters["when"] = _when
    env.filters["reason"] = lambda code: t.gettext(REASONS.get(code or "", code or ""))
    env.globals["disclaimer"] = t.gettext(DISCLAIMER_TEXT)
    env.globals["language"] = language
    return env


def env_for(settings: Settings) -> jinja2.Environment:
    return template_env(settings.templates_dir, settings.main.therapist.language)


def own_message(settings: Settings, subject: str, message_id: str, now: datetime) -> EmailMessage:
    """A message from inbox-guard to the practitioner (digest or alert)."""
    t = settings.main.therapist
    msg = EmailMessage(policy=SMTP)
    msg["From"] = Address("inbox-guard", addr_spec=t.email)
    msg["To"] = settings.digest_to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
    return msg


def signin_alert(settings: Settings, why: str, basis: str, now: datetime) -> EmailMessage:
    """Tell the practitioner that the kept sign-in has expired (``auth = "oauth2"``)."""
    t = translations(settings.main.therapist.language)
    domain = settings.mail_domain
    message_id = f"<inbox-guard.signin.{basis[:24]}@{domain}>"
    msg = own_message(settings, t.gettext(SIGNIN_SUBJECT), message_id, now)
    msg["Importance"] = "high"
    command = "inbox-guard" + (f" --account {settings.name}" if settings.name else "") + " login"
    body = "\n\n".join(
        [
            t.gettext(SIGNIN_TEXT)
            % {"account": settings.main.account.username, "command": command},
            t.gettext(SIGNIN_DETAILS) % {"why": why},
            "--\ninbox-guard",
        ]
    )
    msg.set_content(wrap(body) + "\n", charset="utf-8")
    return msg


def alert_message(
    settings: Settings,
    env: jinja2.Environment,
    *,
    client: str,
    name: str,
    received: datetime,
    draft: bool,
    suppressed: str | None,
    session: datetime | None,
    message_id: str,
    now: datetime,
) -> EmailMessage:
    subject = translations(settings.main.therapist.language).gettext(ALERT_SUBJECT)
    msg = own_message(settings, subject, message_id, now)
    msg["Importance"] = "high"
    body = env.get_template("alert.txt.j2").render(
        client=client,
        name=name,
        received=received.astimezone(settings.tz),
        draft=draft,
        suppressed=suppressed,
        session=session,
        now=now,
    )
    msg.set_content(wrap(body), charset="utf-8")
    return msg


def draft(
    *,
    settings: Settings,
    env: jinja2.Environment,
    subject: str,
    message_id: str | None,
    references: tuple[str, ...],
    to: str,
    key: str,
    session: datetime | None,
    risk: bool,
    now: datetime,
    template: str | None = None,
    from_addr: str | None = None,
) -> EmailMessage:
    """The holding reply; ``template`` is a client's own (risk always uses the urgent
    one, which leads with emergency contacts). It comes from ``from_addr``, the
    practitioner's address the client wrote to (as a mail app replies), else from
    ``therapist.email``."""
    t = settings.main.therapist
    if risk:
        name = draft_template(env, "draft_urgent.txt.j2", t.language)
    else:
        name = template or draft_template(env, "draft.txt.j2", t.language)
    body = env.get_template(name).render(
        session=session,
        session_text=session_text(session, t.language, now),
        name_session=t.drafts_name_session,
        emergency_text=t.emergency_text,
        therapist_name=t.name,
    )
    msg = EmailMessage(policy=SMTP)
    msg["From"] = Address(rules.one_line(t.name), addr_spec=from_addr or t.email)
    msg["To"] = to
    msg["Subject"] = rules.reply_subject(subject)
    if message_id:
        msg["In-Reply-To"] = message_id
        msg["References"] = " ".join([*references, message_id])
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = draft_message_id(key, settings)
    msg.set_content(wrap(body), charset="utf-8")
    _only_our_headers(msg)
    return msg


DRAFT_HEADERS = frozenset(
    {
        "from",
        "to",
        "subject",
        "in-reply-to",
        "references",
        "date",
        "message-id",
        "content-type",
        "content-transfer-encoding",
        "mime-version",
    }
)


def _only_our_headers(msg: EmailMessage) -> None:
    """The draft as it will be stored holds our headers and no other, each once: text
    from the client's message can never add one (a Bcc the practitioner would send)."""
    back = message_from_bytes(msg.as_bytes(), policy=default_policy)
    names = [k.lower() for k in back]
    if set(names) - DRAFT_HEADERS or len(names) != len(set(names)):
        raise ValueError(
            "the holding reply would carry headers of the client's making; it was not saved"
        )
