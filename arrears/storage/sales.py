"""Data access for the sale of a recovered car: recording it (`arrears sale record`; what may come
before it, redemption, reinstatement, 10 more days, is `arrears.storage.redemptions`), and what the
cycle's recoveries step reads and writes afterwards (`tasks.sales`): the sales whose account is to move
on, and the deficiency's way back into legal referral.

The sale is an audit event of kind `vehicle_sale` on the account's timeline, with its accounting
(`arrears.sales.Disposition`) in its data: the claim, the explanation letter and the filing read
it there, never a balance the servicing system may since have reduced by the same proceeds. The
first sale of a recovery stands: the same again changes nothing, another is refused
(`SaleRefused`, naming why). Every function takes the caller's connection and does not commit.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Row, select, update

from arrears.currencies import display
from arrears.jurisdictions import Profile
from arrears.sales import (
    Disposition,
    amount_refusal,
    claim_after_payments,
    dispose,
    sale_bar,
)
from arrears.storage._common import Refused, event, holds_of, insert_events
from arrears.storage.accounts import lock_accounts
from arrears.storage.recoveries import (
    close_recovered,
    hold_back_notice,
    recovered_accounts,
    returned_to_borrower,
)
from arrears.storage.tables import account, assignment, audit, payment
from arrears.vocabulary import Exit, Hold, Stage

__all__ = [
    "SETTLED",
    "RecoveredCar",
    "Sale",
    "SaleRecorded",
    "SaleRefused",
    "check_after_recovery",
    "claimable",
    "events_data",
    "held_note",
    "paid_since",
    "record_sale",
    "recorded_sale",
    "recovered_car",
    "refer_deficiency",
    "said_of_order",
    "sale_from_event",
    "sales_to_settle",
    "settled_note",
]


# The audit kind that ends a sale's follow-up (`settled_note`).
SETTLED = "sale_settled"


class SaleRefused(Refused):
    """A sale or an extension that does not fit the account (`Refused`: why, and the option at fault)."""


@dataclass(frozen=True, slots=True)
class Sale:
    """A recorded sale, as its `vehicle_sale` event states it."""

    account_id: str
    order_id: str
    recorded_at: datetime
    sold_on: date
    disposition: Disposition
    barred: str | None  # why no deficiency may be claimed; None: it may
    sale_after: date | None
    by: str
    # The day line (1), the obligations secured, is calculated as of: the recovery's (UCC
    # 9-616(c)(1)(A): not more than 35 days before possession), or the day the sale was recorded
    # for a recovery reported before its balance was kept.
    secured_on: date
    # Payments received after this instant are not in line (1): those received before the sale was
    # recorded are among its credits (`credited_payments`, line (5)); those since reduce the claim.
    payments_since: datetime
    credited_payments: Decimal = Decimal(0)

    @property
    def typed_credits(self) -> Decimal:
        """The credits the person recorded (rebates of interest or charges), without the payments."""
        return self.disposition.credits - self.credited_payments

    @property
    def deficiency(self) -> Decimal:
        return self.disposition.deficiency

    @property
    def surplus(self) -> Decimal:
        return self.disposition.surplus

    def as_json(self) -> dict[str, Any]:
        d, money = self.disposition, (lambda a: display(a, self.disposition.currency))
        return {
            "account_id": self.account_id,
            "order_id": self.order_id,
            "sold_on": self.sold_on.isoformat(),
            "currency": d.currency,
            "secured": money(d.balance),
            "secured_on": self.secured_on.isoformat(),
            "proceeds": money(d.proceeds),
            "expenses": money(d.expenses),
            "credits": money(d.credits),
            "credited_payments": money(self.credited_payments),
            "deficiency": money(d.deficiency),
            "surplus": money(d.surplus),
            "sale_after": self.sale_after.isoformat() if self.sale_after else None,
            "barred": self.barred,
            "recorded_at": self.recorded_at.isoformat(),
            "by": self.by,
        }


@dataclass(frozen=True, slots=True)
class SaleRecorded:
    sale: Sale
    changed: bool  # False: this sale was recorded before, and nothing changed now
    closed: str | None = None  # the account's stage closed now (a sale before its notice was mailed)

    @property
    def outcome(self) -> str:
        """What follows the sale, in the words of the command and the timeline."""
        s, cur = self.sale, self.sale.disposition.currency
        if s.barred and s.surplus:
            return (
                f"surplus of {cur} {display(s.surplus, cur)} owed to the borrower (UCC 9-615(d)(1)), "
                f"explained all the same (UCC 9-616), though the sale came early ({s.barred}): the "
                "account stays closed"
            )
        if s.barred:
            return (
                f"no deficiency may be claimed ({s.barred}; UCC 9-626, Cal. Civ. Code 2983.2): "
                "no legal referral, the account stays closed"
            )
        if s.deficiency:
            return (
                f"deficiency of {cur} {display(s.deficiency, cur)}: the account re-enters legal referral "
                "at the next cycle's recoveries step (US: once the explanation, UCC 9-616, is mailed)"
            )
        if s.surplus:
            return (
                f"surplus of {cur} {display(s.surplus, cur)} owed to the borrower (UCC 9-615(d)(1)): "
                "the account stays closed"
            )
        return "neither deficiency nor surplus: the account stays closed"


@dataclass(frozen=True, slots=True)
class RecoveredCar:
    """An account's latest recovered car, and what its recovery did to the account."""

    account: Row[Any]
    order_id: str
    recovered_at: datetime
    closed: dict[str, Any] | None  # the data of the transition that closed the account on it


