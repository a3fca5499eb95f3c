"""`arrears import accounts|payments FILE`: load the servicing system's files (DESIGN §8).

Exit codes are the operator contract: 0 every row accepted; 3 some rejected (the accepted ones
stored, the rejected ones in FILE.rejects.csv, or where --rejects says); 2 the file could not be
read (a byte not valid in its encoding, wrong columns), its rejects could not be written, or an
accounts file imported before came again after a newer one (`--reimport`): nothing stored; 1 the
database failed or the import was stopped (SIGTERM, Ctrl-C): nothing stored. A file is stored all or
nothing. Accepted plus rejected always equals the data lines of the file, and all are printed; the
empty rows a spreadsheet saves (separators alone) are no data line and are counted apart.
"""

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from arrears.files import DEFAULT_ENCODING
from deployments.cli._common import (
    CliError,
    DatabaseOption,
    Json,
    Limit,
    app,
    console,
    console_err,
    counted,
    database_error,
    emit_json,
    existing_database,
    open_database,
    shown,
    stop_on_signals,
    use_database,
)

# The reading, checks and storage are imported in the commands: `arrears --help` loads none of them.
if TYPE_CHECKING:
    from sqlalchemy import Engine

    from arrears.importing import Kind
    from arrears.storage.importer import ImportSummary

__all__ = ["EXIT_REJECTED", "import_app"]

EXIT_REJECTED = 3
_PROGRESS_FROM_BYTES = 1 << 20  # below about 5,000 rows a bar only flickers

import_app = typer.Typer(
    name="import",
    help="Load the servicing system's files: accounts (upsert by account_id), then payments.",
    no_args_is_help=True,
)
app.add_typer(import_app, name="import")

