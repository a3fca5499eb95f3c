"""`arrears bureau furnish|validate`: the monthly Metro 2 file (../shared/domain/metro2.md).

`validate FILE` exit codes: 0 the file passes; 1 it does not, each problem printed as
record, field and reason; 2 the file cannot be read. `furnish` exits 0 once the bureau took the
file, 1 when our validator or the bureau refused it (nothing furnished), 2 on a usage error.
"""

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.markup import escape
from rich.table import Table

from deployments.cli._common import (
    CliError,
    DatabaseOption,
    Json,
    command_group,
    console,
    emit_json,
    existing_database,
)

if TYPE_CHECKING:
    from tasks.bureau import FurnishingRefused

__all__ = ["EXIT_INVALID", "bureau_app"]

EXIT_INVALID = 1

bureau_app = command_group(
    "bureau", "Credit bureau: furnish the monthly Metro 2 file of the US accounts, validate a file."
)


@bureau_app.command("furnish")
def furnish(
    period: Annotated[
        str, typer.Option("--period", help="Reporting month, YYYY-MM (e.g. 2026-11).", show_default=False)
    ],
    output: Annotated[
        Path | None, typer.Option("--output", help="Also write the validated file here.", dir_okay=False)
    ] = None,
    database: DatabaseOption = None,
    json: Json = False,
) -> None:
    """Build the period's Metro 2 file, validate it, and submit it to the bureau.

    A file that fails validation is never submitted. A month not over yet in the lender's zone is
    refused (exit 2), as is an --output that names no file (a directory, a FIFO, a device), and
    a bureau other than the sandbox while ARREARS_BUREAU_FURNISHER_ID is still the sandbox's
    `ARREARS-SANDBOX`; the file written there is private (0600). With the default (sandbox)
    bureau provider a local sandbox bureau is started for the run.
    """
    from arrears.clock import business_date
    from arrears.files import check_target
    from arrears.metro2 import Period
    from arrears.settings import get_settings

    today = business_date(datetime.now(UTC), get_settings().lender_timezone)
    try:
        Period.parse(period).over_by(today)
    except ValueError as error:
        raise CliError(f"--period: {error}") from None
    if output is not None:
        try:
            check_target(output.expanduser())
        except OSError as error:
            raise CliError(f"--output {output}: {error.strerror or error}") from None
    existing_database(database, upgrade=True)  # its task migrates anyway
    from flows.bureau_furnishing import bureau_furnishing
    from integrations.errors import ConfigError, ProviderError
    from tasks.bureau import FurnishingRefused, check_furnisher

    try:
        check_furnisher()
    except ConfigError as error:
        raise CliError(f"invalid settings: {error}; nothing was furnished") from None

    try:
        summary = bureau_furnishing(period=period, output=str(output) if output else None)
    except FurnishingRefused as refused:
        _refused(period, refused, json=json)
    except ProviderError as error:  # the bureau could not be reached or refused our credentials
        raise CliError(f"bureau: {error}", exit_code=EXIT_INVALID) from None
    if json:
        emit_json({"furnished": True, **summary})
        return
    _print_furnished(period, summary)


def _refused(period: str, refused: "FurnishingRefused", *, json: bool) -> NoReturn:
    """Say why nothing was furnished (the problems, or the bureau's reason) and exit 1."""
    if json:
        emit_json(
            {
                "period": period,
                "furnished": False,
                "reason": refused.message,
                "problems": [{"record": n, "field": f, "reason": r} for n, f, r in refused.problems],
            }
        )
        raise typer.Exit(EXIT_INVALID) from None
    _print_problems(refused.problems)
    raise CliError(refused.message, exit_code=EXIT_INVALID) from None


def _print_furnished(period: str, summary: dict[str, Any]) -> None:
    console.print(
        f"metro2 {period}: [bold]{summary['accounts']:,}[/bold] accounts furnished, "
        f"{summary['skipped']:,} not furnished, submission {escape(summary['submission_id'])}",
        highlight=False,
    )
    statuses = Table(show_header=True, box=None, padding=(0, 2))
    statuses.add_column("account status")
    statuses.add_column("accounts", justify="right")
    for code, n in summary["statuses"].items():
        statuses.add_row(code, f"{n:,}")
    console.print(statuses)
    for line in summary["not_furnishable"]:  # for operations to mend: why each could not be
        console.print(f"not furnished: {escape(line)}", highlight=False)
    for warning in summary["warnings"][:10]:
        console.print(f"warning: {warning}", highlight=False, markup=False)
    if summary["output"]:
        console.print(f"written to {summary['output']}", highlight=False, markup=False)


@bureau_app.command("validate")
def validate_file(
    file: Annotated[
        Path, typer.Argument(help="A Metro 2 character-format file (426-byte records).", show_default=False)
    ],
    json: Json = False,
) -> None:
    """Check every record of a Metro 2 file against the layout; exit 1 with the problems if any."""
    from arrears.metro2 import validate

    try:
        content = file.read_bytes()
    except OSError as error:
        raise CliError(f"{file}: {error.strerror or error}") from None
    problems = validate(content)
    if json:
        emit_json(
            {
                "file": str(file),
                "valid": not problems,
                "problems": [{"record": p.record, "field": p.field, "reason": p.reason} for p in problems],
            }
        )
    elif problems:
        _print_problems([(p.record, p.field, p.reason) for p in problems])
        console.print(f"{escape(file.name)}: [red]{len(problems):,} problems[/red]", highlight=False)
    else:
        console.print(f"{escape(file.name)}: [green]valid[/green]", highlight=False)
    if problems:
        raise typer.Exit(EXIT_INVALID)


def _print_problems(problems: list[tuple[int, str, str]], limit: int = 200) -> None:
    table = Table(show_header=True, box=None, padding=(0, 2))
    for column in ("record", "field", "reason"):
        table.add_column(column)
    for n, name, reason in problems[:limit]:
        table.add_row(str(n), escape(name), escape(reason))
    console.print(table)
    if len(problems) > limit:
        console.print(f"… and {len(problems) - limit:,} more", highlight=False)
