"""The house's shape, checked: the pure core imports no I/O, the domain types sit on the
ground floor, every module is small, and docs/architecture.md draws every module on the
floor where it really is."""

from __future__ import annotations

import ast
import re
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "inbox_guard"
DRAWING = PACKAGE.parent / "docs" / "architecture.md"
MAX_LINES = 400

# Modules that decide, describe or render, and never touch a file, a socket, a database
# or the environment. "schema" and "digest" stand for every module under them.
CORE = (
    "model",
    "schema",
    "hours",
    "sessions",
    "rules",
    "risk",
    "text",
    "marks",
    "decide",
    "compose",
    "errors",
    "brief.content",
    "brief.render",
)
# The shell: what reads or writes the world.
SHELL = (
    "config",
    "store",
    "statefile",
    "migrations",
    "mailbox",
    "imapconn",
    "imaplog",
    "smtp",
    "agenda",
    "ics",
    "tokens",
    "signin",
    "credentials",
    "files",
    "embedded",
)
# Standard-library and third-party modules that do I/O.
IO_MODULES = (
    "sqlite3",
    "imaplib",
    "imapclient",
    "smtplib",
    "socket",
    "ssl",
    "subprocess",
    "tomllib",
    "urllib.request",
    "http",
    "os",
    "shutil",
    "tempfile",
    "msal",
    "authlib",
    "requests",
    "apscheduler",
    "keyring",
    "fcntl",
)


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name below ``inbox_guard``."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            out[".".join(parts)] = path
    return out


def imports(name: str, path: Path) -> set[str]:
    """What the module imports at run time (TYPE_CHECKING blocks left out), as
    ``inbox_guard.x`` names for our own modules and top-level names for the rest."""
    tree = ast.parse(path.read_text())
    package = ["inbox_guard", *name.split(".")]
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
                if node.module is None:
                    found.update(f"{mod}.{alias.name}" for alias in node.names)
                else:
                    found.add(mod)
            elif node.module:
                found.add(node.module)
        for inner in ast.iter_child_nodes(node):
            visit(inner)

    visit(tree)
    return found


def _in(name: str, groups: tuple[str, ...]) -> bool:
    return any(name == g or name.startswith(g + ".") for g in groups)


def _ours(imported: str) -> str | None:
    return imported.removeprefix("inbox_guard.") if imported.startswith("inbox_guard.") else None


ALL = modules()


@pytest.mark.parametrize("name", [n for n in ALL if _in(n, CORE)])
def test_the_core_imports_no_io_and_nothing_of_the_shell(name: str) -> None:
    found = imports(name, ALL[name])
    ours = {m for m in (_ours(i) for i in found) if m is not None}
    assert sorted(m for m in ours if _in(m, SHELL)) == []
    assert sorted(i for i in found if _in(i, IO_MODULES)) == []


def test_the_domain_types_are_on_the_ground_floor() -> None:
    """model.py needs nothing of ours but the pure time logic (hours, sessions)."""
    ours = {m for m in (_ours(i) for i in imports("model", ALL["model"])) if m is not None}
    assert ours <= {"hours", "sessions"}


@pytest.mark.parametrize("name", list(ALL))
def test_every_module_is_small(name: str) -> None:
    lines = len(ALL[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name}: {lines} lines"


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = {
        name: {m for m in (_ours(i) for i in imports(name, path)) if m in ALL}
        for name, path in ALL.items()
    }
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def drawing() -> dict[str, list[str]]:
    """The floors of the drawing in docs/architecture.md and the modules on each."""
    floors: dict[str, list[str]] = {}
    floor = ""
    for line in DRAWING.read_text().splitlines():
        if not line.startswith("  │"):
            continue
        cells = line.strip("│ ").split("  ", 1)
        label, names = (cells[0], cells[1]) if len(cells) == 2 and cells[0] else ("", cells[-1])
        floor = label.strip() or floor
        names = re.sub(r"\([^)]*\)", "", names).strip(" │")
        floors.setdefault(floor, []).extend(
            n.strip().rstrip("/") for n in names.split("·") if n.strip()
        )
    return floors


def test_the_drawing_shows_every_module_on_its_floor() -> None:
    """docs/architecture.md draws each module (a package as one) once, on its floor."""
    floors = drawing()
    drawn = [m for names in floors.values() for m in names]
    files = {n.split(".")[0] for n in ALL if n != "__main__"} | {"__init__"}
    assert sorted(set(drawn) ^ files) == []
    assert len(drawn) == len(set(drawn))
    assert list(floors) == ["Front door", "The jobs", "The shell", "Ground floor"]
    ground = set(floors["Ground floor"])
    assert "model" in ground
    assert sorted(ground & set(SHELL)) == []
    assert sorted(m for m in CORE if m.split(".")[0] not in ground | {"brief"}) == []


def test_the_digest_and_the_core_depend_on_the_model_not_on_loading_or_sqlite() -> None:
    """No arrow from decide, compose or the digest's content and rendering into config
    loading or the state store (the digest's job gets a store handed in)."""
    names = [
        n for n in ALL if n in ("decide", "compose", "digest", "digest.content", "digest.render")
    ]
    assert len(names) == 5
    for name in names:
        ours = {m for m in (_ours(i) for i in imports(name, ALL[name])) if m is not None}
        assert (
            sorted(
                m for m in ours if _in(m, ("config", "store", "records", "statefile", "migrations"))
            )
            == []
        ), name
