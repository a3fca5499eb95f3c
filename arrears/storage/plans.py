"""Data access for restructuring plans: offers, acceptance, refusal and monitoring.

Every function takes the caller's connection and does not commit: the task owns the
transaction. `offer_plans` and `monitor_plans` work in bulk for the daily cycle; accepting or
declining a plan is per account (the CLI, a reply). A plan moves only from the status it was
read in (rows are locked with `FOR UPDATE` on PostgreSQL), so a cycle run twice repeats nothing.
"""

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update

from arrears.clock import business_date as lender_date
from arrears.restructuring import (
    Loan,
    PlanError,
    PlanRules,
    PlanTerms,
    check_holds,
    choose,
    count_months,
    monitor,
    offers,
    payment_ceiling,
    reage_due,
)
from arrears.storage._common import (
    day_start,
    event,
    for_account,
    holds_of,
    insert_events,
    inserted_id,
    locked,
    to_precision,
)
from arrears.storage.bulk import among
from arrears.storage.promises import replace_pending
from arrears.storage.tables import account, bureau, message, payment, plan, settlement
from arrears.vocabulary import Exit, MessageStatus, Stage

__all__ = [
    "accept_plan",
    "cancel_plan",
    "current_plan",
    "decline_plan",
    "loan_of",
    "monitor_plans",
    "offer_plans",
    "payment_ceilings",
    "plan_json",
]

# The text that makes a restructuring offer (`lifecycle._messages`), and what of it reached someone.
_OFFER_TEMPLATE = "restructuring_offer"
_WENT = frozenset({MessageStatus.SENT.value, MessageStatus.DELIVERED.value})


def loan_of(row: Any) -> Loan:
    c = row.currency
    return Loan(
        currency=c,
        balance=to_precision(row.balance, c),
        installment=to_precision(row.installment_amount, c),
        past_due=to_precision(row.past_due_amount, c),
        oldest_due_date=row.oldest_due_date,
        next_due_date=row.next_due_date,
    )


def payment_ceilings(connection: Connection, rows: Sequence[Any]) -> dict[str, Decimal | None]:
    """Per account row, the most a plan may ask a month (`restructuring.payment_ceiling`) from its
    borrower's latest bureau income estimate, pulled for any of their loans in its currency; a pull
    with none (a refusal, unreadable) hides no earlier one; None without any. One query for all."""
    if not rows:
        return {}
    latest: dict[tuple[str, str], Decimal] = {}  # (borrower, currency): the latest estimate
    for borrower_id, currency, income in connection.execute(
        select(account.c.borrower_id, account.c.currency, bureau.c.income_estimate)
        .join(account, account.c.account_id == bureau.c.account_id)
        .where(
            among(account.c.borrower_id, {r.borrower_id for r in rows}),
            bureau.c.kind == "pull",
            bureau.c.income_estimate.is_not(None),
        )
        .order_by(bureau.c.at, bureau.c.id)
    ):
        latest[(borrower_id, currency)] = income
    return {r.account_id: payment_ceiling(latest.get((r.borrower_id, r.currency)), r.currency) for r in rows}


def _latest_plans(connection: Connection, account_ids: Any, *, lock: bool = False) -> dict[str, Any]:
    statement = select(plan).where(plan.c.account_id.in_(account_ids)).order_by(plan.c.updated_at, plan.c.id)
    latest: dict[str, Any] = {}
    for r in connection.execute(locked(statement, connection) if lock else statement):
        latest[r.account_id] = r
    return latest


def _latest_plan_states(connection: Connection, account_ids: Any) -> dict[str, tuple[str, int | None]]:
    """Per account, its latest plan's status and the stay (episode) its terms were made for, read
    in SQL. The daily offer needs no more: decoding each plan's whole terms instead (every offer
    with its schedule, ~1 KB of JSON) cost a 200,000-account portfolio's refresh ~5 s every day
    once its 28,000 accounts in restructuring each held an offer."""
    latest: dict[str, tuple[str, int | None]] = {}
    for plan_account, status, episode in connection.execute(
        select(plan.c.account_id, plan.c.status, plan.c.terms["episode"].as_integer())
        .where(plan.c.account_id.in_(account_ids))
        .order_by(plan.c.updated_at, plan.c.id)
    ):
        latest[plan_account] = (status, episode)
    return latest


def current_plan(connection: Connection, account_id: str) -> Any | None:
    """The account's latest plan row (what the lifecycle reads), or None."""
    return _latest_plans(connection, [account_id]).get(account_id)


