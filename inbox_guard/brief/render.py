"""The brief as a message to the practitioner: subject, text and HTML parts from the
``brief.*.j2`` templates, in the practitioner's language."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage

import jinja2

from ..compose import _, own_message, translations, when, wrap
from ..digest.content import level, strip
from ..model import Settings
from .content import LATE_NIGHT, Brief

SUBJECT = _("inbox-guard: before the session with %(name)s, %(when)s")


def brief_message(
    settings: Settings,
    env: jinja2.Environment,
    brief: Brief,
    in_drafts: set[str] | None,
    message_id: str,
    now: datetime,
) -> EmailMessage:
    """``in_drafts``: the keys of the contacts whose holding reply is still in Drafts
    (None: Drafts could not be looked at)."""
    language = settings.main.therapist.language
    subject = translations(language).gettext(SUBJECT) % {
        "name": brief.name,
        "when": when(brief.session, language, now),
    }
    msg = own_message(settings, subject, message_id, now)
    peak = max(brief.hours.values(), default=0)
    hours = [(h, n, level(n, peak)) for h, n in strip(brief.hours)]
    sparkline = "".join(" ▁▂▃▄▅▆▇█"[lv] if lv else "·" for _, _, lv in hours)
    context = {
        "b": brief,
        "in_drafts": in_drafts,
        "hours": hours,
        "sparkline": sparkline,
        "late_from": f"{LATE_NIGHT[0]:02d}:00",
        "late_to": f"{LATE_NIGHT[1]:02d}:00",
        "now": now,
        "subject": subject,
    }
    text = env.get_template("brief.txt.j2").render(**context)
    msg.set_content(wrap(text, 998), charset="utf-8")
    msg.add_alternative(
        env.get_template("brief.html.j2").render(**context), subtype="html", charset="utf-8"
    )
    return msg
