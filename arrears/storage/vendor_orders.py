"""Data access for vendor orders: repossession orders to the recovery agent.

An order is an audit event of kind `vendor_order` (`data.order_id`, `data.action` placed |
cancelled | recovered | closed), the decision's trail, and an agency assignment
(`arrears.storage.assignments`), which `tasks.agency` sends to the agency provider.
`cancel_vendor_orders` runs in bulk in the daily cycle and on import: a payment, plan, settlement or
hold that overtakes an order cancels it, and its assignment is called off at the agency.

An approved repossession whose order ends undone sends its review back to a person: a new review
of the stay opens (`_reopen`), listed with why, to be decided again. Left standing, the decided
review has nothing to carry it out, is listed nowhere and refuses every new decision, and nothing
moves the account out of review (charge-off passes review by). The order may end so because the
agency closed it without the car (`close_unrecovered_order`, as its status comes), because we
called it off while the account stays in review (a partial payment, a hold, a settlement that
lapsed: `cancel_vendor_orders`), or because it could not be sent for want of a VIN or a mailing
address (such a blocked order goes after all once an import brings them:
`release_blocked_orders`, unless a person decided again first), or none was placed because a hold
barred it when the reviewer approved.
Functions take the caller's connection and do not commit.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, or_, select, true

from arrears.compliance.holds import PaymentEvent, cancels_repossession
from arrears.currencies import display
from arrears.storage._common import event, for_account, holds_of, insert_events, inserted_id
from arrears.storage.accounts import lock_accounts
from arrears.storage.assignments import (
    AssignmentRow,
    add_assignment,
    blocked_assignments,
    list_assignments,
    request_cancel,
    unblock,
)
from arrears.storage.bulk import among
from arrears.storage.installation import installation_id
from arrears.storage.mailing import mailing_address
from arrears.storage.reviews import ReviewState, close_review
from arrears.storage.tables import account, assignment, audit, payment, plan, review, settlement
from arrears.vocabulary import DecisionKind, HoldScope, Stage

__all__ = [
    "BLOCKED",
    "CALLED_OFF",
    "CLOSED_UNRECOVERED",
    "WITHHELD",
    "VendorOrder",
    "cancel_vendor_orders",
    "close_unrecovered_order",
    "create_vendor_order",
    "open_vendor_orders",
    "release_blocked_orders",
    "reopened_reasons",
]

# Why a review goes back to a person after its order (`close_unrecovered_order`): the new review's
# reason, and the start of its audit event's detail.
CLOSED_UNRECOVERED = "agency closed the order without recovery"
# Likewise for an order we called off while the account stays in review, and one that cannot be sent.
CALLED_OFF = "repossession order called off"
BLOCKED = "repossession order cannot be sent to the agency"
WITHHELD = "repossession order withheld"  # approved under a hold that bars it: none was placed
_REOPENED = (CLOSED_UNRECOVERED, CALLED_OFF, BLOCKED, WITHHELD)
_SETTLEMENT_AGREED = "a settlement was agreed"


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
    blocked = _missing(connection, state.account_id)
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
    good. So a new review of the same stay opens, with the closing as its reason (`_reopen`).

    Returns the new review's id; None when none opens: the account left review (paid, cured,
    closed), a later decision stands, or a person is asked already (reopened by a status told twice
    or polled again). Every step is written once."""
    said = reason or "no reason given"
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
    stay = _stays(connection, [account_id]).get(account_id) if review_id is not None else None
    reopened = None
    if stay is not None and stay.stalled(review_id):
        assert stay.decided is not None
        reopened, opened = _reopen(
            connection, decided=stay.decided, order_id=order_id, why=f"{CLOSED_UNRECOVERED}: {said}", at=at
        )
        events.append(opened)
    insert_events(connection, events)
    return reopened


@dataclass(frozen=True, slots=True)
class _Stay:
    """An account's present stay in repossession review, as its reviews tell it."""

    decided: Any | None  # the review decided last: its decision stands (a closed one has none)
    asked: bool  # a review of the stay waits for a person's decision

    def stalled(self, review_id: int | None) -> bool:
        """Whether the repossession `review_id` approved still stands with nobody asked since: its
        order ending undone leaves nothing to move the account."""
        d = self.decided
        return not self.asked and d is not None and d.id == review_id and d.decision == DecisionKind.REPOSSESS


