"""Data access for the later stages: promises, plans, reviews, vendor orders and legal referrals.

Every function takes the caller's connection and does not commit: the task owns the
transaction. The functions the daily cycle calls (`read_replies`, `resolve_promises`,
`nudge_for_payments`, `reset_broken_promises`, `offer_plans`, `monitor_plans`,
`cancel_vendor_orders`) work in bulk, a few queries for the whole portfolio (or for one account
on the single-account path), never a query per account. Those that run per account (accepting a
plan, a review's steps, a referral's) serve the CLI and the per-review flow runs.

Each is idempotent, so a cycle run twice or a flow re-run from the top repeats nothing:

- a reply is read once: every event written in answer to it carries `data.reply_id`;
- a promise or a plan moves only from the status it was read in (rows are locked with
  `FOR UPDATE` on PostgreSQL; SQLite's writer holds the database);
- a willingness nudge for a payment carries `data.payment_id`;
- a review's cure notice is recorded once (`Review.cure_deadline`), its decision once.

Vendor orders (repossession orders to the recovery agent, no vendor API) are audit events of
kind `vendor_order` (`data.order_id`, `data.action` placed | cancelled) until they get a table.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, bindparam, or_, select, true, update

from arrears.clock import business_date as lender_date
from arrears.compliance.holds import PaymentEvent, cancels_repossession
from arrears.currencies import display
from arrears.lifecycle import is_open
from arrears.models import (
    Account,
    AccountHold,
    AuditEvent,
    Borrower,
    BureauRecord,
    ContactPoint,
    Message,
    Payment,
    Plan,
    Promise,
    Referral,
    Review,
)
from arrears.policy import Segmentation
from arrears.promises import PaymentView, PromiseRules, PromiseView
from arrears.promises import refusal as promise_refusal
from arrears.promises import resolve_promises as decide_promises
from arrears.restructuring import (
    Loan,
    PlanError,
    PlanRules,
    PlanTerms,
    choose,
    monitor,
    offers,
    reage_due,
)
from arrears.review import CureNotice, ReferralFacts, Settled, claim_amount, notices_from
from arrears.segmentation import ability_score, nudge_willingness
from arrears.vocabulary import Channel, DecisionKind, Exit, Hold, HoldScope, MessageStatus, Segment, Stage

__all__ = [
    "REPLY_WINDOW",
    # bureau pulls
    "PullSubject",
    # referrals
    "ReferralState",
    "Reply",
    # reviews and vendor orders
    "ReviewState",
    "Waiting",
    "accept_plan",
    "add_promise",
    "cancel_vendor_orders",
    "close_left_reviews",
    "close_review",
    "create_vendor_order",
    "current_plan",
    "current_review",
    "decline_plan",
    # plans
    "loan_of",
    "lock_accounts",
    "monitor_plans",
    # replies and promises
    "note",
    "nudge",
    "nudge_for_payments",
    "offer_plans",
    "open_referral",
    "open_review",
    "open_review_states",
    "open_reviews",
    "open_vendor_orders",
    "promises_of",
    "pull_subjects",
    "record_cure_notice",
    "record_decision",
    "record_dismissal",
    "record_filing_draft",
    "record_pull",
    "record_pull_refusal",
    "record_refusal",
    "record_submission",
    "referral_facts",
    "referral_state",
    "referral_work",
    "referrals_followed",
    "reset_broken_promises",
    "resolve_promises",
    "review_state",
    "reviews_by_run",
    "set_review_run",
    "unread_replies",
    "waiting_list",
    "willingness_of",
]

account = Account.__table__  # type: ignore[attr-defined]
borrower = Borrower.__table__  # type: ignore[attr-defined]
hold = AccountHold.__table__  # type: ignore[attr-defined]
audit = AuditEvent.__table__  # type: ignore[attr-defined]
message = Message.__table__  # type: ignore[attr-defined]
payment = Payment.__table__  # type: ignore[attr-defined]
plan = Plan.__table__  # type: ignore[attr-defined]
promise = Promise.__table__  # type: ignore[attr-defined]
referral = Referral.__table__  # type: ignore[attr-defined]
review = Review.__table__  # type: ignore[attr-defined]
bureau = BureauRecord.__table__  # type: ignore[attr-defined]
contact = ContactPoint.__table__  # type: ignore[attr-defined]

# Replies older than this that no cycle read are left alone: a promise made three weeks ago and
# never seen is better asked for again than recorded late.
REPLY_WINDOW = timedelta(days=14)
# A payment counts as one "after contact" when a message reached the borrower this long before it.
CONTACT_WINDOW = timedelta(days=30)
_READ_KINDS = ("promise", "plan", "willingness")  # the events that answer a reply
_EXITS = tuple(e.value for e in Exit if e is not Exit.CURED)


def _event(
    account_id: str | None,
    at: datetime,
    kind: str,
    detail: str,
    data: dict[str, Any],
    *,
    actor: str = "arrears",
    cycle_id: int | None = None,
) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "at": at,
        "kind": kind,
        "detail": detail,
        "data": data,
        "actor": actor,
        "cycle_id": cycle_id,
    }


def _insert_events(connection: Connection, events: list[dict[str, Any]]) -> None:
    if events:
        connection.execute(audit.insert(), events)


def note(
    connection: Connection,
    *,
    account_id: str,
    at: datetime,
    kind: str,
    detail: str,
    data: dict[str, Any],
    actor: str = "arrears",
    cycle_id: int | None = None,
) -> None:
    """One audit event: what was read or decided, and why nothing else followed."""
    _insert_events(connection, [_event(account_id, at, kind, detail, data, actor=actor, cycle_id=cycle_id)])


def willingness_of(connection: Connection, account_id: str) -> float | None:
    return connection.execute(
        select(account.c.willingness).where(account.c.account_id == account_id)
    ).scalar()


def promises_of(connection: Connection, account_id: str) -> list[Any]:
    return list(
        connection.execute(
            select(promise)
            .where(promise.c.account_id == account_id)
            .order_by(promise.c.created_at.desc(), promise.c.id.desc())
        ).all()
    )


def _q(amount: Decimal, currency: str) -> Decimal:
    """An amount at its currency's precision (storage keeps four places for every currency)."""
    return Decimal(display(amount, currency))


def _day_start(day: date, zone: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(zone)).astimezone(UTC)


def _one(account_id: str | None, column: Any) -> Any:
    return column == account_id if account_id else true()


def _locked(statement: Any, connection: Connection) -> Any:
    """`FOR UPDATE` where the database has row locks (PostgreSQL); SQLite's writer lock already
    serialises the transactions that call these functions."""
    return statement.with_for_update() if connection.dialect.name == "postgresql" else statement


# == replies ======================================================================================


@dataclass(frozen=True, slots=True)
class Reply:
    event_id: int
    account_id: str
    at: datetime
    text: str
    stage: str
    episode: int
    currency: str
    willingness: float | None


def unread_replies(connection: Connection, *, as_of: datetime, account_id: str | None = None) -> list[Reply]:
    """Replies received in the last `REPLY_WINDOW` up to `as_of` that nothing has answered yet,
    oldest first, with what their account looks like now (one query for replies, one for the
    events that answered them)."""
    since = as_of - REPLY_WINDOW
    rows = connection.execute(
        select(
            audit.c.id,
            audit.c.account_id,
            audit.c.at,
            audit.c.data,
            account.c.stage,
            account.c.episode,
            account.c.currency,
            account.c.willingness,
        )
        .join(account, account.c.account_id == audit.c.account_id)
        .where(
            audit.c.kind == "reply",
            audit.c.at > since,
            audit.c.at <= as_of,
            _one(account_id, audit.c.account_id),
        )
        .order_by(audit.c.at, audit.c.id)
    ).all()
    if not rows:
        return []
    answered = _answered(connection, {r.account_id for r in rows}, since)
    return [
        Reply(
            r.id,
            r.account_id,
            r.at,
            str((r.data or {}).get("text", "")),
            r.stage,
            r.episode,
            r.currency,
            r.willingness,
        )
        for r in rows
        if r.id not in answered
    ]


def _answered(connection: Connection, account_ids: set[str], since: datetime) -> set[int]:
    found: set[int] = set()
    for (data,) in connection.execute(
        select(audit.c.data).where(
            audit.c.kind.in_(_READ_KINDS), audit.c.at > since, audit.c.account_id.in_(sorted(account_ids))
        )
    ):
        reply_id = (data or {}).get("reply_id")
        if reply_id is not None:
            found.add(int(reply_id))
    return found


