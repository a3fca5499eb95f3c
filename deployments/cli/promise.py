"""`arrears promise add` and `arrears promise list`: promises to pay taken by agents."""

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Annotated

import typer
from rich.table import Table

from deployments.cli._common import (
    AsOf,
    CliError,
    DatabaseOption,
    Json,
    as_of_instant,
    command_group,
    console,
    emit_json,
    existing_database,
)

__all__ = ["promise_app"]

promise_app = command_group("promise", "Promises to pay: record one taken by phone, list an account's.")

Agent = Annotated[
    str, typer.Option("--agent", envvar="ARREARS_AGENT", help="Who took it: kept in the audit trail.")
]


@promise_app.command("add")
def add(
    account_id: Annotated[str, typer.Argument(help="The account, e.g. A-0000042.")],
    amount: Annotated[str, typer.Option("--amount", help="The amount promised, e.g. 500 or 412.50.")],
    on: Annotated[str, typer.Option("--date", help="The date promised, YYYY-MM-DD.")],
    agent: Agent = "agent",
    database: DatabaseOption = None,
    as_of: AsOf = None,
    json: Json = False,
) -> None:
    """Record a promise to pay; it replaces a pending one not yet due, and is judged against payments."""
    from tasks.promises import record_agent_promise

    try:
        value = Decimal(amount)
    except InvalidOperation:
        raise CliError(f"--amount: {amount!r} is not an amount") from None
    try:
        due = date.fromisoformat(on)
    except ValueError:
        raise CliError(f"--date: {on!r} is not a date (YYYY-MM-DD)") from None
    at = as_of_instant(as_of)
    engine = existing_database(database)
    try:
        promise_id = record_agent_promise(
            engine, account_id=account_id, amount=value, due_date=due, agent=agent, at=at
        )
    except ValueError as error:
        raise CliError(f"{account_id}: promise not recorded: {error}") from None
    if json:
        emit_json(
            {
                "promise_id": promise_id,
                "account_id": account_id,
                "amount": str(value),
                "due_date": due.isoformat(),
                "status": "pending",
            }
        )
    else:
        console.print(f"{account_id}: promise {promise_id} to pay {value} by {due.isoformat()} recorded")


@promise_app.command("list")
def list_promises(
    account_id: Annotated[str, typer.Argument(help="The account, e.g. A-0000042.")],
    database: DatabaseOption = None,
    json: Json = False,
) -> None:
    """The account's promises, newest first: pending, kept, broken or replaced."""
    from tasks.promises import promises_of

    engine = existing_database(database)
    rows = promises_of(engine, account_id)
    if json:
        emit_json(rows)
        return
    table = Table(title=f"promises of {account_id}")
    for column in ("id", "amount", "due", "status", "source", "made", "resolved"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["amount"],
            r["due_date"],
            r["status"],
            r["source"],
            r["created_at"][:16],
            (r["resolved_at"] or "")[:16],
        )
    console.print(table)
