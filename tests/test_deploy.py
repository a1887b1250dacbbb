"""Deployment files: what can be checked without a Docker engine or systemd running."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_compose_file_parses(tmp_path: Path) -> None:
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "deploy" / "env.example", tmp_path / ".env")
    done = subprocess.run(
        ["docker-compose", "config"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "/config:ro" in done.stdout
    rendered = done.stdout.replace(str(tmp_path), ".")
    assert "./config:/config:ro" in rendered  # the repository's example by default ...
    assert "depends_on" in rendered and "- dovecot" in rendered
    with (tmp_path / ".env").open("a") as env:  # ... or the folder the README edits
        env.write(f"INBOX_GUARD_CONFIG_DIR={tmp_path / 'mine'}\n")
    again = subprocess.run(
        ["docker-compose", "config"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, again.stderr
    assert f"{tmp_path / 'mine'}:/config:ro" in again.stdout
    code = [line.split("#")[0] for line in (ROOT / "docker-compose.yml").read_text().splitlines()]
    assert not [line for line in code if "INBOX_GUARD_PASSWORD" in line]  # only from .env


def test_the_image_keeps_state_and_agendas_under_data() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ENV INBOX_GUARD_DATA=/data$", text, re.MULTILINE)
    assert re.search(r"^ENV INBOX_GUARD_CONFIG=/config/", text, re.MULTILINE)
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "inbox-guard-data:/data" in compose


def test_dockerfile_is_a_plain_pip_install_as_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    runs = re.findall(r"^RUN (.+)$", text, re.MULTILINE)
    # This project, with the PostgreSQL extra (several workers on one database).
    assert any(r.startswith("pip install --no-cache-dir '.[postgresql]'") for r in runs)
    assert all(r.startswith(("pip install", "useradd")) for r in runs), runs
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    for src in re.findall(r"^COPY (\S+) ", text, re.MULTILINE):
        assert (ROOT / src).exists(), src


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = (ROOT / "deploy" / "inbox-guard.service").read_text()
    # Verify against an executable that exists here; the unit itself names /usr/local/bin.
    # The installed command: beside this Python (a virtual environment need not be on
    # PATH), else wherever PATH finds it.
    beside = Path(sys.executable).parent / "inbox-guard"
    exe = str(beside) if beside.exists() else shutil.which("inbox-guard")
    assert exe, "inbox-guard is not installed"
    path = tmp_path / "inbox-guard.service"
    path.write_text(unit.replace("/usr/local/bin/inbox-guard", exe))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=120
    )
    problems = [line for line in done.stderr.splitlines() if "inbox-guard.service" in line]
    assert problems == [], done.stderr
    for hardening in ("DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes"):
        assert hardening in unit


@pytest.mark.skipif(
    os.geteuid() != 0,
    reason="the container runs Dovecot as root, "
    "dropping to the user mail: only root can do that here",
)
def test_the_development_dovecot_config_accepts_its_user() -> None:
    """deploy/dovecot-dev/dovecot.conf as shipped, on this machine's Dovecot, with only
    its paths moved into a private folder and a loopback port: the dev user logs in
    over TLS and has an INBOX (its userdb gives uid mail, below Dovecot's default
    first_valid_uid of 500)."""
    import ssl

    from imapclient import IMAPClient

    from .dovecot import Dovecot

    server = Dovecot(tls=True)  # a folder Dovecot's own users can reach, unlike tmp_path
    shipped = (ROOT / "deploy" / "dovecot-dev" / "dovecot.conf").read_text()
    certs, mail = server.root / "certs", server.root / "mail"
    certs.mkdir()
    mail.mkdir()
    shutil.chown(mail, "mail", "mail")
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
            "/CN=dovecot",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-keyout",
            str(certs / "dev.key"),
            "-out",
            str(certs / "dev.pem"),
        ],
        check=True,
        capture_output=True,
    )
    users = server.root / "users"
    users.write_text("alex@example.org:{PLAIN}dev-password\n")
    moved = (
        shipped.replace("/certs/", f"{certs}/")
        .replace("/srv/mail", str(mail))
        .replace("/etc/dovecot/users", str(users))
        .replace("listen = *", "listen = 127.0.0.1")
        .replace("log_path = /dev/stderr", f"log_path = {server.root}/dovecot.log")
        .replace("port = 993", f"port = {server.tls_port}")
        # a plain listener on loopback only to see the server greet
        .replace("port = 0", f"port = {server.port}")
    )
    (server.root / "run").mkdir()
    (server.root / "state").mkdir()
    server.conf.write_text(
        f"base_dir = {server.root}/run\nstate_dir = {server.root}/state\n"
        f"instance_name = ig-dev-{server.port}\n{moved}"
    )
    server.start()
    try:
        context = ssl.create_default_context(cafile=str(certs / "dev.pem"))
        with IMAPClient("127.0.0.1", port=server.tls_port, ssl=True, ssl_context=context) as c:
            try:
                c.login("alex@example.org", "dev-password")
            except Exception as exc:  # the server's log says why, e.g. the uid
                log = (server.root / "dovecot.log").read_text()
                raise AssertionError(log[-2000:]) from exc
            assert c.select_folder("INBOX")[b"EXISTS"] == 0
            assert any(b"\\Drafts" in flags for flags, _, _ in c.list_folders())
    finally:
        server.cleanup()


def test_the_front_door_runs_the_demo_through_scripts_demo() -> None:
    """The README's first command, `scripts/demo`, as written: it installs into a
    virtual environment (here the one running the tests, named by INBOX_GUARD_VENV,
    never the system's Python) and shows the demo."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Try it, test it", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in block.splitlines()] == [
        "scripts/demo",
        "scripts/check",
    ]
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    env["INBOX_GUARD_VENV"] = sys.prefix
    done = subprocess.run(
        [str(ROOT / "scripts" / "demo")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("inbox-guard demo: a sample practice"), done.stdout[:500]


def test_the_shared_profile_runs_two_workers_on_one_postgresql(tmp_path: Path) -> None:
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    (tmp_path / "config").mkdir()
    env = (ROOT / "deploy" / "env.example").read_text() + "PGPASSWORD=pw-for-the-test\n"
    (tmp_path / ".env").write_text(env)
    done = subprocess.run(
        ["docker-compose", "--profile", "shared", "config"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    services = re.findall(r"^  ([\w-]+):$", done.stdout.split("\nvolumes:")[0], re.MULTILINE)
    assert {"worker-1", "worker-2", "postgres"} <= set(services)
    urls = re.findall(r"INBOX_GUARD_STATE_URL: (\S+)", done.stdout)
    assert urls == ["postgresql://inbox_guard@postgres:5432/inbox_guard"] * 2  # no password
    assert done.stdout.count("inbox-guard-shared:/data") >= 2  # agendas on one volume
    # Only with the profile: `docker compose up` alone starts the single service.
    for service in ("worker-1", "worker-2", "postgres"):
        after = done.stdout.split(f"\n  {service}:\n")[1]
        block = re.split(r"^  \S", after, maxsplit=1, flags=re.MULTILINE)[0]
        assert re.search(r"^    profiles:\n    - shared$", block, re.MULTILINE), service