def plan_json(row: Any) -> dict[str, Any]:
    """A plan as `arrears show --json` gives it: what was agreed, by whom, and how it stands (the
    cycle's last reading); `arrears plan show --json` gives the stored terms whole."""
    terms = row.terms or {}
    return {
        "id": row.id,
        "kind": row.kind,
        "status": row.status,
        "accepted_on": terms.get("accepted_on"),
        "accepted_by": terms.get("accepted_by"),
        "schedule": terms.get("schedule", []),
        "paid": terms.get("paid"),
        "on_time": terms.get("on_time"),
        "reaged_on": terms.get("reaged_on"),
        "ended_on": terms.get("ended_on"),
        "updated_at": row.updated_at.isoformat(),
    }


def offer_plans(
    connection: Connection,
    *,
    as_of: datetime,
    business_date: date,
    rules: PlanRules,
    cycle_id: int | None = None,
    account_id: str | None = None,
) -> int:
    """Record the offers made to accounts in restructuring that have none for this stay (the
    lifecycle sent the offer message when it moved them): an `offered` plan whose terms list
    every offer the borrower's income affords (`payment_ceilings`), the recommended first, and
    that ceiling. Its date starts the offer's expiry.

    An offer no text of which has gone yet (blocked: to a skip-traced number not yet confirmed, an
    opt-out; or still scheduled) reached nobody: not recorded, it does not expire into review as
    declined, and the lifecycle makes it again weekly while none waits (`lifecycle._messages`)."""
    in_stage = select(account.c.account_id).where(
        account.c.stage == Stage.RESTRUCTURING.value, for_account(account_id, account.c.account_id)
    )
    stays = connection.execute(in_stage.add_columns(account.c.episode)).all()
    latest = _latest_plan_states(connection, in_stage)
    due = []
    for stay in stays:
        status, episode = latest.get(stay.account_id, (None, None))
        if status != "active" and episode != stay.episode:  # no plan running, none offered this stay
            due.append(stay.account_id)
    due = _offer_reached(connection, due, {s.account_id: s.episode for s in stays})
    if not due:
        return 0
    accounts = connection.execute(
        select(account).where(among(account.c.account_id, due)).order_by(account.c.account_id)
    ).all()
    ceilings = payment_ceilings(connection, accounts)
    rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for a in accounts:
        ceiling = ceilings[a.account_id]
        try:
            found = offers(loan_of(a), business_date=business_date, rules=rules, ceiling=ceiling)
        except PlanError:
            found = []
        if not found:
            continue
        offered = [o.to_json() for o in found]  # the plan's terms and its event say the same
        afforded = None if ceiling is None else str(ceiling)
        made = {"episode": a.episode, "offered_on": business_date.isoformat()}
        rows.append(
            {
                "account_id": a.account_id,
                "kind": found[0].kind,
                "status": "offered",
                "terms": {**made, "offers": offered, "ceiling": afforded},
                "created_at": as_of,
                "updated_at": as_of,
            }
        )
        events.append(
            event(
                a.account_id,
                as_of,
                "plan",
                "plan offered: " + "; ".join(o.describe() for o in found) + _within(found, ceiling),
                {"status": "offered", "offers": offered, "ceiling": afforded},
                cycle_id=cycle_id,
            )
        )
    if rows:
        connection.execute(plan.insert(), rows)
        insert_events(connection, events)
    return len(rows)


def _within(found: Sequence[PlanTerms], ceiling: Decimal | None) -> str:
    """What the borrower's means did to the offers, for the timeline: nothing without a ceiling."""
    if ceiling is None:
        return ""
    fits = "within" if all(o.largest_payment <= ceiling for o in found) else "none within, the least of"
    return f" ({fits} the {found[0].currency} {ceiling} a month the borrower's income affords)"


def _offer_reached(connection: Connection, due: list[str], episodes: dict[str, int]) -> list[str]:
    """Of `due`, the accounts whose restructuring offer of this stay reached the borrower: one text
    of it sent (or delivered), or none at all (an account put in the stage by other means). One
    still scheduled (deferred to the morning, a provider down for days) reached nobody yet: the
    offer's expiry, which sends an unanswered offer to review, counts from the day it went."""
    if not due:
        return due
    reached: dict[str, bool] = {}
    for offered_to, episode, status in connection.execute(
        select(message.c.account_id, message.c.episode, message.c.status).where(
            among(message.c.account_id, due),
            message.c.template == _OFFER_TEMPLATE,
            message.c.stage == Stage.RESTRUCTURING.value,
        )
    ):
        if episode == episodes[offered_to]:
            reached[offered_to] = reached.get(offered_to, False) or status in _WENT
    return [a for a in due if reached.get(a, True)]


