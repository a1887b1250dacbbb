"""``auth = "oauth2"`` end to end: ``inbox-guard login`` against a real authorization
server on loopback (tests/authserver.py: Authlib's server components), then ``once``
and ``run`` against Dovecot, whose oauth2 passdb asks that server whether each access
token is still good (RFC 7662 introspection, by the server's clock).

Both providers' flows: Microsoft's device code through MSAL, Google's installed-app
flow with PKCE on a loopback redirect (the browser's redirect, or the address pasted
into the terminal). Then what happens over time: silent renewal, rotated refresh
tokens saved, a revoked grant becoming one line, and the service carrying on after a
new login."""

from __future__ import annotations

import json
import logging
import re
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from inbox_guard import config, signin
from inbox_guard.errors import SignInNeeded
from inbox_guard.mailbox import Mailbox
from inbox_guard.model import Settings
from inbox_guard.service import Service
from inbox_guard.store import Store
from inbox_guard.triage import run_pass

from .authserver import AuthServer
from .conftest import SmtpSink, fire, started, wait_for
from .dovecot import Dovecot, free_port
from .oauth_flow import (
    KW,
    NOW,
    USER,
    Lines,
    Signed,
    _device_token,
    finish,
    login_google,
    login_microsoft,
    oauth2_dovecot,
    practice,
    start_auth,
)


@pytest.fixture
def auth() -> Iterator[AuthServer]:
    server = start_auth()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def imap(auth: AuthServer) -> Iterator[Dovecot]:
    server = oauth2_dovecot(auth.introspection_url)
    try:
        yield server
    finally:
        server.cleanup()


@pytest.mark.parametrize("provider", ["microsoft", "google"])
def test_login_then_once_marks_the_mail(
    tmp_path: Path, auth: AuthServer, imap: Dovecot, provider: str
) -> None:
    p = practice(tmp_path, auth, imap, provider)
    done = login_microsoft(p) if provider == "microsoft" else login_google(p)
    assert done.returncode == 0, done.stderr
    assert f"Signed in as {USER} ({provider}); tokens kept in {p.tokens}." in done.stdout
    assert stat.S_IMODE(p.tokens.stat().st_mode) == 0o600
    assert stat.S_IMODE(p.tokens.parent.stat().st_mode) == 0o700

    uid = p.append()
    once = p.cli("once", "--json", "--now", NOW)
    assert once.returncode == 0, once.stderr
    assert [f["uid"] for f in json.loads(once.stdout)["flagged"]] == [uid]

    check = p.cli("check", "--connect")
    assert check.returncode == 0, check.stderr
    line = re.search(
        r"signed in as (\S+) \((\w+)\); access token valid until "
        r"(\d{4}-\d\d-\d\d \d\d:\d\d) \(renewed automatically\); scopes: (.*); "
        r"kept in (.*)$",
        check.stdout,
        re.M,
    )
    assert line, check.stdout
    assert line.group(1, 2, 5) == (USER, provider, str(p.tokens))
    granted = line.group(4)
    assert (
        "IMAP.AccessAsUser.All" in granted
        if provider == "microsoft"
        else "https://mail.google.com/" in granted
    )


def test_google_login_takes_the_address_pasted_from_another_machine(
    tmp_path: Path, auth: AuthServer, imap: Dovecot
) -> None:
    p = practice(tmp_path, auth, imap, "google")
    done = login_google(p, paste=True)
    assert done.returncode == 0, done.stderr
    assert "paste that address here" in done.stdout
    assert p.kept()["who"] == USER