def recovered_car(connection: Connection, account_id: str, *, returned_ok: bool = False) -> RecoveredCar:
    lock_accounts(connection, [account_id])
    a = connection.execute(select(account).where(account.c.account_id == account_id)).first()
    if a is None:
        raise SaleRefused(f"no account {account_id!r}")
    r = connection.execute(
        select(assignment.c.order_id, assignment.c.recovered_at)
        .where(assignment.c.account_id == account_id, assignment.c.recovered_at.is_not(None))
        .order_by(assignment.c.recovered_at.desc(), assignment.c.id.desc())
        .limit(1)
    ).first()
    if r is None:
        raise SaleRefused(f"{account_id} has no recovered vehicle: no agency reported its car recovered")
    returned = returned_to_borrower(connection, account_id, r.order_id)
    if returned and not returned_ok:  # `arrears.storage.redemptions`: the car goes back, unsold
        kind, d = returned
        raise SaleRefused(
            f"{account_id}: the vehicle of order {r.order_id} goes back to the borrower, unsold "
            f"({kind}: paid on {d.get('paid_on')}, recorded by {d.get('by')})"
        )
    closed = next(
        (
            d
            for d in events_data(connection, account_id, "transition")
            if d.get("order_id") == r.order_id and d.get("to") == Exit.CLOSED.value
        ),
        None,
    )
    return RecoveredCar(a, r.order_id, r.recovered_at, closed)


def events_data(connection: Connection, account_id: str, kind: str) -> list[dict[str, Any]]:
    """The data of the account's events of `kind`, oldest first."""
    return [
        dict(d or {})
        for (d,) in connection.execute(
            select(audit.c.data)
            .where(audit.c.account_id == account_id, audit.c.kind == kind)
            .order_by(audit.c.at, audit.c.id)
        )
    ]


def check_after_recovery(rec: RecoveredCar, day: date, at: datetime, option: str) -> date:
    """The account's today; refused (`SaleRefused`, naming `option`) when `day`, a day something
    happened to the recovered car, is after it or before the car was recovered."""
    a = rec.account
    today = at.astimezone(ZoneInfo(a.timezone)).date()
    if day > today:
        raise SaleRefused(f"{a.account_id}: {day.isoformat()} is after today ({today.isoformat()})", option)
    recovered_on = rec.recovered_at.astimezone(ZoneInfo(a.timezone)).date()
    if day < recovered_on:
        raise SaleRefused(
            f"{a.account_id}: {day.isoformat()} is before the vehicle was recovered "
            f"({recovered_on.isoformat()})",
            option,
        )
    return today


def said_of_order(connection: Connection, account_id: str, kind: str, order_id: str) -> dict[str, Any] | None:
    """The data of the account's first event of `kind` about the recovery of `order_id`, or None."""
    return next((d for d in events_data(connection, account_id, kind) if d.get("order_id") == order_id), None)