def accept_plan(
    connection: Connection,
    *,
    account_id: str,
    kind: str | None,
    months: int | None,
    at: datetime,
    business_date: date,
    actor: str,
    source: str,
    rules: PlanRules,
    data: dict[str, Any] | None = None,
    cycle_id: int | None = None,
) -> tuple[int, PlanTerms]:
    """Make the plan a borrower (by reply) or an agent (by CLI) accepted active; returns its id and
    terms. PlanError says why not: the account is not delinquent, a reviewer or a court has it, a
    bankruptcy or Breathing Space hold bars it, a plan or a settlement is already agreed, the
    terms do not fit the loan, or a reply (`source="reply"`) names a plan that is not one of the
    offers.

    A deferral moves the past due to the end of the term at once (the account is current again,
    and the lifecycle cures it); an instalment plan leaves it to the payments.
    """
    a = connection.execute(
        locked(select(account).where(account.c.account_id == account_id), connection)
    ).first()
    if a is None:
        raise PlanError(f"no account {account_id!r}")
    # A delinquent account the cycle has not yet moved out of `cured` (a new file's) may agree a
    # plan, as it may promise or settle.
    delinquent = a.stage == Exit.CURED and a.past_due_amount > 0
    if a.stage == Exit.CURED and not delinquent:
        raise PlanError("account is current (nothing past due): there is nothing to plan")
    if a.stage not in (Stage.REMINDER, Stage.NEGOTIATION, Stage.RESTRUCTURING) and not delinquent:
        raise PlanError(
            f"account is in {a.stage}: plans are agreed in reminder, negotiation and restructuring"
        )
    check_holds(holds_of(connection, [account_id]).get(account_id, frozenset()))
    last = _latest_plans(connection, [account_id], lock=True).get(account_id)
    if last is not None and last.status == "active":
        raise PlanError(f"plan {last.id} is already active")
    settling = connection.execute(
        select(settlement.c.id).where(settlement.c.account_id == account_id, settlement.c.status == "active")
    ).scalar()
    if settling is not None:
        # One agreement at a time: the borrower is paying the settlement (`arrears settlement cancel`).
        raise PlanError(f"settlement {settling} is agreed: the borrower is paying under it")
    # A borrower's reply takes one of the offers their income affords; an agent, any the policy bounds.
    terms = choose(
        loan_of(a),
        kind=kind,
        months=months,
        business_date=business_date,
        rules=rules,
        offered_only=source == "reply",
        ceiling=payment_ceilings(connection, [a])[account_id],
    )
    # The payments the plan's past due already reflects (applied by then) never count towards it
    # as well: a payment applied by the morning's cycle would otherwise pay a plan made that day
    # on what was left, and a deferral would complete without its next instalment.
    applied_by = connection.execute(
        select(func.max(payment.c.applied_at)).where(payment.c.account_id == account_id)
    ).scalar()
    stored = {
        **terms.to_json(),
        "episode": a.episode,
        "accepted_on": business_date.isoformat(),
        "accepted_at": at.isoformat(),
        "accepted_by": actor,
        "source": source,
        "on_time": 0,
        "reaged": False,
        "payments_applied_by": applied_by.isoformat() if applied_by else None,
    }
    this_stay = last is not None and (last.terms or {}).get("episode") == a.episode
    offered = last if this_stay and last is not None and last.status == "offered" else None
    if offered is not None:
        stored["offers"] = (offered.terms or {}).get("offers", [])
        connection.execute(
            update(plan)
            .where(plan.c.id == offered.id)
            .values(kind=terms.kind, status="active", terms=stored, updated_at=at)
        )
        plan_id = offered.id
    else:
        plan_id = inserted_id(
            connection.execute(
                plan.insert().values(
                    account_id=account_id,
                    kind=terms.kind,
                    status="active",
                    terms=stored,
                    created_at=at,
                    updated_at=at,
                )
            )
        )
    extra = data or {}
    # The plan is the agreement now: a promise pending for a later day is replaced by it, or,
    # broken beside the plan, it would count against a borrower paying as agreed (one already
    # past its date is left to be judged, as a new promise leaves it).
    events = [
        event(
            account_id,
            at,
            "promise",
            f"promise {old.id} replaced by plan {plan_id}",
            {"promise_id": old.id, "status": "replaced", "by_plan": plan_id, **extra},
            actor=actor,
            cycle_id=cycle_id,
        )
        for old in replace_pending(connection, account_id=account_id, day=business_date, at=at)
    ]
    events += [
        event(
            account_id,
            at,
            "plan",
            f"plan {plan_id} accepted ({source}): {terms.describe()}",
            {"plan_id": plan_id, "status": "active", "terms": terms.to_json(), "source": source, **extra},
            actor=actor,
            cycle_id=cycle_id,
        )
    ]
    if terms.kind == "deferral":
        resume = terms.schedule[0].due
        connection.execute(
            update(account)
            .where(account.c.account_id == account_id)
            .values(past_due_amount=Decimal(0), oldest_due_date=None, next_due_date=resume, updated_at=at)
        )
        events.append(
            event(
                account_id,
                at,
                "plan",
                f"deferral applied: {a.currency} {terms.deferred} moved to the end of the term, "
                f"term extended by {count_months(terms.term_extension_months)}; "
                f"past due {a.currency} {terms.past_due} → 0",
                {
                    "plan_id": plan_id,
                    "deferred": str(terms.deferred),
                    "past_due_before": str(terms.past_due),
                    "term_extension_months": terms.term_extension_months,
                    **extra,
                },
                actor=actor,
                cycle_id=cycle_id,
            )
        )
    insert_events(connection, events)
    return int(plan_id), terms