def lock_accounts(connection: Connection, account_ids: Iterable[str]) -> None:
    """Take the accounts' rows before reading what answered their replies, so two transactions
    (the daily cycle, a webhook's single-account run) do not both answer the same reply."""
    ids = sorted(set(account_ids))
    if ids and connection.dialect.name == "postgresql":
        for chunk in _chunks(ids):
            connection.execute(
                select(account.c.account_id).where(account.c.account_id.in_(chunk)).with_for_update()
            )


# == willingness ==================================================================================


def nudge(
    connection: Connection,
    *,
    account_id: str,
    current: float | None,
    behaviour: str,
    at: datetime,
    policy: Segmentation,
    data: dict[str, Any],
    cycle_id: int | None = None,
    actor: str = "arrears",
) -> float:
    """Move one account's willingness for one observed behaviour and audit it; returns the new score."""
    after = round(nudge_willingness(current, behaviour, policy=policy), 4)
    before = policy.default_willingness if current is None else current
    connection.execute(update(account).where(account.c.account_id == account_id).values(willingness=after))
    detail = f"willingness {before:.2f} → {after:.2f}: {behaviour.replace('_', ' ')}"
    _insert_events(
        connection,
        [
            _event(
                account_id,
                at,
                "willingness",
                detail,
                {"behaviour": behaviour, "from": before, "to": after, **data},
                actor=actor,
                cycle_id=cycle_id,
            )
        ],
    )
    return after


def nudge_for_payments(
    connection: Connection,
    *,
    as_of: datetime,
    policy: Segmentation,
    cycle_id: int | None = None,
    account_id: str | None = None,
) -> int:
    """Raise willingness once per payment made after a message reached the borrower.

    The candidates are the payments this cycle applies (or applied, when the hook runs after
    `apply_new_payments`); a `willingness` event naming the payment makes it once-only. In bulk:
    a few queries per 5,000 accounts paying, one update and one insert for all of them.
    """
    rows = connection.execute(
        select(
            payment.c.payment_id,
            payment.c.account_id,
            payment.c.received_at,
            payment.c.amount,
            account.c.willingness,
            account.c.stage,
        )
        .join(account, account.c.account_id == payment.c.account_id)
        .where(
            payment.c.received_at <= as_of,
            or_(payment.c.applied_at.is_(None), payment.c.applied_at == as_of),
            _one(account_id, payment.c.account_id),
        )
        .order_by(payment.c.account_id, payment.c.received_at, payment.c.payment_id)
    ).all()
    rows = [r for r in rows if is_open(r.stage)]
    if not rows:
        return 0
    ids = sorted({r.account_id for r in rows})
    lock_accounts(connection, ids)
    earliest = min(r.received_at for r in rows)
    done: set[Any] = set()
    contacts: dict[str, list[datetime]] = defaultdict(list)
    for chunk in _chunks(ids):
        done |= {
            (data or {}).get("payment_id")
            for (data,) in connection.execute(
                select(audit.c.data).where(
                    audit.c.kind == "willingness", audit.c.account_id.in_(chunk), audit.c.at >= earliest
                )
            )
        }
        for r in connection.execute(
            select(message.c.account_id, message.c.sent_at).where(
                message.c.account_id.in_(chunk),
                message.c.status.in_((MessageStatus.SENT.value, MessageStatus.DELIVERED.value)),
                message.c.sent_at >= earliest - CONTACT_WINDOW,
            )
        ):
            contacts[r.account_id].append(r.sent_at)
    willingness = {r.account_id: r.willingness for r in rows}
    changed: set[str] = set()
    events: list[dict[str, Any]] = []
    for r in rows:
        if r.payment_id in done:
            continue
        if not any(
            r.received_at - CONTACT_WINDOW <= sent <= r.received_at for sent in contacts[r.account_id]
        ):
            continue
        current = willingness[r.account_id]
        before = policy.default_willingness if current is None else current
        after = round(nudge_willingness(current, "payment_after_contact", policy=policy), 4)
        willingness[r.account_id] = after
        changed.add(r.account_id)
        events.append(
            _event(
                r.account_id,
                as_of,
                "willingness",
                f"willingness {before:.2f} → {after:.2f}: payment after contact",
                {
                    "behaviour": "payment_after_contact",
                    "from": before,
                    "to": after,
                    "payment_id": r.payment_id,
                    "amount": str(r.amount),
                },
                cycle_id=cycle_id,
            )
        )
    if changed:
        connection.execute(
            update(account)
            .where(account.c.account_id == bindparam("key"))
            .values(willingness=bindparam("score")),
            [{"key": a, "score": willingness[a]} for a in sorted(changed)],
        )
        _insert_events(connection, events)
    return len(events)


def _chunks(ids: Sequence[str], size: int = 5_000) -> Iterable[list[str]]:
    """Account ids in slices small enough for any database's limit on bound parameters."""
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


# == promises =====================================================================================


def add_promise(
    connection: Connection,
    *,
    account_id: str,
    amount: Decimal,
    due_date: date,
    source: str,
    at: datetime,
    made_on: date,
    actor: str,
    rules: PromiseRules,
    data: dict[str, Any] | None = None,
    cycle_id: int | None = None,
) -> int:
    """Record a promise to pay and return its id; raise ValueError with the reason it is refused.

    A promise replaces the account's pending promises that are not yet due (a borrower who moves
    the date has made one promise, not two); one already past its date is left to be judged.
    """
    row = connection.execute(
        _locked(
            select(account.c.stage, account.c.currency, account.c.past_due_amount).where(
                account.c.account_id == account_id
            ),
            connection,
        )
    ).first()
    if row is None:
        raise ValueError(f"no account {account_id!r}")
    # A delinquent account the cycle has not yet moved out of `cured` may promise too.
    delinquent = row.stage == Exit.CURED and row.past_due_amount > 0
    if row.stage not in (Stage.REMINDER, Stage.NEGOTIATION) and not delinquent:
        raise ValueError(f"account is in {row.stage}: promises are taken in reminder and negotiation")
    why = promise_refusal(amount, due_date, today=made_on, currency=row.currency, rules=rules)
    if why is not None:
        raise ValueError(why)
    extra = data or {}
    replaced = connection.execute(
        update(promise)
        .where(
            promise.c.account_id == account_id, promise.c.status == "pending", promise.c.due_date >= made_on
        )
        .values(status="replaced", resolved_at=at)
        .returning(promise.c.id, promise.c.amount, promise.c.due_date)
    ).all()
    created = connection.execute(
        promise.insert().values(
            account_id=account_id,
            amount=amount,
            due_date=due_date,
            status="pending",
            source=source,
            created_at=at,
            resolved_at=None,
        )
    ).inserted_primary_key[0]
    events = [
        _event(
            account_id,
            at,
            "promise",
            f"promise {old.id} replaced by promise {created}",
            {"promise_id": old.id, "status": "replaced", "by": created, **extra},
            actor=actor,
            cycle_id=cycle_id,
        )
        for old in replaced
    ]
    events.append(
        _event(
            account_id,
            at,
            "promise",
            f"promise to pay {row.currency} {_q(amount, row.currency)} by {due_date.isoformat()} ({source})",
            {
                "promise_id": created,
                "status": "pending",
                "amount": str(amount),
                "due_date": due_date.isoformat(),
                "source": source,
                **extra,
            },
            actor=actor,
            cycle_id=cycle_id,
        )
    )
    _insert_events(connection, events)
    return int(created)


