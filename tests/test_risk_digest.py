"""Risk screening, alerts and the digest against a real Dovecot and a real SMTP server."""

from __future__ import annotations

import email
import logging
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.policy import default as default_policy
from pathlib import Path

import pytest

from inbox_guard import config, smtp
from inbox_guard.compose import ALERT_SUBJECT
from inbox_guard.credentials import login_secret
from inbox_guard.digest import run_digest
from inbox_guard.errors import DeliveryError
from inbox_guard.mailbox import Mailbox
from inbox_guard.schema import Smtp
from inbox_guard.store import Store

from .conftest import PASSWORD_ENV, SAM, Account, Practice, message, write_practice
from .dovecot import free_port

SUNDAY_NIGHT = datetime(2026, 11, 15, 23, 40, tzinfo=UTC)
MONDAY_8 = "2026-11-16T08:00:00+00:00"
Capsys = pytest.CaptureFixture[str]


def parsed(account: Account, folder: str = "INBOX") -> dict[int, EmailMessage]:
    return {
        uid: email.message_from_bytes(m["bytes"], policy=default_policy)
        for uid, m in account.snapshot(folder).items()
    }


def risky_message(body: str, cte: str = "base64") -> bytes:
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = "jane@example.org"
    msg["To"] = "alex@example.org"
    msg["Subject"] = "late"
    msg["Message-ID"] = "<risk-1@example.org>"
    msg.set_content(body, charset="utf-8", cte=cte)
    return msg.as_bytes()


