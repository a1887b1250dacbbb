"""Hostile and broken input, and surprises from the server: the pass goes on."""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.policy import default as default_policy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inbox_guard import compose, config, rules
from inbox_guard.embedded import EmbeddedServer, Seeder
from inbox_guard.mailbox import Mailbox
from inbox_guard.model import Settings
from inbox_guard.schema import MainConfig
from inbox_guard.store import Store
from inbox_guard.triage import run_pass

from .conftest import JANE, PASSWORD_ENV, Account, Practice, message, write_practice
from .faults import Cut, CutProxy

SUNDAY_NIGHT = datetime(2026, 11, 15, 23, 40, tzinfo=UTC)
MONDAY_8 = "2026-11-16T08:00:00+00:00"
KW = b"$OutOfHours"
Capsys = pytest.CaptureFixture[str]


def raw(headers: str, body: str = "Synthetic.\r\n") -> bytes:
    return (headers.replace("\n", "\r\n") + "\r\n" + body).encode("utf-8", "surrogateescape")


def drafts(account: Account) -> list[EmailMessage]:
    return [
        email.message_from_bytes(m["bytes"], policy=default_policy)
        for m in account.snapshot("Drafts").values()
    ]


def test_broken_messages_are_handled_one_by_one(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    t = SUNDAY_NIGHT
    u = {}
    u["no-id"] = account.append(
        raw("From: jane@example.org\nTo: alex@example.org\nSubject: no id\n"), t
    )
    u["dup-1"] = account.append(
        message(message_id="<same@example.org>", subject="dup"), t + timedelta(minutes=1)
    )
    u["dup-2"] = account.append(
        message(message_id="<same@example.org>", subject="dup"), t + timedelta(minutes=2)
    )
    u["no-from"] = account.append(raw("To: alex@example.org\nSubject: who?\n"), t)
    u["charset"] = account.append(
        raw(
            "From: jane@example.org\nTo: alex@example.org\n"
            "Subject: =?x-unknown?q?hallo?=\n"
            "Content-Type: text/plain; charset=x-unknown\n"
        ),
        t + timedelta(minutes=3),
    )
    u["mime"] = account.append(
        raw(
            "From: jane@example.org\nTo: alex@example.org\nSubject: mime\n"
            "MIME-Version: 1.0\nContent-Type: multipart/mixed\n",
            "--nothing\r\nbroken\r\n",
        ),
        t + timedelta(minutes=4),
    )
    u["8bit"] = account.append(
        "From: Jäne <jane@example.org>\r\nTo: alex@example.org\r\n"
        "Subject: Grüße, café\r\n\r\nx\r\n".encode(),
        t + timedelta(minutes=5),
    )
    u["latin1"] = account.append(
        "From: jane@example.org\r\nTo: alex@example.org\r\nSubject: caf\xe9\r\n\r\nx\r\n".encode(
            "latin-1"
        ),
        t + timedelta(minutes=6),
    )
    u["giant"] = account.append(
        raw(
            "From: jane@example.org\nTo: alex@example.org\n"
            "Subject: "
            + "long " * 20000
            + "\n"
            + "".join(f"X-Filler-{i}: {'y' * 900}\n" for i in range(200))
        ),
        t + timedelta(minutes=7),
    )
    u["inject"] = account.append(
        raw(
            "From: jane@example.org\nTo: alex@example.org\n"
            "Subject: =?utf-8?q?Hello=0D=0ABcc:_evil@example.com?=\n"
        ),
        t + timedelta(minutes=8),
    )
    before = account.snapshot()

    result = practice.once_json(capsys, "--now", MONDAY_8)

    assert result["errors"] == []
    flagged = {f["uid"] for f in result["flagged"]}
    assert flagged == {v for k, v in u.items() if k != "no-from"}
    after = account.snapshot()
    assert after[u["no-from"]] == before[u["no-from"]]
    note = (practice.agendas / "jane-doe" / "2026-11-18.md").read_text()
    assert note.count("<!-- inbox-guard:") == len(flagged)
    assert "`Grüße, café`" in note and "`café`" in note
    # One window, one draft, to the client only.
    [draft] = drafts(account)
    assert draft["To"] == JANE and draft["Bcc"] is None


def test_per_message_drafts_never_carry_injected_headers(
    tmp_path: Path, account: Account, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, account.password)
    p = write_practice(tmp_path, account, drafts="per-message")
    account.append(
        raw(
            "From: jane@example.org\nTo: alex@example.org\n"
            "Subject: =?utf-8?q?Hi=0D=0ABcc:_evil@example.com=0D=0A=0D=0Abody?=\n"
        ),
        SUNDAY_NIGHT,
    )
    account.append(
        raw("From: jane@example.org\nTo: alex@example.org\nSubject: " + "long " * 20000 + "\n"),
        SUNDAY_NIGHT + timedelta(minutes=1),
    )
    p.once_json(capsys, "--now", MONDAY_8)
    ds = drafts(account)
    assert len(ds) == 2
    for d in ds:
        assert set(d.keys()) == {
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "Content-Type",
            "Content-Transfer-Encoding",
            "MIME-Version",
        }
        assert d["To"] == JANE and "\n" not in d["Subject"]


def test_a_50_mb_attachment_is_never_downloaded(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"], msg["To"], msg["Subject"] = JANE, "alex@example.org", "scan"
    msg.set_content("please see the attached\n")
    msg.add_attachment(
        b"\x01" * (50 * 1024 * 1024),
        maintype="application",
        subtype="octet-stream",
        filename="scan.bin",
    )
    account.append(msg.as_bytes(), SUNDAY_NIGHT)
    log = account.server.root / "dovecot.log"
    start = len(log.read_text())
    [flag] = practice.once_json(capsys, "--now", MONDAY_8)["flagged"]
    assert flag["draft"] is True
    sent = [
        int(w.split("=")[1])
        for line in log.read_text()[start:].splitlines()
        for w in line.split()
        if w.startswith(("body_bytes=", "out="))
    ]
    assert sent and max(sent) < 100_000


def test_drafts_folder_missing_is_an_error_per_message_and_the_note_is_still_made(
    tmp_path: Path, account: Account, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, account.password)
    p = write_practice(tmp_path, account)
    p.config.write_text(
        p.config.read_text().replace(
            'password_env = "IG_TEST_PASSWORD"',
            'password_env = "IG_TEST_PASSWORD"\ndrafts = "Entwürfe"',
        )
    )
    uid = account.append(message(), SUNDAY_NIGHT)
    result = p.once_json(capsys, "--now", MONDAY_8)
    assert result["flagged"] == []
    assert result["errors"] == [
        {"uid": uid, "error": "draft: account.drafts: folder 'Entwürfe' does not exist"}
    ]
    assert account.snapshot()[uid]["flags"] == {KW}
    assert (p.agendas / "jane-doe" / "2026-11-18.md").exists()
    # The practitioner creates the folder; the next pass finishes the job.
    with account.client() as c:
        c.create_folder("Entwürfe")
    assert [f["uid"] for f in p.once_json(capsys, "--now", MONDAY_8)["flagged"]] == [uid]
    assert len(account.snapshot("Entwürfe")) == 1


def test_read_only_inbox_is_refused_in_one_line(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    uid = account.append(message(), SUNDAY_NIGHT)
    before = account.snapshot()
    maildir = account.server.maildir(account.user)
    modes = {d: d.stat().st_mode for d in [maildir, *(maildir / s for s in ("cur", "new", "tmp"))]}
    for d in modes:
        d.chmod(0o555)
    try:
        code, _out, err = practice.run("once", "--now", MONDAY_8, capsys=capsys)
    finally:
        for d, mode in modes.items():
            d.chmod(mode)
    assert code == 1
    assert err.strip() == (
        "inbox-guard: the server opened 'INBOX' read-only, so messages cannot be "
        "marked; check the account's rights (nothing was changed)"
    )
    assert account.snapshot()[uid] == before[uid]


def test_a_stalled_server_times_out_instead_of_hanging(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    account.append(message(), SUNDAY_NIGHT)
    with CutProxy(account.port) as proxy:
        proxy.set(Cut(at_command=b"UID FETCH", stall_seconds=30))
        text = practice.config.read_text().replace(f"port = {account.port}", f"port = {proxy.port}")
        practice.config.write_text(
            text.replace('security = "plain"', 'security = "plain"\ntimeout_seconds = 1')
        )
        code, _, err = practice.run("once", "--now", MONDAY_8, capsys=capsys)
    assert code == 3
    assert "timed out" in err


def test_expunged_before_marking_is_harmless(
    practice: Practice, account: Account, capsys: Capsys
) -> None:
    uid = account.append(message(), SUNDAY_NIGHT)
    other = account.append(message(subject="stays"), SUNDAY_NIGHT + timedelta(minutes=1))
    with CutProxy(account.port) as proxy:
        proxy.set(Cut(at_command=b"UID STORE", forward_first=False))
        original = practice.config.read_text()
        practice.config.write_text(
            original.replace(f"port = {account.port}", f"port = {proxy.port}")
        )
        code, _, _ = practice.run("once", "--now", MONDAY_8, capsys=capsys)
        practice.config.write_text(original)
    assert code == 3  # decided and recorded, then cut before marking
    with account.client() as c:  # another client deletes one message meanwhile
        c.select_folder("INBOX")
        c.delete_messages([uid])
        c.expunge()
    result = practice.once_json(capsys, "--now", MONDAY_8)
    assert sorted(f["uid"] for f in result["flagged"]) == [uid, other]
    assert account.snapshot()[other]["flags"] == {KW}


def test_server_without_keywords_gets_flagged_instead(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with EmbeddedServer("alex@example.org", "pw-embedded") as server:
        seeder = Seeder(server)
        seeder.create("Drafts")
        uid = seeder.append("INBOX", message(), SUNDAY_NIGHT)
        calm = seeder.append("INBOX", message(sender="x@elsewhere.example"), SUNDAY_NIGHT)
        cfg = tmp_path / "config"
        (cfg / "clients").mkdir(parents=True)
        (cfg / "clients" / "jane.toml").write_text('name = "J"\nemails = ["jane@example.org"]\n')
        (cfg / "main.toml").write_text(f"""
timezone = "Europe/London"
[therapist]
name = "Alex"
email = "alex@example.org"
emergency_text = "Call 999."
[account]
host = "127.0.0.1"
port = {server.port}
security = "plain"
username = "alex@example.org"
password_env = "X"
[hours]
mon = ["09:00-17:00"]
""")
        s = config.load(cfg / "main.toml")
        mailbox = Mailbox.connect(s.main.account, "pw-embedded")
        store = Store.open(s.state_path)
        try:
            result = run_pass(s, mailbox, store, datetime(2026, 11, 16, 8, tzinfo=UTC))
        finally:
            store.close()
            mailbox.logout()
        inbox = seeder.read("INBOX")
        seeder.close()
    assert [f["uid"] for f in result.flagged] == [uid]
    assert inbox[uid][0] == {"\\Flagged"} and inbox[calm][0] == set()
    assert caplog.text.count("does not keep the keyword $OutOfHours") == 1


SETTINGS = Settings(
    path=Path("c.toml"),
    main=MainConfig.model_validate(
        {
            "timezone": "Europe/London",
            "therapist": {
                "name": "Alex\r\nBcc: x@y.z",
                "email": "alex@example.org",
                "emergency_text": "Call 999.",
            },
            "account": {
                "host": "localhost",
                "security": "plain",
                "username": "a",
                "password_env": "X",
            },
        }
    ),
    clients={},
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw_headers=st.dictionaries(
        st.sampled_from(["Subject", "Message-ID", "References", "From"]),
        st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=300),
        max_size=4,
    )
)
def test_any_headers_compose_into_a_draft_with_only_our_headers(
    raw_headers: dict[str, str],
) -> None:
    text = "".join(f"{k}: {v}\r\n" for k, v in raw_headers.items())
    h = rules.parse(text.encode("utf-8"))
    msg = compose.draft(
        settings=SETTINGS,
        env=compose.template_env(None),
        subject=h.subject,
        message_id=h.message_id,
        references=h.references,
        to=JANE,
        key="k" * 32,
        session=None,
        risk=False,
        now=SUNDAY_NIGHT,
    )
    back = email.message_from_bytes(msg.as_bytes(), policy=default_policy)
    allowed = {
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "Content-Type",
        "Content-Transfer-Encoding",
        "MIME-Version",
        "In-Reply-To",
        "References",
    }
    assert set(back.keys()) <= allowed
    assert back["To"] == JANE
    assert back["Subject"].startswith("Re: ")


def _encoded(text: str, times: int) -> str:
    """``text`` as an RFC 2047 Q encoded word, ``times`` times over."""
    for _ in range(times):
        text = "=?utf-8?q?" + "".join(f"={b:02X}" for b in text.encode()) + "?="
    return text


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    field=st.sampled_from(["Subject", "Message-ID", "References", "From"]),
    times=st.integers(1, 3),
    payload=st.sampled_from(
        [
            "\r\nBcc: mallory@evil.example",
            "\nX-Evil: 1\n\n",
            "\r\nTo: x@y.z\r\nX-Ig: ",
            "\rSubject: two",
        ]
    ),
    bracket=st.booleans(),
)
def test_encoded_words_in_any_header_never_add_a_header_to_the_draft(
    field: str, times: int, payload: str, bracket: bool
) -> None:
    value = _encoded("Hi" + payload, times)
    if bracket:
        value = f"<{value}>"
    h = rules.parse(f"From: jane@example.org\r\n{field}: {value}\r\n".encode())
    msg = compose.draft(
        settings=SETTINGS,
        env=compose.template_env(None),
        subject=h.subject,
        message_id=h.message_id,
        references=h.references,
        to=JANE,
        key="k" * 32,
        session=None,
        risk=False,
        now=SUNDAY_NIGHT,
    )
    head = msg.as_bytes().split(b"\r\n\r\n", 1)[0].decode("ascii")
    names = [
        line.split(":", 1)[0].lower()
        for line in head.split("\r\n")
        if line and line[0] not in " \t"
    ]
    assert sorted(names) == sorted(compose.DRAFT_HEADERS & set(names)), head
    assert len(names) == len(set(names)), head
