"""Shared fixtures: one private Dovecot per test session, a fresh user per test,
and a practice (config + client files) pointing at it. All mail here is synthetic."""

from __future__ import annotations

import contextlib
import email
import itertools
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.policy import default as default_policy
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from imapclient import IMAPClient

from inbox_guard.cli import main
from inbox_guard.service import Service

from .dovecot import Dovecot, free_port
from .postgres import Postgres

PASSWORD_ENV = "IG_TEST_PASSWORD"
Capsys = pytest.CaptureFixture[str]
THERAPIST = "alex@example.org"
JANE = "jane@example.org"
SAM = "sam@example.net"
PAT = "pat@example.com"

_user_ids = itertools.count(1)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """The session's IMAP server: Dovecot, or with IG_SERVER=cyrus a private Cyrus IMAP
    (tests.cyrus; the optional matrix in scripts/servers)."""
    kind = os.environ.get("IG_SERVER", "dovecot")
    if kind == "cyrus":
        from .cyrus import Cyrus

        server: Dovecot = Cyrus()  # type: ignore[assignment]  # same shape, no doveadm/maildir
    elif kind == "dovecot":
        server = Dovecot()
    else:
        raise pytest.UsageError(f"IG_SERVER={kind!r}: dovecot or cyrus")
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@dataclass
class Account:
    server: Dovecot
    user: str
    password: str

    @property
    def port(self) -> int:
        return self.server.port

    def client(self) -> IMAPClient:
        c = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=30)
        c.normalise_times = False
        c.login(self.user, self.password)
        return c

    def append(
        self, raw: bytes, when: datetime, folder: str = "INBOX", flags: tuple[str, ...] = ()
    ) -> int:
        """APPEND with a chosen INTERNALDATE (must be in the past: Dovecot replaces
        future ones with the current time); returns the new UID."""
        assert when < datetime.now(UTC), "Dovecot ignores future INTERNALDATEs"
        with self.client() as c:
            resp = c.append(folder, raw, flags=flags, msg_time=when)
            # APPENDUID (RFC 4315): b"[APPENDUID <uidvalidity> <uid>] ..."
            found = re.search(rb"\[APPENDUID \d+ (\d+)\]", resp)
            if found:
                return int(found.group(1))
            c.select_folder(folder, readonly=True)  # a server without UIDPLUS
            return int(max(c.search(["ALL"])))

    def snapshot(self, folder: str = "INBOX") -> dict[int, dict[str, Any]]:
        """UID -> flags, INTERNALDATE and full bytes (fetched with BODY.PEEK)."""
        with self.client() as c:
            c.select_folder(folder, readonly=True)
            uids = c.search(["ALL"])
            if not uids:
                return {}
            data = c.fetch(uids, ["FLAGS", "INTERNALDATE", "BODY.PEEK[]"])
        return {
            uid: {
                "flags": set(d[b"FLAGS"]) - {b"\\Recent"},  # per session, not stored
                "date": d[b"INTERNALDATE"],
                "bytes": d[b"BODY[]"],
            }
            for uid, d in data.items()
        }


@contextmanager
def unreadable(account: Account, *tokens: bytes) -> Iterator[None]:
    """The message files holding each of ``tokens`` unreadable to the server (mode 0),
    as a damaged or foreign-owned file would be; readable again afterwards (Dovecot may
    have moved them from new/ to cur/ meanwhile, so every file is restored)."""
    maildir = account.server.maildir(account.user)
    files = [
        f
        for d in ("new", "cur")
        for f in (maildir / d).iterdir()
        if any(t in f.read_bytes() for t in tokens)
    ]
    assert len(files) >= len(tokens), "a token matched no message file"
    for f in files:
        f.chmod(0)
    try:
        yield
    finally:
        for d in ("new", "cur"):
            for f in (maildir / d).iterdir():
                f.chmod(0o600)


@pytest.fixture
def account(dovecot: Dovecot) -> Account:
    user, password = dovecot.user(f"user{next(_user_ids)}")
    return Account(dovecot, user, password)


def message(
    sender: str = JANE,
    to: str = THERAPIST,
    subject: str = "Thinking about last week",
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
    body: str = "Synthetic test message body.\n",
    cc: str | None = None,
) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    if to:
        msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime(2026, 11, 1, tzinfo=UTC))
    msg["Message-ID"] = message_id or f"<{next(_user_ids)}.synthetic@example.org>"
    for k, v in (headers or {}).items():
        msg[k] = v
    msg.set_content(body)
    return msg.as_bytes()