def resolve_promises(
    connection: Connection,
    *,
    as_of: datetime,
    business_date: date,
    lender_timezone: str,
    rules: PromiseRules,
    policy: Segmentation,
    cycle_id: int | None = None,
    account_id: str | None = None,
) -> dict[str, int]:
    """Judge every pending promise against the payments received for it: kept promises raise
    willingness, broken ones lower it and count in `account.broken_promises` (the lifecycle's
    strategic-defaulter rule). Three queries whatever the number of promises."""
    pending = connection.execute(
        _locked(
            select(
                promise.c.id, promise.c.account_id, promise.c.amount, promise.c.due_date, promise.c.created_at
            ).where(promise.c.status == "pending", _one(account_id, promise.c.account_id)),
            connection,
        )
    ).all()
    if not pending:
        return {"promises_kept": 0, "promises_broken": 0}
    with_pending = select(promise.c.account_id).where(promise.c.status == "pending")
    accounts = {
        r.account_id: r
        for r in connection.execute(
            select(
                account.c.account_id, account.c.willingness, account.c.broken_promises, account.c.currency
            ).where(account.c.account_id.in_(with_pending), _one(account_id, account.c.account_id))
        )
    }
    by_account: dict[str, list[PromiseView]] = defaultdict(list)
    for p in pending:
        currency = accounts[p.account_id].currency
        by_account[p.account_id].append(
            PromiseView(p.id, _q(p.amount, currency), p.due_date, lender_date(p.created_at, lender_timezone))
        )
    earliest = _day_start(min(v.made_on for views in by_account.values() for v in views), lender_timezone)
    paid: dict[str, list[PaymentView]] = defaultdict(list)
    for r in connection.execute(
        select(payment.c.payment_id, payment.c.account_id, payment.c.amount, payment.c.received_at).where(
            payment.c.account_id.in_(with_pending),
            payment.c.received_at >= earliest,
            payment.c.received_at <= as_of,
            _one(account_id, payment.c.account_id),
        )
    ):
        paid[r.account_id].append(
            PaymentView(
                r.payment_id,
                _q(r.amount, accounts[r.account_id].currency),
                lender_date(r.received_at, lender_timezone),
            )
        )
    status_rows: list[dict[str, Any]] = []
    account_rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    kept = broken = 0
    for acc, views in by_account.items():
        outcomes = decide_promises(views, paid.get(acc, []), business_date=business_date, rules=rules)
        if not outcomes:
            continue
        a = accounts[acc]
        score, broken_count = a.willingness, a.broken_promises
        for o in outcomes:
            status_rows.append({"key": o.promise_id, "status": o.status, "at": as_of})
            view = next(v for v in views if v.id == o.promise_id)
            events.append(
                _event(
                    acc,
                    as_of,
                    "promise",
                    f"promise {o.promise_id} ({a.currency} {view.amount} by {view.due_date.isoformat()}) "
                    f"{o.status}: {o.reason}",
                    {
                        "promise_id": o.promise_id,
                        "status": o.status,
                        "paid": str(o.paid),
                        "payments": list(o.payments),
                    },
                    cycle_id=cycle_id,
                )
            )
            behaviour = "promise_kept" if o.status == "kept" else "promise_broken"
            before = policy.default_willingness if score is None else score
            score = round(nudge_willingness(score, behaviour, policy=policy), 4)
            said = behaviour.replace("_", " ")
            events.append(
                _event(
                    acc,
                    as_of,
                    "willingness",
                    f"willingness {before:.2f} → {score:.2f}: {said}",
                    {"behaviour": behaviour, "from": before, "to": score, "promise_id": o.promise_id},
                    cycle_id=cycle_id,
                )
            )
            if o.status == "kept":
                kept += 1
            else:
                broken += 1
                broken_count += 1
        account_rows.append({"key": acc, "willingness": score, "broken": broken_count})
    if status_rows:
        connection.execute(
            update(promise)
            .where(promise.c.id == bindparam("key"), promise.c.status == "pending")
            .values(status=bindparam("status"), resolved_at=bindparam("at")),
            status_rows,
        )
        connection.execute(
            update(account)
            .where(account.c.account_id == bindparam("key"))
            .values(willingness=bindparam("willingness"), broken_promises=bindparam("broken")),
            account_rows,
        )
        _insert_events(connection, events)
    return {"promises_kept": kept, "promises_broken": broken}


def reset_broken_promises(connection: Connection, *, account_id: str | None = None) -> int:
    """`broken_promises` counts the current delinquency only: back to zero once the account has
    left it (cured or exited). One statement."""
    result = connection.execute(
        update(account)
        .where(
            account.c.broken_promises > 0,
            account.c.stage.in_((Exit.CURED.value, *_EXITS)),
            _one(account_id, account.c.account_id),
        )
        .values(broken_promises=0)
    )
    return result.rowcount or 0


# == plans ========================================================================================


def loan_of(row: Any) -> Loan:
    c = row.currency
    return Loan(
        currency=c,
        balance=_q(row.balance, c),
        installment=_q(row.installment_amount, c),
        past_due=_q(row.past_due_amount, c),
        oldest_due_date=row.oldest_due_date,
        next_due_date=row.next_due_date,
    )


def _latest_plans(connection: Connection, account_ids: Any, *, lock: bool = False) -> dict[str, Any]:
    statement = select(plan).where(plan.c.account_id.in_(account_ids)).order_by(plan.c.updated_at, plan.c.id)
    latest: dict[str, Any] = {}
    for r in connection.execute(_locked(statement, connection) if lock else statement):
        latest[r.account_id] = r
    return latest


def current_plan(connection: Connection, account_id: str) -> Any | None:
    """The account's latest plan row (what the lifecycle reads), or None."""
    return _latest_plans(connection, [account_id]).get(account_id)


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
    every offer, the recommended first. Its date starts the offer's expiry."""
    in_stage = select(account.c.account_id).where(
        account.c.stage == Stage.RESTRUCTURING.value, _one(account_id, account.c.account_id)
    )
    accounts = connection.execute(select(account).where(account.c.account_id.in_(in_stage))).all()
    if not accounts:
        return 0
    latest = _latest_plans(connection, in_stage)
    rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for a in accounts:
        last = latest.get(a.account_id)
        if last is not None and ((last.terms or {}).get("episode") == a.episode or last.status == "active"):
            continue
        try:
            found = offers(loan_of(a), business_date=business_date, rules=rules)
        except PlanError:
            found = []
        if not found:
            continue
        rows.append(
            {
                "account_id": a.account_id,
                "kind": found[0].kind,
                "status": "offered",
                "terms": {
                    "episode": a.episode,
                    "offered_on": business_date.isoformat(),
                    "offers": [o.to_json() for o in found],
                },
                "created_at": as_of,
                "updated_at": as_of,
            }
        )
        events.append(
            _event(
                a.account_id,
                as_of,
                "plan",
                "plan offered: " + "; ".join(o.describe() for o in found),
                {"status": "offered", "offers": [o.to_json() for o in found]},
                cycle_id=cycle_id,
            )
        )
    if rows:
        connection.execute(plan.insert(), rows)
        _insert_events(connection, events)
    return len(rows)


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
    plan is already active, or the terms do not fit the loan.

    A deferral moves the past due to the end of the term at once (the account is current again,
    and the lifecycle cures it); an instalment plan leaves it to the payments.
    """
    a = connection.execute(
        _locked(select(account).where(account.c.account_id == account_id), connection)
    ).first()
    if a is None:
        raise PlanError(f"no account {account_id!r}")
    if a.stage not in (Stage.REMINDER, Stage.NEGOTIATION, Stage.RESTRUCTURING):
        raise PlanError(
            f"account is in {a.stage}: plans are agreed in reminder, negotiation and restructuring"
        )
    last = _latest_plans(connection, [account_id], lock=True).get(account_id)
    if last is not None and last.status == "active":
        raise PlanError(f"plan {last.id} is already active")
    terms = choose(loan_of(a), kind=kind, months=months, business_date=business_date, rules=rules)
    stored = {
        **terms.to_json(),
        "episode": a.episode,
        "accepted_on": business_date.isoformat(),
        "accepted_at": at.isoformat(),
        "accepted_by": actor,
        "source": source,
        "on_time": 0,
        "reaged": False,
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
        plan_id = connection.execute(
            plan.insert().values(
                account_id=account_id,
                kind=terms.kind,
                status="active",
                terms=stored,
                created_at=at,
                updated_at=at,
            )
        ).inserted_primary_key[0]
    extra = data or {}
    events = [
        _event(
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
            _event(
                account_id,
                at,
                "plan",
                f"deferral applied: {a.currency} {terms.deferred} moved to the end of the term, term extended by "
                f"{terms.term_extension_months} months; past due {a.currency} {terms.past_due} → 0",
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
    _insert_events(connection, events)
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
) -> int | None:
    """The borrower declines the offer: the lifecycle sends a declined offer to review. Returns the
    plan id, or None when the account has no offer to decline."""
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
        plan_id = connection.execute(
            plan.insert().values(
                account_id=account_id,
                kind="deferral",
                status="declined",
                terms={"episode": a.episode},
                created_at=at,
                updated_at=at,
            )
        ).inserted_primary_key[0]
    else:
        return None
    _insert_events(
        connection,
        [
            _event(
                account_id,
                at,
                "plan",
                f"plan offer {plan_id} declined ({source})",
                {"plan_id": plan_id, "status": "declined", "source": source, **extra},
                actor=actor,
                cycle_id=cycle_id,
            )
        ],
    )
    return int(plan_id)


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
        _locked(
            select(plan).where(plan.c.status == "active", _one(account_id, plan.c.account_id)), connection
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
                _one(account_id, account.c.account_id),
            )
        )
    }
    earliest = _day_start(min(starts), lender_timezone)
    with_active = select(plan.c.account_id).where(plan.c.status == "active")
    received: dict[str, list[tuple[date, Decimal]]] = defaultdict(list)
    for r in connection.execute(
        select(payment.c.account_id, payment.c.amount, payment.c.received_at).where(
            payment.c.account_id.in_(with_active),
            payment.c.received_at >= earliest,
            payment.c.received_at <= as_of,
            _one(account_id, payment.c.account_id),
        )
    ):
        received[r.account_id].append((lender_date(r.received_at, lender_timezone), r.amount))
    plan_rows: list[dict[str, Any]] = []
    current: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for p, start in zip(active, starts, strict=True):
        stored = dict(p.terms or {})
        terms = PlanTerms.from_json(stored)
        progress = monitor(
            terms,
            [(d, a) for d, a in received.get(p.account_id, []) if d >= start],
            business_date=business_date,
            grace_days=rules.grace_days,
        )
        status = progress.status
        reage = status == "active" and reage_due(
            terms, progress, rules=rules, already=bool(stored.get("reaged"))
        )
        if progress.on_time != stored.get("on_time", 0):
            events.append(
                _event(
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
                _event(
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
                _event(
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
    _insert_events(connection, events)
    return counts


# == reviews ======================================================================================


@dataclass(frozen=True, slots=True)
class ReviewState:
    """A review and its account as a review's steps need them, read fresh at each step."""

    review_id: int
    account_id: str
    opened_at: datetime
    cure_deadline: datetime | None
    decision: str | None
    reviewer: str | None
    reason: str | None
    decided_at: datetime | None
    flow_run_id: str | None
    stage: str
    stage_since: datetime
    episode: int
    jurisdiction: str
    timezone: str
    currency: str
    balance: Decimal
    past_due: Decimal
    days_past_due: int
    vin: str | None
    holds: frozenset[Hold]
    prior_cures: int = 0  # earlier reviews of the account that ended because the borrower cured

    @property
    def closed(self) -> bool:
        return self.decided_at is not None

    @property
    def in_review(self) -> bool:
        return self.stage == Stage.REPOSSESSION_REVIEW

    def as_json(self) -> dict[str, Any]:
        return {
            "review_id": self.review_id,
            "account_id": self.account_id,
            "stage": self.stage,
            "cure_deadline": self.cure_deadline.isoformat() if self.cure_deadline else None,
            "decision": self.decision,
            "reviewer": self.reviewer,
            "reason": self.reason,
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "holds": sorted(self.holds),
        }


