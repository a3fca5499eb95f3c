"""Data access for replies, willingness and promises to pay (the negotiation stage).

Every function takes the caller's connection and does not commit: the task owns the
transaction. The cycle's functions (`unread_replies`, `resolve_promises`, `nudge_for_payments`,
`reset_broken_promises`) work in bulk, a few queries for the whole portfolio (or for one account
on the single-account path), never a query per account.

Each is idempotent, so a cycle run twice repeats nothing:

- a reply is read once: every event written in answer to it carries `data.reply_id`;
- a promise moves only from the status it was read in (rows are locked with `FOR UPDATE` on
  PostgreSQL; SQLite's writer holds the database);
- a willingness nudge for a payment carries `data.payment_id`.
"""

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, bindparam, or_, select, update

from arrears.clock import business_date as lender_date
from arrears.lifecycle import is_open
from arrears.policy import Segmentation
from arrears.promises import PaymentView, PromiseRules, PromiseView
from arrears.promises import refusal as promise_refusal
from arrears.promises import resolve_promises as decide_promises
from arrears.segmentation import ability_after_hardship, nudge_willingness
from arrears.storage._common import (
    chunks,
    day_start,
    event,
    for_account,
    insert_events,
    inserted_id,
    locked,
    to_precision,
)
from arrears.storage.accounts import lock_accounts
from arrears.storage.tables import account, audit, message, payment, plan, promise, settlement
from arrears.vocabulary import Exit, MessageStatus, Stage

__all__ = [
    "CONTACT_WINDOW",
    "HARDSHIP",
    "REPLY_WINDOW",
    "Reply",
    "add_promise",
    "nudge",
    "nudge_for_payments",
    "promise_accounts",
    "promises_of",
    "replace_pending",
    "reset_broken_promises",
    "resolve_promises",
    "state_hardship",
    "unread_replies",
    "willingness_of",
]

