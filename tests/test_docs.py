"""The reference docs say what the code does: every config key (and no other) in
docs/config.md with its default, every exit status and the errors behind it in
docs/cli.md, every field of `once --json`, and no link to a file that is not there."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from inbox_guard import compose, errors, outcome
from inbox_guard.schema import ClientFile, MainConfig

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def keys(model: type[BaseModel], prefix: str = "") -> dict[str, FieldInfo]:
    out: dict[str, FieldInfo] = {}
    for name, f in model.model_fields.items():
        inner = [
            t
            for t in (typing.get_args(f.annotation) or (f.annotation,))
            if isinstance(t, type) and issubclass(t, BaseModel)
        ]
        if inner:
            out |= keys(inner[0], f"{prefix}{name}.")
        else:
            out[prefix + name] = f
    return out


def documented(text: str) -> dict[str, str]:
    """``section.key`` -> the default column, from the tables under ``### [section]``."""
    out: dict[str, str] = {}
    section = ""
    for line in text.splitlines():
        heading = re.match(r"### (?:\[(\w+)\]|top level)", line)
        if heading:
            section = heading[1] or ""
        row = re.match(r"\| `([\w.]+)` \| ([^|]+) \|", line)
        if row:
            out[f"{section}.{row[1]}" if section else row[1]] = row[2].strip()
    return out


def shown(f: FieldInfo) -> str:
    d = f.default
    if d is PydanticUndefined:
        return "required"
    if d is None:
        return "—"
    if isinstance(d, bool):
        return "`true`" if d else "`false`"
    if isinstance(d, str):
        return f'`"{d}"`'
    if isinstance(d, tuple):
        return "`[" + ", ".join(f'"{x}"' for x in d) + "]`"
    return f"`{d}`"


def test_every_config_key_is_documented_with_its_default() -> None:
    main_part, client_part = (DOCS / "config.md").read_text().split("## A client file")
    for model, text in ((MainConfig, main_part), (ClientFile, client_part)):
        code = {k: shown(f) for k, f in keys(model).items()}
        assert documented(text) == code


def test_every_exit_status_names_the_errors_behind_it() -> None:
    rows = {
        int(m[1]): m[2]
        for m in re.finditer(r"^\| (\d) \| .*? \| (.*) \|$", (DOCS / "cli.md").read_text(), re.M)
    }
    assert sorted(rows) == [0, 1, 2, 3]
    classes = [
        c
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, errors.InboxGuardError)
    ]
    assert len(classes) >= 9
    for c in classes:
        assert f"`{c.__name__}`" in rows[c.exit_code], c.__name__
    named = set(re.findall(r"`(\w+)`", " ".join(rows.values())))
    assert named == {c.__name__ for c in classes}


def test_every_field_of_once_json_is_documented() -> None:
    text = (DOCS / "cli.md").read_text().split("## `once --json`")[1]
    fields = set(re.findall(r"^\| `([\w.\[\]]+)` \|", text, re.M))
    top = typing.get_type_hints(outcome.PassJson)
    expected = set(top)
    for name, hint in top.items():
        inner = typing.get_args(hint)
        if inner:
            expected |= {f"{name}[].{k}" for k in typing.get_type_hints(inner[0])}
    assert fields == expected
    reasons = re.search(r"`flagged\[\]\.suppressed` \|[^|]*\|(.*)\|", text)
    assert reasons is not None
    assert set(re.findall(r"`([a-z-]+)` \(", reasons[1])) == set(compose.REASONS)


def test_the_docs_link_only_to_files_that_exist() -> None:
    for doc in [ROOT / "README.md", *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name} -> {target}"
        assert "SPEC.md" not in doc.read_text()
