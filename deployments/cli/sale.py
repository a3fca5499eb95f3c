"""`arrears sale record|extend`: the sale of a recovered car, as the auction reports it, and the
borrower's written request for 10 more days before it (California) (`arrears.storage.sales`).

Each is one transaction on our tables, audited on the account's timeline as the person's. What
follows a sale (the explanation of its surplus or deficiency, UCC 9-616; a deficiency's legal
referral) is done by the cycle's recoveries step (`tasks.sales`), so the letters and the referral
go the one way every other does.
"""

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Annotated

import typer

from deployments.cli._common import (
    AsOf,
    CliError,
    DatabaseOption,
    Json,
    as_of_instant,
    audit_actor,
    command_group,
    console,
    emit_json,
    existing_database,
)

__all__ = ["sale_app"]

sale_app = command_group(
    "sale",
    "The sale of a recovered vehicle: record it (its deficiency or surplus follows), or record the "
    "borrower's written request for 10 more days before it (California). Audited with who.",
)

Account = Annotated[str, typer.Argument(help="The account whose recovered vehicle it is, e.g. A-0000042.")]
By = Annotated[str, typer.Option("--by", help="Your name: kept in the audit trail.")]
WhyOption = Annotated[
    str | None, typer.Option("--why", help="Why, or where the figures come from (optional).")
]


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise CliError(f"{option}: {text!r} is not a date (YYYY-MM-DD)") from None


def _money(text: str, option: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise CliError(f"{option}: {text!r} is not an amount (a plain number, e.g. 9000 or 412.50)") from None
    if not value.is_finite():
        raise CliError(f"{option}: {text!r} is not an amount (a plain number, e.g. 9000 or 412.50)")
    return value


def _why(text: str | None) -> str | None:
    said = " ".join((text or "").split())
    return said or None


@sale_app.command("record")
def record(
    account_id: Account,
    sold_on: Annotated[str, typer.Option("--sold-on", help="The day the vehicle was sold (YYYY-MM-DD).")],
    proceeds: Annotated[
        str, typer.Option("--proceeds", help="What the sale brought, in the account's currency.")
    ],
    expenses: Annotated[
        str,
        typer.Option(
            "--expenses",
            help="Expenses of retaking, holding, preparing, processing and selling it, and attorney's fees.",
        ),
    ],
    by: By,
    credits: Annotated[
        str,
        typer.Option(
            "--credits",
            help="Credits owed the borrower (rebates of interest or charges); 0 if none. Payments "
            "received since the car was taken are added.",
        ),
    ] = "0",
    why: WhyOption = None,
    database: DatabaseOption = None,
    as_of: AsOf = None,
    json: Json = False,
) -> None:
    """Record the sale of the account's recovered vehicle, and what it leaves: what was owed when
    the car was taken (the balance the servicing system had sent then, UCC 9-616(c)(1)), plus
    expenses, less credits (those typed, and payments received since the car was taken) and the
    proceeds, is a deficiency the borrower owes, or, the other way round, a surplus owed to the
    borrower (UCC 9-615(d)). A recovery reported before that balance was kept counts the
    balance now instead.

    A sale before the first day the notice of sale allowed (10 days later after `sale extend`),
    before the notice was mailed, or with no notice where one is owed is recorded, but its
    deficiency is barred (UCC 9-626; Cal. Civ. Code 2983.2): no legal referral. Otherwise the
    cycle's recoveries step mails the explanation of the deficiency or surplus (US, UCC 9-616), and
    a deficiency takes the account back into legal referral, in the US once that explanation is
    mailed; the claim is the deficiency less payments since. A collection hold keeps it out.

    The same sale again changes nothing (exit 0). Refused, exit 2 naming why, nothing changed: no
    recovered vehicle, an amount negative or finer than the currency, a sale date ahead of today
    or before the recovery, another sale already recorded for the recovery."""
    from arrears.storage.sales import SaleRefused, record_sale
    from tasks.database import policy

    day = _day(sold_on, "--sold-on")
    amounts = _money(proceeds, "--proceeds"), _money(expenses, "--expenses"), _money(credits, "--credits")
    who, at = audit_actor(by, "--by"), as_of_instant(as_of)
    engine = existing_database(database)
    try:
        with engine.begin() as connection:
            done = record_sale(
                connection,
                account_id=account_id,
                sold_on=day,
                proceeds=amounts[0],
                expenses=amounts[1],
                credits=amounts[2],
                by=who,
                why=_why(why),
                at=at,
                profile_of=policy().profile,
            )
    except SaleRefused as refused:
        raise CliError(f"{refused.option}: {refused}" if refused.option else str(refused)) from None
    if json:
        emit_json(
            {
                **done.sale.as_json(),
                "changed": done.changed,
                "closed_from": done.closed,
                "outcome": done.outcome,
            }
        )
        return
    if not done.changed:
        said = f"{account_id}: this sale is recorded already; nothing changed: {done.outcome}"
    else:
        closed = f" (the account closed from {done.closed})" if done.closed else ""
        said = f"{account_id}: sale of {day.isoformat()} recorded by {who}{closed}: {done.outcome}"
    console.print(said, markup=False, highlight=False, soft_wrap=True)


@sale_app.command("extend")
def extend(
    account_id: Account,
    requested_on: Annotated[
        str, typer.Option("--requested-on", help="The day the borrower's written request came (YYYY-MM-DD).")
    ],
    by: By,
    why: WhyOption = None,
    database: DatabaseOption = None,
    as_of: AsOf = None,
    json: Json = False,
) -> None:
    """Record a California borrower's written request to extend the time to redeem or reinstate
    by 10 days (Cal. Civ. Code 2983.2(a); Fin. Code 22328(b)(3)): no further notice is sent, and a
    sale recorded later is checked against the notice's first sale day moved 10 days on (a sale
    before it bars the deficiency).

    The same request again changes nothing (exit 0). Refused, exit 2 naming why, nothing changed:
    an account outside California, with no notice of sale, whose sale is recorded, a request dated
    ahead of today or after the notice's period ended, a second request."""
    from arrears.storage.sales import SaleRefused, extend_sale

    day = _day(requested_on, "--requested-on")
    who, at = audit_actor(by, "--by"), as_of_instant(as_of)
    engine = existing_database(database)
    try:
        with engine.begin() as connection:
            done = extend_sale(
                connection, account_id=account_id, requested_on=day, by=who, why=_why(why), at=at
            )
    except SaleRefused as refused:
        raise CliError(f"{refused.option}: {refused}" if refused.option else str(refused)) from None
    if json:
        emit_json(done.as_json())
        return
    first = done.first_day
    until = (
        f"no sale before {first.isoformat()}" if first else "the sale waits 10 days more than the notice says"
    )
    if not done.changed:
        said = f"{account_id}: this request is recorded already; nothing changed: {until}"
    else:
        said = f"{account_id}: request of {day.isoformat()} recorded by {who}: {until}"
    console.print(said, markup=False, highlight=False, soft_wrap=True)
