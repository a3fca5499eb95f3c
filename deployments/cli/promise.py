"""`arrears promise add` and `arrears promise list`: promises to pay taken by agents."""

from datetime import date, timedelta
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from deployments.cli._common import (
    Agent,
    AsOf,
    CliError,
    DatabaseOption,
    Json,
    amount_option,
    as_of_instant,
    audit_actor,
    command_group,
    console,
    day_option,
    emit_json,
    existing_database,
)

__all__ = ["promise_app"]

promise_app = command_group("promise", "Promises to pay: record one taken by phone, list an account's.")

# A promise is for days a person can mean: due within a year of today, not before it.
_LONGEST_PROMISE = timedelta(days=366)


def _promised_day(text: str, today: date) -> date:
    """The --date, or a one-line error: a real date from today to a year ahead."""
    due = day_option(text, "--date")
    if due < today:
        raise CliError(f"--date: {text} has passed (today is {today.isoformat()})")
    if due > today + _LONGEST_PROMISE:
        raise CliError(f"--date: {text} is more than a year ahead (latest {today + _LONGEST_PROMISE})")
    return due


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
    """Record a promise to pay; it replaces a pending one not yet due, and is judged against payments.
    Refused while a plan or a settlement is active (the borrower is paying under it)."""
    from arrears.clock import business_date
    from arrears.currencies import display
    from arrears.settings import get_settings
    from arrears.storage.accounts import account_story
    from tasks.promises import record_agent_promise

    value = amount_option(amount)
    agent = audit_actor(agent)
    at = as_of_instant(as_of)
    # Today is the lender's business date, as the promise records it (`made_on`), not the UTC date:
    # at 20:00 in New York the UTC date is already tomorrow, and today's promise "had passed".
    due = _promised_day(on, business_date(at, get_settings().lender_timezone))
    engine = existing_database(database)
    from arrears.storage import read_only  # no write lock: never waits for a writer

    with read_only(engine) as connection:
        story = account_story(connection, account_id)
    if story is None:
        raise CliError(f"no account {account_id!r}")
    if value > story.account.balance:
        a = story.account  # the balance as its currency writes it, not storage's four places
        balance = f"{a.currency} {display(a.balance, a.currency)}"
        raise CliError(f"--amount: {value} exceeds the balance of {account_id} ({balance})")
    try:
        promise_id = record_agent_promise(
            engine, account_id=account_id, amount=value, due_date=due, agent=agent, at=at
        )
    except (ValueError, ArithmeticError) as error:
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
        console.print(
            f"{account_id}: promise {promise_id} to pay {value} by {due.isoformat()} recorded",
            markup=False,
            highlight=False,
        )


@promise_app.command("list")
def list_promises(
    account_id: Annotated[str, typer.Argument(help="The account, e.g. A-0000042.")],
    database: DatabaseOption = None,
    json: Json = False,
) -> None:
    """The account's promises, newest first: pending, kept, broken or replaced."""
    from arrears.storage.accounts import account_row
    from tasks.promises import promises_of

    engine = existing_database(database)
    from arrears.storage import read_only  # no write lock: never waits for a writer

    with read_only(engine) as connection:
        if account_row(connection, account_id) is None:  # a typo is not "no promises"
            raise CliError(f"no account {account_id!r}")
    rows = promises_of(engine, account_id)
    if json:
        emit_json(rows)
        return
    table = Table(title=f"promises of {escape(account_id)}")
    for column in ("id", "amount", "due", "status", "source", "made", "resolved"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            *(
                Text(str(cell))
                for cell in (
                    r["id"],
                    r["amount"],
                    r["due_date"],
                    r["status"],
                    r["source"],
                    r["created_at"][:16],
                    (r["resolved_at"] or "")[:16],
                )
            )
        )
    console.print(table)
