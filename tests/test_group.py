"""A group practice: one service for several practitioners, each independent."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from inbox_guard.config import load, load_all
from inbox_guard.errors import ConfigError
from inbox_guard.service import Service
from inbox_guard.store import Store

from .conftest import (
    CLIENTS,
    PASSWORD_ENV,
    Account,
    Capsys,
    Practice,
    SilentServer,
    fire,
    message,
    out_of_hours_recently,
    started,
    wait_for,
    write_practice,
)
from .dovecot import Dovecot, free_port

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
        text = text.replace("[triage]\n", f'[triage]\nclients_dir = "{name}/clients"\n')
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
    assert [(p.path.name, p.name) for p in practices] == [
        ("alex.toml", "alex"),
        ("bea.toml", "bea"),
    ]
    services = [Service(s, name=s.name) for s in practices]
    try:
        assert not started(services[1])  # Bea's server is down: logged, retried
        assert started(services[0])  # Alex is served all the same
    finally:
        for s in services:
            s.stop()
    assert account.snapshot()[uid]["flags"] == {KW}
    assert (folder / "alex" / "state.sqlite3").exists()
    assert list((folder / "alex" / "agendas").rglob("*.md"))
    assert not (folder / "bea" / "agendas").exists()


def test_one_practitioners_hung_server_does_not_delay_the_others_pass(
    tmp_path: Path,
    account: Account,
    monkeypatch: pytest.MonkeyPatch,
    silent_server: SilentServer,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, account.password)
    folder = group_folder(tmp_path, account, bea_port=silent_server.port)
    bea_file = folder / "bea.toml"
    bea_file.write_text(
        bea_file.read_text().replace(
            'security = "plain"\n', 'security = "plain"\ntimeout_seconds = 600\n'
        )
    )
    uid = account.append(message(), out_of_hours_recently())
    alex, bea = (Service(s, name=s.name) for s in load_all(folder))
    try:
        bea.start()  # first, so its pass is already waiting on the silent server
        alex.start()
        assert wait_for(alex, "triage", timeout=10)
        assert bea.done.empty()  # Bea's pass is still waiting for a greeting
        assert account.snapshot()[uid]["flags"] == {KW}
    finally:
        alex.stop()
        # Asked to stop while its pass hangs; the pass then fails: the service must
        # still stop (it once deadlocked scheduling the retry during the shutdown).
        stopper = threading.Thread(target=bea.stop)
        stopper.start()
        assert bea.stopping.wait(timeout=5)
        silent_server.hang_up()
        stopper.join(timeout=20)
        assert not stopper.is_alive()
    assert not wait_for(bea, "triage", timeout=1)  # it failed once the server hung up


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
        bea.write_text(
            bea.read_text().replace(
                f'password_env = "{PASSWORD_ENV}"', 'password_env = "BEA_PASSWORD"'
            )
        )
        monkeypatch.setenv("BEA_PASSWORD", bea_password)
        Account(other, bea_user, bea_password).append(message(), out_of_hours_recently())
        account.append(message(), out_of_hours_recently())
        services = [Service(s, name=s.name) for s in load_all(folder)]
        try:
            assert all([started(s) for s in services])
        finally:
            for s in services:
                s.stop()
        for name in ("alex", "bea"):
            notes = list((folder / name / "agendas").rglob("*.md"))
            assert len(notes) == 1 and "Out-of-hours contacts: 1" in notes[0].read_text()


def test_two_practitioners_cannot_share_a_state_file(tmp_path: Path, account: Account) -> None:
    folder = group_folder(tmp_path, account, bea_port=free_port())
    bea = folder / "bea.toml"
    bea.write_text(
        bea.read_text().replace('path = "bea/state.sqlite3"', 'path = "alex/state.sqlite3"')
    )
    with pytest.raises(ConfigError, match="is also the state file of"):
        load_all(folder)


# -- one file, [[accounts]] ---------------------------------------------------------

INLINE = """\
# Shared by every account unless an account says otherwise.
timezone = "Europe/London"

[hours]
mon = ["09:00-17:00"]
tue = ["09:00-17:00"]
wed = ["09:00-17:00"]
thu = ["09:00-17:00"]
fri = ["09:00-17:00"]