def decline_plan(
    connection: Connection,
    *,
    account_id: str,
    at: datetime,
    actor: str,
    source: str,
    data: dict[str, Any] | None = None,
    cycle_id: int | None = None,
    why: str | None = None,
) -> int | None:
    """The borrower declines the offer (by reply, or to an agent who records it with `why`): the
    lifecycle sends a declined offer to review. Returns the plan id, or None when the account has
    no offer to decline."""
    a = connection.execute(
        select(account.c.episode, account.c.stage).where(account.c.account_id == account_id)
    ).first()
    if a is None or a.stage != Stage.RESTRUCTURING:
        return None
    last = _latest_plans(connection, [account_id], lock=True).get(account_id)
    extra = data or {}
    if last is not None and last.status == "offered":
        connection.execute(
            update(plan)
            .where(plan.c.id == last.id, plan.c.status == "offered")
            .values(status="declined", updated_at=at)
        )
        plan_id = last.id
    elif last is None or last.status != "active":
        # The offer message went out before its plan row was written (the next cycle writes it).
        plan_id = inserted_id(
            connection.execute(
                plan.insert().values(
                    account_id=account_id,
                    kind="deferral",
                    status="declined",
                    terms={"episode": a.episode},
                    created_at=at,
                    updated_at=at,
                )
            )
        )
    else:
        return None
    insert_events(
        connection,
        [
            event(
                account_id,
                at,
                "plan",
                f"plan offer {plan_id} declined ({source})" + (f": {why}" if why else ""),
                {"plan_id": plan_id, "status": "declined", "source": source, **extra},
                actor=actor,
                cycle_id=cycle_id,
            )
        ],
    )
    return int(plan_id)


def cancel_plan(
    connection: Connection, *, account_id: str, at: datetime, business_date: date, agent: str, why: str
) -> Any | None:
    """An agent ends the account's active plan (the borrower settles instead, it was recorded in
    error); returns the row as cancelled, or None when none is active. A plan ended so is no working
    plan: the lifecycle takes it as a declined one (to review from restructuring), unless a
    settlement recorded after it holds the account."""
    last = _latest_plans(connection, [account_id], lock=True).get(account_id)
    if last is None or last.status != "active":
        return None
    stored = {
        **(last.terms or {}),
        "ended_on": business_date.isoformat(),
        "cancelled_by": agent,
        "reason": why,
    }
    connection.execute(
        update(plan)
        .where(plan.c.id == last.id, plan.c.status == "active")
        .values(status="cancelled", terms=stored, updated_at=at)
    )
    insert_events(
        connection,
        [
            event(
                account_id,
                at,
                "plan",
                f"plan {last.id} cancelled: {why}",
                {"plan_id": last.id, "status": "cancelled", "agent": agent, "reason": why},
                actor=f"agent:{agent}",
            )
        ],
    )
    return connection.execute(select(plan).where(plan.c.id == last.id)).one()