def sale_from_event(account_id: str, data: dict[str, Any], recorded_at: datetime) -> Sale:
    """The sale a `vehicle_sale` event's data states, recorded at `recorded_at`."""
    currency = data["currency"]
    return Sale(
        account_id,
        data["order_id"],
        recorded_at,
        date.fromisoformat(data["sold_on"]),
        dispose(
            currency=currency,
            balance=Decimal(data["secured"]),
            proceeds=Decimal(data["proceeds"]),
            expenses=Decimal(data["fees"]),
            credits=Decimal(data["credits"]),
        ),
        data.get("barred"),
        date.fromisoformat(data["sale_after"]) if data.get("sale_after") else None,
        data.get("by", ""),
        date.fromisoformat(data["secured_on"]),
        datetime.fromisoformat(data["payments_since"]),
        Decimal(data.get("credited_payments", "0")),
    )


def recorded_sale(connection: Connection, account_id: str) -> Sale | None:
    """The account's latest sale recorded with its accounting (`record_sale`), or None."""
    row = connection.execute(
        select(audit.c.at, audit.c.data)
        .where(audit.c.account_id == account_id, audit.c.kind == "vehicle_sale")
        .order_by(audit.c.at.desc(), audit.c.id.desc())
    ).all()
    found = next((r for r in row if "deficiency" in (r.data or {})), None)
    return sale_from_event(account_id, dict(found.data), found.at) if found else None


def record_sale(
    connection: Connection,
    *,
    account_id: str,
    sold_on: date,
    proceeds: Decimal,
    expenses: Decimal,
    credits: Decimal,
    by: str,
    why: str | None,
    at: datetime,
    profile_of: Callable[[str], Profile],
) -> SaleRecorded:
    """Record the sale of the account's recovered car, audited as `by`'s: its accounting, and
    whether its deficiency is barred. A sale of a car whose notice of sale was not mailed yet
    closes the account now (nothing is left for the recovery to do; an unsent notice is held
    back). Refused (`SaleRefused`): no recovered car, amounts not of the currency, a sale date
    ahead of the account's today or before the recovery, another sale of the same recovery."""
    rec = recovered_car(connection, account_id)
    a = rec.account
    known = said_of_order(connection, account_id, "vehicle_sale", rec.order_id)
    amounts = {"--proceeds": proceeds, "--expenses": expenses, "--credits": credits}
    for option, amount in amounts.items():
        refused = amount_refusal(amount, a.currency)
        if refused:
            raise SaleRefused(f"{account_id}: {refused}", option)
    if known is not None:
        sale = sale_from_event(account_id, known, at)
        d = sale.disposition
        typed = (sale.sold_on, d.proceeds, d.expenses, sale.typed_credits)
        if typed == (sold_on, proceeds, expenses, credits):
            return SaleRecorded(recorded_sale(connection, account_id) or sale, False)
        raise SaleRefused(
            f"{account_id}: the sale of the vehicle of order {rec.order_id} was recorded already "
            f"(sold on {sale.sold_on.isoformat()} for {d.currency} {display(d.proceeds, d.currency)}, by "
            f"{sale.by}): a recovery is sold once, and a recorded sale stands"
        )
    today = check_after_recovery(rec, sold_on, at, "--sold-on")
    open_ = a.stage in tuple(s.value for s in Stage)
    if rec.closed is None and not open_:
        raise SaleRefused(
            f"{account_id} is {a.stage}, and the recovery of order {rec.order_id} did not close it: "
            "a sale is recorded on an account its recovery closed, or whose recovery waits"
        )
    rules = profile_of(a.jurisdiction)
    printed = (rec.closed or {}).get("sale_after")
    sale_after = date.fromisoformat(printed) if printed else None
    extended = said_of_order(connection, account_id, "sale_extended", rec.order_id) is not None
    barred = sale_bar(
        sold_on=sold_on,
        notice_owed=rules.sale_notice_days is not None,
        notice_mailed=rec.closed is not None and sale_after is not None,
        sale_after=sale_after,
        extended=extended,
    )
    secured, secured_on = _secured(connection, rec, today)
    # Payments received after the balance of line (1): before now, credits of the accounting;
    # after, they reduce the claim (`claimable`). The balance now has every payment until now in it.
    since = rec.recovered_at if secured is not None else at
    paid = paid_since(connection, account_id, since) if secured is not None else Decimal(0)
    d = dispose(
        currency=a.currency,
        balance=a.balance if secured is None else secured,
        proceeds=proceeds,
        expenses=expenses,
        credits=credits + paid,
    )
    money = {k: display(v, d.currency) for k, v in _amounts(d).items()}
    data = {
        "order_id": rec.order_id,
        "sold_on": sold_on.isoformat(),
        "currency": d.currency,
        **money,
        "secured_on": secured_on.isoformat(),
        "payments_since": since.isoformat(),
        "credited_payments": display(paid, d.currency),
        "sale_after": sale_after.isoformat() if sale_after else None,
        "extended": extended,
        "barred": barred,
        "by": by,
        "why": why,
    }
    sale = sale_from_event(account_id, data, at)
    recorded = SaleRecorded(sale, True)
    closed = None
    if rec.closed is None:  # the recovery waits (its notice not mailed, a hold): the car is gone now
        closed = _close_waiting(connection, account_id, sold_on, at)
        recorded = SaleRecorded(sale, True, closed)
    cur = d.currency
    detail = (
        f"vehicle of order {rec.order_id} sold on {sold_on.isoformat()} for {cur} {money['proceeds']} "
        f"(owed {cur} {money['secured']} on {secured_on.isoformat()}, expenses {cur} {money['fees']}, "
        f"credits {cur} {money['credits']}), recorded by {by}: {recorded.outcome}"
        + (f": {why}" if why else "")
    )
    insert_events(connection, [event(account_id, at, "vehicle_sale", detail, data, actor=f"operations:{by}")])
    return recorded


