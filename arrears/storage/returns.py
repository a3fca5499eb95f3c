"""Data access for a recovered car given back to the borrower without a redemption or a
reinstatement (`arrears sale return`).

Why a record of its own: a redemption (UCC 9-623) or a reinstatement (Cal. Civ. Code 2983.3) is a
borrower's payment after the car was taken, and a reinstatement counts against California's
once-in-12-months limit (`arrears.reinstatement`). A car goes back for other reasons too: the
borrower paid before the agency took it (an order called off too late), the account was settled,
or the lender decides to. Recorded as a reinstatement, such a return would spend a right the
borrower never used. So it is its own event (`RETURNED`): the recovery ends (no notice of sale,
no sale: `recoveries.returned_to_borrower`), the account's stage is not changed (what it owes is
the servicing file's), and a notice of sale not yet handed to the provider is held back.

One return per recovery: the same again changes nothing, another is refused. The function takes
the caller's connection and does not commit.
"""

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection

from arrears.storage._common import event, insert_events
from arrears.storage.recoveries import RETURNED, hold_back_notice, returned_to_borrower
from arrears.storage.sales import SaleRefused, check_after_recovery, recovered_car, said_of_order

__all__ = ["CarReturned", "record_return"]


@dataclass(frozen=True, slots=True)
class CarReturned:
    account_id: str
    order_id: str
    on: date
    stage: str
    changed: bool  # False: this return was recorded before, and nothing changed now
    held_back: tuple[int, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "order_id": self.order_id,
            "on": self.on.isoformat(),
            "stage": self.stage,
            "changed": self.changed,
            "notices_held_back": list(self.held_back),
        }


def record_return(
    connection: Connection, *, account_id: str, on: date, by: str, why: str | None, at: datetime
) -> CarReturned:
    """Record that the account's latest recovered car went back to the borrower on `on`, neither
    redeemed nor reinstated, audited as `by`'s. Refused (`SaleRefused`): no recovered car, its
    sale recorded, it went back already otherwise, a day ahead of today or before the recovery,
    or an account its recovery closed (what closed it, a notice of sale mailed, stands: a
    redemption or a reinstatement reopens it, `arrears sale redeem|reinstate`)."""
    rec = recovered_car(connection, account_id, returned_ok=True)
    a = rec.account
    sold = said_of_order(connection, account_id, "vehicle_sale", rec.order_id)
    if sold is not None:
        raise SaleRefused(
            f"{account_id}: the vehicle of order {rec.order_id} was sold on {sold.get('sold_on')}: "
            "it cannot go back"
        )
    back = returned_to_borrower(connection, account_id, rec.order_id)
    if back is not None:
        kind, data = back
        if kind == RETURNED and data.get("on") == on.isoformat():
            return CarReturned(account_id, rec.order_id, on, a.stage, False)
        when = data.get("on") or data.get("paid_on")
        raise SaleRefused(
            f"{account_id}: the vehicle of order {rec.order_id} went back already ({kind}, {when}, recorded "
            f"by {data.get('by')})"
        )
    if rec.closed is not None:
        raise SaleRefused(
            f"{account_id}: its recovery closed the account (the notice of sale was mailed): a car that "
            "goes back now is redeemed or its contract reinstated (`arrears sale redeem|reinstate`)"
        )
    check_after_recovery(rec, on, at, "--on")
    held = hold_back_notice(connection, account_id, reason="the vehicle went back to the borrower", at=at)
    detail = (
        f"vehicle of order {rec.order_id} returned to the borrower on {on.isoformat()}, neither redeemed "
        f"nor reinstated, recorded by {by}; the account stays {a.stage}"
        + (f"; notice of sale {', '.join(map(str, held))} held back" if held else "")
        + (f": {why}" if why else "")
    )
    data = {"order_id": rec.order_id, "on": on.isoformat(), "stage": a.stage, "held_back": held, "by": by}
    insert_events(
        connection, [event(account_id, at, RETURNED, detail, data | {"why": why}, actor=f"operations:{by}")]
    )
    return CarReturned(account_id, rec.order_id, on, a.stage, True, tuple(held))
