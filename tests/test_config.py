"""Configuration mistakes: one line naming file, key and problem; exit status 2."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from inbox_guard.cli import main
from inbox_guard.config import load, load_all
from inbox_guard.errors import ConfigError

from .configs import GOOD, JANE, write


def test_good_config_loads_with_defaults(tmp_path: Path) -> None:
    s = load(write(tmp_path))
    assert s.main.triage.keyword == "$OutOfHours"
    assert s.main.account.effective_port == 993
    assert s.clients["jane"].emails == ("jane@example.org",)
    assert s.state_path == tmp_path / "state" / "inbox-guard.sqlite3"
    assert s.digest_to == "alex@example.org"


MAIN_MISTAKES = [
    ("unknown key", "colour: unknown key"),
    ("bad zone", "timezone: 'Mars/Olympus' is not an IANA time zone"),
    ("9-17", "hours.mon: '9-17' is not an interval"),
    ("overlap", "hours.tue: intervals 09:00-13:00 and 12:00-17:00 overlap"),
    ("plain remote", 'account: security = "plain" is only allowed to a loopback host'),
    ("no password", "account: no password source"),
    ("literal password", "account: passwords do not belong in config files"),
    ("digest to stranger", "digest.to 'x@elsewhere.org' must be one of therapist.addresses"),
    ("bad closed", "hours.closed: '2026-13-01' is not a date"),
    ("smtp without section", 'digest.deliver = "smtp" needs an [smtp] section'),
    ("xoauth2 without helper", 'account: auth = "xoauth2" needs token_command'),
    ("brief by smtp without section", 'brief.deliver = "smtp" needs an [smtp] section'),
    ("brief too soon", "brief.minutes_before: Input should be greater than or equal to 5"),
]


def mutate(case: str) -> str:
    return {
        "unknown key": GOOD + 'colour = "blue"\n'.replace("colour", "[triage]\ncolour"),
        "bad zone": GOOD.replace("Europe/London", "Mars/Olympus"),
        "9-17": GOOD.replace('mon = ["09:00-17:00"]', 'mon = ["9-17"]'),
        "overlap": GOOD + 'tue = ["09:00-13:00", "12:00-17:00"]\n',
        "plain remote": GOOD.replace('username = "alex"', 'username = "alex"\nsecurity = "plain"'),
        "no password": GOOD.replace('password_env = "IG_PW"\n', ""),
        "literal password": GOOD.replace('password_env = "IG_PW"', 'password = "hunter22"'),
        "digest to stranger": GOOD + '[digest]\nto = "x@elsewhere.org"\n',
        "bad closed": GOOD + 'closed = ["2026-13-01"]\n',
        "smtp without section": GOOD + '[digest]\ndeliver = "smtp"\n',
        "xoauth2 without helper": GOOD.replace('password_env = "IG_PW"', 'auth = "xoauth2"'),
        "brief by smtp without section": GOOD + '[brief]\nenabled = true\ndeliver = "smtp"\n',
        "brief too soon": GOOD + "[brief]\nminutes_before = 1\n",
    }[case]


@pytest.mark.parametrize(("case", "expected"), MAIN_MISTAKES)
def test_main_file_mistakes_name_file_and_key(tmp_path: Path, case: str, expected: str) -> None:
    path = write(tmp_path, mutate(case))
    with pytest.raises(ConfigError) as err:
        load(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message
    assert "hunter22" not in message


@pytest.mark.parametrize(
    ("clients", "expected"),
    [
        (
            {"jane": JANE, "jd": 'name = "J"\nemails = ["JANE@example.org"]\n'},
            "jd.toml: emails: 'jane@example.org' is also a client email in",
        ),
        (
            {
                "jane": JANE
                + 'sessions = { rrule = "FREQ=FORTNIGHTLY", start = "2026-09-02T10:00" }\n'
            },
            "jane.toml: sessions: 'FREQ=FORTNIGHTLY' is not a valid RRULE",
        ),
        (
            {"jane": 'name = "Jane"\nemails = ["not-an-address"]\n'},
            "jane.toml: emails: 'not-an-address' is not an email address",
        ),
        (
            {"jane": 'name = "Jane"\nemails = ["alex@example.org"]\n'},
            "jane.toml: emails: 'alex@example.org' is one of the therapist's addresses",
        ),
        ({"jane": 'name = "Jane"\n'}, "jane.toml: emails: required key is missing"),
        (
            {"jane": 'name = "Jane"\nemails = ["j@x.org"]\nactive = "yes please"\n'},
            "jane.toml: active:",
        ),
        ({"jane": "name = \n"}, "jane.toml: not valid TOML"),
        ({"jane": JANE + 'draft_template = "gentle.txt.j2"\n'}, "jane.toml: draft_template: "),
        (
            {"jane": JANE + 'draft_template = "../../etc/passwd"\n'},
            "jane.toml: draft_template: '../../etc/passwd' must be a file name",
        ),
        (
            {"jane": JANE + '[hours]\nmon = ["9-5"]\n'},
            "jane.toml: hours.mon: '9-5' is not an interval",
        ),
    ],
)
def test_client_file_mistakes_name_file_and_key(
    tmp_path: Path, clients: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError, match=None) as err:
        load(write(tmp_path, clients=clients))
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_cli_reports_config_error_in_one_line_with_status_2(tmp_path: Path) -> None:
    path = write(tmp_path, mutate("9-17"))
    done = subprocess.run(
        [sys.executable, "-m", "inbox_guard", "--config", str(path), "check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert f"{path}: hours.mon:" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_config_file_is_status_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "inbox_guard", "--config", str(tmp_path / "nope.toml"), "check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr.strip()) == (
        2,
        f"inbox-guard: {tmp_path}/nope.toml: file not found",
    )


TOML_VALUES = st.recursive(
    st.none().map(lambda _: '""')
    | st.integers().map(str)
    | st.booleans().map(str).map(str.lower)
    | st.text(max_size=20).map(lambda t: '"' + t.replace("\\", "").replace('"', "") + '"'),
    lambda inner: st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
    max_leaves=5,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    section=st.sampled_from(
        [
            "",
            "[therapist]\n",
            "[account]\n",
            "[hours]\n",
            "[triage]\n",
            "[digest]\n",
            "[agenda]\n",
            "[state]\n",
            "[risk]\n",
        ]
    ),
    key=st.sampled_from(
        [
            "timezone",
            "name",
            "email",
            "host",
            "port",
            "security",
            "mon",
            "closed",
            "drafts",
            "keyword",
            "at",
            "days",
            "to",
            "path",
            "x",
        ]
    ),
    value=TOML_VALUES,
)
def test_fuzzed_config_values_fail_only_as_config_errors(
    tmp_path: Path, section: str, key: str, value: str
) -> None:
    path = write(tmp_path, GOOD + f"\n{section}{key} = {value}\n")
    try:
        load(path)
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(str(path))


def test_the_shipped_examples_load(tmp_path: Path) -> None:
    """config/ is documentation that must stay true: both example forms load as they are."""
    shipped = Path(__file__).resolve().parent.parent / "config"
    shutil.copytree(shipped, tmp_path / "config")
    single = load(tmp_path / "config" / "inbox-guard.toml")
    assert single.clients and single.name == ""
    for who in ("alex", "bea"):
        shutil.copytree(shipped / "clients", tmp_path / "config" / "clients" / who)
    alex, bea = load_all(tmp_path / "config" / "group.toml")
    assert (alex.name, bea.name) == ("alex", "bea")
    assert bea.main.therapist.language == "es" and bea.main.hours.sat == ("10:00-14:00",)
    assert alex.clients.keys() == single.clients.keys()


# `check` catches what would fail later: each through the real command line, exit 2
# and one line on stderr naming the file and the key.


def check(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = main(["--config", str(path), "check", "--now", "2026-11-16T08:00", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(err: str, file: Path, key: str, problem: str) -> None:
    assert err.count("\n") == 1, err
    assert err.startswith(f"inbox-guard: {file}: {key}: "), err
    assert problem in err, err


LATER_FAILURES = [
    # IMAP keywords are 7-bit atoms; the server would refuse "$Außer" at the first STORE.
    ('[triage]\nkeyword = "$Außer"\n', "triage.keyword", "'$Außer' is not a valid IMAP keyword"),
    ('[risk]\nkeyword = "$Dringend\u00a0"\n', "risk.keyword", "is not a valid IMAP keyword"),
    ('[risk]\nkeyword = "$Achtung]"\n', "risk.keyword", "is not a valid IMAP keyword"),
    # digest.at is split on ":" by the scheduler.
    ('[digest]\nat = "0730"\n', "digest.at", "'0730' is not a time like \"07:30\""),
    ('[digest]\nat = "07:30:00"\n', "digest.at", "HH:MM"),
    # retain_days becomes a timedelta.
    (
        "[state]\nretain_days = 1000000000\n",
        "state.retain_days",
        "1000000000 is out of range: keep between 1 and 3650 days",
    ),
    ("[state]\nretain_days = 0\n", "state.retain_days", "keep between 1 and 3650 days"),
    # Far-future dates overflow when they meet a time zone or a horizon.
    (
        'closed = ["2026-12-24..9999-12-31"]\n',
        "hours.closed",
        "is out of range (dates from 2000-01-01 to 2100-12-31)",
    ),
    ('closed = ["1066-10-14"]\n', "hours.closed", "is out of range"),
]


@pytest.mark.parametrize(("extra", "key", "problem"), LATER_FAILURES)
def test_check_catches_main_file_values_that_would_fail_later(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, key: str, problem: str
) -> None:
    path = write(tmp_path, GOOD + extra)
    code, out, err = check(path, capsys)
    assert (code, out) == (2, "")
    assert_one_line(err, path, key, problem)


CLIENT_LATER_FAILURES = [
    (
        'sessions = { dates = ["2026-11-25T10:00", "9999-12-31T23:30"] }\n',
        "sessions.dates",
        "9999-12-31T23:30:00 is out of range (dates from 2000-01-01 to 2100-12-31)",
    ),
    (
        'sessions = { rrule = "FREQ=WEEKLY", start = "9999-12-29T10:00" }\n',
        "sessions.start",
        "is out of range",
    ),
    (
        '[hours]\nmon = ["09:00-17:00"]\nclosed = ["9999-12-31"]\n',
        "hours.closed",
        "is out of range",
    ),
    # Finer than daily: every next-session lookup would walk millions of occurrences.
    (
        'sessions = { rrule = "FREQ=SECONDLY", start = "2026-11-16T07:59" }\n',
        "sessions",
        "'FREQ=SECONDLY' repeats more often than daily",
    ),
    (
        'sessions = { rrule = "FREQ=HOURLY;INTERVAL=24", start = "2026-11-16T07:00" }\n',
        "sessions",
        "repeats more often than daily",
    ),
    (
        'sessions = { rrule = "FREQ=DAILY;BYMINUTE=0,10,20,30,40,50", '
        'start = "2026-11-16T07:00" }\n',
        "sessions",
        "gives 6 start times a day",
    ),
]


@pytest.mark.parametrize(("extra", "key", "problem"), CLIENT_LATER_FAILURES)
def test_check_catches_client_values_that_would_fail_later(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, key: str, problem: str
) -> None:
    path = write(
        tmp_path, GOOD.replace("Europe/London", "America/New_York"), clients={"jane": JANE + extra}
    )
    code, out, err = check(path, capsys)
    assert (code, out) == (2, "")
    assert_one_line(err, tmp_path / "clients" / "jane.toml", key, problem)


def test_keywords_are_exactly_the_imap_atoms() -> None:
    from inbox_guard.schema import Risk, Triage

    for ok in ("$OutOfHours", "$Needs_Attention", "NonJunk", "$a!#&'+,-./:;<=>?@[^`|}~"):
        assert Triage(keyword=ok).keyword == ok and Risk(keyword=ok).keyword == ok
    for bad in (
        "",
        "$Außer",
        "\\Flagged",
        "$a b",
        "$a(",
        "$a)",
        "$a{",
        "$a%",
        "$a*",
        '$a"',
        "$a]",
        "$a\x7f",
        "$a\t",
        "$ä",
    ):
        with pytest.raises(ValidationError):
            Triage(keyword=bad)


@given(st.text(max_size=12))
def test_a_keyword_is_accepted_exactly_when_it_is_an_atom(word: str) -> None:
    from inbox_guard.schema import Triage

    atom = bool(word) and all(0x21 <= ord(c) <= 0x7E and c not in '(){%*"\\]' for c in word)
    try:
        Triage(keyword=word)
    except ValidationError:
        assert not atom
    else:
        assert atom


@pytest.mark.parametrize("at", ["00:00", "07:30", "23:59"])
def test_digest_times_in_range_are_accepted(tmp_path: Path, at: str) -> None:
    s = load(write(tmp_path, GOOD + f'[digest]\nat = "{at}"\n'))
    assert s.main.digest.at == at


@pytest.mark.parametrize("at", ["24:00", "7:30", "07:60", "0730", "07:30:00", "07:30Z", ""])
def test_digest_time_must_be_hh_mm(tmp_path: Path, at: str) -> None:
    with pytest.raises(ConfigError, match=r"digest.at: .* is not a time like"):
        load(write(tmp_path, GOOD + f'[digest]\nat = "{at}"\n'))


@pytest.mark.parametrize(
    ("now", "problem"),
    [
        ("9999-12-31T23:59+00:00", "'9999-12-31T23:59+00:00' is out of range"),
        ("1970-01-01T00:00", "is out of range (dates from 2000-01-01 to 2100-12-31)"),
        ("next tuesday", "'next tuesday' is not ISO 8601"),
    ],
)
def test_now_outside_the_range_is_a_one_line_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], now: str, problem: str
) -> None:
    path = write(tmp_path)
    code = main(["--config", str(path), "check", "--now", now])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("inbox-guard: error: ")
    assert "--now" in err and problem in err and err.endswith("(see inbox-guard check --help)\n")


CA_SECTIONS = {
    "account": ("[account]", "account.ca_file"),
    "smtp": ('[smtp]\nhost = "smtp.example.org"', "smtp.ca_file"),
}


@pytest.mark.parametrize("section", sorted(CA_SECTIONS))
def test_a_missing_ca_file_is_named_at_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], section: str
) -> None:
    header, key = CA_SECTIONS[section]
    main_text = GOOD if section == "account" else GOOD + header + "\n"
    path = write(tmp_path, main_text.replace(header, header + '\nca_file = "private-ca.pem"', 1))
    code, out, err = check(path, capsys)
    assert (code, out) == (2, "")
    assert_one_line(err, path, key, f"{tmp_path / 'private-ca.pem'} does not exist")


def test_a_relative_ca_file_is_relative_to_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "private-ca.pem").write_text("not checked here\n")
    text = GOOD.replace("[account]", '[account]\nca_file = "private-ca.pem"')
    text += '[smtp]\nhost = "smtp.example.org"\nca_file = "private-ca.pem"\n'
    path = write(tmp_path, text)
    monkeypatch.chdir("/")
    s = load(path)
    assert s.main.account.ca_file == str(tmp_path / "private-ca.pem")
    assert s.main.smtp is not None and s.main.smtp.ca_file == str(tmp_path / "private-ca.pem")


@pytest.mark.parametrize("name", ["jane doe", "-jane", "_jane", "jané", "j" * 65, "jane$"])
def test_a_client_file_name_must_be_a_valid_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    path = write(tmp_path, clients={name: 'name = "X"\nemails = ["x@example.org"]\n'})
    code, out, err = check(path, capsys)
    assert (code, out) == (2, "")
    cfile = tmp_path / "clients" / f"{name}.toml"
    assert_one_line(err, cfile, "file name", f"{name!r} is not a valid client id")


def test_hidden_client_files_are_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`...toml` would be the client ".." whose agenda notes land beside, not inside, the
    agenda folder; like an editor's `.#jane.toml` it is hidden, and skipped."""
    other = 'name = "X"\nemails = ["x@example.org"]\n'
    path = write(
        tmp_path, clients={"jane": JANE, "..": other, ".#jane": "not toml ((", ".jane": other}
    )
    assert sorted(load(path).clients) == ["jane"]
    code, out, err = check(path, capsys)
    assert (code, err) == (0, "")
    assert out.count("next session") == 1 and "  jane: next session" in out