FileArgument = Annotated[
    Path, typer.Argument(help="CSV or JSON Lines (.jsonl, .ndjson) file.", show_default=False)
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")]
EncodingOption = Annotated[
    str,
    typer.Option(
        "--encoding",
        help="The file's text encoding: UTF-8 (with or without BOM) by default; GB18030, GBK, Big5, ...",
    ),
]
# Text, not a Path: a Path drops the trailing slash of `--rejects DIR/`, which says a directory.
RejectsOption = Annotated[
    str | None,
    typer.Option(
        "--rejects",
        metavar="<path>",
        help=(
            "Where rejected rows are written: a file, or an existing directory (DIR/) to hold "
            "FILE.rejects.csv (default: FILE.rejects.csv beside FILE; give this when FILE's folder is "
            "read-only). A FIFO or device there is refused, never replaced."
        ),
        show_default=False,
    ),
]


@import_app.command("accounts")
def accounts(
    file: FileArgument,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
    encoding: EncodingOption = DEFAULT_ENCODING,
    rejects: RejectsOption = None,
    reimport: Annotated[
        bool,
        typer.Option(
            "--reimport",
            help="Import a file imported before though another came after it (it sets balances back).",
        ),
    ] = False,
) -> None:
    """Create or update accounts, borrowers, contact points and holds; never the lifecycle state.

    A file imported before, with another accounts file imported after it, is refused (exit 2,
    nothing stored): the files carry no date, and it would set every balance, due date and number
    back to what it says. Files are known by the SHA-256 of their bytes as read (FILE may be a
    pipe: it is read once, whole), whatever their name; the same file imported twice in a row
    changes nothing and is not refused, nor is a file without records."""
    from arrears.importing import Kind

    _import(Kind.ACCOUNTS, file, database, as_json, encoding, rejects, reimport)


@import_app.command("payments")
def payments(
    file: FileArgument,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
    encoding: EncodingOption = DEFAULT_ENCODING,
    rejects: RejectsOption = None,
) -> None:
    """Record payments once each (idempotent on payment_id); the next cycle applies them."""
    from arrears.importing import Kind

    _import(Kind.PAYMENTS, file, database, as_json, encoding, rejects)


@import_app.command("history")
def history(database: DatabaseOption = None, json: Json = False, limit: Limit = None) -> None:
    """The files imported, newest first: kind, name, size, when, rows accepted and rejected, and
    the content's SHA-256 by which a file delivered again is known."""
    from arrears.storage import read_only
    from arrears.storage.imported_files import imported_files

    engine = existing_database(database)
    with read_only(engine) as connection:
        files = imported_files(connection)
    listed = shown(files, limit, json=json)
    if json:
        emit_json([f.as_json() for f in listed])
        return
    if not listed:
        console.print("no file imported yet")
        return
    table = Table(title=f"files imported ({counted(len(files), len(listed), 'newest')})")
    for column in ("id", "kind", "name", "imported (UTC)", "accepted", "rejected", "sha256"):
        table.add_column(column)
    for f in listed:
        table.add_row(
            str(f.id),
            f.kind,
            escape(f.name),
            f"{f.imported_at:%Y-%m-%d %H:%M}",
            f"{f.accepted:,}",
            f"{f.rejected:,}",
            f.sha256[:12],
        )
    console.print(table)


def _import(
    kind: "Kind",
    file: Path,
    database: str | None,
    as_json: bool,
    encoding: str,
    rejects: str | None,
    reimport: bool = False,
) -> None:
    """The one path of both commands: read, check, store all or nothing, report."""
    from sqlalchemy.exc import SQLAlchemyError

    from arrears.importing import Kind, RejectsUnwritable, UnreadableFile, open_source
    from arrears.settings import get_settings
    from arrears.storage.imported_files import StaleImport
    from arrears.storage.importer import ImportInterrupted, run_import

    # The file is checked before the database is opened: a file that cannot be read creates
    # nothing, not even an empty database.
    try:
        source = open_source(file, kind, encoding)
    except UnreadableFile as error:
        raise CliError(str(error)) from None
    try:
        rejects_to = _rejects_target(file, rejects)
    except CliError:
        source.close()
        raise
    with source, stop_on_signals() as stop_requested:
        # Payments need their accounts, so they never create a database.
        engine = open_database(use_database(database), create=kind is Kind.ACCOUNTS, upgrade=True)
        show = not as_json and console.is_terminal and source.size >= _PROGRESS_FROM_BYTES
        try:
            with _progress(file.name, source.size, show) as advance:
                summary = run_import(
                    engine,
                    source,
                    on_progress=lambda summary, position: advance(summary.read, position),
                    stop_requested=stop_requested,
                    rejects_to=rejects_to,
                    reimport=reimport,
                    cache_mib=get_settings().import_cache_mib,
                )
        except StaleImport as error:
            raise CliError(f"{file}: {error}. Nothing was stored; --reimport imports it anyway") from None
        except UnreadableFile as error:
            raise CliError(str(error)) from None
        except RejectsUnwritable as error:
            hint = (
                "" if rejects else "; --rejects PATH (a file, or a writable directory) writes them elsewhere"
            )
            raise CliError(f"{error}{hint}") from None
        except ImportInterrupted as error:
            raise CliError(f"{file}: {error}", exit_code=1) from None
        except SQLAlchemyError as error:
            raise CliError(
                f"{file}: database error, nothing was stored: {database_error(error)}", exit_code=1
            ) from None
        except OSError as error:
            raise CliError(
                f"{error.filename or file}: {error.strerror or error}; nothing was stored", 1
            ) from None
        late = stop_requested()
    undone = _after_commit(kind, summary, engine)
    if as_json:
        typer.echo(json.dumps(summary.as_dict()))
    else:
        _print(summary)
        if late:
            console_err.print(f"{late} arrived after the commit: the whole file is stored", markup=False)
    for warning in undone:
        console_err.print(f"warning: {warning}", highlight=False, markup=False, soft_wrap=True)
    if summary.rejected:
        raise typer.Exit(EXIT_REJECTED)


def _rejects_target(file: Path, rejects: str | None) -> Path | None:
    """The --rejects path, refused before anything is read if it could never be written, would
    replace what is no regular file (a FIFO, /dev/null: `os.replace` puts the rejects file in its
    place), or would overwrite the file being imported."""
    from arrears.files import check_target
    from arrears.importing import rejects_path

    if rejects is None:
        return None
    given = Path(rejects)
    if rejects.endswith(("/", os.sep)) and not given.is_dir():
        raise CliError(f"--rejects {rejects}: no such directory")
    target = rejects_path(file, given)
    if not target.parent.is_dir():
        raise CliError(f"--rejects {rejects}: no such directory {target.parent}")
    try:
        check_target(target)
    except OSError as error:
        inside = "" if target == given else f"{target}: "
        raise CliError(f"--rejects {rejects}: {inside}{error.strerror or error}") from None
    if target.resolve() == file.resolve():
        raise CliError(
            f"--rejects {rejects}: that is the file being imported; name another file or a directory"
        )
    return given


def _after_commit(kind: "Kind", summary: "ImportSummary", engine: "Engine") -> list[str]:
    """Start now what the committed file calls for; what the database refuses is said, not raised.

    The file is stored by then: an error here (SQLite's write lock held by a cycle for longer than
    it waits) must not end the command as "database error" with exit 1, which says nothing was
    stored, nor hide the summary and exit 3 of the rows rejected. `arrears dispatch` and the next
    cycle do the same work (`flows.repossession_review.follow_orders`).
    """
    from sqlalchemy.exc import SQLAlchemyError

    from arrears.importing import Kind

    undone: list[str] = []
    if summary.vendor_orders_cancelled:
        from tasks.agency import call_off_overtaken

        try:
            call_off_overtaken()  # the agency hears of it now, not at the next cycle
        except SQLAlchemyError as error:
            undone.append(
                f"the file is stored, but the agency was not told of the {summary.vendor_orders_cancelled:,} "
                f"cancelled orders ({database_error(error)}): `arrears dispatch` or the next cycle tells it"
            )
    if kind is Kind.ACCOUNTS and summary.accepted:
        from tasks.lifecycle_letters import readdress_letters

        try:
            # A letter that waited for an address is written now (the next dispatch mails it), and
            # the review it held up is no longer blocked.
            readdress_letters(datetime.now(UTC), engine_=engine)
        except SQLAlchemyError as error:
            undone.append(
                "the file is stored, but letters waiting for an address were not written again "
                f"({database_error(error)}): `arrears dispatch` or the next cycle writes them"
            )
    return undone


@contextmanager
def _progress(name: str, size: int, show: bool) -> Iterator[Callable[[int, int], None]]:
    if not show:
        yield lambda rows, position: None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[rows]:,} rows read"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(f"importing {name}", total=size, rows=0)
        yield lambda rows, position: bar.update(task, completed=position, rows=rows)


