"""``inbox-guard demo``: a sample practice on an embedded IMAP server.

Writes a throwaway config (the shipped sample practice, pointed at the embedded
server), loads a week of synthetic mail, runs one real pass through the same
:func:`~inbox_guard.triage.run_pass` as ``once``, and shows what happened.
"""

from __future__ import annotations

import email
import logging
import os
import secrets
import shutil
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.policy import default as default_policy
from email.utils import format_datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

from . import config, hours
from .compose import ALERT_SUBJECT
from .digest import DigestRun, run_digest
from .embedded import EmbeddedServer, Seeder
from .mailbox import Mailbox
from .model import Settings
from .outcome import PassResult
from .store import Store
from .triage import run_pass

PASSWORD_ENV = "INBOX_GUARD_DEMO_PASSWORD"
SAMPLE = files("inbox_guard") / "sample"


@dataclass
class Seeded:
    uid: int
    sender: str
    subject: str
    received: datetime


@dataclass
class DemoRun:
    workdir: Path
    settings: Settings
    seeded: list[Seeded]
    result: PassResult
    digest: DigestRun
    inbox: dict[int, tuple[set[str], bytes]]
    drafts: dict[int, tuple[set[str], bytes]]


def write_config(workdir: Path, port: int) -> Path:
    (workdir / "clients").mkdir(parents=True, exist_ok=True)
    for item in (SAMPLE / "clients").iterdir():
        if item.name.endswith(".toml"):
            (workdir / "clients" / item.name).write_text(item.read_text())
    main = (SAMPLE / "inbox-guard.toml").read_text().replace("port = 143", f"port = {port}")
    path = workdir / "inbox-guard.toml"
    path.write_text(main)
    return path


def _build(m: dict[str, Any], tz: Any) -> tuple[bytes, datetime]:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = m["from"]
    msg["To"] = m.get("to", "Alex Morgan <alex@example.org>")
    msg["Subject"] = m["subject"]
    when = datetime.fromisoformat(m["received"]).replace(tzinfo=tz)
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = f"<demo-{secrets.token_hex(6)}@example.net>"
    for k, v in m.get("headers", {}).items():
        msg[k] = v
    msg.set_content(m.get("body", "A synthetic message for the demo.\n"))
    return msg.as_bytes(), when


def run(keep: Path | None = None) -> DemoRun:
    workdir = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="inbox-guard-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(16)
    os.environ[PASSWORD_ENV] = password  # this process only; never written anywhere
    sample = tomllib.loads((SAMPLE / "messages.toml").read_text())
    with EmbeddedServer("alex@example.org", password) as server:
        settings = config.load(write_config(workdir, server.port))
        now = datetime.fromisoformat(sample["now"]).replace(tzinfo=settings.tz)
        seeder = Seeder(server)
        try:
            seeder.create("Drafts")
            seeded = []
            for m in sample["message"]:
                raw, when = _build(m, settings.tz)
                uid = seeder.append("INBOX", raw, when)
                seeded.append(Seeded(uid, m["from"], m["subject"], when))

            # The real thing: the same pass as `inbox-guard once`.
            mailbox = Mailbox.connect(settings.main.account, password)
            store = Store.open_for(settings)
            try:
                result = run_pass(settings, mailbox, store, now)
                digest = run_digest(settings, mailbox, store, now, dry_run=False)
            finally:
                store.close()
                mailbox.logout()

            return DemoRun(
                workdir,
                settings,
                seeded,
                result,
                digest,
                seeder.read("INBOX"),
                seeder.read("Drafts"),
            )
        finally:
            seeder.close()


def _decision(run: DemoRun, s: Seeded) -> str:
    for f in run.result.flagged:
        if f["uid"] == s.uid:
            risk = "RISK WORDS; " if f["risk"] else ""
            draft = "draft saved" if f["draft"] else f"no draft ({f['suppressed']})"
            return f"out of hours: {risk}marked, {draft}, noted"
    for i in run.result.ignored:
        if i["uid"] == s.uid:
            return f"machine-written ({i['reason']}): left alone"
    client = run.settings.client_by_email.get(email.utils.parseaddr(s.sender)[1].lower())
    if client is None:
        return "not a client: left alone"
    if hours.is_open(s.received, run.settings.schedule_for(client)):
        return "in hours: left alone"
    return "left alone"