def _sqlite(path: Path) -> None:
    import sqlite3

    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()


def test_state_path_may_be_absent_empty_or_a_database(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + '[state]\npath = "state/here.sqlite3"\n')
    load(path)  # absent, and its folder too
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "here.sqlite3").write_bytes(b"")
    load(path)
    (tmp_path / "state" / "here.sqlite3").unlink()
    _sqlite(tmp_path / "state" / "here.sqlite3")
    load(path)


@pytest.mark.parametrize(
    ("state", "problem"),
    [
        ("main.toml", "is not an inbox-guard state file (left as it is)"),
        ("clients/jane.toml", "is not an inbox-guard state file (left as it is)"),
        ("clients", "is a folder"),
        ("main.toml/state.sqlite3", "is not a folder"),
        ("short", "is not an inbox-guard state file"),
    ],
)
def test_state_path_that_is_not_a_state_file_is_refused_and_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], state: str, problem: str
) -> None:
    path = write(tmp_path, GOOD + f'[state]\npath = "{state}"\n')
    (tmp_path / "short").write_bytes(b"SQLite")
    target = tmp_path / state.split("/")[0]
    before = (
        target.stat().st_mode,
        target.stat().st_mtime_ns,
        target.read_bytes() if target.is_file() else None,
    )
    for command in ("check", "once"):
        code = main(["--config", str(path), command, "--now", "2026-11-16T08:00"])
        out, err = capsys.readouterr()
        assert (code, out) == (2, ""), command
        assert_one_line(err, path, "state.path", problem)
    after = (
        target.stat().st_mode,
        target.stat().st_mtime_ns,
        target.read_bytes() if target.is_file() else None,
    )
    assert after == before