def _holds_of(connection: Connection, account_ids: Any) -> dict[str, frozenset[Hold]]:
    found: dict[str, set[Hold]] = defaultdict(set)
    for account_id, kind in connection.execute(
        select(hold.c.account_id, hold.c.kind).where(
            hold.c.account_id.in_(account_ids), hold.c.lifted_at.is_(None)
        )
    ):
        found[account_id].add(Hold(kind))
    return {k: frozenset(v) for k, v in found.items()}


_CURED = f"closed: account is now {Exit.CURED.value}"


def _prior_cures(connection: Connection, account_ids: Any) -> dict[tuple[str, int], int]:
    """Per (account, review id): how many earlier reviews of the account ended in a cure."""
    by_account: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    for r in connection.execute(
        select(review.c.account_id, review.c.id, review.c.reason)
        .where(review.c.account_id.in_(account_ids))
        .order_by(review.c.id)
    ):
        by_account[r.account_id].append((r.id, r.reason == _CURED))
    counts: dict[tuple[str, int], int] = {}
    for account_id, reviews in by_account.items():
        cured = 0
        for review_id, was_cure in reviews:
            counts[(account_id, review_id)] = cured
            cured += was_cure
    return counts


def _state(review_row: Any, account_row: Any, holds: frozenset[Hold], prior_cures: int = 0) -> ReviewState:
    return ReviewState(
        review_id=review_row.id,
        account_id=review_row.account_id,
        opened_at=review_row.opened_at,
        cure_deadline=review_row.cure_deadline,
        decision=review_row.decision,
        reviewer=review_row.reviewer,
        reason=review_row.reason,
        decided_at=review_row.decided_at,
        flow_run_id=review_row.flow_run_id,
        stage=account_row.stage,
        stage_since=account_row.stage_since,
        episode=account_row.episode,
        jurisdiction=account_row.jurisdiction,
        timezone=account_row.timezone,
        currency=account_row.currency,
        balance=account_row.balance,
        past_due=account_row.past_due_amount,
        days_past_due=account_row.days_past_due,
        vin=account_row.vin,
        holds=holds,
        prior_cures=prior_cures,
    )


def review_state(connection: Connection, review_id: int, *, lock: bool = False) -> ReviewState | None:
    statement = select(review).where(review.c.id == review_id)
    r = connection.execute(_locked(statement, connection) if lock else statement).first()
    if r is None:
        return None
    a = connection.execute(select(account).where(account.c.account_id == r.account_id)).one()
    cures = _prior_cures(connection, [r.account_id]).get((r.account_id, r.id), 0)
    return _state(r, a, _holds_of(connection, [r.account_id]).get(r.account_id, frozenset()), cures)


def current_review(connection: Connection, account_id: str) -> ReviewState | None:
    """The review of the account's present stay in repossession review (the latest one opened
    since it entered the stage), or None when it is elsewhere or has none yet."""
    a = connection.execute(select(account).where(account.c.account_id == account_id)).first()
    if a is None or a.stage != Stage.REPOSSESSION_REVIEW:
        return None
    r = connection.execute(
        select(review)
        .where(review.c.account_id == account_id, review.c.opened_at >= a.stage_since)
        .order_by(review.c.opened_at.desc(), review.c.id.desc())
        .limit(1)
    ).first()
    if r is None:
        return None
    cures = _prior_cures(connection, [account_id]).get((account_id, r.id), 0)
    return _state(r, a, _holds_of(connection, [account_id]).get(account_id, frozenset()), cures)


def open_review(
    connection: Connection,
    *,
    account_id: str,
    at: datetime,
    flow_run_id: str | None = None,
) -> ReviewState | None:
    """The current review of an account in repossession review, opened now if it has none; its
    flow run is recorded. None when the account is not in review."""
    lock_accounts(connection, [account_id])
    found = current_review(connection, account_id)
    if found is None:
        a = connection.execute(
            select(account.c.stage, account.c.stage_since).where(account.c.account_id == account_id)
        ).first()
        if a is None or a.stage != Stage.REPOSSESSION_REVIEW:
            return None
        opened = max(at, a.stage_since)
        review_id = connection.execute(
            review.insert().values(account_id=account_id, opened_at=opened, flow_run_id=flow_run_id)
        ).inserted_primary_key[0]
        _insert_events(
            connection,
            [
                _event(
                    account_id,
                    opened,
                    "review",
                    f"repossession review {review_id} opened",
                    {"review_id": review_id, "flow_run_id": flow_run_id},
                )
            ],
        )
        return review_state(connection, int(review_id))
    if flow_run_id and found.flow_run_id != flow_run_id:
        set_review_run(connection, review_id=found.review_id, flow_run_id=flow_run_id)
        found = replace(found, flow_run_id=flow_run_id)
    return found


