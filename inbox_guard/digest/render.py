"""The digest as a message: its subject, and the text and HTML parts from the
``digest.*.j2`` templates in the practitioner's language."""

from __future__ import annotations

import gettext
import re
from datetime import datetime
from email.message import EmailMessage

import jinja2

from ..compose import _, own_message, translations, wrap
from ..model import Settings
from .content import Digest


def digest_subject(digest: Digest, t: gettext.NullTranslations) -> str:
    if digest.empty:
        return t.gettext(_("Out-of-hours digest: no client contacts"))
    n, k = digest.count, len(digest.clients)
    subject = t.gettext(_("Out-of-hours digest: %(contacts)s from %(clients)s")) % {
        "contacts": t.ngettext("%(num)d contact", "%(num)d contacts", n) % {"num": n},
        "clients": t.ngettext("%(num)d client", "%(num)d clients", k) % {"num": k},
    }
    if digest.risk:
        r = len(digest.risk)
        subject += t.gettext(_(", %(num)d with risk words")) % {"num": r}
    return subject


def digest_message(
    settings: Settings, env: jinja2.Environment, digest: Digest, message_id: str, now: datetime
) -> EmailMessage:
    subject = digest_subject(digest, translations(settings.main.therapist.language))
    msg = own_message(settings, subject, message_id, now)
    # Blank lines between the parts, never more than one however the template's
    # conditions fall.
    text = re.sub(r"\n{3,}", "\n\n", env.get_template("digest.txt.j2").render(digest=digest))
    html = env.get_template("digest.html.j2").render(digest=digest, subject=subject)
    msg.set_content(wrap(text, 998), charset="utf-8")
    msg.add_alternative(html, subtype="html", charset="utf-8")
    return msg