def test_a_declined_sign_in_is_one_line_and_keeps_nothing(
    tmp_path: Path, auth: AuthServer, imap: Dovecot
) -> None:
    p = practice(tmp_path, auth, imap, "microsoft")
    proc = p.popen("login")
    out = Lines(proc.stdout)
    code = out.wait(r"enter the code (\S+)").group(1)
    auth.deny_device(code)
    stderr = finish(proc, out).stderr
    assert proc.returncode == 3
    assert len(stderr.strip().splitlines()) == 1
    assert stderr.startswith("inbox-guard: Microsoft sign-in did not complete: access_denied")
    assert not p.tokens.exists()

    g = practice(tmp_path / "g", auth, imap, "google")
    proc = g.popen("login", "--no-browser")
    out = Lines(proc.stdout)
    url = out.wait(r"^(https://\S+)").group(1)
    auth.signed_in = None  # nobody approves: Google answers access_denied
    back = requests.get(url, verify=str(auth.ca_file), allow_redirects=False, timeout=30)
    requests.get(back.headers["Location"], timeout=30)
    stderr = finish(proc, out).stderr
    assert proc.returncode == 3
    assert len(stderr.strip().splitlines()) == 1
    assert stderr.startswith("inbox-guard: Google sign-in did not complete: access_denied")


def test_an_unreachable_sign_in_server_is_one_line(
    tmp_path: Path, auth: AuthServer, imap: Dovecot
) -> None:
    p = practice(tmp_path, auth, imap, "google")
    assert login_google(p).returncode == 0
    text = p.config.read_text().replace(auth.url, f"https://127.0.0.1:{free_port()}")
    p.config.write_text(text)
    record = p.kept()
    record["expires_at"] = 0  # due for renewal
    p.tokens.write_text(json.dumps(record))
    done = p.cli("once")
    assert done.returncode == 3
    assert done.stderr.strip() == (
        "inbox-guard: cannot reach the sign-in server 127.0.0.1: ConnectionError"
    )

    ms = practice(tmp_path / "ms", auth, imap, "microsoft")
    ms.config.write_text(
        ms.config.read_text().replace(auth.url, f"https://127.0.0.1:{free_port()}")
    )
    done = ms.cli("login")
    assert done.returncode == 3
    assert done.stderr.strip() == (
        "inbox-guard: cannot reach the sign-in server 127.0.0.1: ConnectionError"
    )


# -- over time: renewal, rotation, revocation -------------------------------------------


def connect_and_pass(settings: Settings, tokens: signin.Tokens) -> int:
    """One pass in-process, with the clock the test controls; the flagged count."""
    box = Mailbox.connect(settings.main.account, tokens)
    store = Store.open(settings.state_path)
    try:
        now = datetime.fromtimestamp(tokens.clock(), settings.tz)
        return len(run_pass(settings, box, store, now).flagged)
    finally:
        store.close()
        box.logout()


