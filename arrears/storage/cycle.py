"""Data access for the daily cycle: bulk reads and writes in SQLAlchemy Core.

Who may run a cycle, and the record of each run, are in `arrears.storage.cycle_runs`.

Each function takes the caller's connection and does not commit: a task owns the transaction,
so a shard's transitions, audit events and outbox rows land together or not at all.
"""

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, bindparam, case, literal, select, true, update

from arrears.buckets import BUCKETS
from arrears.clock import business_date as lender_date
from arrears.currencies import display
from arrears.lifecycle import AccountView, Decision, Facts, PlanFact, Step
from arrears.messages import MessageContext
from arrears.payments import Owed, apply_payment, due_day
from arrears.policy import DEFAULT_POLICY
from arrears.records import record
from arrears.storage import tables
from arrears.storage._common import event, insert_events
from arrears.storage.bulk import days_between, execute_many, in_range, insert_ignore, range_starts
from arrears.storage.decided import decided_keys
from arrears.storage.history import contact_history
from arrears.storage.settlements import shard_settlements
from arrears.storage.tables import (
    account,
    borrower,
    contact,
    hold,
    message,
    payment,
    promise,
)
from arrears.vocabulary import DecisionKind, Exit, Hold, MessageStatus

__all__ = [
    "MOVES",
    "TERMINAL",
    "ShardRow",
    "apply_new_payments",
    "load_shard",
    "refresh_days_past_due",
    "several_shards",
    "shard_starts",
    "unchanged",
    "write_decisions",
]

TERMINAL = (Exit.PAID_OFF.value, Exit.SETTLED.value, Exit.CHARGED_OFF.value, Exit.CLOSED.value)
# The audit kind of a shard's transition counts: written with the transitions, summed by the report.
MOVES = "shard_moves"


@record
class ShardRow:
    """One account as the advance step needs it: the rule inputs plus what a message needs."""

    view: AccountView
    facts: Facts
    context: MessageContext
    address: str | None
    segment: str


def apply_new_payments(
    connection: Connection, *, as_of: datetime, cycle_id: int | None, account_id: str | None = None
) -> int:
    """Apply payments received up to `as_of` that no cycle has applied yet (of one account, if
    given); returns how many."""
    rows = connection.execute(
        select(
            payment.c.payment_id,
            payment.c.amount,
            payment.c.received_at,
            account.c.account_id,
            account.c.currency,
            account.c.balance,
            account.c.past_due_amount,
            account.c.installment_amount,
            account.c.oldest_due_date,
            account.c.next_due_date,
        )
        .join(account, account.c.account_id == payment.c.account_id)
        .where(payment.c.applied_at.is_(None), payment.c.received_at <= as_of)
        .where(payment.c.account_id == account_id if account_id else true())
        .order_by(payment.c.account_id, payment.c.received_at, payment.c.payment_id)
    ).all()
    if not rows:
        return 0
    owed: dict[str, Owed] = {}
    events = []
    for r in rows:
        before = owed.get(r.account_id) or Owed(
            r.balance,
            r.past_due_amount,
            r.installment_amount,
            r.oldest_due_date,
            due_day(r.next_due_date, r.oldest_due_date),
        )
        owed[r.account_id] = after = apply_payment(before, r.amount)
        # At the account's currency's precision, as every other amount in the trail: storage
        # keeps four places for every currency (a JPY payment read `35000.0000`).
        amount = display(r.amount, r.currency)
        events.append(
            {
                "account_id": r.account_id,
                "at": r.received_at,
                "kind": "payment",
                "cycle_id": cycle_id,
                "actor": "servicer",
                "detail": f"payment {r.payment_id} of {r.currency} {amount} applied",
                "data": {
                    "payment_id": r.payment_id,
                    "amount": amount,
                    "past_due_after": display(after.past_due_amount, r.currency),
                },
            }
        )
    connection.execute(
        update(account)
        .where(account.c.account_id == bindparam("key"))
        .values(
            balance=bindparam("balance"),
            past_due_amount=bindparam("past_due"),
            oldest_due_date=bindparam("oldest"),
            updated_at=bindparam("now"),
        ),
        [
            {
                "key": k,
                "balance": o.balance,
                "past_due": o.past_due_amount,
                "oldest": o.oldest_due_date,
                "now": as_of,
            }
            for k, o in owed.items()
        ],
    )
    connection.execute(
        update(payment).where(payment.c.payment_id == bindparam("key")).values(applied_at=bindparam("at")),
        [{"key": r.payment_id, "at": as_of} for r in rows],
    )
    insert_events(connection, events)
    return len(rows)