@dataclass
class Practice:
    root: Path
    account: Account
    config: Path = field(init=False)

    def __post_init__(self) -> None:
        self.config = self.root / "config" / "inbox-guard.toml"

    def run(self, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
        code = main(["--config", str(self.config), *args])
        out, err = capsys.readouterr()
        return code, out, err

    def once_json(self, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
        code, out, err = self.run("once", "--json", *extra, capsys=capsys)
        assert code == 0, err
        result: dict[str, Any] = json.loads(out)
        return result

    @property
    def agendas(self) -> Path:
        return self.root / "config" / "agendas"

    @property
    def state(self) -> Path:
        return self.root / "config" / "state" / "inbox-guard.sqlite3"

    def files(self) -> dict[str, str]:
        """Every file under the config folder but the config itself, with contents."""
        out = {}
        for p in sorted((self.root / "config").rglob("*")):
            if p.is_file() and p.suffix == ".md":
                out[str(p.relative_to(self.root))] = p.read_text()
        return out


MAIN_TOML = """\
timezone = "Europe/London"

[therapist]
name = "Alex Morgan"
email = "alex@example.org"
addresses = ["alex@example.org", "practice@example.org"]
emergency_text = "In an emergency call 999, or Samaritans on 116 123."

[account]
host = "127.0.0.1"
port = {port}
security = "plain"
username = "{user}"
password_env = "{env}"

[hours]
mon = ["09:00-17:00"]
tue = ["09:00-17:00"]
wed = ["09:00-17:00"]
thu = ["09:00-17:00"]
fri = ["09:00-17:00"]
closed = ["2026-11-05"]

[triage]
drafts = "{drafts}"
lookback_days = {lookback}
"""

CLIENTS = {
    "jane-doe": """\
name = "Jane Doe"
emails = ["Jane@Example.org", "j.doe@work.example"]
sessions = { rrule = "FREQ=WEEKLY;BYDAY=WE", start = "2026-09-02T10:00" }
""",
    "sam-lee": """\
name = "Sam"
emails = ["sam@example.net"]
sessions = { dates = ["2026-11-18T16:00"] }
""",
    "pat-kim": """\
name = "Pat"
emails = ["pat@example.com"]
active = false
""",
}


def write_practice(
    root: Path,
    account: Account,
    drafts: str = "per-window",
    lookback: int = 30000 // 1000,
    extra: str = "",
) -> Practice:
    cfg = root / "config"
    (cfg / "clients").mkdir(parents=True, exist_ok=True)
    (cfg / "inbox-guard.toml").write_text(
        MAIN_TOML.format(
            port=account.port,
            user=account.user,
            env=PASSWORD_ENV,
            drafts=drafts,
            lookback=lookback,
        )
        + textwrap.dedent(extra)
    )
    for cid, text in CLIENTS.items():
        (cfg / "clients" / f"{cid}.toml").write_text(text)
    return Practice(root, account)


@pytest.fixture
def practice(tmp_path: Path, account: Account, monkeypatch: pytest.MonkeyPatch) -> Practice:
    monkeypatch.setenv(PASSWORD_ENV, account.password)
    return write_practice(tmp_path, account)


SmtpSink = tuple[int, list[tuple[str, list[str], bytes]]]


@pytest.fixture
def smtp_server() -> Iterator[SmtpSink]:
    """A real SMTP server on loopback (aiosmtpd): (port, [(from, to, bytes)])."""
    received: list[tuple[str, list[str], bytes]] = []

    class Record:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))  # type: ignore[attr-defined]
            return "250 OK"

    port = free_port()
    controller = Controller(Record(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, received
    finally:
        controller.stop()


def wait_for(service: Service, job: str, timeout: float = 30) -> bool:
    """The next completion of ``job`` by an in-process service; True when it succeeded."""
    deadline = time.monotonic() + timeout
    while True:
        name, ok = service.done.get(timeout=max(0.1, deadline - time.monotonic()))
        if name == job:
            return ok


def started(service: Service, timeout: float = 30) -> bool:
    """Start an in-process service and wait until it has settled: its first pass done,
    and where push began IDLE, the pass that push made due then (mail that came before
    its SELECT is not announced). True when the latest of those passes succeeded."""
    service.start()
    ok = wait_for(service, "triage", timeout)
    if service.settings.main.triage.push:
        assert service.push.tried.wait(timeout)
        if service.push.waiting.is_set():
            ok = wait_for(service, "triage", timeout)
    return ok


def fire(service: Service, job: str) -> None:
    """Make a scheduled job due now: the scheduler's clock, not a sleep."""
    service.scheduler.modify_job(
        service.job_id(job), next_run_time=datetime.now(service.settings.tz)
    )


RECENT = datetime.now(UTC) - timedelta(days=1)


def out_of_hours_recently() -> datetime:
    """An instant in the last week that the test practice counts as out of hours."""
    t = RECENT.replace(hour=23, minute=30, second=0, microsecond=0)
    return t if t < datetime.now(UTC) else t - timedelta(days=1)


SUNDAY_NIGHT = datetime(2026, 11, 15, 23, 40, tzinfo=UTC)
MONDAY_8 = "2026-11-16T08:00:00+00:00"
TUESDAY_9 = "2026-11-17T09:00:00+00:00"
KW = b"$OutOfHours"
RISK_KW = b"$NeedsAttention"


def drafts(account: Account, folder: str = "Drafts") -> list[EmailMessage]:
    return [
        email.message_from_bytes(m["bytes"], policy=default_policy)
        for m in account.snapshot(folder).values()
    ]


def kill_at(practice: Practice, command: bytes, *args: str) -> None:
    """Run ``inbox-guard ARGS`` on ``practice`` as a worker process through a proxy, and
    SIGKILL it the moment the server has answered ``command`` (say b'APPEND "INBOX"'):
    the server has done it, the worker never hears so. Returns once it is dead."""
    from .faults import Cut, CutProxy, Trip

    worker: list[subprocess.Popen[bytes]] = []
    started = threading.Event()

    def kill(_line: bytes) -> None:
        assert started.wait(60)
        os.kill(worker[0].pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, worker[0].pid, os.WEXITED | os.WNOWAIT)

    original = practice.config.read_text()
    port = practice.account.port
    with CutProxy(port) as proxy:
        practice.config.write_text(original.replace(f"port = {port}", f"port = {proxy.port}"))
        proxy.set(Cut())
        proxy.arm(Trip(command, "answered", kill))
        try:
            worker.append(
                subprocess.Popen(
                    [sys.executable, "-m", "inbox_guard", "--config", str(practice.config), *args],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )
        finally:
            started.set()
        worker[0].communicate(timeout=120)
        practice.config.write_text(original)
        assert proxy.tripped is not None and worker[0].returncode == -signal.SIGKILL


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A private PostgreSQL for the whole session (Debian's postgresql, on loopback)."""
    with Postgres() as server:
        yield server


@pytest.fixture
def pg_url(postgres: Postgres) -> str:
    """A database of the test's own on the private PostgreSQL."""
    import psycopg

    name = f"t{secrets.token_hex(6)}"
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return postgres.url.rsplit("/", 1)[0] + "/" + name


class SilentServer:
    """A port that accepts connections and never says a word (a hung server)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.accepted.append(self.listener.accept()[0])

    def hang_up(self) -> None:
        """Stop listening and close every connection: a client waiting for a greeting
        reads EOF at once, and later ones are refused."""
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.listener.close()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.hang_up()


def on_postgres(tmp_path: Path, account: Account, url: str) -> Practice:
    return write_practice(tmp_path, account, extra=f'\n[state]\nurl = "{url}"\n')


@pytest.fixture
def pg_practice(
    tmp_path: Path, account: Account, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> Practice:
    monkeypatch.setenv(PASSWORD_ENV, account.password)
    return on_postgres(tmp_path, account, pg_url)


def group_on_postgres(
    folder: Path, server: Dovecot, url: str, n: int, users: str = "lease"
) -> Path:
    """A group file of ``n`` practitioners (mail users ``<users>0``, ``<users>1``...),
    each with the test client Jane, their state in one PostgreSQL; what they share is
    written once."""
    (folder / "clients").mkdir(parents=True)
    text = [
        'timezone = "Europe/London"',
        "[triage]",
        "poll_minutes = 60",
        'drafts = "per-message"',
        "[hours]",
        'mon = ["09:00-17:00"]',
        "[state]",
        f'url = "{url}"',
        "lease_seconds = 2",
        "",
    ]
    for i in range(n):
        user, _ = server.user(f"{users}{i}")
        (folder / "clients" / f"p{i}").mkdir()
        (folder / "clients" / f"p{i}" / "jane-doe.toml").write_text(CLIENTS["jane-doe"])
        text += [
            "[[accounts]]",
            f'id = "p{i}"',
            # Each as Alex, whom the test mail is to (a holding reply needs that).
            f'therapist = {{ name = "P{i}", email = "alex@example.org", emergency_text = "999" }}',
            f'account = {{ host = "127.0.0.1", port = {server.port}, security = "plain", '
            f'username = "{user}", password_env = "{PASSWORD_ENV}" }}',
            "",
        ]
    path = folder / "group.toml"
    path.write_text("\n".join(text))
    return path


def cli(p: Practice, *args: str) -> subprocess.CompletedProcess[str]:
    """``inbox-guard --config <p> ARGS`` as a process of its own: its status and output."""
    return subprocess.run(
        [sys.executable, "-m", "inbox_guard", "--config", str(p.config), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
