"""Deployment files: what can be checked without a Docker engine or systemd running."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

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
    code = [line.split("#")[0] for line in (ROOT / "docker-compose.yml").read_text().splitlines()]
    assert not [line for line in code if "INBOX_GUARD_PASSWORD" in line]  # only from .env


def test_dockerfile_is_a_plain_pip_install_as_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    runs = re.findall(r"^RUN (.+)$", text, re.MULTILINE)
    assert any(r.startswith("pip install --no-cache-dir .") for r in runs)
    assert all(r.startswith(("pip install", "useradd")) for r in runs), runs
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    for src in re.findall(r"^COPY (\S+) ", text, re.MULTILINE):
        assert (ROOT / src).exists(), src


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = (ROOT / "deploy" / "inbox-guard.service").read_text()
    # Verify against an executable that exists here; the unit itself names /usr/local/bin.
    exe = shutil.which("inbox-guard")
    assert exe, "inbox-guard is not installed"
    path = tmp_path / "inbox-guard.service"
    path.write_text(unit.replace("/usr/local/bin/inbox-guard", exe))
    done = subprocess.run(["systemd-analyze", "verify", str(path)],
                          capture_output=True, text=True, timeout=120)
    problems = [line for line in done.stderr.splitlines() if "inbox-guard.service" in line]
    assert problems == [], done.stderr
    for hardening in ("DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes"):
        assert hardening in unit
