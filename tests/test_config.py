"""Configuration mistakes: one line naming file, key and problem; exit status 2."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inbox_guard.config import load, load_all
from inbox_guard.errors import ConfigError

GOOD = """\
timezone = "Europe/London"
[therapist]
name = "Alex"
email = "alex@example.org"
emergency_text = "Call 999."
[account]
host = "imap.example.org"
username = "alex"
password_env = "IG_PW"
[hours]
mon = ["09:00-17:00"]
"""
JANE = 'name = "Jane"\nemails = ["jane@example.org"]\n'


def write(tmp: Path, main: str = GOOD, clients: dict[str, str] | None = None) -> Path:
    (tmp / "clients").mkdir(exist_ok=True)
    for name, text in (clients if clients is not None else {"jane": JANE}).items():
        (tmp / "clients" / f"{name}.toml").write_text(text)
    (tmp / "main.toml").write_text(main)
    return tmp / "main.toml"


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
    ("plain remote", "account: security = \"plain\" is only allowed to a loopback host"),
    ("no password", "account: no password source"),
    ("literal password", "account: passwords do not belong in config files"),
    ("digest to stranger", "digest.to 'x@elsewhere.org' must be one of therapist.addresses"),
    ("bad closed", "hours.closed: '2026-13-01' is not a date"),
    ("smtp without section", "digest.deliver = \"smtp\" needs an [smtp] section"),
    ("xoauth2 without helper", "account: auth = \"xoauth2\" needs token_command"),
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
        ({"jane": JANE, "jd": 'name = "J"\nemails = ["JANE@example.org"]\n'},
         "jd.toml: emails: 'jane@example.org' is also a client email in"),
        ({"jane": JANE + 'sessions = { rrule = "FREQ=FORTNIGHTLY", start = "2026-09-02T10:00" }\n'},
         "jane.toml: sessions: 'FREQ=FORTNIGHTLY' is not a valid RRULE"),
        ({"jane": 'name = "Jane"\nemails = ["not-an-address"]\n'},
         "jane.toml: emails: 'not-an-address' is not an email address"),
        ({"jane": 'name = "Jane"\nemails = ["alex@example.org"]\n'},
         "jane.toml: emails: 'alex@example.org' is one of the therapist's addresses"),
        ({"jane": 'name = "Jane"\n'}, "jane.toml: emails: required key is missing"),
        ({"jane": 'name = "Jane"\nemails = ["j@x.org"]\nactive = "yes please"\n'},
         "jane.toml: active:"),
        ({"jane": "name = \n"}, "jane.toml: not valid TOML"),
        ({"jane": JANE + 'draft_template = "gentle.txt.j2"\n'},
         "jane.toml: draft_template: "),
        ({"jane": JANE + 'draft_template = "../../etc/passwd"\n'},
         "jane.toml: draft_template: '../../etc/passwd' must be a file name"),
        ({"jane": JANE + '[hours]\nmon = ["9-5"]\n'}, "jane.toml: hours.mon: '9-5' is not an interval"),
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
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert f"{path}: hours.mon:" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_config_file_is_status_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "inbox_guard", "--config", str(tmp_path / "nope.toml"), "check"],
        capture_output=True, text=True, timeout=60,
    )
    assert (done.returncode, done.stderr.strip()) == (2, f"inbox-guard: {tmp_path}/nope.toml: file not found")


TOML_VALUES = st.recursive(
    st.none().map(lambda _: '""') | st.integers().map(str) | st.booleans().map(str).map(str.lower)
    | st.text(max_size=20).map(lambda t: '"' + t.replace("\\", "").replace('"', "") + '"'),
    lambda inner: st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
    max_leaves=5,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    section=st.sampled_from(["", "[therapist]\n", "[account]\n", "[hours]\n", "[triage]\n",
                             "[digest]\n", "[agenda]\n", "[state]\n", "[risk]\n"]),
    key=st.sampled_from(["timezone", "name", "email", "host", "port", "security", "mon",
                         "closed", "drafts", "keyword", "at", "days", "to", "path", "x"]),
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
