"""Data access for vendor orders: repossession orders to the recovery agent.

An order is an audit event of kind `vendor_order` (`data.order_id`, `data.action` placed |
cancelled | recovered | closed), the decision's trail, and an agency assignment
(`arrears.storage.assignments`), which `tasks.agency` sends to the agency provider.
`cancel_vendor_orders` runs in bulk in the daily cycle and on import: a payment, plan, settlement or
hold that overtakes an order cancels it, and its assignment is called off at the agency. An order
the agency closes without the car (`close_unrecovered_order`) sends its review back to a person.
Functions take the caller's connection and do not commit.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, or_, select

from arrears.compliance.holds import PaymentEvent, cancels_repossession
from arrears.currencies import display
from arrears.storage._common import event, for_account, holds_of, insert_events, inserted_id
from arrears.storage.accounts import lock_accounts
from arrears.storage.assignments import add_assignment, request_cancel
from arrears.storage.bulk import among
from arrears.storage.installation import installation_id
from arrears.storage.mailing import mailing_address
from arrears.storage.reviews import ReviewState, current_review
from arrears.storage.tables import account, audit, payment, plan, review, settlement
from arrears.vocabulary import DecisionKind, HoldScope, Stage

__all__ = [
    "CLOSED_UNRECOVERED",
    "VendorOrder",
    "cancel_vendor_orders",
    "close_unrecovered_order",
    "create_vendor_order",
    "open_vendor_orders",
    "reopened_reasons",
]

# Why a review goes back to a person after its order (`close_unrecovered_order`): the new review's
# reason, and the start of its audit event's detail.
CLOSED_UNRECOVERED = "agency closed the order without recovery"


@dataclass(frozen=True, slots=True)
class VendorOrder:
    order_id: str
    account_id: str
    placed_at: datetime
    review_id: int | None


def create_vendor_order(
    connection: Connection, *, state: ReviewState, at: datetime, reviewer: str
) -> str | None:
    """Place the repossession order of an approved review (an audit event, and the assignment the
    agency task sends), once; returns its id. `cancel_vendor_orders` withdraws it at once if a
    payment, a plan or a hold follows (regulators' most common finding in auto servicing is a car
    taken after the borrower paid, because nobody cancelled the agent's order)."""
    order_id = f"RO-{state.review_id}"
    existing = [
        e for e in _order_events(connection, [state.account_id]) if e.data.get("order_id") == order_id
    ]
    if existing:
        return order_id
    address = mailing_address(connection, state.account_id)
    blocked = "no VIN on file" if not state.vin else "no mailing address on file" if address is None else None
    add_assignment(
        connection,
        # Namespaced by the installation id (DESIGN §3): the key travels to the agency, which
        # deduplicates by it, and another database's RO-1 of the same account id is another car.
        key=f"{installation_id(connection)}-assignment-{state.account_id.lower()}-{order_id.lower()}",
        order_id=order_id,
        account_id=state.account_id,
        review_id=state.review_id,
        at=at,
        blocked=blocked,
    )
    insert_events(
        connection,
        [
            event(
                state.account_id,
                at,
                "vendor_order",
                f"repossession order {order_id} placed with the recovery agent "
                f"for vehicle {state.vin or '(no VIN on file)'}",
                {"order_id": order_id, "action": "placed", "review_id": state.review_id, "vin": state.vin},
                actor=f"reviewer:{reviewer}",
            )
        ],
    )
    return order_id


def _order_events(connection: Connection, account_ids: Any) -> list[Any]:
    return list(
        connection.execute(
            select(audit.c.id, audit.c.account_id, audit.c.at, audit.c.data)
            .where(audit.c.kind == "vendor_order", audit.c.account_id.in_(account_ids))
            .order_by(audit.c.at, audit.c.id)
        ).all()
    )


def open_vendor_orders(connection: Connection, *, account_id: str | None = None) -> list[VendorOrder]:
    """Orders placed and neither cancelled nor done (the car recovered), for accounts a reviewer
    ever sent to repossession."""
    repossessed = select(review.c.account_id).where(
        review.c.decision == DecisionKind.REPOSSESS.value, for_account(account_id, review.c.account_id)
    )
    orders: dict[str, VendorOrder | None] = {}
    for e in _order_events(connection, repossessed):
        data = e.data or {}
        if data.get("action") == "placed":
            orders[data["order_id"]] = VendorOrder(
                data["order_id"], e.account_id, e.at, data.get("review_id")
            )
        elif data.get("action") in ("cancelled", "recovered", "closed"):
            orders[data["order_id"]] = None
    return [o for o in orders.values() if o is not None]


def close_unrecovered_order(
    connection: Connection,
    *,
    account_id: str,
    order_id: str,
    review_id: int | None,
    reason: str | None,
    at: datetime,
) -> int | None:
    """The agency closed an order without the car (could not locate it, refused the assignment):
    the order is done, and the decision that placed it needs a person again. Left decided, the
    review listed nowhere and refused every new decision, and the account waited in review for
    good. So a new review of the same stay opens, with the closing as its reason: listed, decided
    again by `arrears review decide` or the flow run the next cycle starts for it (a new review
    id, so a new repossession order and assignment key). It keeps the cure deadline of the notice
    given in this stay: the right to cure has run its course, and no second notice is owed.

    Returns the new review's id; None when none opens: the account left review (paid, cured,
    closed) or its current review is not the one that placed the order (reopened already, by a
    status told twice or polled again; decided again since). Every step is written once."""
    said = reason or "no reason given"
    why = f"{CLOSED_UNRECOVERED}: {said}"
    done = [e for e in _order_events(connection, [account_id]) if (e.data or {}).get("order_id") == order_id]
    events = []
    if not any(e.data.get("action") == "closed" for e in done):
        events.append(
            event(
                account_id,
                at,
                "vendor_order",
                f"repossession order {order_id} closed by the agency without recovery: {said}",
                {"order_id": order_id, "action": "closed", "reason": reason},
            )
        )
    lock_accounts(connection, [account_id])
    current = current_review(connection, account_id) if review_id is not None else None
    reopened = None
    if current is not None and current.review_id == review_id and current.decision == DecisionKind.REPOSSESS:
        opened = max(at, current.decided_at or current.opened_at)
        reopened = inserted_id(
            connection.execute(
                review.insert().values(
                    account_id=account_id, opened_at=opened, cure_deadline=current.cure_deadline, reason=why
                )
            )
        )
        events.append(
            event(
                account_id,
                opened,
                "review",
                f"repossession review {reopened} opened: {why}; review {review_id} "
                f"(repossess, by {current.reviewer}) needs a person again",
                {"review_id": reopened, "reopens": review_id, "order_id": order_id, "reason": why},
            )
        )
    insert_events(connection, events)
    return reopened


def reopened_reasons(connection: Connection, review_ids: Sequence[int]) -> dict[int, str]:
    """Of these reviews, the undecided ones an order closed without the car opened, with why
    (`close_unrecovered_order`): what `arrears review list` tells the reviewer."""
    if not review_ids:
        return {}
    return {
        int(i): str(reason)
        for i, reason in connection.execute(
            select(review.c.id, review.c.reason).where(
                among(review.c.id, sorted(set(review_ids))),
                review.c.decided_at.is_(None),
                review.c.reason.startswith(f"{CLOSED_UNRECOVERED}:", autoescape=True),
            )
        )
    }


def cancel_vendor_orders(
    connection: Connection,
    *,
    as_of: datetime,
    cycle_id: int | None = None,
    account_id: str | None = None,
) -> int:
    """Cancel at once every open repossession order whose account has since paid anything,
    agreed a plan or a settlement (running or paid), come under a collection hold, or left review.
    A few queries per cycle."""
    # An order placed after `as_of` did not exist yet then (a replayed or simulated timeline).
    orders = [o for o in open_vendor_orders(connection, account_id=account_id) if o.placed_at <= as_of]
    if not orders:
        return 0
    ids = sorted({o.account_id for o in orders})
    earliest = min(o.placed_at for o in orders)
    # A payment the reviewer could not have seen overtakes the order: received after it was
    # placed, or received before but not yet applied then (imported after the decision form was
    # shown, or between the import and the cycle that applies it).
    paid: dict[str, list[Any]] = defaultdict(list)
    for r in connection.execute(
        select(
            payment.c.account_id,
            payment.c.payment_id,
            payment.c.amount,
            payment.c.received_at,
            payment.c.applied_at,
        )
        .where(
            payment.c.account_id.in_(ids),
            payment.c.received_at <= as_of,
            or_(
                payment.c.received_at >= earliest,
                payment.c.applied_at.is_(None),
                payment.c.applied_at >= earliest,
            ),
        )
        .order_by(payment.c.received_at, payment.c.payment_id)
    ):
        paid[r.account_id].append(r)
    plans: dict[str, list[Any]] = defaultdict(list)
    for active in connection.execute(
        select(plan.c.account_id, plan.c.id, plan.c.updated_at).where(
            plan.c.account_id.in_(ids), plan.c.status == "active", plan.c.updated_at >= earliest
        )
    ):
        plans[active.account_id].append(active)
    settling = set(
        connection.execute(
            select(settlement.c.account_id).where(
                settlement.c.account_id.in_(ids), settlement.c.status.in_(("active", "paid"))
            )
        ).scalars()
    )
    holds = holds_of(connection, ids)
    stages: dict[str, str] = {}
    currencies: dict[str, str] = {}
    for a in connection.execute(
        select(account.c.account_id, account.c.stage, account.c.currency).where(account.c.account_id.in_(ids))
    ):
        stages[a.account_id], currencies[a.account_id] = a.stage, a.currency
    events = []
    for o in orders:
        why = None
        later = [p for p in paid[o.account_id] if p.amount > 0 and _unseen_by_reviewer(p, o.placed_at)]
        held = holds.get(o.account_id, frozenset())
        if cancels_repossession(held, PaymentEvent(later[0].amount, later[0].received_at) if later else None):
            if later:
                p = later[0]
                # The amount at its currency's precision (storage keeps four places: `412.5000`).
                c = currencies[o.account_id]
                paid_amount = f"{c} {display(p.amount, c)}"
                why = f"payment {p.payment_id} of {paid_amount} received {p.received_at.isoformat()}"
            else:
                why = f"hold:{min(h for h in held if h.scope is HoldScope.COLLECTION).value}"
        elif any(p.updated_at > o.placed_at for p in plans[o.account_id]):
            why = "a repayment plan was agreed"
        elif o.account_id in settling:
            why = "a settlement was agreed"
        elif stages.get(o.account_id) != Stage.REPOSSESSION_REVIEW:
            why = f"account is now {stages.get(o.account_id)}"
        if why:
            request_cancel(connection, order_id=o.order_id, reason=why, at=as_of)
            events.append(
                event(
                    o.account_id,
                    as_of,
                    "vendor_order",
                    f"repossession order {o.order_id} cancelled: {why}",
                    {"order_id": o.order_id, "action": "cancelled", "reason": why},
                    cycle_id=cycle_id,
                )
            )
    insert_events(connection, events)
    return len(events)


def _unseen_by_reviewer(paid: Any, placed_at: datetime) -> bool:
    """Whether the reviewer who placed an order at `placed_at` could not have seen this payment."""
    return bool(paid.received_at > placed_at or paid.applied_at is None or paid.applied_at > placed_at)