def refresh_days_past_due(
    connection: Connection, *, business_date: date, account_id: str | None = None
) -> int:
    """Recompute days past due and bucket of every account still in play (or of one), in one statement."""
    days = case(
        (account.c.oldest_due_date.is_(None), 0),
        (account.c.oldest_due_date >= business_date, 0),
        else_=days_between(literal(business_date), account.c.oldest_due_date),
    )
    bucket = case(*[(days >= lowest, label) for label, lowest in reversed(BUCKETS)], else_=BUCKETS[0][0])
    result = connection.execute(
        update(account)
        .where(account.c.stage.not_in(TERMINAL))
        .where(account.c.account_id == account_id if account_id else true())
        .values(days_past_due=days, bucket=bucket)
    )
    return result.rowcount or 0


def shard_starts(connection: Connection, *, size: int) -> list[str]:
    """The first account id of each shard of `size` accounts still in play."""
    return range_starts(connection, account.c.account_id, account.c.stage.not_in(TERMINAL), size=size)


def several_shards(connection: Connection, *, size: int) -> bool:
    """Whether more than `size` accounts are still in play, so that the advance has several
    shards: one row looked up past the first `size` in the index, not a count of them all."""
    beyond = (
        select(account.c.account_id)
        .where(account.c.stage.not_in(TERMINAL))
        .order_by(account.c.account_id)
        .offset(size)
        .limit(1)
    )
    return connection.execute(beyond).first() is not None


_SHARD_COLUMNS = (
    "account_id",
    "borrower_id",
    "stage",
    "stage_since",
    "episode",
    "days_past_due",
    "past_due_amount",
    "installment_amount",
    "balance",
    "currency",
    "jurisdiction",
    "timezone",
    "next_due_date",
    "oldest_due_date",
    "ability",
    "willingness",
    "broken_promises",
    "segment",
)


