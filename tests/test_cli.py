"""The command line through its real entry point: statuses, one-line errors, docs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from inbox_guard.cli import cli, main

from .conftest import PASSWORD_ENV, Account, Practice, write_practice
from .dovecot import free_port

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "inbox_guard", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_check_lists_clients_and_next_sessions(practice: Practice) -> None:
    done = run("--config", str(practice.config), "check", "--now", "2026-11-16T08:00")
    assert done.returncode == 0, done.stderr
    assert "jane-doe: next session Wed 2026-11-18 10:00" in done.stdout
    assert "sam-lee: next session Wed 2026-11-18 16:00" in done.stdout
    assert "pat-kim: next session no session scheduled (inactive)" in done.stdout


def test_check_connect_reports_inbox_and_drafts(practice: Practice, account: Account) -> None:
    done = run(
        "--config", str(practice.config), "check", "--connect", env={PASSWORD_ENV: account.password}
    )
    assert done.returncode == 0, done.stderr
    assert "login ok" in done.stdout
    assert "SPECIAL-USE" in done.stdout
    assert "inbox: INBOX (0 messages)" in done.stdout
    assert "drafts: Drafts" in done.stdout


def test_wrong_password_is_status_3_and_never_echoed(practice: Practice) -> None:
    secret = "Wr0ng-Secret-Value"
    done = run("--config", str(practice.config), "once", env={PASSWORD_ENV: secret})
    assert done.returncode == 3
    assert done.stderr.count("\n") == 1 and "refused the login" in done.stderr
    assert secret not in done.stdout + done.stderr
    debug = run("--config", str(practice.config), "--debug", "once", env={PASSWORD_ENV: secret})
    assert debug.returncode == 3 and secret not in debug.stdout + debug.stderr


def test_unreachable_server_is_status_3(tmp_path: Path, account: Account) -> None:
    account.server = type(account.server).__new__(type(account.server))
    account.server.port = free_port()  # nothing listens here
    p = write_practice(tmp_path, account)
    done = run("--config", str(p.config), "once", env={PASSWORD_ENV: "x"})
    assert done.returncode == 3
    assert done.stderr.startswith("inbox-guard: cannot connect to 127.0.0.1:")
    assert "Traceback" not in done.stderr


def test_unset_password_env_is_a_config_error(practice: Practice) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
    done = subprocess.run(
        [sys.executable, "-m", "inbox_guard", "--config", str(practice.config), "once"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2
    assert f"account.password_env: environment variable {PASSWORD_ENV} is not set" in done.stderr


def test_password_command_is_used(practice: Practice, account: Account) -> None:
    text = practice.config.read_text().replace(
        f'password_env = "{PASSWORD_ENV}"', f'password_command = "echo {account.password}"'
    )
    practice.config.write_text(text)
    done = run("--config", str(practice.config), "once", "--json")
    assert done.returncode == 0, done.stderr


def test_bad_now_is_a_usage_error(practice: Practice) -> None:
    done = run("--config", str(practice.config), "check", "--now", "next tuesday")
    assert done.returncode == 2
    assert "--now" in done.stderr and "Traceback" not in done.stderr


def test_config_from_environment_variable(practice: Practice) -> None:
    done = run("check", env={"INBOX_GUARD_CONFIG": str(practice.config)})
    assert done.returncode == 0 and "jane-doe" in done.stdout


def test_every_command_is_documented_in_readme_and_help() -> None:
    readme = (ROOT / "README.md").read_text()
    help_text = run("--help").stdout
    for name in cli.commands:
        assert f"inbox-guard {name}" in readme or f"| `{name}" in readme, name
        assert re.search(rf"^\s+{name}\b", help_text, re.MULTILINE), name


@pytest.mark.parametrize("command", ["check", "once", "agenda"])
def test_each_command_has_help(command: str) -> None:
    done = run(command, "--help")
    assert done.returncode == 0 and "Usage: inbox-guard" in done.stdout


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--frobnicate"], "No such option '--frobnicate' (see inbox-guard --help)"),
        (["check", "--bogus"], "No such option '--bogus' (see inbox-guard check --help)"),
        (["nosuch"], "No such command 'nosuch' (see inbox-guard --help)"),
        (["check", "--now"], "Option '--now' requires an argument"),
        (["--config"], "Option '--config' requires an argument"),
        (["agenda", "jane", "sam"], "Got unexpected extra argument (sam)"),
    ],
)
def test_usage_errors_are_one_line_with_status_2(
    args: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(args)
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.startswith("inbox-guard: error: ") and err.count("\n") == 1, err
    assert line in err


def test_bad_now_is_one_line_naming_the_option(practice: Practice) -> None:
    done = run("--config", str(practice.config), "check", "--now", "next tuesday")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "inbox-guard: error: Invalid value for --now: 'next tuesday' is not ISO 8601 "
        "(like 2026-11-17T06:00:00+00:00) (see inbox-guard check --help)\n"
    )


def test_help_is_still_the_full_help() -> None:
    done = run("check", "--help")
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith("Usage: inbox-guard check [OPTIONS]\n")
    assert "--connect" in done.stdout and "--now ISO" in done.stdout


def test_the_version_is_written_once() -> None:
    import importlib.metadata
    import tomllib

    import inbox_guard

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert importlib.metadata.version("inbox-guard") == inbox_guard.__version__
    assert run("--version").stdout.strip() == f"inbox-guard, version {inbox_guard.__version__}"