def test_risk_message_gets_both_keywords_urgent_draft_and_one_alert(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    uid = account.append(risky_message("I don’t want to be here anymore.\n"), SUNDAY_NIGHT)
    calm = account.append(message(body="I learnt a new skill\n"), SUNDAY_NIGHT + timedelta(days=1))
    result = practice.once_json(capsys, "--now", MONDAY_8)

    assert {f["uid"]: f["risk"] for f in result["flagged"]} == {uid: True, calm: False}
    flags = account.snapshot()
    assert flags[uid]["flags"] == {b"$OutOfHours", b"$NeedsAttention", b"\\Flagged"}
    assert flags[calm]["flags"] == {b"$OutOfHours"}

    urgent = next(
        d
        for d in parsed(account, "Drafts").values()
        if d["To"] == "jane@example.org" and d["In-Reply-To"] == "<risk-1@example.org>"
    )
    body = " ".join(urgent.get_content().split())
    assert body.index("In an emergency call 999") < body.index("next session")

    alerts = [m for m in parsed(account).values() if m["Subject"] == ALERT_SUBJECT]
    assert len(alerts) == 1
    assert alerts[0]["To"] == "alex@example.org"
    assert "keyword screen, not an assessment" in alerts[0].get_content()
    assert "want to be here" not in alerts[0].get_content()  # never quotes the client

    practice.once_json(capsys, "--now", MONDAY_8)
    assert len([m for m in parsed(account).values() if m["Subject"] == ALERT_SUBJECT]) == 1


def test_only_the_first_64_kib_of_the_text_is_screened(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    late = risky_message("All is well. " * 6000 + "\nI want to die\n", cte="quoted-printable")
    account.append(late, SUNDAY_NIGHT)
    [flag] = practice.once_json(capsys, "--now", MONDAY_8)["flagged"]
    assert flag["risk"] is False


def test_attachment_is_not_downloaded_and_text_part_is_found(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"], msg["To"], msg["Subject"] = "jane@example.org", "alex@example.org", "photos"
    msg.set_content("I took too many pills earlier\n")
    msg.add_attachment(
        b"\x00" * (3 * 1024 * 1024),
        maintype="application",
        subtype="octet-stream",
        filename="big.bin",
    )
    account.append(msg.as_bytes(), SUNDAY_NIGHT)
    log = account.server.root / "dovecot.log"
    before = log.read_text()
    [flag] = practice.once_json(capsys, "--now", MONDAY_8)["flagged"]
    assert flag["risk"] is True
    # Dovecot logs the body bytes each session sent; none came near the attachment's size.
    sent = [
        int(part.split("=")[1])
        for line in log.read_text()[len(before) :].splitlines()
        for part in line.split()
        if part.startswith("body_bytes=")
    ]
    assert sent and max(sent) < 70_000


def test_digest_holds_exactly_the_contacts_since_the_last_one(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    account.append(message(subject="one"), SUNDAY_NIGHT)
    account.append(message(sender=SAM, subject="two"), SUNDAY_NIGHT + timedelta(minutes=5))
    practice.once_json(capsys, "--now", MONDAY_8)

    code, out, err = practice.run("digest", "--dry-run", "--now", MONDAY_8, capsys=capsys)
    assert code == 0, err
    assert "2 out-of-hours contacts from 2 clients" in out
    assert "Jane Doe (jane-doe)" in out and "Sam (sam-lee)" in out
    assert "Sun 15 Nov 23:40 — holding reply waiting in Drafts" in out
    assert "Next session: Wed 18 Nov 10:00" in out
    assert not [m for m in parsed(account).values() if "digest" in str(m["Subject"])]

    code, out, _ = practice.run("digest", "--now", MONDAY_8, capsys=capsys)
    assert code == 0 and "digest delivered to alex@example.org (2 contacts)" in out
    digests = [m for m in parsed(account).values() if "digest" in str(m["Subject"])]
    assert len(digests) == 1 and digests[0]["To"] == "alex@example.org"
    assert digests[0].get_content_type() == "multipart/alternative"
    body = digests[0].get_body(preferencelist=("html",))
    assert body is not None
    html = body.get_content()
    assert 'class="bar"' in html and "<script" not in html and "http" not in html

    account.append(message(subject="three"), datetime(2026, 11, 16, 19, 0, tzinfo=UTC))
    practice.once_json(capsys, "--now", "2026-11-16T19:30")
    code, out, _ = practice.run("digest", "--dry-run", "--now", "2026-11-17T07:30", capsys=capsys)
    assert "1 out-of-hours contact from 1 client" in out
    assert "Sam" not in out
    assert "Last 28 days: 2 out-of-hours contacts, at 19h, 23h" in out

    practice.run("digest", "--now", "2026-11-17T07:30", capsys=capsys)
    code, out, _ = practice.run("digest", "--now", "2026-11-18T07:30", capsys=capsys)
    assert "nothing to report" in out


def test_smtp_delivery_goes_only_to_the_practitioner(
    tmp_path: Path,
    account: Account,
    capsys: Capsys,
    monkeypatch: pytest.MonkeyPatch,
    smtp_server: tuple[int, list[tuple[str, list[str], bytes]]],
) -> None:
    port, received = smtp_server
    monkeypatch.setenv(PASSWORD_ENV, account.password)
    p = write_practice(
        tmp_path,
        account,
        extra=f"""
        [digest]
        deliver = "smtp"
        to = "practice@example.org"

        [smtp]
        host = "127.0.0.1"
        port = {port}
        security = "plain"
        """,
    )
    account.append(risky_message("thinking about suicide\n"), SUNDAY_NIGHT)
    account.append(message(), SUNDAY_NIGHT + timedelta(minutes=1))
    p.once_json(capsys, "--now", MONDAY_8)
    code, _out, err = p.run("digest", "--now", MONDAY_8, capsys=capsys)
    assert code == 0, err

    assert len(received) == 2  # the alert, then the digest
    assert all(rcpt == ["practice@example.org"] for _, rcpt, _ in received)
    subjects = [email.message_from_bytes(raw)["Subject"] for _, _, raw in received]
    assert subjects[0] == ALERT_SUBJECT and subjects[1].startswith("Out-of-hours digest")
    # Nothing was appended to the inbox: SMTP delivery leaves the server alone.
    assert all(m["From"] != "inbox-guard <alex@example.org>" for m in parsed(account).values())


def test_smtp_refuses_anyone_but_the_practitioner() -> None:
    server = Smtp(host="127.0.0.1", port=free_port(), security="plain")
    msg = EmailMessage()
    msg["Subject"] = "x"
    with pytest.raises(DeliveryError, match=r"refusing to send to jane@example\.org"):
        smtp.send(
            server,
            None,
            msg,
            ["alex@example.org", "jane@example.org"],
            allowed=["alex@example.org"],
        )


def test_risk_stands_out_in_the_once_output(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    account.append(risky_message("I don’t want to be here anymore.\n"), SUNDAY_NIGHT)
    account.append(message(body="I learnt a new skill\n"), SUNDAY_NIGHT + timedelta(days=1))
    code, out, _ = practice.run("once", "--dry-run", "--now", MONDAY_8, capsys=capsys)
    assert code == 0
    risky = [line for line in out.splitlines() if "RISK WORDS" in line]
    assert len(risky) == 1
    assert risky[0].lstrip().startswith("RISK WORDS  ")
    assert "urgent draft; would alert alex@example.org" in risky[0]
    code, out, _ = practice.run("once", "--now", MONDAY_8, capsys=capsys)
    [line] = [line for line in out.splitlines() if "RISK WORDS" in line]
    assert "urgent draft; alert sent to alex@example.org" in line
    assert len([ln for ln in out.splitlines() if ln.startswith("  ")]) == 2  # both flagged


def test_risk_is_marked_on_the_agenda_line(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    account.append(risky_message("I don’t want to be here anymore.\n"), SUNDAY_NIGHT)
    account.append(message(body="I learnt a new skill\n"), SUNDAY_NIGHT + timedelta(days=1))
    practice.once_json(capsys, "--now", MONDAY_8)
    lines = [
        line
        for f in (practice.agendas / "jane-doe").iterdir()
        for line in f.read_text().splitlines()
        if line.startswith("- ")
    ]
    assert len(lines) == 2
    assert [line for line in lines if "**risk words** out-of-hours email" in line] == [
        next(line for line in lines if "Sun 2026-11-15 23:40" in line)
    ]


def test_the_html_digest_can_be_seen_before_it_is_sent(
    practice: Practice, account: Account, capsys: Capsys, tmp_path: Path
) -> None:
    account.append(message(), SUNDAY_NIGHT)
    practice.once_json(capsys, "--now", MONDAY_8)
    page = tmp_path / "digest.html"
    code, out, err = practice.run(
        "digest", "--dry-run", "--html", str(page), "--now", MONDAY_8, capsys=capsys
    )
    assert code == 0, err
    assert "1 out-of-hours contact from 1 client" in out
    html = page.read_text()
    assert html.lstrip().lower().startswith("<!doctype html") and "</html>" in html
    assert "Jane Doe" in html
    assert oct(page.stat().st_mode & 0o777) == "0o600"
    code, _, err = practice.run("digest", "--html", str(page), "--now", MONDAY_8, capsys=capsys)
    assert code == 2
    assert err.strip() == (
        "inbox-guard: error: --html goes with --dry-run (a delivered digest "
        "is in your inbox already) (see inbox-guard digest --help)"
    )


def _digest_lines(practice: Practice, capsys: Capsys) -> dict[str, str]:
    code, out, err = practice.run("digest", "--dry-run", "--now", MONDAY_8, capsys=capsys)
    assert code == 0, err
    lines = {at: line for line in out.splitlines() for at in ("23:40", "23:45") if at in line}
    assert len(lines) == 2, out
    return lines


def test_the_digest_says_which_holding_replies_are_still_in_drafts(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    account.append(message(subject="one"), SUNDAY_NIGHT)
    account.append(message(sender=SAM, subject="two"), SUNDAY_NIGHT + timedelta(minutes=5))
    practice.once_json(capsys, "--now", MONDAY_8)
    with account.client() as c:  # the practitioner sent Sam's holding reply
        c.select_folder("Drafts")
        sams = c.search(["TO", SAM])
        assert len(sams) == 1
        c.delete_messages(sams)
        c.expunge()

    lines = _digest_lines(practice, capsys)
    assert lines["23:40"].endswith("— holding reply waiting in Drafts")
    assert lines["23:45"].endswith("— holding reply sent or deleted")


def test_a_draft_flagged_deleted_but_not_yet_expunged_is_not_waiting_in_drafts(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    account.append(message(subject="one"), SUNDAY_NIGHT)
    account.append(message(sender=SAM, subject="two"), SUNDAY_NIGHT + timedelta(minutes=5))
    practice.once_json(capsys, "--now", MONDAY_8)
    with account.client() as c:  # a mail app that deletes by flagging, expunging later
        c.select_folder("Drafts")
        sams = c.search(["TO", SAM])
        assert len(sams) == 1
        c.add_flags(sams, [b"\\Deleted"])

    lines = _digest_lines(practice, capsys)
    assert lines["23:40"].endswith("— holding reply waiting in Drafts")
    assert lines["23:45"].endswith("— holding reply sent or deleted")


def test_a_connection_the_server_has_dropped_is_made_again_to_look_in_drafts(
    practice: Practice, account: Account, capsys: Capsys, caplog: pytest.LogCaptureFixture
) -> None:
    """The service keeps one connection between passes; if the server has hung up on
    it by digest time, the digest logs in again to look rather than claim neither."""
    account.append(message(subject="one"), SUNDAY_NIGHT)
    account.append(message(sender=SAM, subject="two"), SUNDAY_NIGHT + timedelta(minutes=5))
    practice.once_json(capsys, "--now", MONDAY_8)
    with account.client() as c:
        c.select_folder("Drafts")
        c.delete_messages(c.search(["TO", SAM]))
        c.expunge()
    settings = config.load(practice.config)
    mailbox = Mailbox.connect(settings.main.account, login_secret(settings))
    account.server.doveadm("kick", account.user)
    caplog.set_level(logging.INFO, logger="inbox_guard")
    store = Store.snapshot(practice.state)
    try:
        run = run_digest(settings, mailbox, store, datetime.fromisoformat(MONDAY_8), True)
    finally:
        store.close()
        mailbox.logout()
    assert run.message is not None
    text = run.message.get_body(preferencelist=("plain",))
    assert text is not None
    said = {ln.split(" — ")[-1] for ln in text.get_content().splitlines() if "23:4" in ln}
    assert said == {"holding reply waiting in Drafts", "holding reply sent or deleted"}
    assert "logging in again to look in Drafts" in caplog.text


def test_when_drafts_cannot_be_looked_at_the_digest_claims_neither(
    practice: Practice, account: Account, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    account.append(message(subject="one"), SUNDAY_NIGHT)
    account.append(message(sender=SAM, subject="two"), SUNDAY_NIGHT + timedelta(minutes=5))
    practice.once_json(capsys, "--now", MONDAY_8)
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password")

    code, out, err = practice.run("digest", "--dry-run", "--now", MONDAY_8, capsys=capsys)
    assert code == 0, err
    assert "note: cannot look in Drafts" in err
    assert out.count("— holding reply saved in Drafts") == 2
    assert "waiting in Drafts" not in out and "sent or deleted" not in out