def load_shard(
    connection: Connection,
    *,
    lo: str,
    hi: str | None,
    business_date: date,
    lender: str,
    lender_timezone: str,
    since: datetime | None = None,
) -> list[ShardRow]:
    """Accounts with lo <= id < hi still in play, with every fact the rules read, in a few queries.

    The days the rules count from (the stage's start, a plan's offer, a return from review) are the
    lender's business dates of those instants, as `business_date` is: the UTC date of an offer made
    at 00:30 in Shanghai is the day before, and the offer expired a day early.

    The contact history the caps count is read from `since` (default: the longest cap window of the
    default policy, and a day more, before the business date). Reading too little only moves a
    deferral from decision time to send time, where the count is taken again."""
    # The columns the rules and the messages read, not the whole row (vehicle, mailing address).
    accounts = connection.execute(
        select(
            *[account.c[name] for name in _SHARD_COLUMNS],
            borrower.c.name.label("borrower_name"),
            tables.mailing_region(),
        )
        .join(borrower, borrower.c.borrower_id == account.c.borrower_id)
        .where(in_range(account.c.account_id, lo, hi), account.c.stage.not_in(TERMINAL))
        .order_by(account.c.account_id)
    ).all()
    if not accounts:
        return []
    holds = _holds(connection, lo, hi)
    contacts = _contacts(connection, lo, hi)
    pending, broken_at = _promises(connection, lo, hi)
    plans = _latest(connection, tables.plan, lo, hi, "updated_at")
    reviews = _latest(connection, tables.review, lo, hi, "opened_at")
    referrals = _latest(connection, tables.referral, lo, hi, "updated_at")
    settlements = shard_settlements(connection, lo, hi)
    decided = decided_keys(connection, lo, hi)
    if since is None:
        since = (
            datetime.combine(business_date, time(), UTC)
            - DEFAULT_POLICY.longest_cap_window()
            - timedelta(days=1)
        )
    borrowers = select(account.c.borrower_id).where(in_range(account.c.account_id, lo, hi))
    history = contact_history(connection, borrowers=borrowers, since=since)

    rows = []
    # Unpacked by position, in the order of _SHARD_COLUMNS: a row's attribute lookup costs ~0.25 µs
    # and the loop made ~35 of them an account.
    for (
        account_id,
        borrower_id,
        stage,
        stage_since,
        episode,
        days_past_due,
        past_due_amount,
        installment_amount,
        balance,
        currency,
        jurisdiction,
        timezone,
        next_due_date,
        oldest_due_date,
        ability,
        willingness,
        broken_promises,
        segment,
        borrower_name,
        region,
    ) in accounts:
        contact = contacts.get(borrower_id)
        plan = plans.get(account_id)
        review = reviews.get(account_id)
        broken = broken_at.get(account_id)
        referral = referrals.get(account_id)
        view = AccountView(
            account_id=account_id,
            stage=stage,
            stage_since=stage_since,
            episode=episode,
            days_past_due=days_past_due,
            past_due_amount=past_due_amount,
            balance=balance,
            jurisdiction=jurisdiction,
            timezone=timezone,
            next_due_date=next_due_date,
            region=region,
            oldest_due_date=oldest_due_date,
        )
        context = MessageContext(
            lender=lender,
            borrower_name=borrower_name,
            jurisdiction=jurisdiction,
            currency=currency,
            past_due_amount=past_due_amount,
            installment_amount=installment_amount,
            days_past_due=days_past_due,
            next_due_date=next_due_date,
        )
        facts = Facts(
            business_date=business_date,
            stage_began=lender_date(stage_since, lender_timezone),
            holds=holds.get(account_id, frozenset()),
            reachable=contact is not None,
            opted_out=contact is not None and contact[1],
            ability=ability,
            willingness=willingness,
            broken_promises=broken_promises,
            promise_pending=account_id in pending,
            promise_broken_in_stage=broken is not None and broken >= stage_since,
            plan=(
                PlanFact(
                    plan.status,
                    lender_date(plan.updated_at, lender_timezone),
                    (plan.terms or {}).get("episode"),
                )
                if plan
                else None
            ),
            review_decision=(
                DecisionKind(review.decision)
                if review is not None and review.decision and review.decided_at >= stage_since
                else None
            ),
            returned_from_review=(
                lender_date(review.decided_at, lender_timezone)
                if review is not None and review.decision == DecisionKind.NEGOTIATE
                else None
            ),
            # This stay's: a referral of an earlier stay in legal referral (the legal team did not
            # sue, and the borrower paid and fell behind again) says nothing of this one.
            referral_status=referral.status
            if referral is not None and referral.opened_at >= stage_since
            else None,
            settlement=settlements.get(account_id),
            address=contact[0] if contact else None,
            address_verified=contact is None or contact[2],
            history=history.get(borrower_id, ()),
            decided=decided.get(account_id, frozenset()),
            context=context,
        )
        rows.append(ShardRow(view, facts, context, contact[0] if contact else None, segment))
    return rows


def _holds(connection: Connection, lo: str, hi: str | None) -> dict[str, frozenset[Hold]]:
    found: dict[str, set[Hold]] = defaultdict(set)
    for account_id, kind in connection.execute(
        select(hold.c.account_id, hold.c.kind).where(
            in_range(hold.c.account_id, lo, hi), hold.c.lifted_at.is_(None)
        )
    ):
        found[account_id].add(Hold(kind))
    return {k: frozenset(v) for k, v in found.items()}


