"""Restructuring in the cycle: offers recorded, accepted plans monitored against payments.

`refresh_plans` runs inside the cycle's refresh transaction (and the single-account path's), in
bulk: a few queries for every account in restructuring and every active plan. `accept_plan` and
`plan_overview` serve `arrears plan accept` and `arrears plan show`.
"""

from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Engine

from arrears.clock import business_date as lender_date
from arrears.currencies import display
from arrears.restructuring import PlanError, PlanTerms, check_holds, offers, plan_rules
from arrears.settings import get_settings
from arrears.storage import accounts, holds, plans, quarantine
from arrears.vocabulary import Hold
from tasks import isolation
from tasks.database import policy
from tasks.lifecycle_letters import write_plan_letter

__all__ = ["accept_plan", "cancel_plan", "decline_plan", "plan_overview", "refresh_plans"]


def refresh_plans(
    connection: Connection,
    *,
    as_of: datetime,
    business_date: date,
    cycle_id: int | None = None,
    account_id: str | None = None,
) -> dict[str, int]:
    """Record offers for accounts that entered restructuring, then move active plans on: payments
    made, completed (the account is brought current and cures), defaulted (to review), re-aged.

    An account whose plan work raises is quarantined; the others' stands (`tasks.isolation`)."""
    rules = plan_rules(policy())
    zone = get_settings().lender_timezone

    def move(one: str | None) -> dict[str, int]:
        counts = {
            "plans_offered": plans.offer_plans(
                connection,
                as_of=as_of,
                business_date=business_date,
                rules=rules,
                cycle_id=cycle_id,
                account_id=one,
            )
        }
        return counts | plans.monitor_plans(
            connection,
            as_of=as_of,
            business_date=business_date,
            lender_timezone=zone,
            rules=rules,
            cycle_id=cycle_id,
            account_id=one,
        )

    moved = isolation.bulk_or_each(
        connection,
        move,
        candidates=lambda: quarantine.plan_accounts(connection),
        step="plans",
        at=as_of,
        cycle_id=cycle_id,
        account_id=account_id,
    )
    quarantined = moved.pop("quarantined", 0)
    empty = {"plans_offered": 0, "plans_completed": 0, "plans_defaulted": 0, "plans_reaged": 0}
    return empty | moved | {"plans_quarantined": quarantined}


def accept_plan(
    engine: Engine,
    *,
    account_id: str,
    kind: str | None,
    months: int | None,
    agent: str,
    at: datetime,
) -> tuple[int, PlanTerms]:
    """An agent records the plan the borrower accepted; raises PlanError with the reason it cannot be."""
    rules = plan_rules(policy())
    day = lender_date(at, get_settings().lender_timezone)
    with engine.begin() as connection:
        plan_id, terms = plans.accept_plan(
            connection,
            account_id=account_id,
            kind=kind,
            months=months,
            at=at,
            business_date=day,
            actor=f"agent:{agent}",
            source="agent",
            rules=rules,
            data={"agent": agent},
        )
        # The borrower gets the plan in writing, through the letters path (sent by the next
        # dispatch or cycle); written in this transaction, so an accepted plan always has it.
        write_plan_letter(
            connection, account_id=account_id, plan_id=plan_id, terms=terms, accepted_on=day, at=at
        )
        return plan_id, terms


def cancel_plan(
    engine: Engine, *, account_id: str, agent: str, why: str, at: datetime
) -> dict[str, Any] | None:
    """An agent ends the account's active plan; None when it has none active."""
    day = lender_date(at, get_settings().lender_timezone)
    with engine.begin() as connection:
        row = plans.cancel_plan(
            connection, account_id=account_id, at=at, business_date=day, agent=agent, why=why
        )
        return None if row is None else plans.plan_json(row)


def decline_plan(engine: Engine, *, account_id: str, agent: str, why: str, at: datetime) -> int | None:
    """An agent records that the borrower declined the open offer (as a DECLINE reply does): the
    next cycle takes the account to review. None when no offer is open."""
    with engine.begin() as connection:
        return plans.decline_plan(
            connection,
            account_id=account_id,
            at=at,
            actor=f"agent:{agent}",
            source="agent",
            data={"agent": agent, "reason": why},
            why=why,
        )


def plan_overview(engine: Engine, *, account_id: str, at: datetime) -> dict[str, Any] | None:
    """The account's current plan and, while it has past due and no active plan, the offers it
    would get today (those its borrower's income affords, as the cycle records and texts them).
    None for an unknown account."""
    rules = plan_rules(policy())
    with engine.connect() as connection:
        a = accounts.account_row(connection, account_id)
        if a is None:
            return None
        current = plans.current_plan(connection, account_id)
        held = [Hold(h.kind) for h in holds.account_holds(connection, account_id)]
        ceiling = plans.payment_ceilings(connection, [a])[account_id]  # the offers texted, no others
    day = lender_date(at, get_settings().lender_timezone)
    available: list[PlanTerms] = []
    # Why a loan with past due gets no offer (no instalment amount to defer or spread over): said,
    # as the cycle's offers leave it, rather than raised at the agent as a traceback.
    unavailable = None
    if current is None or current.status != "active":
        try:
            check_holds(held)  # a moratorium: no offer the agent could not record
            available = offers(plans.loan_of(a), business_date=day, rules=rules, ceiling=ceiling)
        except PlanError as why:
            unavailable = str(why)
    return {
        "account_id": account_id,
        "stage": a.stage,
        "past_due_amount": display(a.past_due_amount, a.currency),
        "currency": a.currency,
        "plan": None
        if current is None
        else {
            "id": current.id,
            "kind": current.kind,
            "status": current.status,
            "terms": current.terms,
            "updated_at": current.updated_at.isoformat(),
        },
        "offers": [{"describe": o.describe(), **o.to_json()} for o in available],
        "no_offer": unavailable,
    }
