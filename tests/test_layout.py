"""The shape of the code that the gates of .ci/run cannot see (DESIGN.md §10)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Outside arrears/storage/ code may name a database handle and catch its errors, never build SQL.
HANDLES = {"Engine", "Connection", "Row", "RowMapping"}
OUTSIDE_STORAGE = ["arrears", "tasks", "flows", "deployments"]


def _python_files(package: str) -> list[Path]:
    return sorted(
        p
        for p in (ROOT / package).rglob("*.py")
        if "storage" not in p.relative_to(ROOT).parts and "migrations" not in p.parts
    )


def _sql_imports(path: Path) -> list[str]:
    """`module.name` of every SQL construct the file imports from SQLAlchemy or SQLModel."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            root = node.module.split(".")[0]
            if root not in ("sqlalchemy", "sqlmodel") or node.module == "sqlalchemy.exc":
                continue
            found += [f"{node.module}.{a.name}" for a in node.names if a.name not in HANDLES]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "sqlalchemy"]
    return found


@pytest.mark.parametrize("package", OUTSIDE_STORAGE)
def test_no_sql_outside_storage(package: str) -> None:
    """Only arrears/storage/ builds SQL (and arrears/models.py declares the tables): elsewhere a
    module imports at most a database handle from SQLAlchemy."""
    offenders = {
        str(p.relative_to(ROOT)): names
        for p in _python_files(package)
        if p.name != "models.py" and (names := _sql_imports(p))
    }
    assert offenders == {}


def test_no_domain_module_over_600_lines() -> None:
    """Every module of the domain core stays small enough to read in one sitting (issue 9)."""
    sizes = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "arrears").rglob("*.py")
        if "migrations" not in p.parts and (n := len(p.read_text(encoding="utf-8").splitlines())) > 650
    }
    assert sizes == {}


# What a process that runs the cycle, or the CLI, must not load: each costs a few tenths of a
# second of a core at every start (a cycle process and its two workers, every `arrears` command).
SERVER_ONLY = ("fastapi", "uvicorn", "alembic")
# What only a command needs, imported in the command: the database, Prefect, templates, HTTP (~2 s).
COMMANDS_ONLY = ("prefect", "sqlalchemy", "sqlmodel", "jinja2", "httpx", "arrears.storage", "arrears.models")


@pytest.mark.parametrize(
    ("modules", "unused"),
    [
        # The cycle's process and its worker processes: no sandbox app is served, no migration run
        # (the schema check at the cycle's start loads Alembic when it runs).
        (("flows.daily_cycle", "tasks.cycle", "tasks.dispatch"), SERVER_ONLY),
        # A worker process runs the advance's and the dispatch's bodies, never a Prefect run:
        # Prefect's import alone is ~3 s of a core, paid by each worker at every cycle's start.
        (("tasks.shards", "tasks.sending"), (*SERVER_ONLY, "prefect")),
        # The CLI parses its arguments before a command imports what it uses (`arrears --help`).
        (("deployments.cli",), (*SERVER_ONLY, *COMMANDS_ONLY)),
    ],
)
def test_processes_load_only_what_they_use(modules: tuple[str, ...], unused: tuple[str, ...]) -> None:
    """Importing the entry points leaves unloaded what they do not use at start: the servers' and
    migrations' libraries, and for the CLI the libraries of its commands."""
    code = f"import sys, {', '.join(modules)}; print(' '.join(m for m in {unused!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == []
