"""`arrears hold list|place|lift`: holds a person places or lifts (`arrears.storage.holds`)."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from arrears.vocabulary import Hold
from deployments.cli._common import (
    Agent,
    AsOf,
    CliError,
    DatabaseOption,
    Json,
    Why,
    as_of_instant,
    audit_actor,
    audit_reason,
    command_group,
    console,
    emit_json,
    existing_database,
)

# Storage is imported in the commands: `arrears --help` loads no SQLAlchemy.
if TYPE_CHECKING:
    from sqlalchemy import Connection

__all__ = ["hold_app"]

hold_app = command_group(
    "hold", "Holds that stop collection: list an account's, place one, lift one (audited with who and why)."
)

Account = Annotated[str, typer.Argument(help="The account, e.g. A-0000042.")]
Kind = Annotated[str, typer.Argument(help=f"The hold: {', '.join(h.value for h in Hold)}.")]


def _kind(text: str) -> Hold:
    try:
        return Hold(text.strip().lower())
    except ValueError:
        raise CliError(f"KIND: {text!r} is not a hold ({', '.join(h.value for h in Hold)})") from None


@contextmanager
def _account_transaction(database: str | None, account_id: str) -> "Iterator[Connection]":
    """A transaction on the database, for an account that must exist."""
    from arrears.storage.accounts import account_row

    with existing_database(database).begin() as connection:
        if account_row(connection, account_id) is None:
            raise CliError(f"no account {account_id!r}")
        yield connection


@hold_app.command("list")
def list_holds(
    account_id: Account,
    lifted: Annotated[bool, typer.Option("--all", help="Lifted holds too.")] = False,
    database: DatabaseOption = None,
    json: Json = False,
) -> None:
    """The account's holds in force (with --all, the lifted ones too): kind, who placed it, why."""
    from arrears.storage import read_only  # no write lock: never waits for a writer
    from arrears.storage.accounts import account_row
    from arrears.storage.holds import account_holds

    with read_only(existing_database(database)) as connection:
        if account_row(connection, account_id) is None:
            raise CliError(f"no account {account_id!r}")
        rows = account_holds(connection, account_id, lifted=lifted)
    if json:
        emit_json([r.as_json() for r in rows])
        return
    table = Table(title=f"holds of {escape(account_id)}")
    for column in ("kind", "placed by", "placed", "lifted", "reason"):
        table.add_column(column)
    for r in rows:
        cells = (
            r.kind,
            r.placed_by,
            f"{r.placed_at:%Y-%m-%d %H:%M}",
            f"{r.lifted_at:%Y-%m-%d %H:%M}" if r.lifted_at else "",
        )
        table.add_row(*(Text(c) for c in (*cells, r.reason or "")))
    console.print(table)


@hold_app.command("place")
def place(
    account_id: Account,
    kind: Kind,
    reason: Why,
    agent: Agent = "agent",
    database: DatabaseOption = None,
    as_of: AsOf = None,
) -> None:
    """Place a hold: contact it stops is refused at every send-time check from now on, and a
    repossession order it overtakes is cancelled at once (the agency is told). A borrower's hold
    (bankruptcy, deceased, military) goes on every open account of the account's borrower, a
    debt's (dispute, cease_contact, breathing_space) on this account only: says which accounts."""
    from arrears.storage.holds import place_hold
    from arrears.storage.vendor_orders import cancel_vendor_orders

    hold, why, at = _kind(kind), audit_reason(reason), as_of_instant(as_of)
    agent = audit_actor(agent)
    with _account_transaction(database, account_id) as connection:
        placed = place_hold(connection, account_id=account_id, kind=hold, by=agent, why=why, at=at)
        cancelled = sum(cancel_vendor_orders(connection, as_of=at, account_id=a) for a in placed)
    if cancelled:
        from tasks.agency import call_off_overtaken

        call_off_overtaken()  # the agency hears of it now, not at the next cycle
    if account_id not in placed:
        changed = "" if placed else ": nothing changed"
        console.print(
            f"{account_id}: a {hold} hold is in force already{changed}", markup=False, highlight=False
        )
    for a in placed:
        whose = "" if a == account_id else f" (the borrower's, recorded on {account_id})"
        console.print(f"{a}: {hold} hold placed{whose}", markup=False, highlight=False)


@hold_app.command("lift")
def lift(
    account_id: Account,
    kind: Kind,
    reason: Why,
    agent: Agent = "agent",
    database: DatabaseOption = None,
    as_of: AsOf = None,
) -> None:
    """Lift the account's hold of this kind, whoever placed it (an import places its flag again
    while its file carries it; an SMS opt-out ends only with the borrower's START). Collection
    resumes at the next cycle. On this account alone, a borrower's hold too (a discharge with one
    loan reaffirmed ends the stay for that loan only)."""
    from arrears.storage.holds import HoldNotLifted, lift_hold

    hold, why, at = _kind(kind), audit_reason(reason), as_of_instant(as_of)
    agent = audit_actor(agent)
    with _account_transaction(database, account_id) as connection:
        try:
            lifted = lift_hold(connection, account_id=account_id, kind=hold, by=agent, why=why, at=at)
        except HoldNotLifted as error:
            raise CliError(f"{account_id}: {error}") from None
    if not lifted:
        raise CliError(f"{account_id}: no {hold} hold is in force: nothing changed")
    console.print(f"{account_id}: {hold} hold lifted", markup=False, highlight=False)
