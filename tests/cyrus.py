"""A private Cyrus IMAP for tests: the same shape as ``tests.dovecot.Dovecot``.

Debian's ``cyrus-imapd`` conflicts with ``dovecot-imapd``, so nothing is installed:
the packages are fetched with ``apt-get download`` into a cache
(``$IG_SERVER_CACHE`` or ``~/.cache/inbox-guard-servers``), unpacked with
``dpkg-deb -x`` into the server's own temporary root, and run from there with
``LD_LIBRARY_PATH`` pointing into it. The config (imapd.conf, cyrus.conf), the
spool, the lock and proc folders and a sasldb of test users all live under that
root; ``master`` listens on one loopback port and is stopped afterwards.

Users log in with one password (PLAIN/LOGIN over plaintext, allowed on loopback),
checked against a private sasldb written with the unpacked ``saslpasswd2``; the first
login creates INBOX and a Drafts folder with SPECIAL-USE \\Drafts
(``autocreate_inbox_folders`` + ``xlist-drafts``). Works as root (the services run as
the unprivileged ``mail`` user, like the Dovecot helper's mail processes) and as an
ordinary user (everything runs as that user).

``IG_CYRUS_CONF`` adds imapd.conf lines (e.g. ``munge8bit: 0``; an option given
twice is an error); ``IG_CYRUS_IDLED=0`` runs without idled, as Debian's default
cyrus.conf does, so IDLE hears of new mail only every ``imapidlepoll`` (60 s).

Cyrus logs to syslog only; with no syslog daemon its messages are lost, so a failure
to start shows as "did not greet" plus whatever ``master`` printed to master.log.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from .dovecot import children_of, free_port, wait_for_greeting

# Everything imapd, master and saslpasswd2 need that a machine with Dovecot and
# libsasl2-modules lacks (found with ldd on the unpacked binaries).
PACKAGES = ("cyrus-common", "cyrus-imapd", "libical3", "libpcre3", "libxapian30", "sasl2-bin")
LIBDIR = "usr/lib/x86_64-linux-gnu"
BIN = "usr/lib/cyrus/bin"


def cache_dir() -> Path:
    return Path(os.environ.get("IG_SERVER_CACHE") or "~/.cache/inbox-guard-servers").expanduser()


def _download(debs: Path) -> None:
    """``apt-get download`` the packages not yet in ``debs`` (once per machine)."""
    missing = [p for p in PACKAGES if not list(debs.glob(f"{p}_*.deb"))]
    if not missing:
        return
    cmd = ["apt-get", "download", "-q", *missing]
    done = subprocess.run(cmd, cwd=debs, capture_output=True, text=True, check=False)
    if done.returncode != 0:  # stale or absent package lists: refresh them once
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        subprocess.run([*sudo, "apt-get", "update", "-q"], capture_output=True, check=False)
        done = subprocess.run(cmd, cwd=debs, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")


def unpack(into: Path) -> None:
    """Fetch (cached) and unpack the Cyrus packages into ``into``."""
    debs = cache_dir() / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    with open(debs / ".lock", "w") as lock:  # parallel sessions share one download
        fcntl.flock(lock, fcntl.LOCK_EX)
        _download(debs)
    for pkg in PACKAGES:
        [deb] = sorted(debs.glob(f"{pkg}_*.deb"))[-1:]
        subprocess.run(["dpkg-deb", "-x", str(deb), str(into)], check=True)


class Cyrus:
    def __init__(self, root: Path | None = None, idled: bool | None = None) -> None:
        self.root = Path(root or tempfile.mkdtemp(prefix="ig-cyrus-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self.port = free_port()
        self.password = "pw-" + secrets.token_hex(8)
        self.pkg = self.root / "pkg"
        self.srv = self.root / "srv"
        self.conf = self.srv / "imapd.conf"
        self.cyrus_conf = self.srv / "cyrus.conf"
        self.sasldb = self.srv / "sasldb2"
        self.realm = "localhost"
        self._master: subprocess.Popen[bytes] | None = None
        self._users: set[str] = set()
        # idled tells IDLE sessions of new mail at once (Fastmail runs it); without it,
        # as in Debian's default cyrus.conf, imapd polls every imapidlepoll (60 s).
        self.idled = os.environ.get("IG_CYRUS_IDLED", "1") != "0" if idled is None else idled

    # -- lifecycle ---------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        libs = [str(self.pkg / LIBDIR), str(self.pkg / "lib" / "x86_64-linux-gnu")]
        old = os.environ.get("LD_LIBRARY_PATH")
        return {**os.environ, "LD_LIBRARY_PATH": ":".join(libs + ([old] if old else []))}

    def _user_name(self) -> str:
        return "mail" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name

    def _check_libraries(self) -> None:
        missing = set()
        for prog in (self.pkg / BIN / "master", self.pkg / BIN / "imapd"):
            out = subprocess.run(
                ["ldd", str(prog)], env=self._env(), capture_output=True, text=True, check=False
            ).stdout
            missing |= {line.split()[0] for line in out.splitlines() if "not found" in line}
        if missing:
            raise RuntimeError(
                f"Cyrus libraries missing from {self.pkg}: {sorted(missing)} "
                "(add their packages to tests.cyrus.PACKAGES)"
            )

    def write_config(self, extra: str = "") -> None:
        if not (self.pkg / BIN / "imapd").exists():
            unpack(self.pkg)
            self._check_libraries()
        s, b = self.srv, self.pkg / BIN
        for d in ("conf", "conf/socket", "spool", "run", "sieve"):
            (s / d).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            f"""\
