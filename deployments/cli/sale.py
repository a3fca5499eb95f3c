"""`arrears sale record|extend|redeem|reinstate|return|explain`: the sale of a recovered car, as the
auction reports it (`arrears.storage.sales`); the borrower's written request for 10 more days before
it (California), the car given back before the sale, redeemed or its contract reinstated, and the
borrower's request for the explanation after it (`arrears.storage.redemptions`); the car given back
otherwise (`arrears.storage.returns`).

Each is one transaction on our tables, audited on the account's timeline as the person's. What
follows a sale (the explanation of its surplus or deficiency, UCC 9-616; a deficiency's legal
referral) is done by the cycle's recoveries step (`tasks.sales`), so the letters and the referral
go the one way every other does.
"""

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Annotated

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
    day_option,
    emit_json,
    refusable_transaction,
)

if TYPE_CHECKING:
    from arrears.storage.redemptions import Returned

__all__ = ["sale_app"]

sale_app = command_group(
    "sale",
    "The sale of a recovered vehicle: record it (its deficiency or surplus follows), the borrower's "
    "written request for 10 more days before it (California), the vehicle redeemed, the contract "
    "reinstated or the vehicle returned otherwise before it, or the borrower's request for the "
    "explanation after it. Audited with who.",
)

Account = Annotated[str, typer.Argument(help="The account whose recovered vehicle it is, e.g. A-0000042.")]
By = Annotated[str, typer.Option("--by", help="Your name: kept in the audit trail.")]
WhyOption = Annotated[
    str | None, typer.Option("--why", help="Why, or where the figures come from (optional).")
]


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
    from arrears.storage.sales import record_sale
    from tasks.database import policy

    day = day_option(sold_on, "--sold-on")
    amounts = _money(proceeds, "--proceeds"), _money(expenses, "--expenses"), _money(credits, "--credits")
    who, at = audit_actor(by, "--by"), as_of_instant(as_of)
    with refusable_transaction(database) as connection:
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
    from arrears.storage.redemptions import extend_sale

    day = day_option(requested_on, "--requested-on")
    who, at = audit_actor(by, "--by"), as_of_instant(as_of)
    with refusable_transaction(database) as connection:
        done = extend_sale(connection, account_id=account_id, requested_on=day, by=who, why=_why(why), at=at)
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


PaidOn = Annotated[
    str, typer.Option("--paid-on", help="The day the borrower paid what it takes (YYYY-MM-DD).")
]


def _given_back(done: "Returned", account_id: str, day: date, who: str, json: bool) -> None:
    if json:
        emit_json(done.as_json())
        return
    what = "redemption" if done.kind == "redeemed" else "reinstatement"
    if not done.changed:
        said = f"{account_id}: this {what} is recorded already; nothing changed: {done.outcome}"
    else:
        basis = " (the lender's choice)" if done.basis == "lender" else ""
        said = f"{account_id}: {what} of {day.isoformat()} recorded by {who}{basis}: {done.outcome}"
    console.print(said, markup=False, highlight=False, soft_wrap=True)


@sale_app.command("redeem")
def redeem(
    account_id: Account,
    paid_on: PaidOn,
    by: By,
    why: WhyOption = None,
    database: DatabaseOption = None,
    as_of: AsOf = None,
    json: Json = False,
) -> None:
    """Record that the borrower redeemed the recovered vehicle before its sale, paying all that the
    contract secures and the expenses (UCC 9-623; Cal. Civ. Code 2983.2): the account leaves for
    paid_off, a notice of sale not yet handed to the letters provider is held back, and a later
    `sale record` of the recovery is refused. The vehicle goes back to the borrower: a person
    arranges its release with the agency (arrears sends the agency nothing).

    The same redemption again changes nothing (exit 0). Refused, exit 2 naming why, nothing
    changed: no recovered vehicle, its sale recorded, the vehicle gone back already, a date ahead
    of today or before the recovery."""
    from arrears.storage.redemptions import redeem as record

    day = day_option(paid_on, "--paid-on")
    who, at = audit_actor(by, "--by"), as_of_instant(as_of)
    with refusable_transaction(database) as connection:
        done = record(connection, account_id=account_id, paid_on=day, by=who, why=_why(why), at=at)
    _given_back(done, account_id, day, who, json)


