"""Configuration: finding, reading and checking the main TOML file and the client files.

What may be written is :mod:`inbox_guard.schema`; this module reads the files, merges
a group practice's shared keys into each practitioner's, checks what needs the file
system (client files, templates, CA files, the state path) and builds
:class:`~inbox_guard.model.Settings`. Validated once, here: nothing deeper reads files
or the environment for settings. Every problem becomes one :class:`ConfigError` line
naming the file, the key and what is wrong.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .errors import ConfigError
from .model import Client, Settings, resolve
from .schema import ClientFile, MainConfig
from .sessions import Sessions
from .statefile import SQLITE_HEADER

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

DEFAULT_PATH = Path("config/inbox-guard.toml")
ENV_VAR = "INBOX_GUARD_CONFIG"
DATA_ENV = "INBOX_GUARD_DATA"  # the base of relative state and agenda paths, if set
STATE_URL_ENV = "INBOX_GUARD_STATE_URL"  # state.url where the config gives none


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def _message(err: ErrorDetails) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required key is missing"
    return msg


def _validation_error(
    file: Path, exc: ValidationError, prefix: tuple[int | str, ...] = ()
) -> ConfigError:
    errors = exc.errors()
    first = errors[0]
    more = len({_where(e["loc"]) for e in errors}) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
    return ConfigError(f"{file}: {_where((*prefix, *first['loc']))}: {_message(first)}{tail}")


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        with file.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{file}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from None


def config_path(explicit: str | os.PathLike[str] | None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else DEFAULT_PATH


def _load_client(file: Path) -> Client:
    data = _read_toml(file)
    try:
        cf = ClientFile.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(file, exc) from None
    sessions = cf.sessions.build() if cf.sessions else Sessions()
    return Client(
        id=file.stem,
        name=cf.name,
        emails=cf.emails,
        sessions=sessions,
        active=cf.active,
        hours=cf.hours,
        draft_template=cf.draft_template,
        notes_only=cf.notes_only,
        calendar_summary=cf.calendar_summary,
    )


def _with_ca_files(file: Path, main: MainConfig, where: tuple[int | str, ...]) -> MainConfig:
    """``main`` with each ``ca_file`` resolved against the main file's folder (the TLS
    code opens it as given); one that does not exist is an error now, not at login."""
    for section in ("account", "smtp"):
        server = getattr(main, section)
        if server is None or not server.ca_file:
            continue
        path = resolve(file.parent, server.ca_file)
        if not path.is_file():
            key = _where((*where, section, "ca_file"))
            problem = "is not a file" if path.exists() else "does not exist"
            raise ConfigError(f"{file}: {key}: {path} {problem}")
        resolved = server.model_copy(update={"ca_file": str(path)})
        main = main.model_copy(update={section: resolved})
    return main


def _check_state_path(settings: Settings, where: tuple[int | str, ...]) -> None:
    """The state file is absent, empty or an SQLite database, in a folder (or a folder
    yet to be made). Nothing is changed, and at most the first 16 bytes are read."""
    path = settings.state_path
    key = _where((*where, "state", "path"))
    fail = f"{settings.path}: {key}: {path}"
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{fail}: {parent} is not a folder")
            break
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"{fail}: cannot be used: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise ConfigError(f'{fail} is a folder; give a file, like "state/inbox-guard.sqlite3"')
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{fail} is not a regular file (left as it is)")
    try:
        with path.open("rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise ConfigError(f"{fail}: cannot read: {exc.strerror}") from None
    if head and head != SQLITE_HEADER:
        raise ConfigError(f"{fail} is not an inbox-guard state file (left as it is)")


def _build(
    file: Path, data: dict[str, Any], name: str = "", where: tuple[int | str, ...] = ()
) -> Settings:
    """One practitioner's settings from their (merged) main table and client files."""
    state = data.get("state")
    url = os.environ.get(STATE_URL_ENV)
    if url and (state is None or (isinstance(state, dict) and "url" not in state)):
        data = {**data, "state": {**(state or {}), "url": url}}
    try:
        main = MainConfig.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(file, exc, where) from None
    main = _with_ca_files(file, main, where)
    data_dir = os.environ.get(DATA_ENV)
    settings = Settings(
        path=file,
        main=main,
        clients=_load_clients(file, main, where),
        name=name,
        data_dir=Path(data_dir).expanduser() if data_dir else None,
    )
    if not main.state.url:
        _check_state_path(settings, where)
    return settings


def _load_clients(file: Path, main: MainConfig, where: tuple[int | str, ...]) -> dict[str, Client]:
    """Every client file in ``triage.clients_dir``; an address belongs to one client."""
    key = _where((*where, "triage", "clients_dir"))
    cdir = resolve(file.parent, main.triage.clients_dir)
    if not cdir.is_dir():
        raise ConfigError(f"{file}: {key}: {cdir} is not a folder")
    clients: dict[str, Client] = {}
    owner: dict[str, Path] = {}
    therapist = set(main.therapist.all_addresses)
    templates = file.parent / "templates"
    for cfile in sorted(cdir.glob("*.toml")):
        if cfile.name.startswith("."):
            continue  # hidden: an editor's lock or backup file (".#jane.toml")
        if not ACCOUNT_ID.fullmatch(cfile.stem):
            raise ConfigError(
                f"{cfile}: file name: {cfile.stem!r} is not a valid client id (a letter or "
                "digit first, then letters, digits, '.', '_', '-'; at most 64)"
            )
        client = _load_client(cfile)
        if client.draft_template and not (templates / client.draft_template).is_file():
            raise ConfigError(
                f"{cfile}: draft_template: {templates / client.draft_template} does not exist"
            )
        for e in client.emails:
            if e in therapist:
                raise ConfigError(f"{cfile}: emails: {e!r} is one of the therapist's addresses")
            if e in owner:
                raise ConfigError(f"{cfile}: emails: {e!r} is also a client email in {owner[e]}")
            owner[e] = cfile
        clients[client.id] = client
    return clients