def open_reviews(connection: Connection, *, at: datetime, account_id: str | None = None) -> list[int]:
    """Open a review for every account in repossession review without one for its present stay
    (the daily cycle, after advance); returns the new review ids. Two queries and one insert."""
    waiting = connection.execute(
        select(account.c.account_id, account.c.stage_since).where(
            account.c.stage == Stage.REPOSSESSION_REVIEW.value, _one(account_id, account.c.account_id)
        )
    ).all()
    if not waiting:
        return []
    covered = {
        r.account_id
        for r in connection.execute(
            select(review.c.account_id, review.c.opened_at, account.c.stage_since)
            .join(account, account.c.account_id == review.c.account_id)
            .where(
                account.c.stage == Stage.REPOSSESSION_REVIEW.value,
                review.c.opened_at >= account.c.stage_since,
                _one(account_id, account.c.account_id),
            )
        )
    }
    opened = {w.account_id: max(at, w.stage_since) for w in waiting if w.account_id not in covered}
    if not opened:
        return []
    ids = list(
        connection.execute(
            review.insert().returning(review.c.id, review.c.account_id),
            [{"account_id": a, "opened_at": when, "flow_run_id": None} for a, when in opened.items()],
        ).all()
    )
    _insert_events(
        connection,
        [
            _event(
                account_id_,
                opened[account_id_],
                "review",
                f"repossession review {review_id} opened",
                {"review_id": review_id},
            )
            for review_id, account_id_ in ids
        ],
    )
    return [int(review_id) for review_id, _ in ids]


def set_review_run(connection: Connection, *, review_id: int, flow_run_id: str) -> None:
    connection.execute(update(review).where(review.c.id == review_id).values(flow_run_id=flow_run_id))


def record_cure_notice(connection: Connection, *, review_id: int, notice: CureNotice) -> bool:
    """Record the right-to-cure notice and its deadline, once; False if it was recorded before.

    The notice is an audit event (the outbox has no template for it yet) and `Review.cure_deadline`;
    it is evidence for the filing if the case goes to court.
    """
    changed = connection.execute(
        update(review)
        .where(review.c.id == review_id, review.c.cure_deadline.is_(None))
        .values(cure_deadline=notice.deadline)
    ).rowcount
    if not changed:
        return False
    account_id = connection.execute(select(review.c.account_id).where(review.c.id == review_id)).scalar_one()
    _insert_events(
        connection,
        [
            _event(
                account_id,
                notice.sent_at,
                "cure_notice",
                notice.describe(),
                {
                    "review_id": review_id,
                    "jurisdiction": notice.jurisdiction,
                    "days": notice.days,
                    "business_days": notice.business_days,
                    "last_day": notice.last_day.isoformat(),
                    "deadline": notice.deadline.isoformat(),
                    "cure_amount": str(notice.cure_amount),
                    "currency": notice.currency,
                    "source": notice.source,
                },
            )
        ],
    )
    return True


def record_decision(
    connection: Connection,
    *,
    review_id: int,
    settled: Settled,
    reviewer: str,
    reason: str,
    at: datetime,
    source: str,
) -> tuple[ReviewState, bool]:
    """Store a reviewer's decision on the review, once; the first decision recorded stands (the CLI
    and the resumed flow run may both record the same one). Returns the state and whether it changed.

    `decided_at` is never before the review could be decided (the end of the cure period): the
    lifecycle reads decisions taken since the account entered its stage.
    """
    state = review_state(connection, review_id, lock=True)
    if state is None:
        raise ValueError(f"no review {review_id}")
    if state.closed:
        return state, False
    decided_at = max(at, state.opened_at, state.cure_deadline or state.opened_at)
    connection.execute(
        update(review)
        .where(review.c.id == review_id, review.c.decided_at.is_(None))
        .values(decision=settled.decision.value, reviewer=reviewer, reason=reason, decided_at=decided_at)
    )
    detail = f"reviewer {reviewer} decided {settled.decision.value}: {reason}"
    if settled.decision is not settled.requested or settled.note:
        detail += f" ({settled.note})" if settled.note else ""
    _insert_events(
        connection,
        [
            _event(
                state.account_id,
                decided_at,
                "decision",
                detail,
                {
                    "review_id": review_id,
                    "decision": settled.decision.value,
                    "requested": settled.requested.value,
                    "reviewer": reviewer,
                    "reason": reason,
                    "note": settled.note,
                    "source": source,
                },
                actor=f"reviewer:{reviewer}",
            )
        ],
    )
    after = review_state(connection, review_id)
    assert after is not None
    return after, True


def close_review(connection: Connection, *, review_id: int, reason: str, at: datetime) -> bool:
    """Close an undecided review without a decision (the account cured, paid or was held); the
    decision column stays empty so the lifecycle reads no decision from it."""
    state = review_state(connection, review_id, lock=True)
    if state is None or state.closed:
        return False
    closed_at = max(at, state.opened_at)
    connection.execute(
        update(review)
        .where(review.c.id == review_id, review.c.decided_at.is_(None))
        .values(reason=f"closed: {reason}", decided_at=closed_at)
    )
    _insert_events(
        connection,
        [
            _event(
                state.account_id,
                closed_at,
                "review",
                f"review {review_id} closed: {reason}",
                {"review_id": review_id, "closed": reason},
            )
        ],
    )
    return True


def _states(connection: Connection, rows: Sequence[Any]) -> list[ReviewState]:
    if not rows:
        return []
    ids = sorted({r.account_id for r in rows})
    accounts = {
        a.account_id: a for a in connection.execute(select(account).where(account.c.account_id.in_(ids)))
    }
    holds = _holds_of(connection, ids)
    cures = _prior_cures(connection, ids)
    return [
        _state(
            r,
            accounts[r.account_id],
            holds.get(r.account_id, frozenset()),
            cures.get((r.account_id, r.id), 0),
        )
        for r in rows
    ]


def open_review_states(connection: Connection) -> list[ReviewState]:
    """Every undecided review of an account in repossession review, oldest first (three queries)."""
    rows = connection.execute(
        select(review)
        .join(account, account.c.account_id == review.c.account_id)
        .where(
            review.c.decided_at.is_(None),
            account.c.stage == Stage.REPOSSESSION_REVIEW.value,
            review.c.opened_at >= account.c.stage_since,
        )
        .order_by(review.c.opened_at, review.c.id)
    ).all()
    return _states(connection, rows)


def reviews_by_run(connection: Connection, flow_run_ids: Sequence[str]) -> dict[str, ReviewState]:
    """The reviews these flow runs work on, by run id."""
    if not flow_run_ids:
        return {}
    rows = connection.execute(select(review).where(review.c.flow_run_id.in_(list(flow_run_ids)))).all()
    return {s.flow_run_id: s for s in _states(connection, rows) if s.flow_run_id}


def close_left_reviews(connection: Connection, *, at: datetime, cycle_id: int | None = None) -> int:
    """Close, in bulk, undecided reviews whose account has left repossession review (cured, paid
    off, charged off): nothing is left to decide. Their runs, if any, end when next woken."""
    rows = connection.execute(
        select(review.c.id, review.c.account_id, review.c.opened_at, account.c.stage)
        .join(account, account.c.account_id == review.c.account_id)
        .where(review.c.decided_at.is_(None), account.c.stage != Stage.REPOSSESSION_REVIEW.value)
    ).all()
    if not rows:
        return 0
    connection.execute(
        update(review)
        .where(review.c.id == bindparam("key"), review.c.decided_at.is_(None))
        .values(reason=bindparam("why"), decided_at=bindparam("at")),
        [{"key": r.id, "why": f"closed: account is now {r.stage}", "at": max(at, r.opened_at)} for r in rows],
    )
    _insert_events(
        connection,
        [
            _event(
                r.account_id,
                max(at, r.opened_at),
                "review",
                f"review {r.id} closed: account is now {r.stage}",
                {"review_id": r.id, "closed": f"account is now {r.stage}"},
                cycle_id=cycle_id,
            )
            for r in rows
        ],
    )
    return len(rows)


@dataclass(frozen=True, slots=True)
class Waiting:
    account_id: str
    what: str  # review | referral
    waits_for: str  # cure period | reviewer | hold | court | legal team
    since: datetime
    until: datetime | None
    detail: str
    jurisdiction: str
    days_past_due: int
    past_due: Decimal
    currency: str
    ref: int

    def as_json(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "what": self.what,
            "waits_for": self.waits_for,
            "since": self.since.isoformat(),
            "until": self.until.isoformat() if self.until else None,
            "detail": self.detail,
            "jurisdiction": self.jurisdiction,
            "days_past_due": self.days_past_due,
            "past_due_amount": display(self.past_due, self.currency),
            "currency": self.currency,
            "id": self.ref,
        }