def monitor_plans(
    connection: Connection,
    *,
    as_of: datetime,
    business_date: date,
    lender_timezone: str,
    rules: PlanRules,
    cycle_id: int | None = None,
    account_id: str | None = None,
) -> dict[str, int]:
    """Check every active plan against the payments received since it was accepted: progress,
    `completed` (the arrears are repaid: the account is brought current, and cures), `defaulted`
    (the lifecycle sends the account to review), and re-ageing where the policy allows it.
    Three queries for all active plans."""
    active = connection.execute(
        locked(
            select(plan).where(plan.c.status == "active", for_account(account_id, plan.c.account_id)),
            connection,
        )
    ).all()
    counts = {"plans_completed": 0, "plans_defaulted": 0, "plans_reaged": 0}
    if not active:
        return counts
    starts = [
        date.fromisoformat((p.terms or {}).get("accepted_on", business_date.isoformat())) for p in active
    ]
    behind = {
        r.account_id: r.past_due_amount
        for r in connection.execute(
            select(account.c.account_id, account.c.past_due_amount).where(
                account.c.account_id.in_(select(plan.c.account_id).where(plan.c.status == "active")),
                for_account(account_id, account.c.account_id),
            )
        )
    }
    earliest = day_start(min(starts), lender_timezone)
    with_active = select(plan.c.account_id).where(plan.c.status == "active")
    received: dict[str, list[tuple[date, Decimal, datetime | None]]] = defaultdict(list)
    for r in connection.execute(
        select(payment.c.account_id, payment.c.amount, payment.c.received_at, payment.c.applied_at).where(
            payment.c.account_id.in_(with_active),
            payment.c.received_at >= earliest,
            payment.c.received_at <= as_of,
            for_account(account_id, payment.c.account_id),
        )
    ):
        received[r.account_id].append((lender_date(r.received_at, lender_timezone), r.amount, r.applied_at))
    plan_rows: list[dict[str, Any]] = []
    current: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for p, start in zip(active, starts, strict=True):
        stored = dict(p.terms or {})
        terms = PlanTerms.from_json(stored)
        reflected = stored.get("payments_applied_by")
        seen = datetime.fromisoformat(reflected) if reflected else None
        # At the plan's currency's precision (storage keeps four places), or the default's reason
        # and the plan's `paid` would read `short by USD 367.3400`.
        progress = monitor(
            terms,
            [
                (d, to_precision(a, terms.currency))
                for d, a, applied in received.get(p.account_id, [])
                if d >= start and not (seen and applied and applied <= seen)
            ],
            business_date=business_date,
            grace_days=rules.grace_days,
        )
        status = progress.status
        reage = status == "active" and reage_due(
            terms, progress, rules=rules, already=bool(stored.get("reaged"))
        )
        if progress.on_time != stored.get("on_time", 0):
            events.append(
                event(
                    p.account_id,
                    as_of,
                    "plan",
                    f"plan {p.id}: {progress.on_time} of {len(terms.schedule)} payments made on time",
                    {"plan_id": p.id, "on_time": progress.on_time, "paid": str(progress.paid)},
                    cycle_id=cycle_id,
                )
            )
        if status == "active" and not reage and progress.on_time == stored.get("on_time", 0):
            continue
        stored.update(on_time=progress.on_time, paid=str(progress.paid))
        if status != "active":
            stored["ended_on"] = business_date.isoformat()
            events.append(
                event(
                    p.account_id,
                    as_of,
                    "plan",
                    f"plan {p.id} {status}: {progress.reason}",
                    {
                        "plan_id": p.id,
                        "status": status,
                        "paid": str(progress.paid),
                        "missed": progress.missed.due.isoformat() if progress.missed else None,
                    },
                    cycle_id=cycle_id,
                )
            )
            counts[f"plans_{status}"] += 1
        if reage:
            stored["reaged"] = True
            stored["reaged_on"] = business_date.isoformat()
            counts["plans_reaged"] += 1
        if (reage or status == "completed") and behind.get(p.account_id, Decimal(0)) > 0:
            why = (
                f"re-aged after {progress.on_time} on-time plan payments"
                if reage
                else "plan completed: arrears repaid"
            )
            current.append({"key": p.account_id, "now": as_of})
            events.append(
                event(
                    p.account_id,
                    as_of,
                    "plan",
                    f"account brought current: {why}",
                    {
                        "plan_id": p.id,
                        "reaged": reage,
                        "completed": status == "completed",
                        "past_due_before": str(behind[p.account_id]),
                    },
                    cycle_id=cycle_id,
                )
            )
        plan_rows.append({"key": p.id, "status": status, "terms": stored, "now": as_of})
    if plan_rows:
        connection.execute(
            update(plan)
            .where(plan.c.id == bindparam("key"), plan.c.status == "active")
            .values(status=bindparam("status"), terms=bindparam("terms"), updated_at=bindparam("now")),
            plan_rows,
        )
    if current:
        connection.execute(
            update(account)
            .where(account.c.account_id == bindparam("key"), account.c.past_due_amount > 0)
            .values(past_due_amount=Decimal(0), oldest_due_date=None, updated_at=bindparam("now")),
            current,
        )
    insert_events(connection, events)
    return counts
