"""`arrears plan accept|decline|show|cancel`: restructuring plans agreed, declined and ended by agents."""

from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table

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
    existing_account,
    existing_database,
)

__all__ = ["plan_app"]

plan_app = command_group(
    "plan",
    "Restructuring plans: see the offers, record an acceptance or a refusal, cancel one (audited with who "
    "and why).",
)


class Kind(StrEnum):
    deferral = "deferral"
    instalment = "instalment"


@plan_app.command("accept")
def accept(
    account_id: Annotated[str, typer.Argument(help="The account, e.g. A-0000042.")],
    kind: Annotated[
        Kind | None, typer.Option("--kind", help="deferral or instalment (default: the recommended offer).")
    ] = None,
    months: Annotated[
        int | None, typer.Option("--months", min=1, help="Instalments deferred, or months of the plan.")
    ] = None,
    agent: Annotated[
        str, typer.Option("--agent", envvar="ARREARS_AGENT", help="Who agreed it: kept in the audit trail.")
    ] = "agent",
    database: DatabaseOption = None,
    as_of: AsOf = None,
    json: Json = False,
) -> None:
    """Record the plan the borrower accepted; the cycle then monitors it against payments. Refused
    (exit 2, naming why) while a settlement or another plan runs, under a bankruptcy or
    breathing_space hold, or once a reviewer or a court has the account."""
    from arrears.restructuring import PlanError
    from tasks.plans import accept_plan

    at = as_of_instant(as_of)
    engine = existing_database(database)
    try:
        plan_id, terms = accept_plan(
            engine,
            account_id=account_id,
            kind=kind.value if kind else None,
            months=months,
            agent=agent,
            at=at,
        )
    except PlanError as error:
        raise CliError(f"{account_id}: {error}") from None
    if json:
        emit_json({"plan_id": plan_id, "account_id": account_id, "status": "active", **terms.to_json()})
        return
    console.print(f"{account_id}: plan {plan_id} active: {terms.describe()}")
    _schedule(terms.to_json())


@plan_app.command("show")
def show(
    account_id: Annotated[str, typer.Argument(help="The account, e.g. A-0000042.")],
    database: DatabaseOption = None,
    as_of: AsOf = None,
    json: Json = False,
) -> None:
    """The account's current plan, and the offers it would get today while it has none active."""
    from tasks.plans import plan_overview

    engine = existing_database(database)
    found = plan_overview(engine, account_id=account_id, at=as_of_instant(as_of))
    if found is None:
        raise CliError(f"no account {account_id!r}")
    if json:
        emit_json(found)
        return
    current = found["plan"]
    if current:
        since = current["updated_at"][:10]
        console.print(f"plan {current['id']}: {current['kind']} {current['status']} (since {since})")
        if current["terms"].get("schedule"):
            _schedule(current["terms"])
    for n, offer in enumerate(found["offers"], start=1):
        console.print(f"offer {n}: {offer['describe']}")
    if found["no_offer"]:
        console.print(f"{account_id}: no offer: {found['no_offer']}")
    elif not current and not found["offers"]:
        console.print(f"{account_id}: no plan and nothing past due")


@plan_app.command("decline")
def decline(
    account_id: Annotated[str, typer.Argument(help="The account, e.g. A-0000042.")],
    reason: Why,
    agent: Agent = "agent",
    database: DatabaseOption = None,
    as_of: AsOf = None,
) -> None:
    """Record that the borrower declined the open offer (told an agent, as a DECLINE reply does):
    the next cycle takes the account to review."""
    from tasks.plans import decline_plan

    why, who, at = audit_reason(reason), audit_actor(agent), as_of_instant(as_of)
    engine = existing_account(database, account_id)
    found = decline_plan(engine, account_id=account_id, agent=who, why=why, at=at)
    if found is None:
        raise CliError(
            f"{account_id}: no offer is open (only an account in restructuring has one): nothing changed"
        )
    console.print(f"{account_id}: plan offer {found} declined", markup=False, highlight=False)


@plan_app.command("cancel")
def cancel(
    account_id: Annotated[str, typer.Argument(help="The account, e.g. A-0000042.")],
    reason: Why,
    agent: Agent = "agent",
    database: DatabaseOption = None,
    as_of: AsOf = None,
) -> None:
    """End the account's active plan (the borrower settles instead, it was recorded in error). A
    plan ended so is no working plan: from restructuring the account goes to review, unless a
    settlement recorded next holds it."""
    from tasks.plans import cancel_plan

    why, who, at = audit_reason(reason), audit_actor(agent), as_of_instant(as_of)
    engine = existing_account(database, account_id)
    found = cancel_plan(engine, account_id=account_id, agent=who, why=why, at=at)
    if found is None:
        raise CliError(f"{account_id}: no plan is active: nothing changed")
    console.print(f"{account_id}: plan {found['id']} cancelled", markup=False, highlight=False)


def _schedule(terms: dict[str, object]) -> None:
    table = Table(title="schedule")
    table.add_column("due")
    table.add_column("amount", justify="right")
    for item in terms["schedule"]:  # type: ignore[attr-defined]
        table.add_row(item["due"], item["amount"])
    console.print(table)