def test_inbox_guard_data_is_where_relative_state_and_agendas_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    main_file = write(config_dir)
    monkeypatch.delenv("INBOX_GUARD_DATA", raising=False)
    s = load(main_file)
    assert s.state_path == config_dir / "state" / "inbox-guard.sqlite3"
    assert s.agenda_dir == config_dir / "agendas"

    monkeypatch.setenv("INBOX_GUARD_DATA", str(tmp_path / "data"))
    s = load(main_file)
    assert s.state_path == tmp_path / "data" / "state" / "inbox-guard.sqlite3"
    assert s.agenda_dir == tmp_path / "data" / "agendas"
    assert s.clients_dir == config_dir / "clients"  # the config's own files stay put

    absolute = GOOD.replace("[account]", f'[state]\npath = "{tmp_path}/own.sqlite3"\n\n[account]')
    s = load(write(config_dir, absolute))
    assert s.state_path == tmp_path / "own.sqlite3"


def test_with_inbox_guard_data_a_read_only_config_folder_gets_no_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    refused = GOOD.replace('host = "imap.example.org"', 'host = "127.0.0.1"\nport = 1')
    main_file = write(config_dir, refused)
    monkeypatch.setenv("INBOX_GUARD_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("IG_PW", "unused")
    config_dir.chmod(0o555)  # as the image mounts it
    try:
        assert main(["--config", str(main_file), "once"]) == 3  # nothing listens on port 1
    finally:
        config_dir.chmod(0o755)
    assert sorted(p.name for p in config_dir.iterdir()) == ["clients", "main.toml"]
    assert (tmp_path / "data" / "state" / "inbox-guard.sqlite3").is_file()