# Replies older than this that no cycle read are left alone: a promise made three weeks ago and
# never seen is better asked for again than recorded late.
REPLY_WINDOW = timedelta(days=14)
# A payment counts as one "after contact" when a message reached the borrower this long before it.
CONTACT_WINDOW = timedelta(days=30)
HARDSHIP = "hardship"  # the audit kind of a borrower's word that they cannot pay
_READ_KINDS = ("promise", "plan", "willingness")  # the events that answer a reply
_EXITS = tuple(e.value for e in Exit if e is not Exit.CURED)


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
    timezone: str  # the borrower's: their "today" may be the lender's yesterday
    callback_id: str | None = None  # the inbound message it came from (what a quarantine names)

    @property
    def ref(self) -> str:
        """What names the inbound message in the quarantine: its callback id, else the event's."""
        return self.callback_id or f"audit:{self.event_id}"


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
            account.c.timezone,
        )
        .join(account, account.c.account_id == audit.c.account_id)
        .where(
            audit.c.kind == "reply",
            audit.c.at > since,
            audit.c.at <= as_of,
            for_account(account_id, audit.c.account_id),
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
            r.timezone,
            (r.data or {}).get("callback_id"),
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
    insert_events(
        connection,
        [
            event(
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


def state_hardship(
    connection: Connection,
    *,
    account_id: str,
    statement: str,
    at: datetime,
    policy: Segmentation,
    data: dict[str, Any],
    cycle_id: int | None = None,
) -> float:
    """The borrower said they cannot pay (`arrears.inbound.hardship_statement`): their ability goes
    below the threshold (`ability_after_hardship`), audited as a `hardship` event with their words
    (what a later bureau pull of the delinquency reads); returns the new ability."""
    current = connection.execute(select(account.c.ability).where(account.c.account_id == account_id)).scalar()
    after = round(ability_after_hardship(current, policy=policy), 4)
    connection.execute(update(account).where(account.c.account_id == account_id).values(ability=after))
    before = "—" if current is None else f"{current:.2f}"
    insert_events(
        connection,
        [
            event(
                account_id,
                at,
                HARDSHIP,
                f"hardship stated by the borrower ({statement!r}): ability {before} → {after:.2f}",
                {"statement": statement, "from": current, "to": after, **data},
                actor="borrower",
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
            for_account(account_id, payment.c.account_id),
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
    for chunk in chunks(ids):
        done |= {
            (data or {}).get("payment_id")
            for (data,) in connection.execute(
                select(audit.c.data).where(
                    audit.c.kind == "willingness", audit.c.account_id.in_(chunk), audit.c.at >= earliest
                )
            )
        }
        for sent in connection.execute(
            select(message.c.account_id, message.c.sent_at).where(
                message.c.account_id.in_(chunk),
                message.c.status.in_((MessageStatus.SENT.value, MessageStatus.DELIVERED.value)),
                message.c.sent_at >= earliest - CONTACT_WINDOW,
            )
        ):
            contacts[sent.account_id].append(sent.sent_at)
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
            event(
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
        insert_events(connection, events)
    return len(events)


# == promises =====================================================================================


def replace_pending(connection: Connection, *, account_id: str, day: date, at: datetime) -> list[Any]:
    """Mark replaced the account's pending promises due on or after `day`, the day an agreement
    (a new promise, a plan, a settlement) is made: kept beside it, one would break while the
    borrower pays as agreed, and count against them. One already past its date is left to be
    judged. The rows replaced (id, amount, due date)."""
    return list(
        connection.execute(
            update(promise)
            .where(
                promise.c.account_id == account_id, promise.c.status == "pending", promise.c.due_date >= day
            )
            .values(status="replaced", resolved_at=at)
            .returning(promise.c.id, promise.c.amount, promise.c.due_date)
        ).all()
    )


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
    the date has made one promise, not two); one already past its date is left to be judged. None
    is taken while a plan or a settlement is active (the borrower is paying under it).
    """
    row = connection.execute(
        locked(
            select(account.c.stage, account.c.currency, account.c.past_due_amount, account.c.balance).where(
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
    running = connection.execute(
        select(plan.c.id).where(plan.c.account_id == account_id, plan.c.status == "active")
    ).scalar()
    if running is not None:
        # One agreement at a time, as a plan refuses a settlement: a promise broken beside the plan
        # would count against a borrower paying as agreed (to negotiation, to review if strategic).
        raise ValueError(f"plan {running} is active: the borrower is paying under it")
    settling = connection.execute(
        select(settlement.c.id).where(settlement.c.account_id == account_id, settlement.c.status == "active")
    ).scalar()
    if settling is not None:
        # Likewise beside a settlement: a promise broken while the borrower pays it by its own date
        # would count against them (`arrears.settlements`: one agreement at a time).
        raise ValueError(f"settlement {settling} is agreed: the borrower is paying under it")
    why = promise_refusal(  # the balance at its currency's precision, as the refusal states it
        amount,
        due_date,
        today=made_on,
        currency=row.currency,
        rules=rules,
        balance=to_precision(row.balance, row.currency),
    )
    if why is not None:
        raise ValueError(why)
    extra = data or {}
    replaced = replace_pending(connection, account_id=account_id, day=made_on, at=at)
    created = inserted_id(
        connection.execute(
            promise.insert().values(
                account_id=account_id,
                amount=amount,
                due_date=due_date,
                status="pending",
                source=source,
                created_at=at,
                resolved_at=None,
            )
        )
    )
    events = [
        event(
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
        event(
            account_id,
            at,
            "promise",
            f"promise to pay {row.currency} {to_precision(amount, row.currency)} "
            f"by {due_date.isoformat()} ({source})",
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
    insert_events(connection, events)
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
        locked(
            select(
                promise.c.id, promise.c.account_id, promise.c.amount, promise.c.due_date, promise.c.created_at
            ).where(promise.c.status == "pending", for_account(account_id, promise.c.account_id)),
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
            ).where(account.c.account_id.in_(with_pending), for_account(account_id, account.c.account_id))
        )
    }
    by_account: dict[str, list[PromiseView]] = defaultdict(list)
    for p in pending:
        currency = accounts[p.account_id].currency
        by_account[p.account_id].append(
            PromiseView(
                p.id, to_precision(p.amount, currency), p.due_date, lender_date(p.created_at, lender_timezone)
            )
        )
    earliest = day_start(min(v.made_on for views in by_account.values() for v in views), lender_timezone)
    paid: dict[str, list[PaymentView]] = defaultdict(list)
    for r in connection.execute(
        select(payment.c.payment_id, payment.c.account_id, payment.c.amount, payment.c.received_at).where(
            payment.c.account_id.in_(with_pending),
            payment.c.received_at >= earliest,
            payment.c.received_at <= as_of,
            for_account(account_id, payment.c.account_id),
        )
    ):
        paid[r.account_id].append(
            PaymentView(
                r.payment_id,
                to_precision(r.amount, accounts[r.account_id].currency),
                lender_date(r.received_at, lender_timezone),
            )
        )
    _less_what_was_taken(connection, paid, since=earliest)
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
                event(
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
                        # What of each payment this promise took: later promises count the rest.
                        "taken": {payment_id: str(amount) for payment_id, amount in o.taken},
                    },
                    cycle_id=cycle_id,
                )
            )
            behaviour = "promise_kept" if o.status == "kept" else "promise_broken"
            before = policy.default_willingness if score is None else score
            score = round(nudge_willingness(score, behaviour, policy=policy), 4)
            said = behaviour.replace("_", " ")
            events.append(
                event(
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
        insert_events(connection, events)
    return {"promises_kept": kept, "promises_broken": broken}


def promise_accounts(connection: Connection, *, as_of: datetime) -> list[str]:
    """The accounts `resolve_promises` and `nudge_for_payments` work on as of `as_of`: those with a
    pending promise or a payment being applied. For the account-by-account path after a failure."""
    pending = select(promise.c.account_id).where(promise.c.status == "pending")
    paying = select(payment.c.account_id).where(
        payment.c.received_at <= as_of,
        or_(payment.c.applied_at.is_(None), payment.c.applied_at == as_of),
    )
    return sorted(set(connection.execute(pending.union(paying)).scalars()))


def reset_broken_promises(connection: Connection, *, account_id: str | None = None) -> int:
    """`broken_promises` counts the current delinquency only: back to zero once the account has
    left it (cured or exited). One statement."""
    result = connection.execute(
        update(account)
        .where(
            account.c.broken_promises > 0,
            account.c.stage.in_((Exit.CURED.value, *_EXITS)),
            for_account(account_id, account.c.account_id),
        )
        .values(broken_promises=0)
    )
    return result.rowcount or 0


def _less_what_was_taken(
    connection: Connection, paid: dict[str, list[PaymentView]], *, since: datetime
) -> None:
    """Reduce each payment by what promises judged before took of it (their audit events'
    `taken`), so that money which kept one promise does not keep another: a payment of 400 that
    kept the promise of the 3rd is not also the 400 promised later that day."""
    if not paid:
        return
    taken: dict[str, Decimal] = defaultdict(Decimal)
    for (data,) in connection.execute(
        select(audit.c.data).where(
            audit.c.account_id.in_(list(paid)), audit.c.kind == "promise", audit.c.at >= since
        )
    ):
        for payment_id, amount in ((data or {}).get("taken") or {}).items():
            taken[payment_id] += Decimal(amount)
    if not taken:
        return
    for account_id, views in paid.items():
        paid[account_id] = [
            replace(v, amount=v.amount - taken[v.payment_id]) if v.payment_id in taken else v for v in views
        ]
