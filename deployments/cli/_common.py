"""What every command shares: the Typer app, consoles, settings and the database handle."""

from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy import Engine

from arrears.settings import Settings, get_settings
from arrears.storage import database_file, get_engine, migrate

__all__ = ["app", "console", "console_err", "CliError", "settings", "open_database", "DatabaseOption"]

app = typer.Typer(
    name="arrears",
    help="Collections lifecycle for delinquent auto loans, orchestrated on Prefect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
console_err = Console(stderr=True)


class CliError(Exception):
    """An expected failure: printed as one line, exit code 2 unless stated."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


DatabaseOption = Annotated[
    str | None,
    typer.Option("--database", envvar="ARREARS_DATABASE_URL", help="Database URL (default: SQLite in ~/.arrears)."),
]


def settings(database: str | None = None) -> Settings:
    base = get_settings()
    return base.model_copy(update={"database_url": database}) if database else base


def open_database(url: str, *, create: bool) -> Engine:
    """The engine for `url`, migrated; with create=False a missing database is an error, not a new file."""
    path = database_file(url)
    if not create and path is not None and not path.exists():
        raise CliError(f"no database at {path}: run `arrears import accounts FILE` or `arrears demo` first")
    try:
        engine = get_engine(url)
        migrate(engine)
    except Exception as error:  # the driver's own message says what is wrong with the URL or server
        raise CliError(f"cannot open database: {str(error).splitlines()[0]}") from error
    return engine