[triage]
lookback_days = 30

[[accounts]]
id = "alex"
therapist = {{ name = "Alex Morgan", email = "alex@example.org", emergency_text = "Call 999." }}
account = {{ host = "127.0.0.1", port = {alex_port}, security = "plain", username = "{alex_user}", password_env = "{alex_env}" }}

[[accounts]]
id = "bea"
therapist = {{ name = "Bea Ruiz", email = "bea@example.org", emergency_text = "Call 999.", language = "es" }}
account = {{ host = "127.0.0.1", port = {bea_port}, security = "plain", username = "{bea_user}", password_env = "BEA_PASSWORD" }}
hours = {{ sat = ["10:00-14:00"] }}   # Bea also works Saturdays
"""


def inline_practice(tmp_path: Path, alex: Account, bea_port: int, bea_user: str = "bea") -> Path:
    cfg = tmp_path / "config"
    for name in ("alex", "bea"):
        (cfg / "clients" / name).mkdir(parents=True)
        for cid, text in CLIENTS.items():
            (cfg / "clients" / name / f"{cid}.toml").write_text(text)
    main = cfg / "group.toml"
    main.write_text(
        INLINE.format(
            alex_port=alex.port,
            alex_user=alex.user,
            alex_env=PASSWORD_ENV,
            bea_port=bea_port,
            bea_user=bea_user,
        )
    )
    return main


def test_accounts_in_one_file_share_defaults_and_keep_their_own_places(
    tmp_path: Path, account: Account
) -> None:
    main = inline_practice(tmp_path, account, bea_port=free_port())
    alex, bea = load_all(main)
    assert (alex.name, bea.name) == ("alex", "bea")
    assert alex.main.triage.lookback_days == bea.main.triage.lookback_days == 30  # shared
    assert alex.main.hours.sat == () and bea.main.hours.sat == ("10:00-14:00",)  # own table wins
    assert bea.main.hours.mon == ("09:00-17:00",)  # ... over the shared one, key by key
    assert bea.main.therapist.language == "es"
    cfg = main.parent
    assert (alex.clients_dir, bea.clients_dir) == (cfg / "clients/alex", cfg / "clients/bea")
    assert (alex.agenda_dir, bea.agenda_dir) == (cfg / "agendas/alex", cfg / "agendas/bea")
    assert (alex.state_path, bea.state_path) == (
        cfg / "state/alex.sqlite3",
        cfg / "state/bea.sqlite3",
    )
    assert (load(main, "bea").name, load(main, "bea").state_path) == ("bea", bea.state_path)
    with pytest.raises(
        ConfigError, match=r"holds 2 practitioners \(alex, bea\); choose one with --account"
    ):
        load(main)
    with pytest.raises(
        ConfigError, match=r"--account: no practitioner 'cleo' here \(there are: alex, bea\)"
    ):
        load(main, "cleo")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (('id = "bea"', 'id = "alex"'), r"practitioner 'alex' is also in"),
        (('id = "bea"\n', ""), r"accounts\[1\]\.id: required key is missing"),
        (('id = "bea"', 'id = "../bea"'), r"accounts\[1\]\.id: '../bea' is not valid"),
        (
            ('language = "es"', 'language = "it"'),
            r"group.toml: accounts\[1\]\.therapist\.language: ",
        ),
        (
            (
                '[[accounts]]\nid = "bea"',
                '[[accounts]]\nid = "bea"\nstate = { path = "state/alex.sqlite3" }',
            ),
            r"\(bea\): state\.path: .* is also the state file of .*\(alex\)",
        ),
    ],
)
def test_accounts_mistakes_are_one_line_naming_the_account(
    tmp_path: Path, account: Account, change: tuple[str, str], error: str
) -> None:
    main = inline_practice(tmp_path, account, bea_port=free_port())
    text = main.read_text()
    assert change[0] in text
    main.write_text(text.replace(change[0], change[1], 1))
    with pytest.raises(ConfigError, match=error):
        load_all(main)


def test_accounts_in_one_file_run_independently_with_their_own_digests(
    tmp_path: Path,
    account: Account,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: Capsys,
) -> None:
    """Two live servers, then Bea's goes down: Alex's passes and digests go on, and
    Bea's trouble is in Bea's state (for Bea's digest) and Bea's log lines only."""
    with Dovecot() as other:
        bea_user, bea_password = other.user("bea")
        bea = Account(other, bea_user, bea_password)
        monkeypatch.setenv(PASSWORD_ENV, account.password)
        monkeypatch.setenv("BEA_PASSWORD", bea_password)
        main = inline_practice(tmp_path, account, bea_port=other.port, bea_user=bea_user)
        account.append(message(), out_of_hours_recently())
        for _ in range(3):
            bea.append(message(), out_of_hours_recently())
        services = [Service(s, name=s.name) for s in load_all(main)]
        alex_svc, bea_svc = services
        try:
            assert all([started(s) for s in services])
            other.stop()
            fire(bea_svc, "triage")
            assert not wait_for(bea_svc, "triage")
            new = account.append(message(subject="later"), out_of_hours_recently())
            fire(alex_svc, "triage")
            assert wait_for(alex_svc, "triage")
            assert account.snapshot()[new]["flags"] == {KW}
            fire(alex_svc, "digest")
            assert wait_for(alex_svc, "digest")
        finally:
            for s in services:
                s.stop()
        cfg = main.parent
        [digest] = [
            m["bytes"] for m in account.snapshot().values() if b"Out-of-hours digest" in m["bytes"]
        ]
        assert b"2 out-of-hours contacts from 1 client" in digest
        assert b"had trouble" not in digest  # Bea's outage is not Alex's news
        for name, n in (("alex", 2), ("bea", 3)):
            [note] = list((cfg / "agendas" / name).rglob("*.md"))
            assert f"Out-of-hours contacts: {n}" in note.read_text()
        store = Store.open(cfg / "state" / "bea.sqlite3")
        try:
            assert [p.what.split(":")[0] for p in store.problems()] == ["triage"]
        finally:
            store.close()
        store = Store.open(cfg / "state" / "alex.sqlite3")
        try:
            assert store.problems() == []
        finally:
            store.close()
        failures = [r.getMessage() for r in caplog.records if "triage failed" in r.getMessage()]
        assert failures and all(f.startswith("[bea] ") for f in failures)
        # Bea's digest (in Spanish) tells Bea.
        p = Practice(tmp_path, account)
        p.config = main
        code, out, err = p.run("--account", "bea", "digest", "--dry-run", capsys=capsys)
        assert code == 0, err
        assert "3 contactos fuera de horario de 1 cliente" in out
        assert "inbox-guard tuvo problemas desde el último resumen" in out
        assert "triage: cannot connect to 127.0.0.1" in out


def test_cli_acts_for_the_account_it_is_told(
    tmp_path: Path, account: Account, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, account.password)
    main = inline_practice(tmp_path, account, bea_port=free_port())
    account.append(message(), out_of_hours_recently())
    p = Practice(tmp_path, account)
    p.config = main
    code, out, err = p.run("--account", "alex", "once", capsys=capsys)  # Bea's server is down
    assert code == 0, err
    assert "flagged 1" in out
    code, out, err = p.run("once", capsys=capsys)
    assert code == 2 and "choose one with --account" in err
    code, out, err = p.run("check", capsys=capsys)
    assert code == 0, err
    assert "[alex] ok (3 client files)" in out and "[bea] ok (3 client files)" in out


def test_each_practitioner_in_a_group_file_has_their_own_brief_settings(
    tmp_path: Path, account: Account
) -> None:
    main = inline_practice(tmp_path, account, bea_port=free_port())
    text = main.read_text()
    text = text.replace(
        "[triage]\n", "[brief]\nenabled = true\nminutes_before = 30\n\n[triage]\n", 1
    )
    text = text.replace(
        "# Bea also works Saturdays", "# Bea also works Saturdays\nbrief = { minutes_before = 90 }"
    )
    main.write_text(text)
    alex, bea = load_all(main)
    assert alex.main.brief.enabled and bea.main.brief.enabled  # shared
    assert (alex.main.brief.minutes_before, bea.main.brief.minutes_before) == (30, 90)