@sale_app.command("reinstate")
def reinstate(
    account_id: Account,
    paid_on: PaidOn,
    by: By,
    lender_allows: Annotated[
        bool,
        typer.Option(
            "--lender-allows",
            help="The lender reinstates where the statute gives no right: outside California, or "
            "once the right is spent or its period over. Recorded as the lender's choice.",
        ),
    ] = False,
    why: WhyOption = None,
    database: DatabaseOption = None,
    as_of: AsOf = None,
    json: Json = False,
) -> None:
    """Record that the borrower reinstated the contract before the sale, paying the past due and
    the expenses (Cal. Civ. Code 2983.3; Fin. Code 22329): the account leaves for cured (its past
    due cleared until the next import; a new delinquency starts it again), a notice of sale not yet
    handed to the letters provider is held back, and a later `sale record` of the recovery is
    refused. The vehicle goes back to the borrower: a person arranges its release with the agency.

    California's right may be used once in any 12 months and twice during the contract, and lasts
    until the notice's first sale day (10 days more on written request); outside California no
    statute gives it (UCC: redemption only). Where it is not the borrower's right, --lender-allows
    records it as the lender's choice; without it, refused.

    The same reinstatement again changes nothing (exit 0). Refused, exit 2 naming why, nothing
    changed: the right not the borrower's without --lender-allows, no recovered vehicle, its sale
    recorded, the vehicle gone back already, a date ahead of today or before the recovery."""
    from arrears.storage.redemptions import reinstate as record

    day = day_option(paid_on, "--paid-on")
    who, at = audit_actor(by, "--by"), as_of_instant(as_of)
    with refusable_transaction(database) as connection:
        done = record(
            connection,
            account_id=account_id,
            paid_on=day,
            by=who,
            why=_why(why),
            at=at,
            lender_allows=lender_allows,
        )
    _given_back(done, account_id, day, who, json)


@sale_app.command("return")
def return_car(
    account_id: Account,
    on: Annotated[
        str, typer.Option("--on", help="The day the vehicle went back to the borrower (YYYY-MM-DD).")
    ],
    by: By,
    why: WhyOption = None,
    database: DatabaseOption = None,
    as_of: AsOf = None,
    json: Json = False,
) -> None:
    """Record that the recovered vehicle went back to the borrower neither redeemed nor reinstated:
    paid before the agency took it (an order called off too late), an account settled, or the
    lender's decision. The recovery ends (no notice of sale, no sale), the account's stage is not
    changed, a notice of sale not yet handed to the letters provider is held back, and nothing
    counts against California's limit on reinstatements.

    The same return again changes nothing (exit 0). Refused, exit 2 naming why, nothing changed:
    no recovered vehicle, its sale recorded, gone back already otherwise, a date ahead of today or
    before the recovery, an account its recovery closed (`sale redeem|reinstate` then)."""
    from arrears.storage.returns import record_return

    day = day_option(on, "--on")
    who, at = audit_actor(by, "--by"), as_of_instant(as_of)
    with refusable_transaction(database) as connection:
        done = record_return(connection, account_id=account_id, on=day, by=who, why=_why(why), at=at)
    if json:
        emit_json(done.as_json())
        return
    said = (
        f"{account_id}: the return of {day.isoformat()} is recorded already; nothing changed"
        if not done.changed
        else f"{account_id}: vehicle of order {done.order_id} returned on {day.isoformat()}, recorded by "
        f"{who}; the account stays {done.stage}"
        + (f"; notice of sale {', '.join(map(str, done.held_back))} held back" if done.held_back else "")
    )
    console.print(said, markup=False, highlight=False, soft_wrap=True)


@sale_app.command("explain")
def explain(
    account_id: Account,
    requested_on: Annotated[
        str,
        typer.Option("--requested-on", help="The day the borrower's request came (YYYY-MM-DD)."),
    ],
    by: By,
    database: DatabaseOption = None,
    as_of: AsOf = None,
    json: Json = False,
) -> None:
    """Record a US borrower's request for the explanation of the deficiency or surplus after the
    sale (UCC 9-616(b)(1)(B): sent within 14 days after the request comes): the next recoveries
    step (the cycle, `arrears dispatch`, a letters webhook) writes the explanation again for this
    request, and it is mailed; the day it is due is its letter's deadline (`arrears letters list`).

    The same request again changes nothing (exit 0). Refused, exit 2 naming why, nothing changed:
    no sale recorded, an account outside the US, a request dated ahead of today or before the
    sale, a sale whose deficiency is barred (a person sends a record waiving it instead)."""
    from arrears.storage.redemptions import request_explanation
    from tasks.database import policy

    day = day_option(requested_on, "--requested-on")
    who, at = audit_actor(by, "--by"), as_of_instant(as_of)
    with refusable_transaction(database) as connection:
        done = request_explanation(
            connection,
            account_id=account_id,
            requested_on=day,
            by=who,
            at=at,
            profile_of=policy().profile,
        )
    if json:
        emit_json(done.as_json())
        return
    due = f"the explanation is due by {done.due_on.isoformat()} (UCC 9-616(b)(1)(B))"
    if not done.changed:
        said = f"{account_id}: this request is recorded already; nothing changed: {due}"
    else:
        said = (
            f"{account_id}: request of {day.isoformat()} recorded by {who}: the next recoveries step writes "
            f"the explanation of the sale of {done.sold_on.isoformat()} again and mails it; {due}"
        )
    console.print(said, markup=False, highlight=False, soft_wrap=True)