def _amounts(d: Disposition) -> dict[str, Decimal]:
    # `fees`: the key the referral's claim read before sales carried their accounting.
    return {
        "secured": d.balance,
        "proceeds": d.proceeds,
        "fees": d.expenses,
        "credits": d.credits,
        "deficiency": d.deficiency,
        "surplus": d.surplus,
    }


def _secured(connection: Connection, rec: "RecoveredCar", today: date) -> tuple[Decimal | None, date]:
    """Line (1) of the sale's accounting: the balance the servicing system had sent when the car was
    taken (kept with the recovery), as of the recovery's day, with payments received since among
    the credits; for a recovery reported before that balance was kept, None (the balance now),
    as of `today`, every payment until now in it."""
    for d in events_data(connection, rec.account.account_id, "assignment"):
        if (
            d.get("order_id") == rec.order_id
            and d.get("status") == "recovered"
            and "balance_at_recovery" in d
        ):
            recovered_on = rec.recovered_at.astimezone(ZoneInfo(rec.account.timezone)).date()
            return Decimal(d["balance_at_recovery"]), recovered_on
    return None, today


def _close_waiting(connection: Connection, account_id: str, sold_on: date, at: datetime) -> str | None:
    """Close an account whose recovered car was sold while its recovery waited (its notice of sale
    unmailed, a hold, an order called off), and hold back a notice of sale never handed to the
    provider: it would announce a sale that has taken place. The stage it left, or None."""
    found = recovered_accounts(connection, account_id=account_id)
    if not found:
        return None
    waiting = found[0]
    reason = f"vehicle sold on {sold_on.isoformat()} while its recovery waited"
    close_recovered(connection, waiting, at=at, reason=reason, data={"sale_after": None, "sold": True})
    hold_back_notice(connection, account_id, reason="the vehicle was sold", at=at)
    return waiting.stage


@dataclass(frozen=True, slots=True)
class SaleToSettle:
    """A sale whose account its recovery closed, not barred, not yet moved on."""

    sale: Sale
    jurisdiction: str
    timezone: str
    vin: str | None
    holds: frozenset[Hold]


