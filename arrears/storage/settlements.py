"""Data access for settlement agreements: recording, cancelling, and judging them in the cycle.

Every function takes the caller's connection and does not commit: the task owns the
transaction. `monitor_settlements` works in bulk for the daily cycle (a few queries for every
running agreement); recording and cancelling are per account (the CLI). An agreement moves only
from `active`, so a cycle run twice repeats nothing.
"""

from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from arrears.clock import business_date as lender_date
from arrears.currencies import display
from arrears.lifecycle import TERMINAL
from arrears.settlements import ACTIVE, SettlementError, assess, check_terms
from arrears.storage._common import event, for_account, holds_of, insert_events, inserted_id, locked
from arrears.storage.bulk import in_range
from arrears.storage.promises import replace_pending
from arrears.storage.referrals import REFERRAL_ENDED
from arrears.storage.tables import account, audit, payment, plan, referral, settlement

__all__ = [
    "cancel_settlement",
    "current_settlement",
    "monitor_settlements",
    "record_settlement",
    "settlement_json",
    "shard_settlements",
]


def _money(amount: Decimal | None, currency: str) -> str | None:
    return None if amount is None else display(amount, currency)


def settlement_json(row: Any) -> dict[str, Any]:
    """An agreement as `arrears settlement show --json` and `arrears show --json` give it."""
    c = row.currency
    return {
        "id": row.id,
        "status": row.status,
        "amount": _money(row.amount, c),
        "currency": c,
        "pay_by": row.pay_by.isoformat(),
        "balance_when_agreed": _money(row.balance, c),
        "agreed_by": row.agreed_by,
        "reason": row.reason,
        "agreed_at": row.agreed_at.isoformat(),
        "received": _money(row.received, c),
        "written_off": _money(row.written_off, c),
        "ended_at": row.ended_at.isoformat() if row.ended_at else None,
        "ended_by": row.ended_by,
        "end_reason": row.end_reason,
    }


def current_settlement(connection: Connection, account_id: str) -> Any | None:
    """The account's latest agreement, whatever its status, or None."""
    return connection.execute(
        select(settlement)
        .where(settlement.c.account_id == account_id)
        .order_by(settlement.c.agreed_at.desc(), settlement.c.id.desc())
        .limit(1)
    ).first()


def shard_settlements(connection: Connection, lo: str, hi: str | None) -> dict[str, str]:
    """Per account of a shard, the status of an agreement the lifecycle acts on: `active` (it
    waits) or `paid` (it exits settled). One query for the shard."""
    found: dict[str, str] = {}
    for account_id, status in connection.execute(
        select(settlement.c.account_id, settlement.c.status)
        .where(in_range(settlement.c.account_id, lo, hi), settlement.c.status.in_((ACTIVE, "paid")))
        .order_by(settlement.c.id)
    ):
        found[account_id] = status
    return found


def record_settlement(
    connection: Connection,
    *,
    account_id: str,
    amount: Decimal,
    pay_by: date,
    at: datetime,
    business_date: date,
    agent: str,
    why: str,
    max_days: int,
) -> Any:
    """Record the settlement an agent agreed with the borrower; returns its row. SettlementError
    names the field when it cannot be: see `arrears.settlements.check_terms`, and an agreement or
    a plan already running (the borrower is paying under it; one at a time)."""
    a = connection.execute(
        locked(select(account).where(account.c.account_id == account_id), connection)
    ).first()
    if a is None:
        raise SettlementError("account", f"no account {account_id!r}")
    last = current_settlement(connection, account_id)
    if last is not None and last.status == ACTIVE:
        raise SettlementError(
            "account", f"settlement {last.id} is already agreed (`arrears settlement cancel` it first)"
        )
    active_plan = connection.execute(
        select(plan.c.id).where(plan.c.account_id == account_id, plan.c.status == "active")
    ).scalar()
    if active_plan is not None:
        raise SettlementError(
            "account",
            f"plan {active_plan} is active: the borrower is paying under it (`arrears plan cancel` it first)",
        )
    check_terms(
        amount=amount,
        currency=a.currency,
        balance=a.balance,
        past_due=a.past_due_amount,
        pay_by=pay_by,
        business_date=business_date,
        stage=a.stage,
        holds=holds_of(connection, [account_id]).get(account_id, frozenset()),
        max_days=max_days,
    )
    settlement_id = inserted_id(
        connection.execute(
            settlement.insert().values(
                account_id=account_id,
                amount=amount,
                currency=a.currency,
                pay_by=pay_by,
                balance=a.balance,
                status=ACTIVE,
                agreed_by=agent,
                reason=why,
                agreed_at=at,
            )
        )
    )
    c = a.currency
    insert_events(
        connection,
        [
            *_replace_promises(connection, account_id, settlement_id, at=at, day=business_date, agent=agent),
            event(
                account_id,
                at,
                "settlement",
                f"settlement {settlement_id} agreed: {c} {display(amount, c)} for the balance of "
                f"{c} {display(a.balance, c)}, to be paid by {pay_by.isoformat()} ({why})",
                {
                    "settlement_id": settlement_id,
                    "status": ACTIVE,
                    "amount": display(amount, c),
                    "balance": display(a.balance, c),
                    "pay_by": pay_by.isoformat(),
                    "agent": agent,
                    "reason": why,
                },
                actor=f"agent:{agent}",
            ),
        ],
    )
    return connection.execute(select(settlement).where(settlement.c.id == settlement_id)).one()