def waiting_list(connection: Connection, *, now: datetime) -> list[Waiting]:
    """What waits for whom and since when: open reviews (cure period, reviewer, hold) and legal
    referrals (court, or the legal team for a rejected filing), oldest first."""
    found: list[Waiting] = []
    for s in open_review_states(connection):
        blocking = sorted(h for h in s.holds if h.scope is HoldScope.COLLECTION)
        if blocking:
            who, since, until, detail = (
                "hold",
                s.opened_at,
                None,
                f"hold:{blocking[0].value} stops the review",
            )
        elif s.cure_deadline is not None and now < s.cure_deadline:
            who, since, until, detail = (
                "cure period",
                s.opened_at,
                s.cure_deadline,
                "right-to-cure period running",
            )
        else:
            who, since, until = "reviewer", s.cure_deadline or s.opened_at, None
            detail = "decide: arrears review decide " + s.account_id + " --decision repossess|legal|negotiate"
        found.append(
            Waiting(
                s.account_id,
                "review",
                who,
                since,
                until,
                detail,
                s.jurisdiction,
                s.days_past_due,
                s.past_due,
                s.currency,
                s.review_id,
            )
        )
    for r in connection.execute(
        select(
            referral,
            account.c.jurisdiction,
            account.c.days_past_due,
            account.c.past_due_amount,
            account.c.currency,
            account.c.stage,
        )
        .join(account, account.c.account_id == referral.c.account_id)
        .where(
            referral.c.status.not_in(("judgment", "settled", "dismissed", "cancelled")),
            account.c.stage == Stage.LEGAL_REFERRAL.value,
        )
        .order_by(referral.c.updated_at, referral.c.id)
    ):
        if r.status == "rejected":
            reason = _rejection_reason(connection, r.account_id, r.filing_id) or "no reason given"
            who, detail = "legal team", f"filing rejected: {reason}"
        elif r.status in ("draft", "dismissing"):
            who, detail = "legal team", f"referral {r.status}"
        else:
            who, detail = "court", f"filing {r.filing_id} {r.status}"
        found.append(
            Waiting(
                r.account_id,
                "referral",
                who,
                r.updated_at,
                None,
                detail,
                r.jurisdiction,
                r.days_past_due,
                r.past_due_amount,
                r.currency,
                r.id,
            )
        )
    return sorted(found, key=lambda w: w.since)


def _rejection_reason(connection: Connection, account_id: str, filing_id: str | None) -> str | None:
    reason = None
    for (data,) in connection.execute(
        select(audit.c.data)
        .where(audit.c.account_id == account_id, audit.c.kind == "court")
        .order_by(audit.c.at, audit.c.id)
    ):
        if (data or {}).get("filing_id") == filing_id and (data or {}).get("to") == "rejected":
            reason = (data or {}).get("reason")
    return reason


# == vendor orders ================================================================================


@dataclass(frozen=True, slots=True)
class VendorOrder:
    order_id: str
    account_id: str
    placed_at: datetime
    review_id: int | None


