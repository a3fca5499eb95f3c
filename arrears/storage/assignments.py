"""Data access for agency assignments: the repossession orders sent to the agency provider.

A row is written with the vendor order of an approved review (`vendor_orders.create_vendor_order`),
sent by `tasks.agency`, and moved by the agency's status (webhooks or lookups). When a payment,
a plan or a hold overtakes the order, `request_cancel` marks it for cancelling at the agency
(`cancel_pending`), or cancels it outright if it never left. Statuses never move back, but for
one: an order `blocked` for want of a VIN or a mailing address goes (`unblock`, pending) once an
import brings them (`vendor_orders.release_blocked_orders`).

A send is claimed (`sending`, committed) before the request goes out: from then on the order may
be at the agency whatever happens to the answer (a payment imported meanwhile, a kill -9 before
it is recorded), so an overtaking payment or hold marks it `cancel_pending`, never cancelled
outright, and the push that learns the agency's id (the answer, or the same key sent again, which
the agency answers with the first assignment) calls it off there.

Functions take the caller's connection and do not commit.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from arrears.storage._common import event, insert_events, to_precision
from arrears.storage.tables import account, assignment, audit

__all__ = [
    "AssignmentRow",
    "add_assignment",
    "assignment_by_provider_id",
    "assignments_to_push",
    "assignments_to_track",
    "blocked_assignments",
    "claim_send",
    "list_assignments",
    "mark_assigned",
    "move_assignment",
    "request_cancel",
    "touch",
    "unblock",
]

_RANK = {
    "pending": 0,
    "sending": 1,
    "assigned": 2,
    "accepted": 3,
    "located": 4,
    "cancel_pending": 5,
    "recovered": 6,
    "cancelled": 6,
    "closed": 7,
}
_TO_SEND = ("pending", "sending")  # `sending`: claimed by a push whose answer is not recorded
_SENT = ("assigned", "accepted", "located")


@dataclass(frozen=True, slots=True)
class AssignmentRow:
    id: int
    order_id: str
    account_id: str
    review_id: int | None
    idempotency_key: str
    status: str
    reason: str | None
    provider: str | None
    provider_id: str | None
    created_at: datetime
    assigned_at: datetime | None
    cancelled_at: datetime | None
    recovered_at: datetime | None
    recovery: Any

    def as_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.id,
            "order_id": self.order_id,
            "status": self.status,
            "reason": self.reason,
            "provider": self.provider,
            "provider_id": self.provider_id,
            "created_at": iso(self.created_at),
            "assigned_at": iso(self.assigned_at),
            "cancelled_at": iso(self.cancelled_at),
            "recovered_at": iso(self.recovered_at),
            "recovery": self.recovery or {},
        }


def _row(r: Any) -> AssignmentRow:
    return AssignmentRow(
        r.id,
        r.order_id,
        r.account_id,
        r.review_id,
        r.idempotency_key,
        r.status,
        r.reason,
        r.provider,
        r.provider_id,
        r.created_at,
        r.assigned_at,
        r.cancelled_at,
        r.recovered_at,
        r.recovery,
    )


def add_assignment(
    connection: Connection,
    *,
    key: str,
    order_id: str,
    account_id: str,
    review_id: int | None,
    at: datetime,
    blocked: str | None = None,
) -> bool:
    """Write the assignment of a vendor order, once (pending, or `blocked` with the reason)."""
    if connection.execute(select(assignment.c.id).where(assignment.c.idempotency_key == key)).first():
        return False
    connection.execute(
        assignment.insert().values(
            idempotency_key=key,
            order_id=order_id,
            account_id=account_id,
            review_id=review_id,
            status="blocked" if blocked else "pending",
            reason=blocked,
            recovery={},
            created_at=at,
            updated_at=at,
        )
    )
    if blocked:
        insert_events(
            connection,
            [
                event(
                    account_id,
                    at,
                    "assignment",
                    f"repossession order {order_id} cannot be sent to the agency: {blocked}",
                    {"order_id": order_id, "blocked": blocked},
                )
            ],
        )
    return True


def assignments_to_push(connection: Connection, *, limit: int = 500) -> list[AssignmentRow]:
    """Assignments to send (pending; sending, whose push died or failed before its answer was
    recorded) or to call off (cancel_pending), oldest first."""
    rows = connection.execute(
        select(assignment)
        .where(assignment.c.status.in_((*_TO_SEND, "cancel_pending")))
        .order_by(assignment.c.created_at, assignment.c.id)
        .limit(limit)
    ).all()
    return [_row(r) for r in rows]


def blocked_assignments(connection: Connection, *, limit: int | None = None) -> list[AssignmentRow]:
    """Assignments that could not be sent for want of data (`add_assignment`'s `blocked`), oldest
    first: few, each waiting for an import or for a person's new decision."""
    query = (
        select(assignment)
        .where(assignment.c.status == "blocked")
        .order_by(assignment.c.created_at, assignment.c.id)
    )
    return [_row(r) for r in connection.execute(query if limit is None else query.limit(limit)).all()]


def unblock(connection: Connection, *, row_id: int, at: datetime, why: str) -> bool:
    """A blocked assignment whose data is on file now is to send (pending), under its own key;
    False when it is no longer blocked (cancelled meanwhile)."""
    r = connection.execute(select(assignment).where(assignment.c.id == row_id)).one()
    moved = connection.execute(
        update(assignment)
        .where(assignment.c.id == row_id, assignment.c.status == "blocked")
        .values(status="pending", reason=None, updated_at=at)
    )
    if not moved.rowcount:
        return False
    insert_events(
        connection,
        [
            event(
                r.account_id,
                at,
                "assignment",
                f"repossession order {r.order_id} can be sent to the agency now: {why}",
                {"order_id": r.order_id, "unblocked": r.reason},
            )
        ],
    )
    return True


def assignments_to_track(connection: Connection, *, limit: int = 500) -> list[AssignmentRow]:
    """Assignments at the agency and still working (assigned, accepted, located), least recently
    heard of first: looked up where a webhook never came, so status moves without them."""
    rows = connection.execute(
        select(assignment)
        .where(assignment.c.status.in_(_SENT), assignment.c.provider_id.is_not(None))
        .order_by(assignment.c.updated_at, assignment.c.id)
        .limit(limit)
    ).all()
    return [_row(r) for r in rows]


def touch(connection: Connection, row_ids: Sequence[int], at: datetime) -> None:
    """Note that these assignments were looked up at `at` (the next lookup takes others first).
    Only rows still working: a status the lookup just moved keeps its own time."""
    if row_ids:
        connection.execute(
            update(assignment)
            .where(assignment.c.id.in_(list(row_ids)), assignment.c.status.in_(_SENT))
            .values(updated_at=at)
        )


def claim_send(connection: Connection, *, row_id: int, at: datetime) -> bool:
    """Mark a pending assignment `sending` before its request goes out (commit it first); False
    when it is no longer to send (cancelled meanwhile: it never left, so nothing is sent)."""
    claimed = connection.execute(
        update(assignment)
        .where(assignment.c.id == row_id, assignment.c.status.in_(_TO_SEND))
        .values(status="sending", updated_at=at)
    )
    return bool(claimed.rowcount)


def mark_assigned(
    connection: Connection, *, row_id: int, provider: str, provider_id: str, at: datetime
) -> AssignmentRow:
    """Record the agency's id of an order it holds; the row after: `assigned`, or `cancel_pending`
    when a payment or hold overtook the order while it was being sent (the caller cancels it
    there now)."""
    r = connection.execute(select(assignment).where(assignment.c.id == row_id)).one()
    if r.provider_id is not None:  # recorded already (another push): nothing new
        return _row(r)
    # An order we no longer want that the agency holds all the same is one to call off there.
    status = "assigned" if r.status in _TO_SEND else "cancel_pending"
    connection.execute(
        update(assignment)
        .where(assignment.c.id == row_id)
        .values(status=status, provider=provider, provider_id=provider_id, assigned_at=at, updated_at=at)
    )
    insert_events(
        connection,
        [
            event(
                r.account_id,
                at,
                "assignment",
                f"repossession order {r.order_id} assigned to the agency ({provider}) as {provider_id}"
                + (f", to be called off there: {r.reason}" if status == "cancel_pending" else ""),
                {"order_id": r.order_id, "provider": provider, "provider_id": provider_id},
            )
        ],
    )
    return _row(connection.execute(select(assignment).where(assignment.c.id == row_id)).one())


def request_cancel(connection: Connection, *, order_id: str, reason: str, at: datetime) -> None:
    """The order is overtaken: cancel it at once if it never left, else mark it for the agency
    (one being sent may have arrived there). Each update re-reads the status it changes, so a push
    claiming the row at the same moment is never overwritten (PostgreSQL re-checks a WHERE after
    waiting for the row)."""
    mine = assignment.c.order_id == order_id
    connection.execute(
        update(assignment)
        .where(mine, assignment.c.status.in_(("pending", "blocked")))
        .values(status="cancelled", reason=reason, cancelled_at=at, updated_at=at)
    )
    connection.execute(
        update(assignment)
        .where(mine, assignment.c.status.in_((*_SENT, "sending")))
        .values(status="cancel_pending", reason=reason, updated_at=at)
    )


RECOVERED_AFTER_CANCEL = "recovered_after_cancel"  # audit data `status`: a car taken on an order called off


def _recovered_after_cancel(
    connection: Connection, r: Any, at: datetime, recovery: dict[str, Any] | None
) -> None:
    """The agency reports a car recovered on an order we called off (a tow truck that never heard,
    a vendor's mistake, a cancel that reached it too late): what regulators find most. Confirmed
    cancelled, it is not taken as a recovery (that would close the account or write a notice of
    sale for a borrower who paid): the row stays cancelled. Either way the audit trail says it,
    once, for a person to act on (the car returned, the fees waived)."""
    said = connection.execute(
        select(audit.c.id).where(
            audit.c.account_id == r.account_id,
            audit.c.kind == "assignment",
            audit.c.detail.like(f"repossession order {r.order_id} recovered after%"),
        )
    ).first()
    if said is not None:
        return
    where = _recovery_text(recovery)
    insert_events(
        connection,
        [
            event(
                r.account_id,
                at,
                "assignment",
                f"repossession order {r.order_id} recovered after it was cancelled ({r.reason}){where}: "
                "the car was taken on an order called off; a person must act",
                {
                    "order_id": r.order_id,
                    "status": RECOVERED_AFTER_CANCEL,
                    "reason": r.reason,
                    "recovery": recovery,
                },
            )
        ],
    )


def _recovery_text(recovery: dict[str, Any] | None) -> str:
    """Where and how a car was recovered, for an audit detail: " (location lot 4, condition fair,
    personal_property toolbox; car seat)"."""

    def text(value: Any) -> str:
        return "; ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)

    said = ", ".join(f"{k} {text(v)}" for k, v in (recovery or {}).items() if v)
    return f" ({said})" if said else ""


def assignment_by_provider_id(connection: Connection, provider_id: str) -> AssignmentRow | None:
    r = connection.execute(select(assignment).where(assignment.c.provider_id == provider_id)).first()
    return _row(r) if r else None


def move_assignment(
    connection: Connection,
    *,
    row_id: int,
    status: str,
    at: datetime,
    reason: str | None = None,
    recovery: dict[str, Any] | None = None,
) -> bool:
    """Move an assignment forward to the agency's `status` (never back); False if nothing changed.

    A `cancel_pending` row the agency reports still working stays `cancel_pending`: the cancel
    is sent again until the agency confirms it."""
    r = connection.execute(select(assignment).where(assignment.c.id == row_id)).one()
    if status == "recovered" and r.status == "cancelled":
        _recovered_after_cancel(connection, r, at, recovery)
        return False
    if _RANK.get(status, -1) <= _RANK.get(r.status, 99):
        return False
    values: dict[str, Any] = {"status": status, "updated_at": at}
    if status == "cancelled":
        values |= {"cancelled_at": at, "reason": reason or r.reason}
    if status == "recovered":
        values |= {"recovered_at": at, "recovery": recovery or {}}
    connection.execute(update(assignment).where(assignment.c.id == row_id).values(**values))
    detail = f"repossession order {r.order_id} {status} at the agency"
    if status == "cancelled":
        detail += f": {reason or r.reason}"
    if status == "recovered":
        detail += _recovery_text(recovery)
    data: dict[str, Any] = {"order_id": r.order_id, "status": status, "reason": reason, "recovery": recovery}
    if status == "recovered":
        # What the borrower owed when the car was taken: line (1) of the explanation of a sale's
        # surplus or deficiency is this, "calculated as of" a day "not more than 35 days before"
        # the secured party took possession (UCC 9-616(c)(1)(A)): `arrears.storage.sales`.
        owed = connection.execute(
            select(account.c.balance, account.c.currency).where(account.c.account_id == r.account_id)
        ).first()
        if owed is not None:
            data["balance_at_recovery"] = str(to_precision(owed.balance, owed.currency))
    events = [event(r.account_id, at, "assignment", detail, data)]
    if status == "recovered":
        # The order is done: no payment or hold after this can cancel it (`open_vendor_orders`);
        # what follows is the account's (`arrears.recovery`).
        events.append(
            event(
                r.account_id,
                at,
                "vendor_order",
                f"repossession order {r.order_id} done: vehicle recovered",
                {"order_id": r.order_id, "action": "recovered"},
            )
        )
    insert_events(connection, events)
    if status == "recovered" and r.status == "cancel_pending":
        # Taken before our call-off reached the agency: the car is on the lot (recorded above),
        # but the decision it carried out was withdrawn (a payment, a hold): a person must act.
        _recovered_after_cancel(connection, r, at, recovery)
    return True


def list_assignments(connection: Connection, *, account_ids: Sequence[str]) -> list[AssignmentRow]:
    rows = connection.execute(
        select(assignment).where(assignment.c.account_id.in_(list(account_ids))).order_by(assignment.c.id)
    ).all()
    return [_row(r) for r in rows]