def _contacts(connection: Connection, lo: str, hi: str | None) -> dict[str, tuple[str, bool, bool]]:
    """Per borrower, the SMS number to use, whether it has opted out, and whether it is confirmed
    the borrower's (a number skip tracing found is not).

    A valid primary number wins; an opted-out number is still returned so the message is
    recorded as blocked by the opt-out rather than silently not created.
    """
    borrowers = select(account.c.borrower_id).where(in_range(account.c.account_id, lo, hi))
    best: dict[str, tuple[tuple[bool, bool, bool], str, bool, bool]] = {}
    for borrower_id, address, is_primary, verified, opted_out_at in connection.execute(
        select(
            contact.c.borrower_id,
            contact.c.address,
            contact.c.is_primary,
            contact.c.verified,
            contact.c.opted_out_at,
        ).where(contact.c.borrower_id.in_(borrowers), contact.c.channel == "sms", contact.c.valid.is_(True))
    ):
        opted_out = opted_out_at is not None
        rank = (not opted_out, verified, is_primary)
        if borrower_id not in best or rank > best[borrower_id][0]:
            best[borrower_id] = (rank, address, opted_out, verified)
    return {k: (address, opted_out, verified) for k, (_, address, opted_out, verified) in best.items()}


def _promises(connection: Connection, lo: str, hi: str | None) -> tuple[set[str], dict[str, datetime]]:
    pending: set[str] = set()
    broken_at: dict[str, datetime] = {}
    for r in connection.execute(
        select(promise.c.account_id, promise.c.status, promise.c.resolved_at).where(
            in_range(promise.c.account_id, lo, hi), promise.c.status.in_(("pending", "broken"))
        )
    ):
        if r.status == "pending":
            pending.add(r.account_id)
        elif r.resolved_at is not None and (
            r.account_id not in broken_at or r.resolved_at > broken_at[r.account_id]
        ):
            broken_at[r.account_id] = r.resolved_at
    return pending, broken_at


def _latest(connection: Connection, table: Any, lo: str, hi: str | None, order: str) -> dict[str, Any]:
    latest: dict[str, Any] = {}
    for r in connection.execute(
        select(table).where(in_range(table.c.account_id, lo, hi)).order_by(table.c[order], table.c.id)
    ):
        latest[r.account_id] = r
    return latest


def unchanged(connection: Connection, rows: Sequence[ShardRow], *, lo: str, hi: str | None) -> set[str]:
    """Ids of rows whose account still has the stage and episode they were loaded with.

    A shard decides outside its write transaction; an account changed meanwhile (by the
    single-account path) is left to that path's own decision, not overwritten."""
    if not rows:
        return set()
    loaded = {r.view.account_id: (r.view.stage, r.view.episode) for r in rows}
    current = connection.execute(
        select(account.c.account_id, account.c.stage, account.c.episode).where(
            in_range(account.c.account_id, lo, hi)
        )
    )
    return {a for a, stage, episode in current if loaded.get(a) == (stage, episode)}


def _moves_event(decisions: Sequence[Decision], now: datetime, cycle_id: int | None) -> list[dict[str, Any]]:
    """The shard's transitions counted as the cycle's report counts them: (from, to) of every step,
    and each account's journey (its stage before its first step, after its last). Written in the
    shard's own transaction, so the report sums these instead of grouping every transition row
    of a million-account cycle (`storage.reports`); none without a cycle or a step."""
    moved = [d for d in decisions if d.steps]
    if cycle_id is None or not moved:
        return []
    moves = Counter((str(s.from_stage), str(s.to_stage)) for d in moved for s in d.steps)
    journeys = Counter((str(d.steps[0].from_stage), str(d.steps[-1].to_stage)) for d in moved)
    total = moves.total()
    data = {
        "transitions": total,
        "moves": [[a, b, n] for (a, b), n in sorted(moves.items())],
        "journeys": [[a, b, n] for (a, b), n in sorted(journeys.items())],
    }
    detail = f"{total} transitions of {len(moved)} accounts ({moved[0].account_id} to {moved[-1].account_id})"
    return [event(None, now, MOVES, detail, data, cycle_id=cycle_id)]