def create_vendor_order(
    connection: Connection, *, state: ReviewState, at: datetime, reviewer: str
) -> str | None:
    """Place the repossession order of an approved review (an audit event: no vendor API), once;
    returns its id. `cancel_vendor_orders` withdraws it at once if a payment, a plan or a hold
    follows (regulators' most common finding in auto servicing is a car taken after the borrower
    paid, because nobody cancelled the agent's order)."""
    order_id = f"RO-{state.review_id}"
    existing = [
        e for e in _order_events(connection, [state.account_id]) if e.data.get("order_id") == order_id
    ]
    if existing:
        return order_id
    _insert_events(
        connection,
        [
            _event(
                state.account_id,
                at,
                "vendor_order",
                f"repossession order {order_id} placed with the recovery agent for vehicle {state.vin or '(no VIN on file)'}",
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
    """Orders placed and not cancelled, for accounts a reviewer ever sent to repossession."""
    repossessed = select(review.c.account_id).where(
        review.c.decision == DecisionKind.REPOSSESS.value, _one(account_id, review.c.account_id)
    )
    orders: dict[str, VendorOrder | None] = {}
    for e in _order_events(connection, repossessed):
        data = e.data or {}
        if data.get("action") == "placed":
            orders[data["order_id"]] = VendorOrder(
                data["order_id"], e.account_id, e.at, data.get("review_id")
            )
        elif data.get("action") == "cancelled":
            orders[data["order_id"]] = None
    return [o for o in orders.values() if o is not None]


def cancel_vendor_orders(
    connection: Connection,
    *,
    as_of: datetime,
    cycle_id: int | None = None,
    account_id: str | None = None,
) -> int:
    """Cancel at once every open repossession order whose account has since paid anything,
    agreed a plan, come under a collection hold, or left review. A few queries per cycle."""
    # An order placed after `as_of` did not exist yet then (a replayed or simulated timeline).
    orders = [o for o in open_vendor_orders(connection, account_id=account_id) if o.placed_at <= as_of]
    if not orders:
        return 0
    ids = sorted({o.account_id for o in orders})
    earliest = min(o.placed_at for o in orders)
    paid: dict[str, list[Any]] = defaultdict(list)
    for r in connection.execute(
        select(payment.c.account_id, payment.c.payment_id, payment.c.amount, payment.c.received_at).where(
            payment.c.account_id.in_(ids), payment.c.received_at >= earliest, payment.c.received_at <= as_of
        )
    ):
        paid[r.account_id].append(r)
    plans: dict[str, list[Any]] = defaultdict(list)
    for r in connection.execute(
        select(plan.c.account_id, plan.c.id, plan.c.updated_at).where(
            plan.c.account_id.in_(ids), plan.c.status == "active", plan.c.updated_at >= earliest
        )
    ):
        plans[r.account_id].append(r)
    holds = _holds_of(connection, ids)
    stages = dict(
        connection.execute(
            select(account.c.account_id, account.c.stage).where(account.c.account_id.in_(ids))
        ).all()
    )
    events = []
    for o in orders:
        why = None
        later = [p for p in paid[o.account_id] if p.received_at > o.placed_at and p.amount > 0]
        held = holds.get(o.account_id, frozenset())
        if cancels_repossession(held, PaymentEvent(later[0].amount, later[0].received_at) if later else None):
            if later:
                p = later[0]
                why = f"payment {p.payment_id} of {p.amount} received {p.received_at.isoformat()}"
            else:
                why = f"hold:{min(h for h in held if h.scope is HoldScope.COLLECTION).value}"
        elif any(p.updated_at > o.placed_at for p in plans[o.account_id]):
            why = "a repayment plan was agreed"
        elif stages.get(o.account_id) != Stage.REPOSSESSION_REVIEW:
            why = f"account is now {stages.get(o.account_id)}"
        if why:
            events.append(
                _event(
                    o.account_id,
                    as_of,
                    "vendor_order",
                    f"repossession order {o.order_id} cancelled: {why}",
                    {"order_id": o.order_id, "action": "cancelled", "reason": why},
                    cycle_id=cycle_id,
                )
            )
    _insert_events(connection, events)
    return len(events)


# == referrals ====================================================================================


@dataclass(frozen=True, slots=True)
class ReferralState:
    referral_id: int
    account_id: str
    status: str
    filing_id: str | None
    claim_amount: Decimal | None
    opened_at: datetime
    updated_at: datetime
    stage: str
    balance: Decimal
    currency: str

    @property
    def paid(self) -> bool:
        return self.balance <= 0 or self.stage in (Exit.PAID_OFF, Exit.SETTLED)

    def as_json(self) -> dict[str, Any]:
        return {
            "referral_id": self.referral_id,
            "account_id": self.account_id,
            "status": self.status,
            "filing_id": self.filing_id,
            "claim_amount": str(self.claim_amount) if self.claim_amount else None,
            "stage": self.stage,
        }


def referral_state(connection: Connection, referral_id: int) -> ReferralState | None:
    r = connection.execute(
        select(referral, account.c.stage, account.c.balance, account.c.currency)
        .join(account, account.c.account_id == referral.c.account_id)
        .where(referral.c.id == referral_id)
    ).first()
    if r is None:
        return None
    return ReferralState(
        r.id,
        r.account_id,
        r.status,
        r.filing_id,
        r.claim_amount,
        r.opened_at,
        r.updated_at,
        r.stage,
        r.balance,
        r.currency,
    )


def open_referral(
    connection: Connection, *, account_id: str, at: datetime, lender: str
) -> ReferralState | None:
    """The referral of the account's present stay in legal referral (the latest opened since it
    entered the stage), opened now with its facts if it has none. None when the account is not in
    legal referral, or there is nothing to claim."""
    lock_accounts(connection, [account_id])
    a = connection.execute(
        select(account, borrower.c.name.label("borrower_name"))
        .join(borrower, borrower.c.borrower_id == account.c.borrower_id)
        .where(account.c.account_id == account_id)
    ).first()
    if a is None or a.stage != Stage.LEGAL_REFERRAL:
        return None
    existing = connection.execute(
        select(referral.c.id)
        .where(referral.c.account_id == account_id, referral.c.opened_at >= a.stage_since)
        .order_by(referral.c.opened_at.desc(), referral.c.id.desc())
        .limit(1)
    ).scalar()
    if existing is not None:
        return referral_state(connection, existing)
    opened = max(at, a.stage_since)
    events = connection.execute(
        select(audit.c.kind, audit.c.at, audit.c.detail, audit.c.data)
        .where(
            audit.c.account_id == account_id,
            audit.c.kind.in_(("cure_notice", "vendor_order", "decision", "vehicle_sale")),
        )
        .order_by(audit.c.at, audit.c.id)
    ).all()
    decision = next((e for e in reversed(events) if e.kind == "decision"), None)
    # Sale facts (kind `vehicle_sale`, data `proceeds` and `fees`) come from whoever records the
    # recovery agent's and the auction's reports; none yet means a claim for the balance.
    sales = [e.data or {} for e in events if e.kind == "vehicle_sale"]
    fees = sum((Decimal(d.get("fees", "0")) for d in sales), Decimal(0))
    proceeds = sum((Decimal(d.get("proceeds", "0")) for d in sales), Decimal(0))
    try:
        claim = claim_amount(_q(a.balance, a.currency), fees, proceeds)
    except ValueError:
        return None
    holds = _holds_of(connection, [account_id]).get(account_id, frozenset())
    referral_id = int(
        connection.execute(
            referral.insert().values(
                account_id=account_id,
                status="draft",
                claim_amount=claim,
                opened_at=opened,
                updated_at=opened,
            )
        ).inserted_primary_key[0]
    )
    facts = ReferralFacts(
        referral_id=referral_id,
        account_id=account_id,
        lender=lender,
        borrower_name=a.borrower_name,
        jurisdiction=a.jurisdiction,
        currency=a.currency,
        balance=_q(a.balance, a.currency),
        fees=fees,
        sale_proceeds=proceeds,
        past_due=_q(a.past_due_amount, a.currency),
        oldest_due_date=a.oldest_due_date,
        days_past_due=a.days_past_due,
        vin=a.vin,
        military=Hold.MILITARY in holds,
        decided_by=(decision.data or {}).get("reviewer") if decision else None,
        decision_reason=(decision.data or {}).get("reason") if decision else None,
        opened_on=opened.date(),
        notices=notices_from([(e.kind, e.at, e.detail) for e in events if e.kind != "decision"]),
    )
    _insert_events(
        connection,
        [
            _event(
                account_id,
                opened,
                "referral",
                f"legal referral {referral_id} opened: claim {a.currency} {claim}",
                {"referral_id": referral_id, "claim": str(claim), "facts": facts.to_json()},
            )
        ],
    )
    return referral_state(connection, referral_id)


def referral_facts(connection: Connection, referral_id: int) -> ReferralFacts:
    """The facts stored when the referral opened: every draft of it is built from these."""
    account_id = connection.execute(
        select(referral.c.account_id).where(referral.c.id == referral_id)
    ).scalar_one()
    for (data,) in connection.execute(
        select(audit.c.data)
        .where(audit.c.account_id == account_id, audit.c.kind == "referral")
        .order_by(audit.c.id)
    ):
        if (data or {}).get("referral_id") == referral_id and "facts" in data:
            return ReferralFacts.from_json(data["facts"])
    raise LookupError(f"referral {referral_id} has no stored facts")


def record_filing_draft(
    connection: Connection, *, referral_id: int, summary: dict[str, Any], at: datetime
) -> bool:
    """Audit the filing as built (claim, court, documents by hash), once per referral."""
    account_id = connection.execute(
        select(referral.c.account_id).where(referral.c.id == referral_id)
    ).scalar_one()
    for (data,) in connection.execute(
        select(audit.c.data).where(audit.c.account_id == account_id, audit.c.kind == "filing")
    ):
        if (data or {}).get("referral_id") == referral_id and (data or {}).get("action") == "drafted":
            return False
    kinds = ", ".join(d["kind"] for d in summary["documents"])
    _insert_events(
        connection,
        [
            _event(
                account_id,
                at,
                "filing",
                f"filing drafted for {summary['court']} ({summary['case_type']}): "
                f"claim {summary['currency']} {summary['claim']}; {kinds}",
                {"referral_id": referral_id, "action": "drafted", **summary},
            )
        ],
    )
    return True


def record_submission(
    connection: Connection,
    *,
    referral_id: int,
    filing_id: str,
    status: str,
    at: datetime,
    provider: str,
) -> bool:
    """Store the court's filing id on the referral, once (a resubmission returns the same id)."""
    changed = connection.execute(
        update(referral)
        .where(referral.c.id == referral_id, referral.c.filing_id.is_(None))
        .values(filing_id=filing_id, status=status, updated_at=at)
    ).rowcount
    if changed:
        account_id = connection.execute(
            select(referral.c.account_id).where(referral.c.id == referral_id)
        ).scalar_one()
        _insert_events(
            connection,
            [
                _event(
                    account_id,
                    at,
                    "filing",
                    f"filing {filing_id} submitted to the court ({status})",
                    {
                        "referral_id": referral_id,
                        "action": "submitted",
                        "filing_id": filing_id,
                        "status": status,
                        "provider": provider,
                    },
                    actor=f"court:{provider}",
                )
            ],
        )
    return bool(changed)


def record_refusal(
    connection: Connection, *, referral_id: int, at: datetime, reason: str, provider: str
) -> bool:
    """The gateway refused the filing outright (or lost it): the referral goes back to the legal
    team's queue as `rejected`, with the reason, like a filing the court rejects."""
    r = connection.execute(
        select(referral.c.account_id, referral.c.status, referral.c.filing_id).where(
            referral.c.id == referral_id
        )
    ).one()
    if r.status == "rejected":
        return False
    connection.execute(
        update(referral).where(referral.c.id == referral_id).values(status="rejected", updated_at=at)
    )
    _insert_events(
        connection,
        [
            _event(
                r.account_id,
                at,
                "court",
                f"filing {r.filing_id or '(not filed)'}: {r.status} → rejected ({reason})",
                {
                    "filing_id": r.filing_id,
                    "from": r.status,
                    "to": "rejected",
                    "reason": reason,
                    "source": "gateway",
                    "referral_id": referral_id,
                },
                actor=f"court:{provider}",
            )
        ],
    )
    return True


def record_dismissal(
    connection: Connection, *, referral_id: int, status: str, at: datetime, detail: str
) -> bool:
    """The account paid or settled: the referral is withdrawn (`dismissed`, done at the gateway)
    or waits for counsel to file the dismissal (`dismissing`). Once."""
    changed = connection.execute(
        update(referral)
        .where(referral.c.id == referral_id, referral.c.status.not_in(("dismissed", "dismissing")))
        .values(status=status, updated_at=at)
    ).rowcount
    if changed:
        account_id = connection.execute(
            select(referral.c.account_id).where(referral.c.id == referral_id)
        ).scalar_one()
        _insert_events(
            connection,
            [_event(account_id, at, "filing", detail, {"referral_id": referral_id, "action": status})],
        )
    return bool(changed)


def referral_work(connection: Connection) -> list[tuple[str, int, int | None, str | None]]:
    """Accounts in legal referral, each with its episode, present referral id (None: none opened
    yet) and that referral's status."""
    rows = connection.execute(
        select(account.c.account_id, account.c.episode, referral.c.id, referral.c.status)
        .select_from(account)
        .outerjoin(
            referral,
            and_(
                referral.c.account_id == account.c.account_id, referral.c.opened_at >= account.c.stage_since
            ),
        )
        .where(account.c.stage == Stage.LEGAL_REFERRAL.value)
        .order_by(account.c.account_id, referral.c.id)
    ).all()
    latest: dict[str, tuple[str, int, int | None, str | None]] = {}
    for r in rows:
        latest[r.account_id] = (r.account_id, r.episode, r.id, r.status)
    return list(latest.values())


def referrals_followed(connection: Connection) -> set[str]:
    """Accounts whose latest referral a run still follows: not ended, not back with the legal team."""
    ended = ("judgment", "settled", "dismissed", "dismissing", "cancelled", "rejected")
    latest: dict[str, str] = {}
    for r in connection.execute(select(referral.c.account_id, referral.c.status).order_by(referral.c.id)):
        latest[r.account_id] = r.status
    return {a for a, status in latest.items() if status not in ended}


# == bureau pulls =================================================================================


@dataclass(frozen=True, slots=True)
class PullSubject:
    """An account the bureau is asked about: on entering negotiation (ability), or unreachable
    (skip tracing). One pull per reason per stage episode: `key` is its idempotency key."""

    account_id: str
    borrower_id: str
    episode: int
    reason: str  # ability | skip_trace
    name: str
    phone: str | None
    currency: str
    balance: Decimal
    installment: Decimal
    vehicle_value: Decimal | None

    @property
    def key(self) -> str:
        return f"{'pull' if self.reason == 'ability' else 'skip'}-{self.account_id}-{self.episode}"


def pull_subjects(connection: Connection, *, limit: int = 1_000) -> list[PullSubject]:
    """Accounts in negotiation without a pull this episode, and unreachable accounts without a
    skip trace this episode; only accounts still in collection (FCRA 604(a)(3)(A): the purpose
    ends once the account is paid and closed). A few queries for the portfolio."""
    wanted = or_(
        account.c.stage == Stage.NEGOTIATION.value,
        and_(account.c.segment == Segment.UNREACHABLE.value, account.c.stage.in_([x.value for x in Stage])),
    )
    candidates = connection.execute(
        select(account, borrower.c.name.label("borrower_name"))
        .join(borrower, borrower.c.borrower_id == account.c.borrower_id)
        .where(wanted)
        .order_by(account.c.account_id)
    ).all()
    if not candidates:
        return []
    done = {
        (data or {}).get("idempotency_key")
        for (data,) in connection.execute(
            select(bureau.c.payload).where(
                bureau.c.kind == "pull", bureau.c.account_id.in_(select(account.c.account_id).where(wanted))
            )
        )
    }
    phones: dict[str, str] = {}
    for r in connection.execute(
        select(contact.c.borrower_id, contact.c.address, contact.c.valid, contact.c.is_primary)
        .where(
            contact.c.borrower_id.in_(select(account.c.borrower_id).where(wanted)),
            contact.c.channel == Channel.SMS.value,
        )
        .order_by(contact.c.valid.desc(), contact.c.is_primary.desc(), contact.c.id)
    ):
        phones.setdefault(r.borrower_id, r.address)  # the best number identifies the subject, valid or not
    found: list[PullSubject] = []
    for c in candidates:
        reason = "skip_trace" if c.segment == Segment.UNREACHABLE else "ability"
        subject = PullSubject(
            c.account_id,
            c.borrower_id,
            c.episode,
            reason,
            c.borrower_name,
            phones.get(c.borrower_id),
            c.currency,
            _q(c.balance, c.currency),
            _q(c.installment_amount, c.currency),
            _q(c.vehicle_value, c.currency) if c.vehicle_value is not None else None,
        )
        if subject.key not in done:
            found.append(subject)
    return found[:limit]


def record_pull(
    connection: Connection,
    *,
    subject: PullSubject,
    at: datetime,
    purpose: str,
    report_id: str,
    score_band: str,
    income_estimate: Decimal | None,
    phones: Sequence[tuple[str, float, str]],
    bankruptcy_chapter: int | None,
    bankrupt: bool,
    deceased: bool,
    min_phone_confidence: float = 0.5,
) -> dict[str, Any]:
    """Store a bureau profile: the pull record with its purpose, the ability it gives, the numbers
    skip tracing found (unverified, never primary), and a hold for a bankruptcy or death the
    bureau reports. Returns what changed."""
    monthly = (income_estimate / 12).quantize(Decimal("0.01")) if income_estimate else None
    ability = ability_score(
        score_band=score_band,
        monthly_income=monthly,
        installment=subject.installment,
        vehicle_value=subject.vehicle_value,
        balance=subject.balance,
    )
    connection.execute(
        bureau.insert().values(
            account_id=subject.account_id,
            kind="pull",
            purpose=purpose,
            score_band=score_band,
            income_estimate=income_estimate,
            at=at,
            payload={
                "idempotency_key": subject.key,
                "reason": subject.reason,
                "report_id": report_id,
                "bankruptcy": {"chapter": bankruptcy_chapter} if bankrupt else None,
                "deceased": deceased,
                "phones_found": len(phones),
            },
        )
    )
    before = connection.execute(
        select(account.c.ability).where(account.c.account_id == subject.account_id)
    ).scalar()
    if ability is not None:
        connection.execute(
            update(account)
            .where(account.c.account_id == subject.account_id)
            .values(ability=round(ability, 4), updated_at=at)
        )
    known = set(
        connection.execute(
            select(contact.c.address).where(
                contact.c.borrower_id == subject.borrower_id, contact.c.channel == Channel.SMS.value
            )
        ).scalars()
    )
    # Only a skip trace adds numbers: a pull for ability has no purpose in collecting them.
    new = [
        (n, conf, kind)
        for n, conf, kind in phones
        if subject.reason == "skip_trace"
        and n not in known
        and conf >= min_phone_confidence
        and kind in ("mobile", "unknown")
    ]
    if new:
        connection.execute(
            contact.insert(),
            [
                {
                    "borrower_id": subject.borrower_id,
                    "channel": Channel.SMS.value,
                    "address": n,
                    "region": None,
                    "is_primary": False,
                    "valid": True,
                    "verified": False,
                    "source": "bureau",
                    "failures": 0,
                    "opted_out_at": None,
                    "created_at": at,
                }
                for n, _, _ in new
            ],
        )
    held = []
    reported = (
        (Hold.BANKRUPTCY, bankrupt, f"bureau report {report_id}: chapter {bankruptcy_chapter or '?'}"),
        (Hold.DECEASED, deceased, f"bureau report {report_id}: deceased indicator"),
    )
    for kind, present, why in reported:
        if not present:
            continue
        active = connection.execute(
            select(hold.c.id).where(
                hold.c.account_id == subject.account_id, hold.c.kind == kind.value, hold.c.lifted_at.is_(None)
            )
        ).first()
        if active is None:
            connection.execute(
                hold.insert().values(
                    account_id=subject.account_id,
                    kind=kind.value,
                    source="bureau",
                    reason=why,
                    placed_at=at,
                    lifted_at=None,
                )
            )
            held.append(kind.value)
    what = "skip trace" if subject.reason == "skip_trace" else "bureau pull"
    detail = f"{what} ({purpose}): band {score_band}"
    if income_estimate is not None:
        detail += f", income {subject.currency} {income_estimate} a year"
    if ability is not None:
        detail += f"; ability {'—' if before is None else f'{before:.2f}'} → {ability:.2f}"
    if new:
        detail += f"; {len(new)} new number{'s' if len(new) > 1 else ''} found (unverified)"
    events = [
        _event(
            subject.account_id,
            at,
            "bureau",
            detail,
            {
                "idempotency_key": subject.key,
                "reason": subject.reason,
                "report_id": report_id,
                "score_band": score_band,
                "ability": ability,
                "numbers_found": len(new),
            },
        )
    ]
    events += [
        _event(
            subject.account_id,
            at,
            "hold",
            f"{h} hold placed: bureau report {report_id}",
            {"hold": h, "action": "placed", "source": "bureau"},
        )
        for h in held
    ]
    _insert_events(connection, events)
    return {"ability": ability, "numbers_found": len(new), "holds": held}


def record_pull_refusal(
    connection: Connection,
    *,
    subject: PullSubject,
    at: datetime,
    purpose: str,
    reason: str,
) -> None:
    """The bureau has no file (or refused for good): recorded, so the account is not asked about
    again this episode."""
    connection.execute(
        bureau.insert().values(
            account_id=subject.account_id,
            kind="pull",
            purpose=purpose,
            at=at,
            payload={"idempotency_key": subject.key, "reason": subject.reason, "error": reason},
        )
    )
    what = "skip trace" if subject.reason == "skip_trace" else "bureau pull"
    _insert_events(
        connection,
        [
            _event(
                subject.account_id,
                at,
                "bureau",
                f"{what} found nothing: {reason}",
                {"idempotency_key": subject.key, "error": reason},
            )
        ],
    )
