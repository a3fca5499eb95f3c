"""`arrears` starts light: a command imports its libraries when it runs, not when the CLI starts."""

import subprocess
import sys
from pathlib import Path

from arrears.importing import DEFAULT_ENCODING
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
    """The `--encoding` default that `arrears import accounts --help` shows, written out in the CLI so
    that its help does not load the importer, is the importer's own default."""
    assert cli_importing.DEFAULT_ENCODING == DEFAULT_ENCODING
