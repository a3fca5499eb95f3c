"""The `arrears` command line (DESIGN §8).

Each command group lives in its own module and registers itself on `app`; this module only
assembles them and turns expected failures into one-line errors instead of tracebacks.
"""

import sys

from deployments.cli._common import CliError, app, console_err

# Importing a command module registers its commands on `app`.
# Command modules register themselves on `app` when imported below.
from deployments.cli import importing  # noqa: F401  (arrears import accounts|payments)

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except CliError as error:
        console_err.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