@lru_cache(maxsize=4_096)
def _transition(step: Step) -> tuple[str, dict[str, str]]:
    """The audit detail and data of a step. A million accounts take a few hundred distinct steps
    in a cycle: each is built once, and its data shared by its events is encoded once
    (`driver_values`). Nobody changes an event's data once made."""
    detail = f"{step.from_stage} → {step.to_stage}: {step.reason}"
    return detail, {"from": str(step.from_stage), "to": str(step.to_stage), "reason": step.reason}


def write_decisions(
    connection: Connection,
    *,
    rows: Sequence[ShardRow],
    decisions: Sequence[Decision],
    texts: dict[str, tuple[dict[str, str], str]],
    now: datetime,
    cycle_id: int | None,
) -> dict[str, int]:
    """Store a shard's transitions, segment changes, audit events and outbox rows together."""
    account_updates: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    outbox: list[dict[str, Any]] = []
    details: dict[str, str | None] = {}
    for row, decision in zip(rows, decisions, strict=True):
        account_id = decision.account_id
        if decision.changed or decision.segment != row.segment:
            account_updates.append(
                {
                    "key": account_id,
                    "stage": decision.stage,
                    "episode": decision.episode,
                    "segment": decision.segment.value,
                    "stage_since": now if decision.changed else row.view.stage_since,
                    "now": now,
                }
            )
        for step in decision.steps:
            events.append(event(account_id, now, "transition", *_transition(step), cycle_id=cycle_id))
        if decision.segment != row.segment:
            events.append(
                event(
                    account_id,
                    now,
                    "segment",
                    f"segment {row.segment} → {decision.segment}",
                    {"from": row.segment, "to": decision.segment.value},
                    cycle_id=cycle_id,
                )
            )
        for out in decision.messages:
            status = MessageStatus.BLOCKED if out.blocked else MessageStatus.SCHEDULED
            # The body the verdict was given on; `texts` (rendered by the caller) only for a
            # decision made without a message context.
            params, body = (
                (dict(out.params), out.body) if out.body is not None else texts.get(out.key, ({}, ""))
            )
            details[out.key] = out.detail
            outbox.append(
                {
                    "idempotency_key": out.key,
                    "account_id": account_id,
                    "channel": "sms",
                    "address": row.address or "",
                    "template": out.template,
                    "params": params,
                    "body": body,
                    "stage": decision.stage,
                    "episode": decision.episode,
                    "not_before": out.not_before,
                    "status": status.value,
                    "reason": out.blocked or out.deferred,
                    "attempts": 0,
                    "created_at": now,
                }
            )
    if account_updates:
        execute_many(
            connection,
            update(account)
            .where(account.c.account_id == bindparam("key"))
            .values(
                stage=bindparam("stage"),
                episode=bindparam("episode"),
                segment=bindparam("segment"),
                stage_since=bindparam("stage_since"),
                updated_at=bindparam("now"),
            ),
            account_updates,
        )
    created = insert_ignore(connection, message, outbox, key="idempotency_key")
    # Only verdicts other than "send now" are audited at decision time; the send itself is
    # audited by dispatch. A re-run whose keys already exist adds no second record.
    events += [
        event(
            o["account_id"],
            now,
            "message",
            f"{o['template']} {o['status']}: {o['reason']}"
            + (f" ({details[o['idempotency_key']]})" if details.get(o["idempotency_key"]) else "")
            + (
                f", not before {o['not_before']:%Y-%m-%dT%H:%MZ}"
                if o["status"] == MessageStatus.SCHEDULED.value
                else ""
            ),
            {
                "key": o["idempotency_key"],
                "status": o["status"],
                "reason": o["reason"],
                "rule": o["reason"],
                "verdict": "block" if o["status"] == MessageStatus.BLOCKED.value else "defer",
                "when": "decision",
            },
            cycle_id=cycle_id,
        )
        for o in outbox
        if o["reason"] and o["idempotency_key"] in created
    ]
    events += _moves_event(decisions, now, cycle_id)
    insert_events(connection, events)
    return {
        "accounts": len(rows),
        "transitions": sum(len(d.steps) for d in decisions),
        "messages": len(created),
        "held": sum(1 for d in decisions if d.held_by),
    }