def _replace_promises(
    connection: Connection, account_id: str, settlement_id: int, *, at: datetime, day: date, agent: str
) -> list[dict[str, Any]]:
    """The agreement replaces a promise pending for a later day, as a plan does
    (`storage.plans.accept_plan`): kept beside it, it broke while the borrower paid the settlement
    by its own date, and counted against them. One already past its date is left to be judged."""
    return [
        event(
            account_id,
            at,
            "promise",
            f"promise {old.id} replaced by settlement {settlement_id}",
            {"promise_id": old.id, "status": "replaced", "by_settlement": settlement_id},
            actor=f"agent:{agent}",
        )
        for old in replace_pending(connection, account_id=account_id, day=day, at=at)
    ]


def cancel_settlement(
    connection: Connection, *, account_id: str, at: datetime, agent: str, why: str
) -> Any | None:
    """Cancel the account's running agreement (collection resumes at the next cycle); returns
    the row as cancelled, or None when none runs."""
    last = current_settlement(connection, account_id)
    if last is None or last.status != ACTIVE:
        return None
    connection.execute(
        update(settlement)
        .where(settlement.c.id == last.id, settlement.c.status == ACTIVE)
        .values(status="cancelled", ended_at=at, ended_by=agent, end_reason=why)
    )
    insert_events(
        connection,
        [
            event(
                account_id,
                at,
                "settlement",
                f"settlement {last.id} cancelled: {why}; collection resumes",
                {"settlement_id": last.id, "status": "cancelled", "agent": agent, "reason": why},
                actor=f"agent:{agent}",
            )
        ],
    )
    return connection.execute(select(settlement).where(settlement.c.id == last.id)).one()