def _stays(connection: Connection, account_ids: Sequence[str]) -> dict[str, _Stay]:
    """The stays of those of `account_ids` in repossession review with a review; one query."""
    found: dict[str, list[Any]] = defaultdict(list)
    for r in connection.execute(
        select(review)
        .select_from(review.join(account, account.c.account_id == review.c.account_id))
        .where(
            among(review.c.account_id, sorted(set(account_ids))),
            account.c.stage == Stage.REPOSSESSION_REVIEW.value,
            review.c.opened_at >= account.c.stage_since,
        )
        .order_by(review.c.opened_at, review.c.id)
    ):
        found[r.account_id].append(r)
    return {
        a: _Stay(
            next((r for r in reversed(rs) if r.decision is not None), None),
            any(r.decided_at is None for r in rs),
        )
        for a, rs in found.items()
    }


def _reopen(
    connection: Connection,
    *,
    decided: Any,
    order_id: str,
    why: str,
    at: datetime,
    cycle_id: int | None = None,
) -> tuple[int, dict[str, Any]]:
    """Open a new review of the stay for a person to decide again, with `why` as its reason: listed
    (`reopened_reasons`), decided by `arrears review decide` or the flow run the next cycle starts
    for it (a new review id, so a new repossession order and assignment key). It keeps the cure
    deadline of the notice given in this stay: the right to cure has run its course, and no
    second notice is owed. Returns its id and its audit event (the caller writes it)."""
    opened = max(at, decided.decided_at or decided.opened_at)
    reopened = int(
        inserted_id(
            connection.execute(
                review.insert().values(
                    account_id=decided.account_id,
                    opened_at=opened,
                    cure_deadline=decided.cure_deadline,
                    reason=why,
                )
            )
        )
    )
    return reopened, event(
        decided.account_id,
        opened,
        "review",
        f"repossession review {reopened} opened: {why}; review {decided.id} "
        f"({decided.decision}, by {decided.reviewer}) needs a person again",
        {"review_id": reopened, "reopens": decided.id, "order_id": order_id, "reason": why},
        cycle_id=cycle_id,
    )


