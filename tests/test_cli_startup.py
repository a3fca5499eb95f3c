"""`arrears` starts light (a command imports its libraries when it runs, not when the CLI starts), and
its help is wrapped by the terminal."""

import inspect
import subprocess
import sys
from pathlib import Path

from typer.main import get_command
from typer.testing import CliRunner

from arrears.importing import DEFAULT_ENCODING
from deployments.cli import app
from deployments.cli import importing as cli_importing
from tests.test_layout import COMMANDS_ONLY, SERVER_ONLY

ROOT = Path(__file__).resolve().parent.parent

# In a fresh process: `--help` of the app, of every group and of every command, then how many were
# shown and which of the libraries named in argv it loaded meanwhile.
EVERY_HELP = """
import sys
from typer.main import get_command
from typer.testing import CliRunner
from deployments.cli import app

def paths(command, path):
    yield path
    for name in getattr(command, "list_commands", lambda ctx: [])(None):
        yield from paths(command.get_command(None, name), [*path, name])

shown = 0
for path in paths(get_command(app), []):
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output, (path, result.output)
    shown += 1
print(shown, *(m for m in sys.argv[1:] if m in sys.modules))
"""


def test_every_help_loads_no_command_library() -> None:
    """The help of the app, of each group and of each command is shown without importing the
    database, Prefect, templates, HTTP or a server."""
    output = subprocess.run(
        [sys.executable, "-c", EVERY_HELP, *SERVER_ONLY, *COMMANDS_ONLY],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    shown, loaded = int(output[0]), output[1:]
    assert shown > 30 and loaded == []


def test_import_encoding_default_is_the_importers() -> None:
    """The `--encoding` default that `arrears import accounts --help` shows, taken from the light
    `arrears.files` so that its help does not load the importer, is the importer's own default."""
    assert cli_importing.DEFAULT_ENCODING == DEFAULT_ENCODING


def test_help_paragraphs_are_wrapped_by_the_terminal_not_the_source() -> None:
    """On a wide terminal each paragraph of a command's docstring is one line of its --help, and its
    first paragraph one line of its group's command list: no break where the source's line ended."""
    checked = 0
    for group_path, group in _groups(get_command(app), []):
        listing = CliRunner().invoke(app, [*group_path, "--help"], env={"COLUMNS": "2000"}).output
        for name in group.list_commands(None):  # type: ignore[arg-type]
            command = group.get_command(None, name)  # type: ignore[arg-type]
            callback = getattr(command, "callback", None)
            if command is None or hasattr(command, "list_commands") or callback is None:
                continue
            paragraphs = [" ".join(p.split()) for p in (inspect.getdoc(callback) or "").split("\n\n")]
            shown = CliRunner().invoke(app, [*group_path, name, "--help"], env={"COLUMNS": "2000"}).output
            lines = [" ".join(line.strip(" │").split()) for line in shown.splitlines()]
            assert all(p in lines for p in paragraphs), (name, paragraphs, shown)
            listed = [" ".join(line.strip(" │").split()) for line in listing.splitlines()]
            assert f"{name} {paragraphs[0]}" in listed, (name, listing)
            checked += 1
    assert checked > 20


def _groups(command: object, path: list[str]) -> list[tuple[list[str], object]]:
    found = [(path, command)]
    for name in command.list_commands(None):  # type: ignore[attr-defined]
        sub = command.get_command(None, name)  # type: ignore[attr-defined]
        if hasattr(sub, "list_commands"):
            found += _groups(sub, [*path, name])
    return found
