"""Holds a person places or lifts (`arrears hold`): a dispute taken by phone, a bankruptcy
confirmed or dismissed, a death verified or refuted, a borrower's text an agent has read.

The other holds each have their own placer and lifter: an import places and lifts the flags of
its file, an SMS STOP places `sms_opt_out` and START lifts it, a borrower's text that disputes the
debt or tells of a bankruptcy places one, and the bureau places bankruptcy and death. Only a
person can end the last two kinds, so a person may lift any hold but an SMS opt-out, which only
the borrower's START ends (their consent, not ours, restarts texting). An import places a flag
again while its file still carries it. Each change is audited with who made it and why.

A borrower's hold (`Hold.of_borrower`: a bankruptcy, a death, active duty) is placed on every open
account of the borrower, as the bureau and a borrower's text place it; it is lifted one account at
a time (a discharge with one loan reaffirmed ends the stay for that loan only).

Functions take the caller's connection and do not commit.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from arrears.storage._common import event, insert_events, place_holds
from arrears.storage.cycle import TERMINAL
from arrears.storage.tables import account, audit, hold
from arrears.vocabulary import Hold

__all__ = ["SOURCE", "HoldNotLifted", "HoldRow", "account_holds", "lift_hold", "place_hold"]

SOURCE = "agent"  # AccountHold.source of the holds placed here


class HoldNotLifted(ValueError):
    """A hold no person may lift."""


@dataclass(frozen=True, slots=True)
class HoldRow:
    id: int
    account_id: str
    kind: str
    source: str
    reason: str | None
    placed_at: datetime
    lifted_at: datetime | None
    placed_by: str  # the person, for a hold an agent placed (its audit event's actor); else the source

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "account_id": self.account_id,
            "kind": self.kind,
            "source": self.source,
            "placed_by": self.placed_by,
            "reason": self.reason,
            "placed_at": self.placed_at.isoformat(),
            "lifted_at": self.lifted_at.isoformat() if self.lifted_at else None,
        }


def account_holds(connection: Connection, account_id: str, *, lifted: bool = False) -> list[HoldRow]:
    """The account's holds in force (with `lifted`, those lifted too), oldest first."""
    columns = (hold.c.id, hold.c.account_id, hold.c.kind, hold.c.source, hold.c.reason)
    query = (
        select(*columns, hold.c.placed_at, hold.c.lifted_at)
        .where(hold.c.account_id == account_id)
        .order_by(hold.c.placed_at, hold.c.id)
    )
    if not lifted:
        query = query.where(hold.c.lifted_at.is_(None))
    rows = connection.execute(query).all()
    # Who placed each agent's hold is in its audit event (`place_hold`): the same kind, the same instant.
    placers = {
        (e.data["hold"], e.at): e.actor
        for e in connection.execute(
            select(audit.c.data, audit.c.at, audit.c.actor).where(
                audit.c.account_id == account_id, audit.c.kind == "hold"
            )
        )
        if isinstance(e.data, dict) and e.data.get("action") == "placed" and e.data.get("source") == SOURCE
    }
    return [HoldRow(*row, placed_by=placers.get((row.kind, row.placed_at), row.source)) for row in rows]


def place_hold(
    connection: Connection, *, account_id: str, kind: Hold, by: str, why: str, at: datetime
) -> list[str]:
    """Place the hold on the account or, for a borrower's hold, on every open account of its
    borrower, each unless one of its kind is in force there already: the accounts placed, the
    asked one first (none: nothing changed). Each placed is audited; another account's event says
    the hold is the borrower's and names the account it was recorded on, for whoever reads it there."""
    accounts = [account_id, *(_other_open_accounts(connection, account_id) if kind.of_borrower else ())]
    placed = place_holds(connection, [(a, kind, why) for a in accounts], source=SOURCE, at=at)
    done = [a for a in accounts if (a, kind) in placed]
    whose = {a: f" for the borrower (recorded on {account_id})" for a in done if a != account_id}
    if whose and account_id in done:
        whose[account_id] = f" for the borrower (also on {', '.join(whose)})"
    recorded_on = account_id if kind.of_borrower else None
    insert_events(
        connection,
        [
            _event(a, kind, "placed", by, why, at, whose=whose.get(a, ""), recorded_on=recorded_on)
            for a in done
        ],
    )
    return done


def _other_open_accounts(connection: Connection, account_id: str) -> list[str]:
    """The borrower's other accounts not closed (`TERMINAL`), as the bureau's holds find them
    (`bureau_pulls._hold_reported`): never another borrower's, whatever number or address they share."""
    borrower = select(account.c.borrower_id).where(account.c.account_id == account_id).scalar_subquery()
    return list(
        connection.execute(
            select(account.c.account_id)
            .where(
                account.c.borrower_id == borrower,
                account.c.account_id != account_id,
                account.c.stage.not_in(TERMINAL),
            )
            .order_by(account.c.account_id)
        ).scalars()
    )


def lift_hold(
    connection: Connection, *, account_id: str, kind: Hold, by: str, why: str, at: datetime
) -> list[HoldRow]:
    """Lift the account's holds of this kind in force, whoever placed them: those lifted (none:
    none was in force). Raises HoldNotLifted for an SMS opt-out."""
    if kind is Hold.SMS_OPT_OUT:
        raise HoldNotLifted("an SMS opt-out ends only with the borrower's START")
    found = [h for h in account_holds(connection, account_id) if h.kind == kind.value]
    if not found:
        return []
    since = max(h.placed_at for h in found)
    if at < since:  # an --as-of before the hold existed: the audit trail would run backwards
        raise HoldNotLifted(
            f"the {kind} hold was placed on {since:%Y-%m-%d %H:%M} UTC, after {at:%Y-%m-%d %H:%M}"
        )
    connection.execute(update(hold).where(hold.c.id.in_([h.id for h in found])).values(lifted_at=at))
    placed = "; ".join(
        f"placed by {h.placed_by} on {h.placed_at:%Y-%m-%d}: {h.reason or 'no reason'}" for h in found
    )
    insert_events(connection, [_event(account_id, kind, "lifted", by, f"{why} ({placed})", at)])
    return found


def _event(
    account_id: str,
    kind: Hold,
    action: str,
    by: str,
    why: str,
    at: datetime,
    *,
    whose: str = "",
    recorded_on: str | None = None,
) -> dict[str, Any]:
    data = {"hold": kind.value, "action": action, "source": SOURCE, "reason": why}
    return event(
        account_id,
        at,
        "hold",
        f"{kind} hold {action} by {by}{whose}: {why}",
        data | ({"recorded_on": recorded_on} if recorded_on else {}),
        actor=by,
    )
