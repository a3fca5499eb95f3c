"""Data access for repossession reviews: opening them, the cure notice, the reviewer's decision,
closing them, and the open reviews the flow runs and the waiting list (`storage/waiting.py`) read.

Every function takes the caller's connection and does not commit: the task owns the
transaction. A review flow re-run from the top repeats nothing: its cure notice is recorded once
(`Review.cure_deadline`), its decision once.
"""

from collections import defaultdict
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Select, String, bindparam, cast, literal, null, select, true, update
from sqlalchemy.sql.functions import coalesce

from arrears.review import CureNotice, PendingPromise, Settled, enforcement_barred
from arrears.storage import letters
from arrears.storage._common import ACTOR, event, for_account, holds_of, insert_events, inserted_id, locked
from arrears.storage.accounts import lock_accounts
from arrears.storage.bulk import among, greatest, json_object
from arrears.storage.streaming import insert_selected_with_ids
from arrears.storage.tables import account, audit, promise, review
from arrears.vocabulary import Exit, Hold, Stage

__all__ = [
    "ReviewState",
    "close_left_reviews",
    "close_review",
    "current_review",
    "open_review",
    "open_review_jurisdictions",
    "open_review_runs",
    "open_review_state_chunks",
    "open_review_states",
    "open_reviews",
    "record_cure_notice",
    "record_decision",
    "restart_cure_period",
    "review_state",
    "reviews_by_run",
    "set_review_run",
]


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
    prior_cures: int = 0  # earlier reviews of the account that ended because the borrower cured after notice
    letter_id: int | None = None  # the right-to-cure letter, once written
    letter_status: str | None = None  # pending | blocked | created | mailed | … | returned_to_sender
    letter_reason: str | None = None  # why it is blocked, failed or returned
    promise: PendingPromise | None = None  # the account's pending promise to pay due last, if any

    @property
    def notice_stopped(self) -> str | None:
        """Why the cure period cannot run its course because of the letter, or None: no address
        (blocked), refused by the provider (failed), or returned to sender (on hold)."""
        if self.letter_status in ("blocked", "failed"):
            return f"the right-to-cure letter cannot be mailed: {self.letter_reason}"
        if self.letter_status == "returned_to_sender":
            return (
                "on hold: the right-to-cure letter was returned to sender; "
                "import another address and the notice is given again there"
            )
        return None

    @property
    def closed(self) -> bool:
        return self.decided_at is not None

    @property
    def in_review(self) -> bool:
        return self.stage == Stage.REPOSSESSION_REVIEW

    @property
    def open_to_notice(self) -> bool:
        """Open, in review, and no hold bars repossession: a right-to-cure letter may still go."""
        return self.in_review and not self.closed and not enforcement_barred(self.holds)

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
            "letter_id": self.letter_id,
            "letter_status": self.letter_status,
            "letter_reason": self.letter_reason,
            "promise": {
                "promise_id": self.promise.promise_id,
                "amount": str(self.promise.amount),
                "due_date": self.promise.due_date.isoformat(),
            }
            if self.promise
            else None,
        }


_CURED = f"closed: account is now {Exit.CURED.value}"