def reopened_reasons(connection: Connection, review_ids: Sequence[int]) -> dict[int, str]:
    """Of these reviews, the undecided ones an order's end sent back to a person (`_reopen`: closed
    by the agency without the car, called off by us, blocked for want of data), with why: what
    `arrears review list` tells the reviewer."""
    if not review_ids:
        return {}
    return {
        int(i): str(reason)
        for i, reason in connection.execute(
            select(review.c.id, review.c.reason).where(
                among(review.c.id, sorted(set(review_ids))),
                review.c.decided_at.is_(None),
                or_(*(review.c.reason.startswith(f"{start}:", autoescape=True) for start in _REOPENED)),
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
    agreed a plan or a settlement (running or paid), come under a collection hold, or left review;
    returns how many. Then the reviews whose approved order ended undone go back to a person
    (`_reopen_stalled`). A few queries per cycle, whoever calls (the cycle's refresh, an import,
    `hold place`, a settlement, a decision)."""
    cancelled = _call_off(connection, as_of=as_of, cycle_id=cycle_id, account_id=account_id)
    _reopen_stalled(connection, as_of=as_of, cycle_id=cycle_id, account_id=account_id)
    return cancelled


def _call_off(
    connection: Connection, *, as_of: datetime, cycle_id: int | None, account_id: str | None
) -> int:
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
            why = _SETTLEMENT_AGREED
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


def _stalled_accounts(
    connection: Connection, *, as_of: datetime, account_id: str | None, only: Sequence[str] | None = None
) -> list[str]:
    """Accounts in repossession review whose approved order may have ended undone (an assignment of
    a repossess review of the stay blocked, called off or closed, or none) with nobody asked since, and with
    nothing left that may still move them: no payment waiting to be applied (it may cure), no
    settlement running or paid, no plan running, something past due. One query."""
    mine = account.c.account_id
    asked = select(review.c.id).where(
        review.c.account_id == mine,
        review.c.opened_at >= account.c.stage_since,
        review.c.decided_at.is_(None),
    )
    of_review = assignment.c.review_id == review.c.id
    ended = (
        select(review.c.id)
        .where(
            review.c.account_id == mine,
            review.c.opened_at >= account.c.stage_since,
            review.c.decision == DecisionKind.REPOSSESS.value,
            or_(
                select(assignment.c.id)
                .where(
                    of_review, assignment.c.status.in_(("blocked", "cancel_pending", "cancelled", "closed"))
                )
                .exists(),
                ~select(assignment.c.id).where(of_review).exists(),  # withheld: no order placed
            ),
        )
        .correlate(account)
    )
    unapplied = select(payment.c.account_id).where(
        payment.c.account_id == mine, payment.c.applied_at.is_(None), payment.c.received_at <= as_of
    )
    settling = select(settlement.c.id).where(
        settlement.c.account_id == mine, settlement.c.status.in_(("active", "paid"))
    )
    planned = select(plan.c.id).where(plan.c.account_id == mine, plan.c.status == "active")
    return list(
        connection.execute(
            select(mine)
            .where(
                account.c.stage == Stage.REPOSSESSION_REVIEW.value,
                for_account(account_id, mine),
                true() if only is None else among(mine, sorted(only)),
                account.c.past_due_amount > 0,
                account.c.balance > 0,
                ended.exists(),
                ~asked.exists(),
                ~unapplied.exists(),
                ~settling.exists(),
                ~planned.exists(),
            )
            .order_by(mine)
        ).scalars()
    )


def _reopen_stalled(
    connection: Connection, *, as_of: datetime, cycle_id: int | None, account_id: str | None
) -> int:
    """Send back to a person each review whose approved repossession stands with nothing to carry
    it out, as `close_unrecovered_order` does for an order the agency closed; returns how many.

    - Called off by us (`_call_off`) while the account stays in review: a partial payment that did
      not cure, a hold, a settlement that lapsed or was cancelled, a plan that ended. The review
      opens once what overtook the order no longer runs: a payment once applied (at the cycle's
      refresh, never at its import: it may cure, and a cured account leaves review with nothing to
      decide), a settlement or plan once it ends; under a hold at once, and `arrears review list`
      shows it waiting for the hold, then for a reviewer once it is lifted.
    - Blocked for want of a VIN or a mailing address: at once, saying which; an import that brings
      it sends the order after all (`release_blocked_orders`), unless a person decides again first.
    - Withheld: approved while a hold barred it (`settle_decision`), so no order was placed; at
      the next call (the cycle's refresh, an import, a hold placed or lifted), waiting for the hold
      in `arrears review list`, then for a reviewer.
    - Closed by the agency without the car, where the closing was recorded before reviews were
      sent back (`close_unrecovered_order` sends them back as the status comes).

    Every order once: the new review is the one asked, and a decision on it is the one that stands."""
    ids = _stalled_accounts(connection, as_of=as_of, account_id=account_id)
    if not ids:
        return 0
    lock_accounts(connection, ids)
    ids = _stalled_accounts(connection, as_of=as_of, account_id=account_id, only=ids)  # as they stand now
    stays = _stays(connection, ids)
    rows = {r.review_id: r for r in list_assignments(connection, account_ids=ids) if r.review_id is not None}
    said: dict[str, dict[str, Any]] = defaultdict(dict)  # order id -> action -> its data
    for e in _order_events(connection, ids):
        if e.at <= as_of:
            data = e.data or {}
            said[data.get("order_id", "")][data.get("action", "")] = data
    events = []
    for stay in stays.values():
        if stay.decided is None or not stay.stalled(stay.decided.id):
            continue
        row = rows.get(stay.decided.id)
        order_id = row.order_id if row is not None else f"RO-{stay.decided.id}"  # `create_vendor_order`'s
        why = _stalled_why(connection, stay.decided, row, said[order_id])
        if why is not None:
            events.append(
                _reopen(
                    connection,
                    decided=stay.decided,
                    order_id=order_id,
                    why=why,
                    at=as_of,
                    cycle_id=cycle_id,
                )[1]
            )
    insert_events(connection, events)
    return len(events)


def _stalled_why(
    connection: Connection, decided: Any, row: AssignmentRow | None, said: dict[str, Any]
) -> str | None:
    """Why the repossession `decided` approved is not being carried out (the reason of the review
    sent back), or None while it is: its order at the agency, recovered, or blocked with its data on
    file now (it goes: `release_blocked_orders`)."""
    if row is None:
        # No order was placed: a hold barred it when the reviewer approved (`settle_decision`).
        return None if said else f"{WITHHELD}: review {decided.id} approved it while a hold barred it"
    if row.recovered_at is not None or "recovered" in said:
        return None
    if "cancelled" in said:
        why = str(said["cancelled"].get("reason"))
        if why == _SETTLEMENT_AGREED:
            ended = connection.execute(
                select(settlement.c.status)
                .where(settlement.c.account_id == row.account_id)
                .order_by(settlement.c.id.desc())
                .limit(1)
            ).scalar()
            why += f" (since {ended})" if ended else ""
        return f"{CALLED_OFF}: {why}"
    if row.status == "closed":  # without the car; before `close_unrecovered_order`, with no event
        return f"{CLOSED_UNRECOVERED}: {said.get('closed', {}).get('reason') or 'no reason given'}"
    if row.status == "blocked":
        missing = _missing(connection, row.account_id)
        if missing is not None:
            return f"{BLOCKED}: {missing} (an import that brings it sends order {row.order_id} after all)"
    return None


def release_blocked_orders(connection: Connection, *, at: datetime) -> list[str]:
    """Blocked orders whose data an import has brought go after all, under their own key (the
    approval stands), as a letter held back for want of an address is written once one comes; the
    review sent back for it (`_reopen_stalled`) closes, nothing left to decide. One a later
    decision superseded (a person decided the review sent back first) is called off, never sent.
    One whose account left review waits for `cancel_vendor_orders`. Returns the orders released."""
    blocked = blocked_assignments(connection)
    if not blocked:
        return []
    lock_accounts(connection, [r.account_id for r in blocked])
    stays = _stays(connection, [r.account_id for r in blocked])
    released, events = [], []
    for row in blocked:
        stay = stays.get(row.account_id)
        if stay is None or stay.decided is None:
            continue
        if stay.decided.id != row.review_id:
            why = f"superseded: review {stay.decided.id} decided {stay.decided.decision}"
            request_cancel(connection, order_id=row.order_id, reason=why, at=at)
            events.append(
                event(
                    row.account_id,
                    at,
                    "vendor_order",
                    f"repossession order {row.order_id} cancelled: {why}",
                    {"order_id": row.order_id, "action": "cancelled", "reason": why},
                )
            )
        elif _missing(connection, row.account_id) is None:
            # The review sent back for the block closes first: one a person decided meanwhile (the
            # flow run's form) fails to, and the order waits to be superseded, never sent beside it.
            asked = (
                connection.execute(
                    select(review.c.id).where(
                        review.c.account_id == row.account_id,
                        review.c.id > row.review_id,
                        review.c.decided_at.is_(None),
                    )
                )
                .scalars()
                .all()
            )
            why = (
                f"repossession order {row.order_id} sent to the agency once its data was on file: "
                f"review {row.review_id} (repossess, by {stay.decided.reviewer}) stands"
            )
            if all(close_review(connection, review_id=i, reason=why, at=at) for i in asked) and unblock(
                connection, row_id=row.id, at=at, why="the VIN and a mailing address are on file"
            ):
                released.append(row.order_id)
    insert_events(connection, events)
    return released


def _missing(connection: Connection, account_id: str) -> str | None:
    """What the agency needs of the account that is not on file (the order is blocked), or None."""
    vin = connection.execute(select(account.c.vin).where(account.c.account_id == account_id)).scalar()
    if not vin:
        return "no VIN on file"
    return "no mailing address on file" if mailing_address(connection, account_id) is None else None