@pytest.mark.parametrize(("provider", "hours"), [("microsoft", 24), ("google", 6)])
def test_a_simulated_week_of_expiry_and_rotation(
    tmp_path: Path, provider: str, hours: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every few hours for 7 days: the access token (1 hour) has always expired by the
    server's clock. Google's path renews it before use (the clock is injected). MSAL
    keeps its own clock, so Microsoft's token is refused by Dovecot and renewed once
    (daily steps: after a refusal Dovecot delays the next login from that address by
    seconds). Microsoft rotates the refresh token on every renewal: the one kept is
    always the one the server still honours."""
    auth = start_auth(rotate=provider == "microsoft")
    imap = oauth2_dovecot(auth.introspection_url)
    try:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(auth.ca_file))
        p = practice(tmp_path, auth, imap, provider)
        assert (login_microsoft(p) if provider == "microsoft" else login_google(p)).returncode == 0
        settings = config.load(p.config)
        tokens = signin.Tokens(settings, clock=auth.now)
        renewals, previous, appended = 0, "", 0
        steps = 7 * 24 // hours
        for step in range(steps):
            auth.advance(hours * 3600)
            if step % max(1, steps // 4) == 0:  # late last night, by the server's clock
                late = datetime.fromtimestamp(auth.now(), UTC).replace(hour=23, minute=40)
                p.append(late - timedelta(days=1), subject=f"step {step}")
                appended += 1
            before = len([g for g in auth.grants if g[0] == "refresh_token"])
            connect_and_pass(settings, tokens)
            after = len([g for g in auth.grants if g[0] == "refresh_token"])
            renewals += after - before
            assert after - before == 1, f"step {step}: {after - before} renewals"
            if provider == "microsoft":
                kept = [
                    e["secret"]
                    for e in json.loads(str(p.kept()["msal_cache"]))["RefreshToken"].values()
                ]
                honoured = auth.refresh_tokens(USER)
                assert len(kept) == 1 and kept[0] in honoured, f"step {step}"
                assert previous not in honoured  # rotated: the old one is void
                previous = kept[0]
        assert renewals == steps
        store = Store.open(settings.state_path)
        try:
            assert len(store.contacts_since(datetime(2000, 1, 1, tzinfo=UTC))) == appended
        finally:
            store.close()
    finally:
        imap.cleanup()
        auth.stop()


def test_googles_seven_day_testing_limit_becomes_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = start_auth(rotate=False, refresh_lifetime=7 * 24 * 3600)
    imap = oauth2_dovecot(auth.introspection_url)
    try:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(auth.ca_file))
        p = practice(tmp_path, auth, imap, "google")
        assert login_google(p).returncode == 0
        settings = config.load(p.config)
        tokens = signin.Tokens(settings, clock=auth.now)
        auth.advance(6 * 24 * 3600)
        connect_and_pass(settings, tokens)
        auth.advance(2 * 24 * 3600)
        with pytest.raises(SignInNeeded) as caught:
            connect_and_pass(settings, tokens)
        assert str(caught.value) == (
            f"sign-in for {USER} has expired or was revoked: run `inbox-guard login` "
            "(Google: invalid_grant: Token has been expired or revoked.)"
        )
    finally:
        imap.cleanup()
        auth.stop()


# -- the service ----------------------------------------------------------------------


def refreshes(auth: AuthServer) -> int:
    return len([g for g in auth.grants if g[0] == "refresh_token"])


def test_the_service_renews_silently_survives_revocation_and_resumes_after_login(
    tmp_path: Path,
    auth: AuthServer,
    imap: Dovecot,
    monkeypatch: pytest.MonkeyPatch,
    smtp_server: SmtpSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port, sent = smtp_server

    def mails() -> list[bytes]:
        return [content for _, _, content in sent]

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(auth.ca_file))
    p = practice(
        tmp_path,
        auth,
        imap,
        "microsoft",
        extra=f"""
        [digest]
        deliver = "smtp"
        [smtp]
        host = "127.0.0.1"
        port = {port}
        security = "plain"
        """,
    )
    assert login_microsoft(p).returncode == 0
    first_rt = auth.refresh_tokens(USER)
    service = Service(config.load(p.config))
    caplog.set_level(logging.INFO, logger="inbox_guard")
    try:
        assert started(service)

        # 1. Silent renewal: two hours on, the server has hung up and the access
        # token is stale; the pass logs in again with a renewed one.
        before = refreshes(auth)
        auth.advance(2 * 3600)
        imap.doveadm("kick", USER)
        fire(service, "triage")
        assert wait_for(service, "triage")
        assert refreshes(auth) > before
        kept = json.loads(p.kept()["msal_cache"])["RefreshToken"]  # type: ignore[arg-type]
        assert next(e["secret"] for e in kept.values()) in auth.refresh_tokens(USER)
        assert not set(first_rt) & set(auth.refresh_tokens(USER))  # rotated, and saved

        # 2. Revoked (a password change): one line, one alert, and the service goes on.
        auth.revoke(USER)
        imap.doveadm("kick", USER)
        caplog.clear()
        fire(service, "triage")
        assert not wait_for(service, "triage")
        assert not wait_for(service, "triage")  # the retry: still failing, still running
        failures = [r.getMessage() for r in caplog.records if "triage failed" in r.getMessage()]
        assert failures and all("\n" not in f for f in failures)
        assert failures[0].startswith(
            f"triage failed: sign-in for {USER} has expired or was revoked: run "
            "`inbox-guard login` (Microsoft: invalid_grant: "
        )
        [alert] = [m for m in mails() if b"sign-in needed" in m]
        assert b"inbox-guard login" in alert
        assert service.scheduler.running

        # 3. A new login while the service runs: it notices and carries on at once.
        late = p.append(subject="while signed out")
        assert login_microsoft(p).returncode == 0
        # A retry already under way when login finished may still fail; then a pass
        # succeeds, without waiting for the backoff (Dovecot itself delays logins
        # from an address that has just failed several).
        deadline = time.monotonic() + 90
        while not wait_for(service, "triage", timeout=deadline - time.monotonic()):
            pass
        assert KW in imap_flags(p, late)
        assert len([m for m in mails() if b"sign-in needed" in m]) == 1

        # 4. The next digest says what happened.
        fire(service, "digest")
        assert wait_for(service, "digest")
        [digest] = [m for m in mails() if b"Out-of-hours digest" in m]
        assert b"has expired or was revoked" in digest.replace(b"=\r\n", b"")
    finally:
        service.stop()


def imap_flags(p: Signed, uid: int) -> tuple[bytes, ...]:
    from imapclient import IMAPClient

    with IMAPClient("127.0.0.1", port=p.imap.port, ssl=False) as c:
        c.oauth2_login(USER, _device_token(p.auth))
        c.select_folder("INBOX", readonly=True)
        return tuple(c.get_flags([uid])[uid])


@pytest.mark.parametrize("provider", ["microsoft", "google"])
def test_no_token_text_in_any_output_with_debug(
    tmp_path: Path, auth: AuthServer, imap: Dovecot, provider: str
) -> None:
    p = practice(tmp_path, auth, imap, provider)
    if provider == "microsoft":
        login = p.popen("--debug", "login")
        out = Lines(login.stdout)
        auth.approve_device(out.wait(r"enter the code (\S+)").group(1), USER)
        said = [finish(login, out)]
    else:
        said = [login_google(p, "--debug")]
    p.append()
    auth.advance(2 * 3600)  # the next command renews, with the libraries' debug lines
    said.append(p.cli("--debug", "once", "--now", NOW))
    said.append(p.cli("--debug", "check", "--connect"))
    assert [d.returncode for d in said] == [0, 0, 0], said[-1].stderr
    kept = p.kept()
    if provider == "microsoft":
        cache = json.loads(kept["msal_cache"])  # type: ignore[arg-type]
        secrets = [
            e["secret"]
            for kind in ("AccessToken", "RefreshToken", "IdToken")
            for e in cache[kind].values()
        ]
    else:
        secrets = [str(kept["access_token"]), str(kept["refresh_token"])]
    secrets += auth.refresh_tokens(USER)
    text = "".join(d.stdout + d.stderr for d in said)
    assert "DEBUG" in text
    assert secrets and not [s for s in secrets if s in text]


@pytest.mark.parametrize("provider", ["microsoft", "google"])
def test_login_then_run(tmp_path: Path, auth: AuthServer, imap: Dovecot, provider: str) -> None:
    """The issue's promise, as a practitioner does it: a fresh config, `login`, `run`."""
    p = practice(tmp_path, auth, imap, provider)
    assert (login_microsoft(p) if provider == "microsoft" else login_google(p)).returncode == 0
    uid = p.append(datetime.now(UTC).replace(hour=23, minute=40) - timedelta(days=1))
    run = p.popen("run")
    err = Lines(run.stderr)
    try:
        err.wait(r"pass: scanned \d+, flagged 1, ignored 0, errors 0")
    finally:
        run.terminate()
        run.wait(timeout=30)
        for stream in (run.stdin, run.stdout, run.stderr):
            assert stream is not None
            stream.close()
    assert run.returncode == 0
    assert KW in imap_flags(p, uid)


def test_the_keyring_keeps_the_sign_in_instead_of_a_file(
    tmp_path: Path, auth: AuthServer, imap: Dovecot
) -> None:
    p = practice(tmp_path, auth, imap, "google")
    p.config.write_text(
        p.config.read_text().replace(
            'provider = "google"', 'provider = "google"\ntoken_store = "keyring"'
        )
    )
    p.keyring = tmp_path / "keyring.json"
    done = login_google(p)
    assert done.returncode == 0, done.stderr
    assert "tokens kept in the OS keyring (inbox-guard, google:" in done.stdout
    assert not p.tokens.exists()
    [entry] = json.loads(p.keyring.read_text()).values()
    assert json.loads(entry)["who"] == USER
    p.append()
    once = p.cli("once", "--json", "--now", NOW)
    assert once.returncode == 0, once.stderr
    assert len(json.loads(once.stdout)["flagged"]) == 1
