"""Data access for recovered cars: the accounts whose repossession the agency reported done, and
their closing; a car the borrower got back before its sale (`returned_to_borrower`).

The recovery itself is recorded on the assignment (`assignments.move_assignment`); what follows
it (close now, or once the notice of sale is mailed) is decided by `arrears.recovery` and done
by `tasks.recovery` with these functions. Functions take the caller's connection and do not commit.
"""

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select, update

from arrears.storage._common import event, holds_of, insert_events
from arrears.storage.bulk import chunks
from arrears.storage.letters import mark_blocked
from arrears.storage.tables import account, assignment, audit, letter
from arrears.vocabulary import Exit, Hold, Stage

__all__ = [
    "REDEEMED",
    "REINSTATED",
    "Recovered",
    "close_recovered",
    "hold_back_notice",
    "note_stopped",
    "recovered_accounts",
    "returned_to_borrower",
]

_OPEN = tuple(s.value for s in Stage)
# The audit kinds of a car the borrower got back before its sale (`arrears.storage.redemptions`):
# redeemed (UCC 9-623), or the contract reinstated (Cal. Civ. Code 2983.3).
REDEEMED = "vehicle_redeemed"
REINSTATED = "vehicle_reinstated"
# What ends a recovery: the car sold, or returned to the borrower.
_RECOVERY_ENDED = ("vehicle_sale", REDEEMED, REINSTATED)


@dataclass(frozen=True, slots=True)
class Recovered:
    """An account still open whose car the agency recovered (its latest recovery)."""

    account_id: str
    order_id: str
    review_id: int | None
    stage: str
    jurisdiction: str
    timezone: str
    currency: str
    vin: str | None
    recovered_at: datetime
    recovery: Any
    holds: frozenset[Hold] = field(default=frozenset())  # in force now: a collection hold stops the sale
    # Why the order was called off before the car was taken (a payment, a hold; None: it never
    # was): the decision it carried out was withdrawn, so a person decides what follows.
    called_off: str | None = None
    # What the notice of sale states: the past due (to reinstate) and the balance (to redeem).
    past_due: Decimal = Decimal(0)
    balance: Decimal = Decimal(0)


def recovered_accounts(connection: Connection, *, account_id: str | None = None) -> list[Recovered]:
    """Open accounts with a recovered car: what a recovery has not yet moved on, with their holds
    (three queries). An account whose car's sale is recorded is left out: the sale closed it, and
    its deficiency may have taken it back into legal referral since (`arrears.storage.sales`); so
    is one whose car was returned to the borrower (redeemed, or its contract reinstated: a cured
    account that falls behind again is open, and its old recovery is not to be noticed for sale)."""
    statement = (
        select(
            assignment.c.account_id,
            assignment.c.order_id,
            assignment.c.review_id,
            assignment.c.recovered_at,
            assignment.c.recovery,
            assignment.c.reason,
            account.c.stage,
            account.c.jurisdiction,
            account.c.timezone,
            account.c.currency,
            account.c.vin,
            account.c.past_due_amount,
            account.c.balance,
        )
        .join(account, account.c.account_id == assignment.c.account_id)
        .where(assignment.c.recovered_at.is_not(None), account.c.stage.in_(_OPEN))
        .order_by(assignment.c.recovered_at, assignment.c.id)
    )
    if account_id is not None:
        statement = statement.where(assignment.c.account_id == account_id)
    latest: dict[str, Recovered] = {}
    for r in connection.execute(statement):
        latest[r.account_id] = Recovered(
            r.account_id,
            r.order_id,
            r.review_id,
            r.stage,
            r.jurisdiction,
            r.timezone,
            r.currency,
            r.vin,
            r.recovered_at,
            r.recovery,
            # Only `request_cancel` gives a recovered order a reason.
            called_off=r.reason,
            past_due=r.past_due_amount,
            balance=r.balance,
        )
    for chunk in chunks(sorted(latest)):
        for account_id, data in connection.execute(
            select(audit.c.account_id, audit.c.data).where(
                audit.c.kind.in_(_RECOVERY_ENDED), audit.c.account_id.in_(chunk)
            )
        ):
            if account_id in latest and (data or {}).get("order_id") == latest[account_id].order_id:
                del latest[account_id]
    holds = holds_of(connection, list(latest)) if latest else {}
    return [replace(r, holds=holds.get(r.account_id, frozenset())) for r in latest.values()]


def note_stopped(connection: Connection, recovered: Recovered, *, at: datetime, reason: str) -> bool:
    """Say on the account's timeline, once per reason, that its recovered car waits for a person
    (a hold, a notice of sale that cannot be mailed): without it nothing would show that an
    account no review lists any more has stopped. False if it was said already."""
    said = connection.execute(
        select(audit.c.data)
        .where(audit.c.account_id == recovered.account_id, audit.c.kind == "recovery")
        .order_by(audit.c.at.desc(), audit.c.id.desc())
        .limit(1)
    ).scalar()
    if said and said.get("order_id") == recovered.order_id and said.get("reason") == reason:
        return False
    detail = f"vehicle of repossession order {recovered.order_id} recovered and waiting: {reason}"
    data = {"order_id": recovered.order_id, "reason": reason}
    insert_events(connection, [event(recovered.account_id, at, "recovery", detail, data)])
    return True


def close_recovered(
    connection: Connection, recovered: Recovered, *, at: datetime, reason: str, data: dict[str, Any]
) -> bool:
    """Close the account on its recovery, once (False if it was no longer in the stage it had),
    with the transition and the recovery in its audit trail."""
    done = connection.execute(
        update(account)
        .where(account.c.account_id == recovered.account_id, account.c.stage == recovered.stage)
        .values(stage=Exit.CLOSED.value, stage_since=at, episode=account.c.episode + 1, updated_at=at)
    ).rowcount
    if not done:
        return False
    detail = f"{recovered.stage} → {Exit.CLOSED.value}: {reason}"
    recovery = dict(recovered.recovery or {})
    insert_events(
        connection,
        [
            event(
                recovered.account_id,
                at,
                "transition",
                detail,
                {
                    "from": recovered.stage,
                    "to": Exit.CLOSED.value,
                    "reason": reason,
                    "order_id": recovered.order_id,
                    "recovery": recovery,
                }
                | data,
            )
        ],
    )
    return True


def returned_to_borrower(
    connection: Connection, account_id: str, order_id: str
) -> tuple[str, dict[str, Any]] | None:
    """The kind and data of the event that gave the car of `order_id` back to the borrower
    (`REDEEMED`, `REINSTATED`), or None: such a car is not sold, nor noticed for sale."""
    for kind, data in connection.execute(
        select(audit.c.kind, audit.c.data)
        .where(audit.c.account_id == account_id, audit.c.kind.in_((REDEEMED, REINSTATED)))
        .order_by(audit.c.at, audit.c.id)
    ):
        if (data or {}).get("order_id") == order_id:
            return kind, dict(data)
    return None


def hold_back_notice(connection: Connection, account_id: str, *, reason: str, at: datetime) -> list[int]:
    """Block, with `reason`, the account's notices of sale never handed to the provider: once the
    car is sold or returned they would announce a sale that will not come. The ids blocked."""
    unsent = list(
        connection.execute(
            select(letter.c.id).where(
                letter.c.account_id == account_id,
                letter.c.kind == "notice_of_sale",
                letter.c.status == "pending",
                letter.c.submitted_at.is_(None),
            )
        ).scalars()
    )
    for letter_id in unsent:
        mark_blocked(connection, letter_id=letter_id, reason=reason, at=at, status="blocked")
    return unsent
