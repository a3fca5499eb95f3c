"""Data access for recovered cars: the accounts whose repossession the agency reported done, and
their closing.

The recovery itself is recorded on the assignment (`assignments.move_assignment`); what follows
it (close now, or once the notice of sale is mailed) is decided by `arrears.recovery` and done
by `tasks.recovery` with these functions. Functions take the caller's connection and do not commit.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from arrears.storage._common import event, insert_events
from arrears.storage.tables import account, assignment
from arrears.vocabulary import Exit, Stage

__all__ = ["Recovered", "close_recovered", "recovered_accounts"]

_OPEN = tuple(s.value for s in Stage)


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


def recovered_accounts(connection: Connection, *, account_id: str | None = None) -> list[Recovered]:
    """Open accounts with a recovered car: what a recovery has not yet moved on (one query)."""
    statement = (
        select(
            assignment.c.account_id,
            assignment.c.order_id,
            assignment.c.review_id,
            assignment.c.recovered_at,
            assignment.c.recovery,
            account.c.stage,
            account.c.jurisdiction,
            account.c.timezone,
            account.c.currency,
            account.c.vin,
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
        )
    return list(latest.values())


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