def monitor_settlements(
    connection: Connection,
    *,
    as_of: datetime,
    business_date: date,
    lender_timezone: str,
    lapse_after_days: int = 0,
    cycle_id: int | None = None,
    account_id: str | None = None,
) -> dict[str, int]:
    """Judge every running agreement against the payments received since it was recorded (one
    not paid lapses `lapse_after_days` after its pay-by date: `arrears.settlements.assess`).

    Paid: the balance left is written off (balance and past due to zero, audited with the amount)
    and a referral with nothing before the court ends `settled` (a filed one is withdrawn by its
    referral run, as for a cure); the lifecycle then exits the account `settled`. Lapsed: audited,
    and collection resumes. An account that left collection otherwise (paid in full, charged off,
    closed) ends its agreement. A few queries for all of them."""
    running = connection.execute(
        locked(
            select(
                settlement,
                account.c.stage,
                account.c.balance.label("balance_now"),
                account.c.past_due_amount,
            )
            .join(account, account.c.account_id == settlement.c.account_id)
            .where(settlement.c.status == ACTIVE, for_account(account_id, settlement.c.account_id)),
            connection,
        )
    ).all()
    counts = {"settlements_paid": 0, "settlements_lapsed": 0, "settlements_ended": 0}
    if not running:
        return counts
    received: dict[str, list[tuple[datetime, Decimal]]] = defaultdict(list)
    for r in connection.execute(
        select(payment.c.account_id, payment.c.received_at, payment.c.amount).where(
            payment.c.account_id.in_(
                select(settlement.c.account_id).where(
                    settlement.c.status == ACTIVE, for_account(account_id, settlement.c.account_id)
                )
            ),
            payment.c.received_at >= min(s.agreed_at for s in running),
            payment.c.received_at <= as_of,
        )
    ):
        received[r.account_id].append((r.received_at, r.amount))
    ended: list[dict[str, Any]] = []
    written_off: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for s in running:
        c = s.currency
        payments = [
            (lender_date(when, lender_timezone), amount)
            for when, amount in received.get(s.account_id, [])
            if when >= s.agreed_at
        ]
        found = assess(
            s.amount,
            s.pay_by,
            payments,
            business_date=business_date,
            currency=c,
            lapse_after_days=lapse_after_days,
        )
        if s.stage in TERMINAL or s.balance_now <= 0:
            status = "ended"
            why = f"account {s.stage}" if s.stage in TERMINAL else "balance paid in full"
            detail = f"settlement {s.id} ended: {why}"
        elif found.status == ACTIVE:
            continue
        elif found.status == "paid":
            status, why = "paid", found.reason
            detail = (
                f"settlement {s.id} paid: {why}; {c} {display(s.balance_now, c)} of the balance written off"
            )
            written_off.append({"key": s.account_id, "now": as_of})
        else:
            status, why = "lapsed", found.reason
            detail = f"settlement {s.id} lapsed: {why}; collection resumes"
        counts[f"settlements_{status}"] += 1
        ended.append(
            {
                "key": s.id,
                "status": status,
                "received": found.received,
                "written_off": s.balance_now if status == "paid" else None,
                "now": as_of,
                "why": why,
            }
        )
        data = {
            "settlement_id": s.id,
            "status": status,
            "received": display(found.received, c),
            "amount": display(s.amount, c),
            "pay_by": s.pay_by.isoformat(),
        }
        if status == "paid":
            data |= {
                "written_off": display(s.balance_now, c),
                "past_due_before": display(s.past_due_amount, c),
            }
        events.append(event(s.account_id, as_of, "settlement", detail, data, cycle_id=cycle_id))
    if ended:
        connection.execute(
            update(settlement)
            .where(settlement.c.id == bindparam("key"), settlement.c.status == ACTIVE)
            .values(
                status=bindparam("status"),
                received=bindparam("received"),
                written_off=bindparam("written_off"),
                ended_at=bindparam("now"),
                end_reason=bindparam("why"),
            ),
            ended,
        )
    if written_off:
        connection.execute(
            update(account)
            .where(account.c.account_id == bindparam("key"))
            .values(
                balance=Decimal(0),
                past_due_amount=Decimal(0),
                oldest_due_date=None,
                updated_at=bindparam("now"),
            ),
            written_off,
        )
        events += _settle_referrals(connection, [w["key"] for w in written_off], as_of, cycle_id)
    insert_events(connection, events)
    return counts


def _settle_referrals(
    connection: Connection, account_ids: list[str], at: datetime, cycle_id: int | None
) -> list[dict[str, Any]]:
    """End as `settled` the open referrals of settled accounts that have nothing before a court
    (neither filed nor drafted: a drafted one may have reached it, its answer lost). A filed one is
    left to its referral run, which sees the account paid and withdraws it, or leaves the
    dismissal to counsel."""
    open_ones = connection.execute(
        select(referral.c.id, referral.c.account_id, referral.c.status, referral.c.filing_id).where(
            referral.c.account_id.in_(account_ids), referral.c.status.not_in(REFERRAL_ENDED)
        )
    ).all()
    if not open_ones:
        return []
    drafted = {
        (data or {}).get("referral_id")
        for (data,) in connection.execute(
            select(audit.c.data).where(audit.c.account_id.in_(account_ids), audit.c.kind == "filing")
        )
        if (data or {}).get("action") == "drafted"
    }
    quiet = [r for r in open_ones if r.filing_id is None and r.id not in drafted]
    if not quiet:
        return []
    connection.execute(
        update(referral)
        .where(referral.c.id.in_([r.id for r in quiet]), referral.c.status.not_in(REFERRAL_ENDED))
        .values(status="settled", updated_at=at)
    )
    return [
        event(
            r.account_id,
            at,
            "filing",
            f"referral {r.id}: {r.status} → settled (settlement paid before anything was filed)",
            {"referral_id": r.id, "from": r.status, "to": "settled", "action": "settled"},
            cycle_id=cycle_id,
        )
        for r in quiet
    ]
