"""What the commands print, line by line: the ``check`` report and a pass's flagged
messages. Kept apart so that cli.py stays a thin layer of commands; nothing here
changes anything (``server_lines`` only looks)."""

from __future__ import annotations

import json
from datetime import datetime
from email.message import EmailMessage

from . import marks
from .compose import mark_labels
from .errors import ConfigError
from .mailbox import Mailbox, Status
from .model import Settings
from .outcome import Failed, Flagged
from .sessions import next_session
from .signin import Tokens


def config_lines(settings: Settings, clock: datetime, signin: bool) -> list[str]:
    """``check``: the config is good, the sign-in (when asked), each client's next
    session."""
    who = f" [{settings.name}]" if settings.name else ""
    out = [f"config: {settings.path}{who} ok ({len(settings.clients)} client files)"]
    if settings.main.account.auth == "oauth2" and signin:
        out.append(f"  {signin_line(settings)}")
    for c in settings.clients.values():
        nxt = next_session(c.sessions, clock, settings.tz)
        when = f"{nxt:%a %Y-%m-%d %H:%M}" if nxt else "no session scheduled"
        status = "" if c.active else " (inactive)"
        out.append(f"  {c.id}: next session {when}{status}")
    return out


def server_lines(settings: Settings, mailbox: Mailbox) -> list[str]:
    """``check --connect``: what the server offers and how the marks will look."""
    caps = set(mailbox.capabilities())
    have = [n for n in ("IDLE", "CONDSTORE", "SPECIAL-USE", "MULTIAPPEND") if n.encode() in caps]
    # SELECT, not EXAMINE: only a read-write selection says which keywords the
    # server keeps (PERMANENTFLAGS). Nothing is changed.
    status = mailbox.open(settings.main.account.inbox, read_only=False)
    drafts = mailbox.find_drafts(settings.main.account.drafts)
    acct = settings.main.account
    out = [f"server: {acct.host}:{acct.effective_port} ({acct.security}) login ok"]
    if acct.auth == "oauth2":
        out.append(f"  {signin_line(settings)}")
    out += [
        f"  capabilities: {', '.join(have) or 'none that matter'}",
        f"  inbox: {acct.inbox} ({status.exists} messages)",
        f"  drafts: {drafts}",
        f"  {_what_marks_look_like(settings, caps, status)}",
    ]
    return out


def _account_flag(settings: Settings) -> str:
    return f" --account {settings.name}" if settings.name else ""


def signin_line(settings: Settings) -> str:
    """Who is signed in, until when the access token runs, and what it may do."""
    status = Tokens(settings).status()
    if status is None:
        return f"sign-in: none kept yet: run `inbox-guard{_account_flag(settings)} login`"

    def local(when: float) -> str:
        try:
            return f"{datetime.fromtimestamp(when, settings.tz):%Y-%m-%d %H:%M}"
        except (OverflowError, ValueError, OSError):
            return "(unknown)"

    line = (
        f"signed in as {status.who} ({status.provider}); access token valid until "
        f"{local(status.expires_at)} (renewed automatically)"
    )
    if status.refresh_expires_at:
        line += f"; sign-in lasts until {local(status.refresh_expires_at)}"
    return f"{line}; scopes: {', '.join(status.scopes)}; kept in {status.where}"


def _what_marks_look_like(settings: Settings, caps: set[bytes], status: Status) -> str:
    main = settings.main
    keeps = status.allows(main.triage.keyword)
    style = marks.choose(main.mark.show, caps, keeps)
    if style == "gmail-label" and b"X-GM-EXT-1" not in caps:
        raise ConfigError(
            f'{settings.path}: mark.show: "gmail-label" needs Gmail, and '
            f"{main.account.host} does not offer Google's IMAP extensions (X-GM-EXT-1)"
        )
    label, risk_label = mark_labels(settings)
    return marks.what_you_will_see(
        style, main.triage.keyword, label, risk_label, main.mark.colour, keeps
    )


def flagged_line(f: Flagged, errors: list[Failed], settings: Settings, dry_run: bool) -> str:
    """One flagged message for `once`: risk first and in capitals, with what was done
    about it (the urgent draft, the alert), so it cannot be read past."""
    draft = "draft" if f["draft"] else f"no draft ({f['suppressed']})"
    line = f"{f['received']}  {f['client']}  {draft}  -> {f['agenda']}"
    if not f.get("risk"):
        return line
    if not settings.main.risk.alert:
        told = "no alert (risk.alert is off)"
    elif dry_run:
        told = f"would alert {settings.digest_to}"
    elif any(e["uid"] == f["uid"] and str(e["error"]).startswith("alert") for e in errors):
        told = "alert NOT sent (see errors)"
    else:
        told = f"alert sent to {settings.digest_to}"
    urgent = "urgent draft" if f["draft"] else draft
    return f"RISK WORDS  {f['received']}  {f['client']}  {urgent}; {told}  -> {f['agenda']}"


# Thunderbird tag colours for the mark colours (Thunderbird's own palette of tags).
_TB_COLOURS = {
    "orange": "#FF9900",
    "yellow": "#CCCC00",
    "green": "#009900",
    "blue": "#3333FF",
    "purple": "#993399",
    "grey": "#808080",
    "red": "#FF0000",
}


def thunderbird_lines(settings: Settings) -> list[str]:
    """``thunderbird-tags``: the user.js lines that define a tag for each mark."""
    label, risk_label = mark_labels(settings)
    main = settings.main
    out = [
        "// inbox-guard: Thunderbird tags for its marks. Put these lines in user.js in",
        "// your Thunderbird profile folder while Thunderbird is closed, then start it.",
    ]
    for keyword, name, colour in (
        (main.triage.keyword, label, _TB_COLOURS[main.mark.colour]),
        (main.risk.keyword, risk_label, _TB_COLOURS["red"]),
    ):
        key = keyword.lower()
        out.append(f'user_pref("mailnews.tags.{key}.tag", {json.dumps(name)});')
        out.append(f'user_pref("mailnews.tags.{key}.color", "{colour}");')
    return out


def message_text(message: EmailMessage) -> str:
    """A message as ``digest --dry-run`` shows it: Subject, To, and the text part."""
    part = message.get_body(preferencelist=("plain",))
    text = part.get_content().rstrip() if part is not None else ""
    return f"Subject: {message['Subject']}\nTo: {message['To']}\n\n{text}"