def _prior_cures(connection: Connection, reviews: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """Per (account, review id) of `reviews`: how many earlier reviews of the account ended in a
    cure after a right-to-cure notice; reviews with none are left out. Only the cured reviews are
    read, the accounts bound as one value (`among`): the cycle asks for thousands of reviews, few
    of which follow a cure.

    After a notice only: M.G.L. c.255B §20A(b) owes no notice once the debtor "has cured a default
    after notice three or more times", and a cure before any notice was given (within the ten days
    after default, under a hold that stopped the letter, before its mailing) is not one. A notice
    was given in a review when its cure deadline is set: `record_cure_notice` sets it only while
    the review is open, and a returned letter's restart clears it until the notice is given again."""
    cured: dict[str, list[int]] = defaultdict(list)
    for account_id, review_id in connection.execute(
        select(review.c.account_id, review.c.id).where(
            among(review.c.account_id, sorted({a for a, _ in reviews})),
            review.c.reason == _CURED,
            review.c.cure_deadline.is_not(None),
        )
    ):
        cured[account_id].append(review_id)
    counts: dict[tuple[str, int], int] = {}
    for account_id, review_id in reviews:
        if earlier := sum(1 for i in cured.get(account_id, ()) if i < review_id):
            counts[(account_id, review_id)] = earlier
    return counts


def _pending_promises(connection: Connection, account_ids: Sequence[str]) -> dict[str, PendingPromise]:
    """Per account of `account_ids`, its pending promise to pay due last (a reviewer waits for it:
    `arrears.review.promise_refusal`); accounts with none are left out. One query, the accounts
    bound as one value: the cycle reads thousands of reviews, few with a promise still running."""
    found: dict[str, PendingPromise] = {}
    for account_id, promise_id, amount, due_date in connection.execute(
        select(promise.c.account_id, promise.c.id, promise.c.amount, promise.c.due_date)
        .where(among(promise.c.account_id, sorted(set(account_ids))), promise.c.status == "pending")
        .order_by(promise.c.due_date, promise.c.id)
    ):
        found[account_id] = PendingPromise(int(promise_id), amount, due_date)
    return found


def _state(
    review_row: Any,
    account_row: Any,
    holds: frozenset[Hold],
    prior_cures: int = 0,
    notice: letters.LetterRow | None = None,
    pending: PendingPromise | None = None,
) -> ReviewState:
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
        letter_id=notice.id if notice else None,
        letter_status=notice.status if notice else None,
        letter_reason=notice.reason if notice else None,
        promise=pending,
    )


