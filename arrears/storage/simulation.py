"""Data access for the demo's simulated portfolio: what bureau pulls and replies would have told
us by now, and the delinquent accounts as the payment simulator needs them.

The simulator knows each borrower's ability and willingness and whether their number works; a
real deployment learns these from bureau profiles and behaviour (DESIGN §2). Functions take the
caller's connection and do not commit.
"""

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import Connection, bindparam, select, update

from arrears.simulate import AccountState, PortfolioRow
from arrears.storage.tables import account, audit, contact
from arrears.vocabulary import InvalidBecause

__all__ = ["delinquent_states", "record_simulated_profiles"]


def record_simulated_profiles(
    connection: Connection, portfolio: Sequence[PortfolioRow], *, at: datetime
) -> None:
    """Set each account's ability and willingness, mark unreachable borrowers' numbers invalid, and
    record each seeded value in the audit trail as simulated."""
    connection.execute(
        update(account)
        .where(account.c.account_id == bindparam("key"))
        .values(ability=bindparam("ability"), willingness=bindparam("willingness")),
        [{"key": r.account_id, "ability": r.ability, "willingness": r.willingness} for r in portfolio],
    )
    unreachable = [{"borrower": r.borrower_id} for r in portfolio if not r.reachable]
    if unreachable:
        connection.execute(
            update(contact)
            .where(contact.c.borrower_id == bindparam("borrower"))
            .values(valid=False, invalid_reason=InvalidBecause.SIMULATED.value),
            unreachable,
        )
    connection.execute(
        audit.insert(),
        [
            {
                "account_id": r.account_id,
                "at": at,
                "kind": "profile",
                "actor": "simulator",
                "data": {},
                "detail": f"simulated profile: ability {r.ability:.2f}, willingness {r.willingness:.2f}"
                + ("" if r.reachable else ", number unreachable"),
            }
            for r in portfolio
        ],
    )


def delinquent_states(connection: Connection, portfolio: Iterable[PortfolioRow]) -> list[AccountState]:
    """The portfolio's accounts with past due, as stored now, with the simulator's ability and
    willingness."""
    truth = {r.account_id: r for r in portfolio}
    rows = connection.execute(
        select(
            account.c.account_id,
            account.c.past_due_amount,
            account.c.installment_amount,
            account.c.timezone,
            account.c.days_past_due,
        ).where(account.c.past_due_amount > 0)
    ).all()
    return [
        AccountState(
            r.account_id,
            r.past_due_amount,
            r.installment_amount,
            truth[r.account_id].ability,
            truth[r.account_id].willingness,
            r.timezone,
            r.days_past_due,
        )
        for r in rows
        if r.account_id in truth
    ]