def _cell(text: str, width: int) -> str:
    """A table cell: cut with an ellipsis where too long, padded where short, so the
    columns (two spaces apart) never run into each other."""
    return (text if len(text) <= width else text[: width - 1] + "…").ljust(width)


def show(run: DemoRun, out: Callable[[str], None] = print) -> None:
    st = run.settings
    out("inbox-guard demo: a sample practice on an embedded IMAP server (nothing is sent).")
    out(
        f"Practice: {st.main.therapist.name}, {st.main.timezone}; clients: "
        + ", ".join(f"{c.id}" for c in st.clients.values())
    )
    out("")
    out(
        f"{_cell('received (local)', 16)}  {_cell('from', 24)}  {_cell('subject', 30)}  "
        "what inbox-guard did"
    )
    for s in sorted(run.seeded, key=lambda s: s.received):
        local = s.received.astimezone(st.tz)
        sender = email.utils.parseaddr(s.sender)[1]
        out(
            f"{_cell(f'{local:%a %d %b %H:%M}', 16)}  {_cell(sender, 24)}  "
            f"{_cell(s.subject, 30)}  {_decision(run, s)}"
        )
    marked = sorted(
        u
        for u, (flags, _) in run.inbox.items()
        if st.main.triage.keyword in flags or "\\Flagged" in flags
    )
    out("")
    seeded = {s.uid for s in run.seeded}
    out(f"Inbox: {len(seeded)} messages, {len(marked)} marked; none moved, none read.")
    out(
        f"(This embedded server keeps no custom keywords, so marks show as \\Flagged here;"
        f" elsewhere they are {st.main.triage.keyword} too, and [mark] show chooses what"
        " your mail app shows: a Gmail label, a coloured flag, a folder.)"
    )
    out(f"Drafts folder: {len(run.drafts)} holding replies waiting for review (not sent).")
    if run.drafts:
        first = min(run.drafts)
        draft = _parse(run.drafts[first][1])
        out("")
        out("One draft in full:")
        out("-" * 72)
        for name in ("From", "To", "Subject", "In-Reply-To", "Date"):
            out(f"{name}: {draft[name]}")
        out("")
        out(draft.get_content().rstrip())
        out("-" * 72)
    alerts = [
        _parse(raw)
        for uid, (_, raw) in sorted(run.inbox.items())
        if uid not in seeded and _parse(raw)["Subject"] == ALERT_SUBJECT
    ]
    for alert in alerts:
        out("")
        out(f"Alert in your inbox at once: {alert['Subject']}")
        out(_text(alert))
    out("")
    out(f"Agenda notes ({st.agenda_dir}):")
    for path in sorted(st.agenda_dir.rglob("*.md")):
        out("")
        out(f"== {path.relative_to(st.agenda_dir)}")
        out(path.read_text().rstrip())
    out("")
    if run.digest.message is not None:
        out("")
        out(f"The morning digest, delivered to your inbox: {run.digest.message['Subject']}")
        out("-" * 72)
        out(_text(run.digest.message))
        out("-" * 72)


def _parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=default_policy)


def _text(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    return part.get_content().rstrip() if part is not None else ""


def main(keep: Path | None, out: Callable[[str], None] = print) -> DemoRun:
    # What the log would warn about (risk words, the \Flagged fallback) is in the output.
    logging.getLogger("inbox_guard").setLevel(logging.ERROR)
    demo = run(keep)
    show(demo, out)
    if keep is None:
        shutil.rmtree(demo.workdir, ignore_errors=True)
        out("The demo's files were removed; keep them with: inbox-guard demo --keep DIR")
    else:
        out(f"Config, state and agenda files are kept in {demo.workdir}")
    return demo