ACCOUNT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _merge(shared: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """``own`` over ``shared``, table by table (a value, or a list, is replaced whole)."""
    out = dict(shared)
    for k, v in own.items():
        old = out.get(k)
        out[k] = _merge(old, v) if isinstance(v, dict) and isinstance(old, dict) else v
    return out


def _practitioners(file: Path) -> list[Settings]:
    """The practitioners in one main file: itself, or each of its ``[[accounts]]``.

    With ``[[accounts]]``, the file's other keys are shared by every account (each can
    override any of them), and each account's clients, agendas and state live in
    ``clients/<id>``, ``agendas/<id>`` and ``state/<id>.sqlite3`` unless it says
    otherwise, so nothing of one practitioner's is mixed with another's."""
    data = _read_toml(file)
    if "accounts" not in data:
        return [_build(file, data)]
    accounts = data["accounts"]
    if (
        not isinstance(accounts, list)
        or not accounts
        or not all(isinstance(a, dict) for a in accounts)
    ):
        raise ConfigError(f"{file}: accounts: give one [[accounts]] table per practitioner")
    shared = {k: v for k, v in data.items() if k != "accounts"}
    out: list[Settings] = []
    for i, entry in enumerate(accounts):
        ident = entry.get("id")
        if not isinstance(ident, str) or not ACCOUNT_ID.fullmatch(ident):
            problem = "required key is missing" if ident is None else f"{ident!r} is not valid"
            raise ConfigError(
                f"{file}: accounts[{i}].id: {problem} (a short name for the practitioner, "
                "like \"alex\": letters, digits, '.', '_', '-')"
            )
        namespaced = {
            "triage": {"clients_dir": f"clients/{ident}"},
            "agenda": {"dir": f"agendas/{ident}"},
            "state": {"path": f"state/{ident}.sqlite3"},
        }
        own = {k: v for k, v in entry.items() if k != "id"}
        merged = _merge(_merge(namespaced, shared), own)
        out.append(_build(file, merged, ident, ("accounts", i)))
    return out


def load_all(path: str | os.PathLike[str] | None = None) -> list[Settings]:
    """Every practitioner the config names: one main file; a main file with
    ``[[accounts]]``; or a folder holding one main file per practitioner. Each has
    their own clients, hours, digest and state."""
    where = config_path(path)
    if not where.is_dir():
        practices = _practitioners(where)
    else:
        files = sorted(f for f in where.glob("*.toml") if f.is_file())
        if not files:
            raise ConfigError(f"{where}: no main config files (*.toml) in this folder")
        practices = []
        for f in files:
            found = _practitioners(f)
            if len(found) == 1 and not found[0].name:
                found = [dataclasses.replace(found[0], name=f.stem)]
            practices.extend(found)
    names: dict[str, Path] = {}
    states: dict[Path, str] = {}
    schemas: dict[tuple[str, str], str] = {}
    for s in practices:
        label = f"{s.path}" + (f" ({s.name})" if s.name else "")
        if s.name in names:
            raise ConfigError(f"{s.path}: practitioner {s.name!r} is also in {names[s.name]}")
        names[s.name] = s.path
        state = s.state_path.resolve()
        if state in states:
            raise ConfigError(
                f"{label}: state.path: {state} is also the state file of {states[state]}; "
                "each practitioner needs their own"
            )
        states[state] = label
        if s.main.state.url:
            # PostgreSQL cuts names at 63 bytes: two schemas must still differ there.
            schema = s.state_schema.encode()[:63].decode("utf-8", "ignore")
            if (s.main.state.url, schema) in schemas:
                raise ConfigError(
                    f"{label}: id: its state schema {s.state_schema!r} would be the same as "
                    f"that of {schemas[s.main.state.url, schema]} (PostgreSQL keeps the "
                    "first 63 bytes of a name); give it a shorter id"
                )
            schemas[s.main.state.url, schema] = label
    return practices


def load(path: str | os.PathLike[str] | None = None, account: str | None = None) -> Settings:
    """Load and check one practitioner's settings (``account`` picks one where the
    config names several); raise ConfigError."""
    where = config_path(path)
    practices = load_all(where)
    names = [s.name for s in practices]
    if account is not None:
        for s in practices:
            if s.name == account:
                return s
        raise ConfigError(
            f"{where}: --account: no practitioner {account!r} here"
            + (f" (there are: {', '.join(names)})" if any(names) else "")
        )
    if len(practices) > 1:
        raise ConfigError(
            f"{where}: holds {len(practices)} practitioners ({', '.join(names)}); choose one "
            "with --account (`run` and `check` serve them all)"
        )
    return practices[0]
