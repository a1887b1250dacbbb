"""A private Dovecot for tests and benchmarks: own config dir, own loopback port.

Debian's ``dovecot-imapd`` is started with a generated config (``dovecot -c``), its
own base_dir, a passwd-file of test users and maildirs under one temporary folder,
and stopped afterwards. Works as root (mail is accessed as the unprivileged ``mail``
user, since Dovecot refuses uid 0) and as an ordinary user (everything runs as that
user, chroot off).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_greeting(
    port: int,
    deadline: float,
    name: str = "dovecot",
    alive: Callable[[], None] | None = None,
) -> None:
    """Poll the port until the server greets (``* OK``), up to ``deadline``; ``alive``
    raises if the server has died meanwhile (no use waiting for it)."""
    last: Exception | None = None
    while time.monotonic() < deadline:
        if alive is not None:
            alive()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(64).startswith(b"* OK"):
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.02)  # polling for readiness, bounded by the deadline
    raise RuntimeError(f"{name} did not greet on port {port}: {last}")


def children_of(parent: int | str) -> list[int]:
    """The processes whose parent is ``parent`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == str(parent):
            out.append(int(stat.parent.name))
    return out


class Dovecot:
    def __init__(self, root: Path | None = None, tls: bool = False) -> None:
        self.root = Path(root or tempfile.mkdtemp(prefix="ig-dovecot-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self.port = free_port()
        self.tls = tls
        self.tls_port = free_port() if tls else 0
        self.cert = self.root / "cert.pem"
        self.conf = self.root / "dovecot.conf"
        # One password for every user (a static passdb needs no reload, unlike a
        # passwd-file whose changes within one second go unseen); a user per test.
        self.password = "pw-" + secrets.token_hex(8)
        self.mail = self.root / "mail"

    # -- lifecycle ---------------------------------------------------------------

    def _identity(self) -> tuple[str, str, str]:
        """(mail user, mail group, extra config) for the current privileges."""
        if os.geteuid() == 0:
            return "mail", "mail", ""
        user = pwd.getpwuid(os.geteuid()).pw_name
        group = grp.getgrgid(os.getegid()).gr_name
        extra = f"""
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"""
        return user, group, extra

    def write_config(self, extra: str = "") -> None:
        user, group, ident = self._identity()
        for d in ("run", "state", "mail"):
            (self.root / d).mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.mail, user, group)
        ssl = "ssl = no"
        if self.tls:
            key = self.root / "key.pem"
            subprocess.run(
                [
                    "openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=localhost",
                    "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-keyout",
                    str(key),
                    "-out",
                    str(self.cert),
                ],
                check=True,
                capture_output=True,
            )
            ssl = f"ssl = yes\nssl_cert = <{self.cert}\nssl_key = <{key}"
        self.conf.write_text(
            f"""
base_dir = {self.root}/run
state_dir = {self.root}/state
instance_name = ig-test-{self.port}
log_path = {self.root}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{self.mail}/%u
mail_uid = {user}
mail_gid = {group}
first_valid_uid = 1
passdb {{
  driver = static
  args = password={self.password}
}}
userdb {{
  driver = static
  args = uid={user} gid={group} home={self.mail}/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port}
  }}
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Drafts {{
    special_use = \\Drafts
    auto = subscribe
  }}
}}
{ident}
{extra}
"""
        )

    def start(self, timeout: float = 20.0) -> Dovecot:
        if not self.conf.exists():
            self.write_config()
        # The daemon keeps the starter's stdout open: a file, never a pipe.
        with open(self.root / "start.log", "ab") as out:
            subprocess.run([DOVECOT, "-c", str(self.conf)], stdout=out, stderr=out, check=True)
        wait_for_greeting(self.port, time.monotonic() + timeout)
        return self

    def _children(self) -> list[int]:
        pid_file = self.root / "run" / "master.pid"
        return children_of(pid_file.read_text().strip()) if pid_file.exists() else []

    def stop(self) -> None:
        """Stop the server, including session processes that outlive the master
        (Dovecot leaves running imap sessions alone), as a crash or reboot would."""
        children = self._children()
        pid_file = self.root / "run" / "master.pid"
        subprocess.run(
            [DOVECOT, "-c", str(self.conf), "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        deadline = time.monotonic() + 10
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)  # waiting for the master to remove its pid file
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def doveadm(self, *args: str) -> str:
        done = subprocess.run(
            [DOVEADM, "-c", str(self.conf), *args], capture_output=True, text=True, check=True
        )
        return done.stdout

    # -- users -------------------------------------------------------------------

    def user(self, name: str) -> tuple[str, str]:
        """(user, password) for a user whose maildir is created on first login."""
        return name, self.password

    def maildir(self, user: str) -> Path:
        return self.mail / user