def sales_to_settle(connection: Connection) -> list[SaleToSettle]:
    """The recorded sales, not barred and not settled, of accounts still closed whose deficiency
    has not taken them back into legal referral: a surplus's explanation to write or to see
    mailed, a deficiency's to write or to wait for, or its referral. One query when there is none."""
    settled = audit.alias("settled")
    rows = connection.execute(
        select(
            audit.c.account_id,
            audit.c.at,
            audit.c.data,
            account.c.jurisdiction,
            account.c.timezone,
            account.c.vin,
        )
        .join(account, account.c.account_id == audit.c.account_id)
        .where(
            audit.c.kind == "vehicle_sale",
            account.c.stage == Exit.CLOSED.value,
            # Once settled (`settled_note`) a sale is not read again: every recoveries step (the
            # cycle's, each outbox run's, each letters webhook's) runs this, and sales accumulate.
            ~select(settled.c.id)
            .where(
                settled.c.account_id == audit.c.account_id,
                settled.c.kind == SETTLED,
                settled.c.at >= audit.c.at,
            )
            .exists(),
        )
        .order_by(audit.c.at, audit.c.id)
    ).all()
    latest: dict[str, Any] = {}
    for r in rows:
        if "deficiency" in (r.data or {}):
            latest[r.account_id] = r
    found = []
    for account_id, r in latest.items():
        sale = sale_from_event(account_id, dict(r.data), r.at)
        # A barred sale claims no deficiency, but a surplus is the borrower's and explained all the same.
        if sale.barred and not sale.surplus:
            continue
        found.append(SaleToSettle(sale, r.jurisdiction, r.timezone, r.vin, frozenset()))
    holds = holds_of(connection, [s.sale.account_id for s in found]) if found else {}
    return [
        SaleToSettle(s.sale, s.jurisdiction, s.timezone, s.vin, holds.get(s.sale.account_id, frozenset()))
        for s in found
    ]


def refer_deficiency(connection: Connection, sale: Sale, *, at: datetime, reason: str) -> bool:
    """Take the closed account back into legal referral for the sale's deficiency, once (False if
    it was no longer closed), as a transition with `reason` in its audit trail: a new stage stay
    (episode), from which its referral is opened (`arrears.storage.referrals.open_referral`)."""
    done = connection.execute(
        update(account)
        .where(account.c.account_id == sale.account_id, account.c.stage == Exit.CLOSED.value)
        .values(
            stage=Stage.LEGAL_REFERRAL.value,
            stage_since=at,
            episode=account.c.episode + 1,
            updated_at=at,
        )
    ).rowcount
    if not done:
        return False
    cur = sale.disposition.currency
    data = {
        "from": Exit.CLOSED.value,
        "to": Stage.LEGAL_REFERRAL.value,
        "reason": reason,
        "order_id": sale.order_id,
        "sold_on": sale.sold_on.isoformat(),
        "deficiency": display(sale.deficiency, cur),
    }
    detail = f"{Exit.CLOSED.value} → {Stage.LEGAL_REFERRAL.value}: {reason}"
    insert_events(connection, [event(sale.account_id, at, "transition", detail, data)])
    return True


def settled_note(connection: Connection, sale: Sale, *, at: datetime, detail: str) -> None:
    """Say on the account's timeline that nothing more follows the sale here (its surplus explained
    and mailed, its deficiency referred, or neither owed): `sales_to_settle` reads it no more."""
    data = {"order_id": sale.order_id, "sold_on": sale.sold_on.isoformat()}
    insert_events(connection, [event(sale.account_id, at, SETTLED, detail, data)])


def held_note(connection: Connection, sale: Sale, *, hold: str, at: datetime) -> bool:
    """Say once per hold on the account's timeline that a hold keeps the sale's deficiency (or its
    explanation) back; False if it was said already."""
    for d in events_data(connection, sale.account_id, "sale_held"):
        if (d.get("order_id"), d.get("hold")) == (sale.order_id, hold):
            return False
    detail = (
        f"the deficiency after the sale of {sale.sold_on.isoformat()} is held back by hold:{hold}: "
        "no explanation and no legal referral until it is lifted"
    )
    data = {"order_id": sale.order_id, "hold": hold}
    insert_events(connection, [event(sale.account_id, at, "sale_held", detail, data)])
    return True


def paid_since(connection: Connection, account_id: str, since: datetime) -> Decimal:
    """The payments received after `since` (a sale's `payments_since`: line (1) does not count them)."""
    total = Decimal(0)
    for (amount,) in connection.execute(
        select(payment.c.amount).where(payment.c.account_id == account_id, payment.c.received_at > since)
    ):
        total += amount
    return total


def claimable(connection: Connection, sale: Sale) -> Decimal:
    """What is left to claim of the sale's deficiency: less the payments received since that its
    accounting did not credit (never below zero: a refund is the servicing system's)."""
    later = paid_since(connection, sale.account_id, sale.payments_since) - sale.credited_payments
    return claim_after_payments(sale.deficiency, max(later, Decimal(0)))
