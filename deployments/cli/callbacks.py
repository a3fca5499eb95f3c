"""`arrears callbacks list`: the callbacks the webhook acknowledged but could tie to no account.

    arrears callbacks list [--since 2026-12-01] [--kind unreadable_callback] [--json]

A vendor's callback about nothing of ours (a report on a message we never sent, a court status
for a filing no referral has, a reply from a number no borrower holds) or an item of a batch that
could not be read is acknowledged, since refusing it would only make the vendor push it again, and
kept for operators (`arrears.storage.unattributed`). This is where they see it. Everything shown
was masked as it was kept.
"""

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from deployments.cli._common import (
    CliError,
    DatabaseOption,
    Json,
    Limit,
    command_group,
    console,
    counted,
    emit_json,
    existing_database,
    period_bound,
    shown,
)

__all__ = ["callbacks_app"]

callbacks_app = command_group(
    "callbacks", "Callbacks acknowledged but tied to no account, kept for operators."
)


@callbacks_app.command("list")
def list_(
    since: Annotated[
        str | None,
        typer.Option("--since", help="From this instant, or this date in the lender's zone (default: all)."),
    ] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option(
            "--kind",
            help="Only this kind (repeatable): unmatched_report, expired_report, unmatched_court, "
            "unreadable_callback, from_unknown_number.",
        ),
    ] = None,
    database: DatabaseOption = None,
    json: Json = False,
    limit: Limit = None,
) -> None:
    """Newest first: when, what kind, from whom, and what it said (reports about no message of ours,
    given up after a week when their send was never recorded, court statuses for no referral,
    unreadable items of a batch, texts from numbers no borrower holds)."""
    from arrears.storage.unattributed import KINDS, unattributed_callbacks

    start = period_bound(since, "--since", end=False)
    engine = existing_database(database)
    from arrears.storage import read_only  # no write lock: never waits for a writer

    with read_only(engine) as connection:
        try:
            found = unattributed_callbacks(connection, since=start, kinds=kind or KINDS)
        except ValueError as error:  # a kind there is none of
            raise CliError(f"--kind: {error}") from None
    listed = shown(found, limit, json=json)
    if json:
        emit_json([f.as_json() for f in listed])
        return
    if not found:
        console.print(
            "no callback kept without an account" + (f" since {start:%Y-%m-%d %H:%M %Z}" if start else "")
        )
        return
    table = Table(title=f"callbacks kept without an account ({counted(len(found), len(listed), 'newest')})")
    for column in ("id", "at", "kind", "from", "detail"):
        table.add_column(column)
    for f in listed:
        # Text, not markup: a vendor's or a borrower's words may hold brackets.
        table.add_row(*(Text(c) for c in (str(f.id), f"{f.at:%Y-%m-%d %H:%M}", f.kind, f.actor, f.detail)))
    console.print(table)
