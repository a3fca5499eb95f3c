"""`arrears settlement record|show|cancel`: settlements agreed by agents (`tasks.settlements`)."""

from datetime import date
from typing import Annotated

import typer

from deployments.cli._common import (
    Agent,
    AsOf,
    CliError,
    DatabaseOption,
    Json,
    Why,
    amount_option,
    as_of_instant,
    audit_actor,
    audit_reason,
    command_group,
    console,
    emit_json,
    existing_account,
    existing_database,
)

__all__ = ["settlement_app"]

settlement_app = command_group(
    "settlement",
    "Settlements: the lender takes less than the balance, paid by a date. Record one, show it, cancel it "
    "(audited with who and why).",
)

Account = Annotated[str, typer.Argument(help="The account, e.g. A-0000042.")]
_OPTIONS = {"amount": "--amount", "pay_by": "--pay-by"}


def _pay_by(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise CliError(f"--pay-by: {text!r} is not a date (YYYY-MM-DD)") from None


@settlement_app.command("record")
def record(
    account_id: Account,
    amount: Annotated[
        str,
        typer.Option("--amount", help="What the lender takes, in the account's currency: below the balance."),
    ],
    pay_by: Annotated[
        str, typer.Option("--pay-by", help="The date (YYYY-MM-DD, the lender's) it is to be paid by.")
    ],
    reason: Why,
    agent: Agent = "agent",
    database: DatabaseOption = None,
    as_of: AsOf = None,
    json: Json = False,
) -> None:
    """Record the settlement the borrower agreed: from now on the account gets no reminders, does
    not escalate and is not charged off; once the payments received from now reach the amount on
    or before the pay-by date, the next cycle exits it `settled` and writes the balance left off
    (a referral is ended or withdrawn). Unpaid by then, it lapses and collection resumes. Refused,
    naming the field: an amount not below the balance (a payoff) or not in the currency's minor
    units, a date past or further ahead than the policy allows (`settlements.max_pay_by_days`, 90
    days), an account current or out of collection, under a bankruptcy or Breathing Space hold, or
    paying under a plan or another settlement. A repossession order it overtakes is cancelled at
    once."""
    from arrears.settlements import SettlementError
    from tasks.settlements import record_settlement

    money, day = amount_option(amount), _pay_by(pay_by)
    why, who, at = audit_reason(reason), audit_actor(agent), as_of_instant(as_of)
    engine = existing_database(database)
    try:
        found, cancelled = record_settlement(
            engine, account_id=account_id, amount=money, pay_by=day, agent=who, why=why, at=at
        )
    except SettlementError as error:
        option = _OPTIONS.get(error.field)
        raise CliError(f"{account_id}: {option + ': ' if option else ''}{error}") from None
    if cancelled:
        from tasks.agency import call_off_overtaken

        call_off_overtaken()  # the agency hears of it now, not at the next cycle
    if json:
        emit_json({"account_id": account_id, **found})
        return
    console.print(
        f"{account_id}: settlement {found['id']} agreed: {found['currency']} {found['amount']} "
        f"for the balance of {found['currency']} {found['balance_when_agreed']}, "
        f"to be paid by {found['pay_by']}",
        markup=False,
        highlight=False,
    )


@settlement_app.command("show")
def show(account_id: Account, database: DatabaseOption = None, json: Json = False) -> None:
    """The account's latest settlement: amount, pay-by date, who agreed it and why, and how it
    ended (paid with the balance written off, lapsed, cancelled)."""
    from arrears.storage import read_only  # no write lock: never waits for a writer
    from tasks.settlements import settlement_overview

    with read_only(existing_database(database)) as connection:
        found = settlement_overview(connection, account_id=account_id)
    if found is None:
        raise CliError(f"no account {account_id!r}")
    if json:
        emit_json(found)
        return
    s = found["settlement"]
    if s is None:
        console.print(f"{account_id}: no settlement", markup=False, highlight=False)
        return
    lines = [
        f"settlement {s['id']}: {s['status']}: {s['currency']} {s['amount']} for the balance of "
        f"{s['currency']} {s['balance_when_agreed']}, to be paid by {s['pay_by']}",
        f"agreed by {s['agreed_by']} on {s['agreed_at'][:10]}: {s['reason']}",
    ]
    if s["status"] != "active":
        ended = f"ended {(s['ended_at'] or '')[:10]}"
        if s["ended_by"]:
            ended += f" by {s['ended_by']}"
        lines.append(f"{ended}: {s['end_reason']}")
    if s["written_off"] is not None:
        lines.append(f"written off: {s['currency']} {s['written_off']}")
    console.print("\n".join(lines), markup=False, highlight=False)


@settlement_app.command("cancel")
def cancel(
    account_id: Account,
    reason: Why,
    agent: Agent = "agent",
    database: DatabaseOption = None,
    as_of: AsOf = None,
) -> None:
    """Cancel the account's running settlement (the borrower withdrew, it was recorded in error):
    collection resumes at the next cycle."""
    from tasks.settlements import cancel_settlement

    why, who, at = audit_reason(reason), audit_actor(agent), as_of_instant(as_of)
    engine = existing_account(database, account_id)
    found = cancel_settlement(engine, account_id=account_id, agent=who, why=why, at=at)
    if found is None:
        raise CliError(f"{account_id}: no settlement is running: nothing changed")
    console.print(f"{account_id}: settlement {found['id']} cancelled", markup=False, highlight=False)