configdirectory: {s}/conf
defaultpartition: default
partition-default: {s}/spool
servername: {self.realm}
cyrus_user: {self._user_name()}
allowplaintext: yes
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: {self.sasldb}
sasl_mech_list: PLAIN LOGIN
altnamespace: yes
unixhierarchysep: yes
autocreate_quota: 0
autocreate_inbox_folders: Drafts
xlist-drafts: Drafts
idlesocket: {s}/conf/socket/idle
lmtpsocket: {s}/conf/socket/lmtp
notifysocket: {s}/conf/socket/notify
proc_path: {s}/run/proc
mboxname_lockpath: {s}/run/lock
sievedir: {s}/sieve
syslog_prefix: ig-cyrus-{self.port}
{os.environ.get("IG_CYRUS_CONF", "")}
{extra}
"""
        )
        self.cyrus_conf.write_text(
            f"""\
START {{
  recover cmd="{b}/ctl_cyrusdb -C {self.conf} -r"
}}
SERVICES {{
  imap cmd="{b}/imapd -C {self.conf}" listen="127.0.0.1:{self.port}" prefork=0 maxchild=100
}}
EVENTS {{
}}
DAEMON {{
  {f'idled cmd="{b}/idled -C {self.conf}"' if self.idled else ""}
}}
"""
        )
        self.sasldb.touch()
        self._own()

    def _own(self) -> None:
        if os.geteuid() != 0:
            return
        for path in [self.srv, *self.srv.rglob("*")]:
            shutil.chown(path, "mail", "mail")

    def start(self, timeout: float = 30.0) -> Cyrus:
        if not self.conf.exists():
            self.write_config()
        with open(self.root / "master.log", "ab") as out:
            self._master = subprocess.Popen(
                [
                    str(self.pkg / BIN / "master"),
                    "-C",
                    str(self.conf),
                    "-M",
                    str(self.cyrus_conf),
                    "-p",
                    str(self.srv / "run" / "master.pid"),
                    "-D",
                ],
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        try:
            wait_for_greeting(self.port, time.monotonic() + timeout, "cyrus", self._alive)
        except BaseException:
            self.stop()
            raise
        return self

    def _alive(self) -> None:
        if self._master is not None and self._master.poll() is not None:
            log = (self.root / "master.log").read_text(errors="replace")
            raise RuntimeError(f"cyrus master exited ({self._master.returncode}): {log}")

    def stop(self) -> None:
        """Stop master (SIGTERM ends it and its services), then any imapd left over."""
        master, self._master = self._master, None
        if master is None:
            return
        children = children_of(master.pid)
        with contextlib.suppress(ProcessLookupError):
            master.send_signal(signal.SIGTERM)
        try:
            master.wait(timeout=10)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Cyrus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- users -------------------------------------------------------------------

    def user(self, name: str) -> tuple[str, str]:
        """(user, password); INBOX and Drafts are created on the user's first login."""
        if name not in self._users:
            subprocess.run(
                [
                    str(self.pkg / "usr/sbin/saslpasswd2"),
                    "-f",
                    str(self.sasldb),
                    "-p",
                    "-c",
                    "-u",
                    self.realm,
                    name,
                ],
                input=self.password.encode(),
                env=self._env(),
                check=True,
                capture_output=True,
            )
            self._users.add(name)
            if os.geteuid() == 0:
                shutil.chown(self.sasldb, "mail", "mail")
        return name, self.password
