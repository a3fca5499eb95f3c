"""What every command shares: the Typer app, consoles, settings and the database handle."""

import inspect
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Annotated, TypeVar
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.markup import escape

from arrears.clock import parse_instant

# Settings and storage are imported where they are used: `arrears --help` loads neither pydantic
# nor SQLAlchemy, and every command module stays as light as this one.
if TYPE_CHECKING:
    from decimal import Decimal

    from sqlalchemy import Connection, Engine

__all__ = [
    "TABLE_ROWS",
    "Agent",
    "AsOf",
    "CliError",
    "DatabaseOption",
    "Json",
    "Limit",
    "Why",
    "amount_option",
    "app",
    "as_of_instant",
    "audit_actor",
    "audit_reason",
    "command_group",
    "console",
    "console_err",
    "counted",
    "database_engine",
    "database_error",
    "database_errors",
    "emit_json",
    "existing_account",
    "existing_database",
    "open_database",
    "period_bound",
    "policy_ready",
    "quiet_console_logs",
    "reflow_help",
    "refusable_transaction",
    "shown",
    "stop_on_signals",
    "use_database",
]

app = typer.Typer(
    name="arrears",
    help="Collections lifecycle for delinquent auto loans, orchestrated on Prefect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
console_err = Console(stderr=True)


def quiet_console_logs() -> None:
    """Keep Prefect's log lines off the terminal (our own output is the terminal's) while flows
    and tasks still log at INFO to Prefect's API, where the UI shows them. Lowering
    PREFECT_LOGGING_LEVEL instead would stop them at the source: the UI would then say "This run
    didn't generate logs" (PREFECT.md, the operator check)."""
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")


def command_group(name: str, help: str) -> typer.Typer:
    """A group of commands under `arrears NAME`, registered on `app`."""
    group = typer.Typer(name=name, help=help, no_args_is_help=True)
    app.add_typer(group, name=name)
    return group


def reflow_help(group: typer.Typer) -> None:
    """Each command's help from its docstring, one line a paragraph, for the terminal to wrap.
    Typer's rich mode keeps a docstring's single line breaks, so help written to the source's line
    length came out ragged at any other width (the command lists, `arrears serve --help`). Called
    once every command is registered; a help given explicitly is left as it is."""
    for info in group.registered_commands:
        doc = inspect.getdoc(info.callback) if info.help is None and info.callback else None
        if doc:
            info.help = "\n\n".join(" ".join(p.splitlines()) for p in doc.split("\n\n"))
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            reflow_help(sub.typer_instance)


@contextmanager
def stop_on_signals() -> Iterator[Callable[[], str | None]]:
    """Inside the block, Ctrl-C (SIGINT) and SIGTERM are noted instead of raising: the command
    asks the returned function (the first signal's name, or None) between steps, and stops at a
    point of its choosing (an import rolls back, the sandboxes stop their servers). No exception
    lands in the middle of a step, such as a `Popen.poll()` that would keep its lock.

    Installed for SIGINT even where the process started with it ignored: Python then keeps it
    ignored, so a command run as a script's background job, or from a test runner's worker,
    would not stop on Ctrl-C at all."""
    received: list[str] = []

    def handler(number: int, _frame: object) -> None:
        received.append(signal.Signals(number).name)

    watched = (signal.SIGTERM, signal.SIGINT)
    try:
        previous = [signal.signal(number, handler) for number in watched]
    except ValueError:  # not the main thread: nothing to install
        yield lambda: None
        return
    try:
        yield lambda: received[0] if received else None
    finally:
        for number, before in zip(watched, previous, strict=True):
            signal.signal(number, before)


def database_error(error: Exception) -> str:
    """What the database said, in one line: the driver's message, without the statement and the
    parameters SQLAlchemy adds to it (they may carry a borrower's name or number), URLs redacted."""
    from arrears.settings import redact_urls

    return redact_urls(str(getattr(error, "orig", None) or error).splitlines()[0])


class CliError(Exception):
    """An expected failure: printed as one line, exit code 2 unless stated."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    @classmethod
    def of_refusal(cls, refused: Exception) -> "CliError":
        """A decision the storage layer refused (`arrears.storage._common.Refused`): its message,
        after the option at fault when it names one."""
        option = getattr(refused, "option", None)
        return cls(f"{option}: {refused}" if option else str(refused))

    def __format__(self, spec: str) -> str:
        # The message quotes what the user gave (paths, ids, values) and is printed with Rich:
        # formatted into markup (`f"[red]error:[/red] {error}"`), it is escaped so that a `[/x]` in
        # a path is shown, not parsed. str(error) stays the plain text.
        return escape(format(str(self), spec))


DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database", envvar="ARREARS_DATABASE_URL", help="Database URL (default: SQLite in ~/.arrears)."
    ),
]


AsOf = Annotated[
    str | None, typer.Option("--as-of", help="As of this ISO 8601 instant with offset (default now).")
]
Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]

# A list command's table shows this many rows unless --limit says: a first cycle can leave tens of
# thousands to list (reviews, letters, quarantined items), more than a terminal shows (54,932
# reviews took two minutes to print). --json, read by scripts, lists all unless --limit says.
TABLE_ROWS = 50
Limit = Annotated[
    int | None,
    typer.Option(
        "--limit",
        min=0,
        help=f"At most this many, in the list's order; 0 for all (default {TABLE_ROWS}; --json: all).",
    ),
]
_Row = TypeVar("_Row")


def shown(rows: Sequence[_Row], limit: int | None, *, json: bool) -> Sequence[_Row]:
    """The rows a list command prints: the first `rows_wanted`."""
    n = rows_wanted(limit, json=json)
    return rows[:n] if n else rows


def rows_wanted(limit: int | None, *, json: bool) -> int:
    """How many rows a list command prints (0: all): `limit`, by default `TABLE_ROWS` in a table
    and all in --json."""
    return limit if limit is not None else (0 if json else TABLE_ROWS)


def counted(total: int, shown: int, first: str) -> str:
    """A list table's count, for its title: `54,932`, or `54,932; the oldest 50 shown, --limit 0 for all`."""
    if shown >= total:
        return f"{total:,}"
    return f"{total:,}; the {first} {shown:,} shown, --limit 0 for all"


Agent = Annotated[
    str, typer.Option("--agent", envvar="ARREARS_AGENT", help="Who did it: kept in the audit trail.")
]


Why = Annotated[str, typer.Option("--reason", help="Why, for the audit trail (required).")]


def audit_reason(text: str) -> str:
    """A `--reason` on one line, for the audit trail; an empty one is a one-line error."""
    why = " ".join(text.split())
    if not why:
        raise CliError("--reason: say why, for the audit trail")
    return why


def audit_actor(name: str, option: str = "--agent") -> str:
    """Who did it, on one line, for the audit trail; an empty name is a one-line error (an event
    "placed by : SCRA" names nobody)."""
    who = " ".join(name.split())
    if not who:
        raise CliError(f"{option}: name who did it, for the audit trail")
    return who


def as_of_instant(as_of: str | None) -> datetime:
    """The instant of `--as-of`, or now; a malformed one is a one-line error naming the option.

    An empty --as-of is malformed, not "now": `--as-of "$DAY"` with DAY unset must not run as of
    the wall clock."""
    try:
        return parse_instant(as_of) if as_of is not None else datetime.now(UTC)
    except ValueError as error:
        raise CliError(f"--as-of: {error}") from None


def day_option(text: str, option: str) -> date:
    """A YYYY-MM-DD option as a date, or a one-line error naming the option."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise CliError(f"{option}: {text!r} is not a date (YYYY-MM-DD)") from None


def period_bound(text: str | None, option: str, *, end: bool) -> datetime | None:
    """An instant as given, or a date's start in the lender's zone (for an end, the next day's
    start: `--to 2026-12-31` includes the 31st); a malformed one is a one-line error naming the
    option."""
    if text is None:
        return None
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        try:
            return parse_instant(text)
        except ValueError as error:
            raise CliError(f"{option}: {error}") from None
    from arrears.settings import get_settings

    zone = ZoneInfo(get_settings().lender_timezone)
    return datetime.combine(day + timedelta(days=1 if end else 0), time(), zone)


def use_database(database: str | None) -> str:
    """The database URL for this command; an explicit --database also reaches the flow's tasks.

    Flows run in this process and read settings, so the choice travels through the environment
    rather than through flow parameters, where a URL with a password would show in the UI.
    """
    from arrears.settings import describe_error, get_settings

    if database:
        os.environ["ARREARS_DATABASE_URL"] = database
        get_settings.cache_clear()
    try:
        return get_settings().database_url
    except ValueError as error:  # a bad ARREARS_* value: the fields named, never their values
        raise CliError(f"invalid settings: {describe_error(error)}") from None


def policy_ready() -> None:
    """Refuse, before anything runs, a policy file (`ARREARS_POLICY_FILE`) the run would refuse
    halfway: one missing, malformed, or loosening what a statute states is exit 2 in one line naming
    the file and the key (README: "refused at start"). Read at its first step instead, it failed a
    cycle's flow run after its cycle row was opened, and every run `arrears serve` started, with a
    traceback and exit 1."""
    from arrears.policy import PolicyError
    from tasks.database import policy

    try:
        policy()
    except PolicyError as error:
        raise CliError(f"invalid settings: ARREARS_POLICY_FILE: {error}; nothing was done") from None


# Money as a person types it: a plain decimal with at most 4 places below 10^14 (what storage
# holds exactly).
_PLAIN_AMOUNT = re.compile(r"\d{1,14}(?:\.\d{1,4})?", re.ASCII)


def amount_option(text: str) -> "Decimal":
    """An --amount as money, or a one-line error (NaN, 1e30, -5, 1,000 are not amounts)."""
    from decimal import Decimal

    if not _PLAIN_AMOUNT.fullmatch(text.strip()):
        raise CliError(
            f"--amount: {text!r} is not an amount: a plain number above zero, at most 14 digits "
            "and 4 decimal places (e.g. 500 or 412.50)"
        )
    value = Decimal(text.strip())
    if value <= 0:
        raise CliError(f"--amount: {text!r} must be above zero")
    return value


def emit_json(value: object) -> None:
    """Machine-readable output: one JSON document on stdout, nothing else."""
    sys.stdout.write(json.dumps(value, indent=2, default=str, ensure_ascii=False) + "\n")


def open_database(url: str, *, create: bool, upgrade: bool) -> "Engine":
    """The engine for `url`; with create=False a missing database is an error, not a new file.

    With upgrade=True a schema behind this arrears is migrated, as the cycle, imports and the
    server do on open; with upgrade=False (commands that read, and a person's one-row changes) it is
    refused, exit 2, naming `arrears migrate`: an upgrade may rewrite large tables under a lock
    (0015 on PostgreSQL), which nobody expects of `arrears report`."""
    from arrears.storage import SchemaBehind, migrate, require_schema

    engine = database_engine(url, create=create)
    with database_errors(url):
        try:
            (migrate if upgrade else require_schema)(engine)
        except SchemaBehind as error:
            raise CliError(
                f"{error}: run `arrears migrate` to upgrade it (on PostgreSQL this can hold a lock on "
                "large tables for minutes); nothing was changed"
            ) from None
    return engine


def _database_setting() -> str:
    return "ARREARS_DATABASE_URL" if os.environ.get("ARREARS_DATABASE_URL") else "database_url"


def _cannot_open(url: str, cause: str) -> str:
    from arrears.settings import redact_urls

    return f"cannot open the database of {_database_setting()} ({redact_urls(url)}): {cause}"


def database_engine(url: str, *, create: bool) -> "Engine":
    """The engine for `url`, not connected yet; with create=False a missing SQLite file is an
    error, not a new file. A URL that is not one, or names no driver we have, is exit 2; a
    directory or file that cannot be made, exit 1."""
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from arrears.settings import redact_urls
    from arrears.storage import database_file, get_engine

    try:
        path = database_file(url)
    except Exception as error:  # not a URL at all
        raise CliError(
            f"{_database_setting()}: not a database URL: {redact_urls(str(error).splitlines()[0])}"
        ) from None
    if path is not None and path.is_dir():  # SQLite would only say "unable to open database file"
        raise CliError(f"{_database_setting()}: {path} is a directory, not a database file")
    if not create and path is not None and not path.exists():
        raise CliError(f"no database at {path}: run `arrears import accounts FILE` or `arrears demo` first")
    try:
        return get_engine(url)  # a new SQLite file private from its first byte
    except (ArgumentError, NoSuchModuleError, ImportError) as error:  # no URL we can use, or no driver
        raise CliError(
            f"{_database_setting()}: cannot use {redact_urls(url)}: {database_error(error)}"
        ) from None
    except OSError as error:  # the directory or file cannot be made: read only, not a directory
        raise CliError(_cannot_open(url, str(error)), exit_code=1) from None


@contextmanager
def database_errors(url: str) -> Iterator[None]:
    """Inside the block, a database that cannot be reached (a server down or unknown, a file that
    cannot be opened) or fails otherwise is exit 1 in one line naming the setting, with the
    driver's words and the URL's password masked: DESIGN §8 keeps 2 for bad input, nothing changed.
    A database a newer arrears upgraded (`SchemaTooNew`) is exit 2: nothing was changed."""
    from arrears.storage import SchemaTooNew

    try:
        yield
    except CliError:
        raise
    except SchemaTooNew as error:
        raise CliError(str(error)) from None
    except Exception as error:
        raise CliError(_cannot_open(url, database_error(error)), exit_code=1) from None


def existing_database(database: str | None, *, upgrade: bool = False) -> "Engine":
    """The engine of the database a command works on (`--database`, or the configured one), which
    must exist already; upgraded only when `upgrade` (see `open_database`)."""
    return open_database(use_database(database), create=False, upgrade=upgrade)


@contextmanager
def refusable_transaction(database: str | None) -> "Iterator[Connection]":
    """A write transaction on the existing database for a person's decision: one the storage layer
    refuses (`arrears.storage._common.Refused`) is rolled back and ends the command with exit 2,
    naming why (`CliError.of_refusal`)."""
    from arrears.storage._common import Refused

    try:
        with existing_database(database).begin() as connection:
            yield connection
    except Refused as refused:
        raise CliError.of_refusal(refused) from None


def existing_account(database: str | None, account_id: str) -> "Engine":
    """`existing_database`, for a command about one account that must exist: a typo is "no
    account", exit 2, not the command's own "nothing to do". Read without the write lock."""
    from arrears.storage import read_only
    from arrears.storage.accounts import account_row

    engine = existing_database(database)
    with read_only(engine) as connection:
        if account_row(connection, account_id) is None:
            raise CliError(f"no account {account_id!r}")
    return engine
