"""A group practice: one service for several practitioners, each independent."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from inbox_guard.config import load_all
from inbox_guard.errors import ConfigError
from inbox_guard.service import Service

from .conftest import PASSWORD_ENV, Account, message, write_practice
from .dovecot import Dovecot, free_port
from .test_service import out_of_hours_recently, wait_for

KW = b"$OutOfHours"


def group_folder(tmp_path: Path, alex: Account, bea_port: int) -> Path:
    """config/alex.toml and config/bea.toml, each with their own clients, state, agendas."""
    folder = tmp_path / "group"
    folder.mkdir()
    for name, account in (("alex", alex), ("bea", None)):
        src = write_practice(tmp_path / name, account or alex)
        text = src.config.read_text()
        if account is None:  # Bea's practice is on a server that is down
            text = text.replace(f"port = {alex.port}", f"port = {bea_port}")
            text = text.replace(f'username = "{alex.user}"', 'username = "bea"')
        text += f'\n[agenda]\ndir = "{name}/agendas"\n\n[state]\npath = "{name}/state.sqlite3"\n'
        text = text.replace('[triage]\n', f'[triage]\nclients_dir = "{name}/clients"\n')
        (folder / f"{name}.toml").write_text(text)
        shutil.copytree(src.config.parent / "clients", folder / name / "clients")
    return folder


def test_one_practitioners_dead_server_does_not_stop_the_others_pass(
    tmp_path: Path, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, account.password)
    folder = group_folder(tmp_path, account, bea_port=free_port())
    uid = account.append(message(), out_of_hours_recently())
    practices = load_all(folder)
    assert [p.path.name for p in practices] == ["alex.toml", "bea.toml"]
    services = [Service(s, name=s.main.account.username) for s in practices]
    try:
        for s in services:
            s.start()
        assert not wait_for(services[1], "triage")  # Bea's server is down: logged, retried
        assert wait_for(services[0], "triage")  # Alex is served all the same
    finally:
        for s in services:
            s.stop()
    assert account.snapshot()[uid]["flags"] == {KW}
    assert (folder / "alex" / "state.sqlite3").exists()
    assert list((folder / "alex" / "agendas").rglob("*.md"))
    assert not (folder / "bea" / "agendas").exists()


def test_two_practitioners_on_live_servers_have_separate_state(
    tmp_path: Path, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Dovecot() as other:
        bea_user, bea_password = other.user("bea")
        assert bea_password != account.password
        monkeypatch.setenv(PASSWORD_ENV, account.password)
        folder = group_folder(tmp_path, account, bea_port=other.port)
        # Bea's password comes from its own variable.
        bea = folder / "bea.toml"
        bea.write_text(bea.read_text().replace(f'password_env = "{PASSWORD_ENV}"',
                                               'password_env = "BEA_PASSWORD"'))
        monkeypatch.setenv("BEA_PASSWORD", bea_password)
        Account(other, bea_user, bea_password).append(message(), out_of_hours_recently())
        account.append(message(), out_of_hours_recently())
        services = [Service(s, name=s.main.account.username) for s in load_all(folder)]
        try:
            for s in services:
                s.start()
            assert wait_for(services[0], "triage") and wait_for(services[1], "triage")
        finally:
            for s in services:
                s.stop()
        for name in ("alex", "bea"):
            notes = list((folder / name / "agendas").rglob("*.md"))
            assert len(notes) == 1 and "Out-of-hours contacts: 1" in notes[0].read_text()


def test_two_practitioners_cannot_share_a_state_file(tmp_path: Path, account: Account) -> None:
    folder = group_folder(tmp_path, account, bea_port=free_port())
    bea = folder / "bea.toml"
    bea.write_text(bea.read_text().replace('path = "bea/state.sqlite3"', 'path = "alex/state.sqlite3"'))
    with pytest.raises(ConfigError, match="is also the state file of"):
        load_all(folder)