def review_state(connection: Connection, review_id: int, *, lock: bool = False) -> ReviewState | None:
    statement = select(review).where(review.c.id == review_id)
    r = connection.execute(locked(statement, connection) if lock else statement).first()
    if r is None:
        return None
    a = connection.execute(select(account).where(account.c.account_id == r.account_id)).one()
    cures = _prior_cures(connection, [(r.account_id, r.id)]).get((r.account_id, r.id), 0)
    notice = letters.letters_of_reviews(connection, [r.id]).get(r.id)
    pending = _pending_promises(connection, [r.account_id]).get(r.account_id)
    holds = holds_of(connection, [r.account_id]).get(r.account_id, frozenset())
    return _state(r, a, holds, cures, notice, pending)


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
    cures = _prior_cures(connection, [(account_id, r.id)]).get((account_id, r.id), 0)
    notice = letters.letters_of_reviews(connection, [r.id]).get(r.id)
    pending = _pending_promises(connection, [account_id]).get(account_id)
    return _state(
        r, a, holds_of(connection, [account_id]).get(account_id, frozenset()), cures, notice, pending
    )


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
        review_id = inserted_id(
            connection.execute(
                review.insert().values(account_id=account_id, opened_at=opened, flow_run_id=flow_run_id)
            )
        )
        insert_events(
            connection,
            [
                event(
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
    (the daily cycle, after advance); returns the new review ids, in account order (so they do not
    depend on which index the database walks). The database copies the accounts into reviews and
    writes their events: a first cycle opens a review for a quarter of a portfolio, and reading
    and binding them in Python took most of the time."""
    covered = (
        select(review.c.id)
        .where(review.c.account_id == account.c.account_id, review.c.opened_at >= account.c.stage_since)
        .exists()
    )
    waiting = (
        select(
            account.c.account_id,
            greatest(account.c.stage_since, literal(at, type_=review.c.opened_at.type)),
            null(),
        )
        .where(
            account.c.stage == Stage.REPOSSESSION_REVIEW.value,
            for_account(account_id, account.c.account_id),
            ~covered,
        )
        .order_by(account.c.account_id)
    )
    opened = insert_selected_with_ids(connection, review, ("account_id", "opened_at", "flow_run_id"), waiting)
    _record_opened(connection, opened)
    return opened


def _record_opened(connection: Connection, review_ids: list[int]) -> None:
    """The audit event of each review opened (at its opening, naming it), in review order, made
    by the database from the review rows: a first cycle opens a review for a quarter of a
    portfolio, and building and binding their events in Python took half of opening them."""
    connection.execute(
        audit.insert().from_select(
            ["account_id", "at", "kind", "detail", "data", "actor", "cycle_id"],
            select(
                review.c.account_id,
                review.c.opened_at,
                literal("review"),
                literal("repossession review ") + cast(review.c.id, String) + literal(" opened"),
                json_object("review_id", review.c.id),
                literal(ACTOR),
                null(),
            )
            .where(among(review.c.id, review_ids))
            .order_by(review.c.id),
        )
    )


def set_review_run(connection: Connection, *, review_id: int, flow_run_id: str) -> None:
    connection.execute(update(review).where(review.c.id == review_id).values(flow_run_id=flow_run_id))


def record_cure_notice(connection: Connection, *, review_id: int, notice: CureNotice) -> bool:
    """Record the right-to-cure notice as given and its deadline, once; False if it was recorded
    before, or the review is closed. Called when the letter's `mailed` event arrives
    (`tasks.letters`): the cure period counts from the notice given, never from our decision to
    write it. The audit event and `Review.cure_deadline` are evidence for the filing if the case
    goes to court. A letter mailed after its review closed (the borrower cured first) gives no
    notice in it: a cure counts towards US-MA's three only after a notice (`_prior_cures`).
    """
    changed = connection.execute(
        update(review)
        .where(review.c.id == review_id, review.c.cure_deadline.is_(None), review.c.decided_at.is_(None))
        .values(cure_deadline=notice.deadline)
    ).rowcount
    if not changed:
        return False
    account_id = connection.execute(select(review.c.account_id).where(review.c.id == review_id)).scalar_one()
    insert_events(
        connection,
        [
            event(
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


def restart_cure_period(
    connection: Connection, *, review_id: int, account_id: str, returned_letter_id: int, at: datetime
) -> None:
    """Forget the cure deadline counted from a right-to-cure letter that came back to sender: the
    notice is given again at another address, and the next `record_cure_notice` (that letter's
    mailed event) counts the cure period afresh. Never shorter than the law's: the borrower has the
    whole period from a notice that can reach them. The deadline given before stays in the audit
    trail (its `cure_notice` event), with this event saying why it no longer runs."""
    connection.execute(update(review).where(review.c.id == review_id).values(cure_deadline=None))
    insert_events(
        connection,
        [
            event(
                account_id,
                at,
                "review",
                f"review {review_id}: right-to-cure letter {returned_letter_id} came back to sender and "
                "another address is on file: the notice is given again there, and the cure period "
                "counts from its mailing",
                {"review_id": review_id, "returned_letter_id": returned_letter_id, "cure_restarted": True},
            )
        ],
    )


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
    insert_events(
        connection,
        [
            event(
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
    insert_events(
        connection,
        [
            event(
                state.account_id,
                closed_at,
                "review",
                f"review {review_id} closed: {reason}",
                {"review_id": review_id, "closed": reason},
            )
        ],
    )
    return True


# A ReviewState's columns in the order of its fields, the review's then its account's: the bulk
# paths make each state from its row positionally (`_states`), not a column at a time by name.
_STATE_COLUMNS = (
    review.c.id,
    review.c.account_id,
    review.c.opened_at,
    review.c.cure_deadline,
    review.c.decision,
    review.c.reviewer,
    review.c.reason,
    review.c.decided_at,
    review.c.flow_run_id,
    account.c.stage,
    account.c.stage_since,
    account.c.episode,
    account.c.jurisdiction,
    account.c.timezone,
    account.c.currency,
    account.c.balance,
    account.c.past_due_amount,
    account.c.days_past_due,
    account.c.vin,
)
# Reviews with their accounts, in one query: only the columns a ReviewState holds.
_REVIEW_ACCOUNT = review.join(account, account.c.account_id == review.c.account_id)
_STATES = select(*_STATE_COLUMNS).select_from(_REVIEW_ACCOUNT)
_NO_HOLDS: frozenset[Hold] = frozenset()


def _states(connection: Connection, rows: Sequence[Any]) -> list[ReviewState]:
    """The states of rows of `_STATES`, their holds, prior cures, letters and promises read in a
    query each."""
    if not rows:
        return []
    holds = holds_of(connection, sorted({r.account_id for r in rows}))
    promised = _pending_promises(connection, [r.account_id for r in rows])
    cures = _prior_cures(connection, [(r.account_id, r.id) for r in rows])
    notices = letters.letters_of_reviews(connection, [r.id for r in rows])
    states = []
    for r in rows:
        notice = notices.get(r.id)
        fields: tuple[Any, ...] = (
            *r,
            holds.get(r.account_id, _NO_HOLDS),
            cures.get((r.account_id, r.id), 0),
            *((notice.id, notice.status, notice.reason) if notice else (None, None, None)),
            promised.get(r.account_id),
        )
        states.append(ReviewState(*fields))
    return states


def open_review_states(
    connection: Connection, *, waiting_before: datetime | None = None
) -> list[ReviewState]:
    """Every undecided review of an account in repossession review, oldest first; with
    `waiting_before`, only those whose cure deadline (or, without one, opening) is earlier: the
    cycle's report looks only for reviews waiting past a deadline, not at every open one."""
    return [s for part in open_review_state_chunks(connection, waiting_before=waiting_before) for s in part]


def open_review_state_chunks(
    connection: Connection,
    *,
    waiting_before: datetime | None = None,
    jurisdictions: Collection[str] | None = None,
    size: int = 5_000,
) -> Iterator[list[ReviewState]]:
    """`open_review_states` a chunk at a time, in the same order: a first cycle opens reviews
    for a quarter of a portfolio, and their states, held at once, were the cycle's peak memory.
    With `jurisdictions`, only the reviews of accounts there (the cycle reads states for the
    right-to-cure letters, which most jurisdictions never owe).

    The reviews and their accounts are one query, fetched `size` rows at a time (a server-side
    cursor on PostgreSQL); each chunk's holds, prior cures and letters are read with it. The
    caller may write between chunks (the cycle writes each chunk's letters): the query's rows
    are the reviews and accounts as they stood when it ran, which those writes do not touch."""
    query = _open(_STATES, waiting_before)
    if jurisdictions is not None:
        query = query.where(account.c.jurisdiction.in_(sorted(jurisdictions)))
    with connection.execute(query, execution_options={"yield_per": size}) as result:
        for rows in result.partitions():
            yield _states(connection, rows)


def open_review_runs(connection: Connection) -> list[tuple[int, str, str | None]]:
    """(review id, account id, flow run id) of every open review, in `open_review_states`'s
    order: which reviews need a run started, without reading their states."""
    query = _open(select(review.c.id, review.c.account_id, review.c.flow_run_id).select_from(_REVIEW_ACCOUNT))
    return [(int(i), a, run) for i, a, run in connection.execute(query)]


def open_review_jurisdictions(connection: Connection) -> list[str]:
    """The jurisdictions of the accounts with an open review."""
    query = _open(select(account.c.jurisdiction).select_from(_REVIEW_ACCOUNT)).order_by(None).distinct()
    return sorted(connection.execute(query).scalars())


def _open(query: Select[Any], waiting_before: datetime | None = None) -> Select[Any]:
    """`query` (on reviews joined to their accounts) narrowed to the undecided reviews of accounts
    in repossession review opened in their present stay, oldest first; with `waiting_before`,
    only those whose cure deadline (or, without one, opening) is earlier."""
    return query.where(
        review.c.decided_at.is_(None),
        account.c.stage == Stage.REPOSSESSION_REVIEW.value,
        review.c.opened_at >= account.c.stage_since,
        true()
        if waiting_before is None
        else coalesce(review.c.cure_deadline, review.c.opened_at) < waiting_before,
    ).order_by(review.c.opened_at, review.c.id)


def reviews_by_run(connection: Connection, flow_run_ids: Sequence[str]) -> dict[str, ReviewState]:
    """The reviews these flow runs work on, by run id."""
    if not flow_run_ids:
        return {}
    # Bound as one value (`among`): the cycle asks for every paused review run at once, and one
    # parameter a run id went past SQLite's and PostgreSQL's limits at portfolio scale.
    rows = connection.execute(_STATES.where(among(review.c.flow_run_id, list(flow_run_ids)))).all()
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
    insert_events(
        connection,
        [
            event(
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
