"""Settlements in the cycle and for agents: agreements judged against payments, recorded, cancelled.

`refresh_settlements` runs inside the cycle's refresh transaction (and the single-account path's),
in bulk, after the payments are applied. `record_settlement`, `cancel_settlement` and
`settlement_overview` serve `arrears settlement record|cancel|show`.
"""

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine

from arrears.clock import business_date as lender_date
from arrears.settings import get_settings
from arrears.storage import accounts, quarantine, settlements
from arrears.storage.vendor_orders import cancel_vendor_orders
from tasks import isolation
from tasks.database import policy

__all__ = ["cancel_settlement", "record_settlement", "refresh_settlements", "settlement_overview"]


def refresh_settlements(
    connection: Connection,
    *,
    as_of: datetime,
    business_date: date,
    cycle_id: int | None = None,
    account_id: str | None = None,
) -> dict[str, int]:
    """Judge the running agreements: paid (the balance left written off; the lifecycle exits the
    account settled), lapsed (collection resumes), or ended by the account leaving otherwise.

    An account whose agreement raises is quarantined; the others' stands (`tasks.isolation`)."""
    zone = get_settings().lender_timezone

    def move(one: str | None) -> dict[str, int]:
        return settlements.monitor_settlements(
            connection,
            as_of=as_of,
            business_date=business_date,
            lender_timezone=zone,
            lapse_after_days=policy().settlements.lapse_after_days,
            cycle_id=cycle_id,
            account_id=one,
        )

    moved = isolation.bulk_or_each(
        connection,
        move,
        candidates=lambda: quarantine.settlement_accounts(connection),
        step="settlements",
        at=as_of,
        cycle_id=cycle_id,
        account_id=account_id,
    )
    quarantined = moved.pop("quarantined", 0)
    empty = {"settlements_paid": 0, "settlements_lapsed": 0, "settlements_ended": 0}
    return empty | moved | {"settlements_quarantined": quarantined}


def record_settlement(
    engine: Engine, *, account_id: str, amount: Decimal, pay_by: date, agent: str, why: str, at: datetime
) -> tuple[dict[str, Any], bool]:
    """An agent records the settlement the borrower agreed; raises SettlementError naming the field
    that stops it. Returns the agreement and whether a repossession order it overtakes was
    cancelled (the caller tells the agency at once)."""
    day = lender_date(at, get_settings().lender_timezone)
    with engine.begin() as connection:
        row = settlements.record_settlement(
            connection,
            account_id=account_id,
            amount=amount,
            pay_by=pay_by,
            at=at,
            business_date=day,
            agent=agent,
            why=why,
            max_days=policy().settlements.max_pay_by_days,
        )
        # Repossessing a car whose borrower agreed to settle is the regulators' most common finding
        # in auto servicing: the agent's order is cancelled in the same transaction.
        cancelled = cancel_vendor_orders(connection, as_of=at, account_id=account_id)
        return settlements.settlement_json(row), bool(cancelled)


def cancel_settlement(
    engine: Engine, *, account_id: str, agent: str, why: str, at: datetime
) -> dict[str, Any] | None:
    """An agent cancels the running agreement; None when the account has none running."""
    with engine.begin() as connection:
        row = settlements.cancel_settlement(connection, account_id=account_id, at=at, agent=agent, why=why)
        return None if row is None else settlements.settlement_json(row)


def settlement_overview(connection: Connection, *, account_id: str) -> dict[str, Any] | None:
    """The account's stage and latest agreement (None: never one); None for an unknown account."""
    a = accounts.account_row(connection, account_id)
    if a is None:
        return None
    current = settlements.current_settlement(connection, account_id)
    return {
        "account_id": account_id,
        "stage": a.stage,
        "currency": a.currency,
        "settlement": None if current is None else settlements.settlement_json(current),
    }