def _print(summary: "ImportSummary") -> None:
    console.print(
        f"{escape(summary.file.name)}: [bold]{summary.read:,}[/bold] rows read, "
        f"[green]{summary.accepted:,}[/green] accepted, "
        f"[{'red' if summary.rejected else 'green'}]{summary.rejected:,}[/] rejected",
        highlight=False,
    )
    table = Table(show_header=False, box=None, padding=(0, 2))
    for name, value in asdict(summary.counts).items():
        table.add_row(name.replace("_", " "), f"{value:,}")
    console.print(table)
    if summary.empty:
        console.print(
            f"{summary.empty:,} empty rows skipped (separators alone, as a spreadsheet saves them)",
            highlight=False,
        )
    if summary.vendor_orders_cancelled:
        console.print(
            f"[bold]{summary.vendor_orders_cancelled:,}[/bold] repossession orders cancelled at once "
            "(a payment or hold arrived after the order)",
            highlight=False,
        )
    if summary.ignored_columns:
        console.print(f"ignored columns: {', '.join(summary.ignored_columns)}", highlight=False, markup=False)
    if summary.rejects_file is not None:
        # Never wrapped: a script reads the path from the line.
        console.print(
            f"rejected rows written to {summary.rejects_file}", highlight=False, markup=False, soft_wrap=True
        )
        for r in summary.first_rejections:
            console.print(f"  line {r.line}  {r.field}: {r.reason}", highlight=False, markup=False)
