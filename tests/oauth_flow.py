"""The OAuth2 sign-in flow as the tests drive it: a practice signed in to the local
authorization server (tests/authserver.py), a Dovecot that checks tokens against it,
and `inbox-guard login` run as a subprocess and answered like a person would."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import requests

from .authserver import AuthServer
from .conftest import Account, message, write_practice
from .dovecot import Dovecot

USER = "alex@example.org"
MS_CLIENT = "ms-client-0001"
G_CLIENT = "g-client-0001.apps.example"
G_SECRET = "g-secret-not-secret"
NOW = "2026-11-16T08:00"  # the --now of the passes: the Monday after the mail below
KW = b"$OutOfHours"


def start_auth(**options: object) -> AuthServer:
    server = AuthServer(**options).start()  # type: ignore[arg-type]
    server.add_client(MS_CLIENT)
    server.add_client(G_CLIENT, G_SECRET)
    server.add_user(USER)
    return server


def oauth2_dovecot(introspection_url: str) -> Dovecot:
    server = Dovecot()
    ext = server.root / "oauth2.conf.ext"
    ext.write_text(
        "introspection_mode = post\n"
        f"introspection_url = {introspection_url}\n"
        "username_attribute = username\nactive_attribute = active\nactive_value = true\n"
        "force_introspection = yes\n"
    )
    server.write_config(
        extra=(
            "auth_mechanisms = plain login xoauth2 oauthbearer\n"
            "auth_failure_delay = 0\n"  # a refused token is renewed at once
            f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {ext}\n}}\n"
        )
    )
    return server.start()


def provider_keys(auth: AuthServer, provider: str) -> str:
    if provider == "microsoft":
        return (
            f'auth = "oauth2"\nprovider = "microsoft"\nclient_id = "{MS_CLIENT}"\n'
            f'authority = "{auth.url}/tenant-0001"'
        )
    return (
        f'auth = "oauth2"\nprovider = "google"\nclient_id = "{G_CLIENT}"\n'
        f'client_secret = "{G_SECRET}"\nauth_uri = "{auth.url}/o/oauth2/auth"\n'
        f'token_uri = "{auth.url}/token"'
    )


@dataclass
class Signed:
    """A practice signing in with ``provider`` against ``auth``, its mail on ``imap``.
    The test's own IMAP connections use tokens of their own (``_device_token``)."""

    root: Path
    auth: AuthServer
    imap: Dovecot
    provider: str

    @property
    def config(self) -> Path:
        return self.root / "config" / "inbox-guard.toml"

    keyring: Path | None = None

    @property
    def tokens(self) -> Path:
        return self.root / "config" / "state" / "inbox-guard.tokens.json"

    def env(self) -> dict[str, str]:
        env = {
            **{k: v for k, v in os.environ.items() if k != "IG_TEST_PASSWORD"},
            "REQUESTS_CA_BUNDLE": str(self.auth.ca_file),
        }
        if self.keyring is not None:
            env.update(
                PYTHON_KEYRING_BACKEND="tests.keyring_standin.FileKeyring",
                IG_TEST_KEYRING=str(self.keyring),
                PYTHONPATH=str(Path(__file__).parent.parent),
            )
        return env

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "inbox_guard", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(),
            stdin=subprocess.DEVNULL,
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "inbox_guard", "--config", str(self.config), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
        )

    def append(
        self, when: datetime = datetime(2026, 11, 15, 23, 40, tzinfo=UTC), subject: str = "Late"
    ) -> int:
        from imapclient import IMAPClient

        with IMAPClient("127.0.0.1", port=self.imap.port, ssl=False) as c:
            c.oauth2_login(USER, _device_token(self.auth))
            answer = c.append("INBOX", message(subject=subject), msg_time=when)
        return int(re.search(rb"\[APPENDUID \d+ (\d+)\]", answer).group(1))  # type: ignore[union-attr]

    def kept(self) -> dict[str, object]:
        kept: dict[str, object] = json.loads(self.tokens.read_text())
        return kept


def _device_token(auth: AuthServer) -> str:
    ca = str(auth.ca_file)
    flow = requests.post(
        f"{auth.url}/device/code",
        verify=ca,
        timeout=30,
        data={"client_id": MS_CLIENT, "scope": "imap"},
    ).json()
    auth.approve_device(flow["user_code"], USER)
    answer = requests.post(
        f"{auth.url}/token",
        verify=ca,
        timeout=30,
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": flow["device_code"],
            "client_id": MS_CLIENT,
        },
    ).json()
    return str(answer["access_token"])


def practice(
    tmp_path: Path, auth: AuthServer, imap: Dovecot, provider: str, extra: str = ""
) -> Signed:
    p = write_practice(tmp_path, Account(imap, USER, ""), extra=extra)
    text = p.config.read_text().replace(
        'password_env = "IG_TEST_PASSWORD"', provider_keys(auth, provider)
    )
    p.config.write_text(text)
    return Signed(tmp_path, auth, imap, provider)


class Lines:
    """A child process's output, line by line, waited for without sleeping."""

    def __init__(self, stream: object) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.put(line)
        self.lines.put("")

    def wait(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            self.seen.append(line)
            if line == "":
                raise AssertionError(f"ended before {pattern!r}: {''.join(self.seen)}")
            found = re.search(pattern, line)
            if found:
                return found

    def rest(self, timeout: float = 60) -> str:
        """Everything, once the stream has ended."""
        while not self.seen or self.seen[-1] != "":
            self.seen.append(self.lines.get(timeout=timeout))
        return "".join(self.seen)


def finish(proc: subprocess.Popen[str], out: Lines) -> subprocess.CompletedProcess[str]:
    proc.wait(timeout=60)
    stdout = out.rest()
    assert proc.stderr is not None and proc.stdout is not None and proc.stdin is not None
    stderr = proc.stderr.read()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        stream.close()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def login_microsoft(p: Signed, *extra: str) -> subprocess.CompletedProcess[str]:
    proc = p.popen(*extra, "login")
    out = Lines(proc.stdout)
    code = out.wait(r"enter the code (\S+) \(valid for \d+ minutes\)").group(1)
    p.auth.approve_device(code, USER)
    return finish(proc, out)


def login_google(p: Signed, *extra: str, paste: bool = False) -> subprocess.CompletedProcess[str]:
    proc = p.popen(*extra, "login", "--no-browser")
    out = Lines(proc.stdout)
    url = out.wait(r"^(https://127\.0\.0\.1:\d+/o/oauth2/auth\?\S+)").group(1)
    p.auth.signed_in = USER
    # The browser: Google's page answers with a redirect to the loopback address.
    answer = requests.get(url, verify=str(p.auth.ca_file), allow_redirects=False, timeout=30)
    assert answer.status_code == 302, answer.text
    back = answer.headers["Location"]
    assert back.startswith("http://127.0.0.1:")
    if paste:  # the browser is elsewhere: its address bar, pasted into the terminal
        assert proc.stdin is not None
        proc.stdin.write(back + "\n")
        proc.stdin.flush()
    else:
        assert requests.get(back, timeout=30).ok
    return finish(proc, out)


# -- first login, both flows ----------------------------------------------------------
