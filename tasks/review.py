"""Repossession review: the steps of a review's flow run, the cycle's bulk part, and the CLI's.

The flow run (`flows/repossession_review.py`) calls the Prefect tasks here; each reads the
review back from our tables first, so a run re-started from the top after a suspension repeats
nothing: a notice already recorded is not sent again, a decision already stored stands.

The cycle's part is bulk: `prepare_reviews` opens a review for every account that entered
repossession review, closes those whose account left, records the cure notices due, and names
the reviews that still need a flow run; `refresh_vendor_orders` (inside the refresh
transaction) cancels repossession orders that a payment, a plan, a settlement or a hold has
overtaken.
"""

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Connection, Engine

from arrears.currencies import display
from arrears.jurisdictions import Profile
from arrears.processes import collection_paused
from arrears.promises import promise_rules
from arrears.review import (
    court_order_needed,
    decision_refusal,
    enforcement_barred,
    notice_owed,
    promise_refusal,
    settle_decision,
)
from arrears.storage import accounts, assignments, read_only, reviews, settlements, vendor_orders
from arrears.storage.reports import account_context
from arrears.storage.reviews import ReviewState
from arrears.storage.waiting import Waiting, waiting_list
from arrears.vocabulary import DecisionKind, Hold
from tasks.database import engine, policy
from tasks.letters import write_cure_letter, write_cure_letters

__all__ = [
    "Decided",
    "Prepared",
    "ReviewError",
    "ReviewState",
    "close_review",
    "decide_review",
    "decision_context",
    "decision_options",
    "load_review",
    "open_review",
    "prepare_reviews",
    "record_decision",
    "refresh_vendor_orders",
    "refusal",
    "reviews_of_runs",
    "reviews_to_run",
    "send_cure_notice",
    "set_review_runs",
    "waiting",
]


class ReviewError(Exception):
    """A decision that cannot be taken now; the message says why."""


@dataclass(frozen=True, slots=True)
class Decided:
    state: ReviewState
    decision: str
    requested: str
    note: str | None
    order_id: str | None
    changed: bool  # False: a decision was already stored, and it stands
    # What became of the repossession order this decision approved (None: it approved none):
    # placed (it goes to the agency), blocked (it cannot be sent: `order_reason` says what is
    # missing), withheld (a hold barred it: none was placed), cancelled (overtaken at once).
    order_status: str | None = None
    order_reason: str | None = None
    reopened_review_id: int | None = None  # the review sent back to a person at once for it

    def as_json(self) -> dict[str, Any]:
        return {
            "account_id": self.state.account_id,
            "review_id": self.state.review_id,
            "decision": self.decision,
            "requested": self.requested,
            "note": self.note,
            "vendor_order": self.order_id,
            "order_status": self.order_status,
            "order_reason": self.order_reason,
            "order_said": self.order_said(),
            "reopened_review_id": self.reopened_review_id,
            "recorded": self.changed,
            "decided_at": self.state.decided_at.isoformat() if self.state.decided_at else None,
        }

    def order_said(self) -> str | None:
        """The reviewer's word that the repossession they approved is not under way, or None. Told
        at the decision, not found later in `arrears review list`: the review comes back to them."""
        if self.order_status == "blocked":
            back = (
                f", and review {self.reopened_review_id} is back in `arrears review list` meanwhile"
                if self.reopened_review_id is not None
                else ""
            )
            return (
                f"order {self.order_id} placed but blocked: {self.order_reason} — it goes to the agency "
                f"once an import brings it{back}"
            )
        if self.order_status == "withheld":
            return (
                f"no order placed: withheld under {self.order_reason} — the review comes back in "
                "`arrears review list` by the next cycle, waiting for the hold, then for a decision once "
                "the hold is lifted"
            )
        return None


def _profile(jurisdiction: str) -> Profile:
    """The jurisdiction's profile under the lender's policy (which may lengthen a cure period)."""
    return policy().profile(jurisdiction)


def refusal(state: ReviewState, now: datetime, decision: str | None = None) -> str | None:
    """Why this review may not be decided at `now` (see `arrears.review.decision_refusal`), or
    `decision` taken: a right-to-cure letter that cannot be mailed, or came back, stops the review
    first; a promise to pay still running holds back repossess and legal (`promise_refusal`), and
    with no `decision` named, any decision (the flow run waits for its form until it is judged)."""
    if not state.closed and state.in_review and state.notice_stopped:
        return state.notice_stopped
    owed = notice_owed(state.jurisdiction, rules=_profile(state.jurisdiction), prior_cures=state.prior_cures)
    why = decision_refusal(
        in_review=state.in_review,
        closed=state.closed,
        stage=state.stage,
        notice_owed=owed,
        cure_deadline=state.cure_deadline,
        now=now,
    )
    if why is not None or state.promise is None:  # the policy is read only for a promise
        return why
    return promise_refusal(
        state.promise,
        decision=DecisionKind(decision) if decision else None,
        currency=state.currency,
        grace_days=promise_rules(policy()).grace_days,
    )


# -- the cycle ------------------------------------------------------------------------------------


def refresh_vendor_orders(
    connection: Connection,
    *,
    as_of: datetime,
    cycle_id: int | None = None,
    account_id: str | None = None,
) -> dict[str, int]:
    """Cancel repossession orders overtaken by a payment, a plan, a settlement, a hold or the account
    leaving review."""
    return {
        "vendor_orders_cancelled": vendor_orders.cancel_vendor_orders(
            connection, as_of=as_of, cycle_id=cycle_id, account_id=account_id
        )
    }


@dataclass(frozen=True, slots=True)
class Prepared:
    opened: int
    closed: int
    notices: int
    without_run: tuple[tuple[int, str], ...]  # (review id, account id) of reviews no flow run works on
    with_run: tuple[tuple[int, str, str], ...] = ()  # (review id, account id, flow run id) of the others


def _may_need_notice(state: ReviewState, rules: Profile | None = None) -> bool:
    """Whether the review may owe its right-to-cure letter now (its jurisdiction's `rules` decide;
    a bulk caller passes them, read once a jurisdiction): not before the days past due they want
    first (US-MA: 10 days after default), which a later cycle brings; the decision waits for the
    notice meanwhile."""
    rules = rules or _profile(state.jurisdiction)
    return (
        state.open_to_notice
        and state.cure_deadline is None
        and state.letter_id is None
        and state.days_past_due >= rules.cure_notice_after_days
    )


def _notice(connection: Connection, state: ReviewState, at: datetime) -> bool:
    """Write the right-to-cure letter where one is owed (`tasks.letters`): the cure period starts
    at its mailed event, not here."""
    return _may_need_notice(state) and write_cure_letter(connection, state, at)


@task(name="prepare-reviews", cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=5)
def prepare_reviews(at: datetime, cycle_id: int | None = None, *, name_runs: bool = True) -> Prepared:
    """Open, close and notify in bulk; name the reviews that need a flow run (with `name_runs`:
    without a review deployment served, no run is started, and naming a quarter of a portfolio's
    reviews for none took a second at a million accounts).

    The cyclic collector is paused meanwhile: the states and letters it builds live until they
    are written, and in the cycle's own process (Python's default thresholds) its collections
    scanned them again and again, 16 % of the step at 200,000 accounts (timed by `gc.callbacks`)."""
    with collection_paused(), engine().begin() as connection:
        opened = reviews.open_reviews(connection, at=at)
        closed = reviews.close_left_reviews(connection, at=at, cycle_id=cycle_id)
        # The states only where a right-to-cure letter may be owed (most jurisdictions owe none:
        # a first cycle opens a review for a quarter of a portfolio), in bulk, a chunk at a time.
        # (A jurisdiction that owes no notice to a review without prior cures owes none to any.)
        # Each jurisdiction's profile once, not once a review (the policy file is looked at each time).
        profiles = {j: _profile(j) for j in reviews.open_review_jurisdictions(connection)}
        owing = [j for j, rules in profiles.items() if notice_owed(j, rules=rules)]
        notices = sum(
            write_cure_letters(
                connection, [s for s in states if _may_need_notice(s, profiles[s.jurisdiction])], at
            )
            for states in reviews.open_review_state_chunks(connection, jurisdictions=owing)
        )
        runs = _prepared(reviews.open_review_runs(connection) if name_runs else [])
    return replace(runs, opened=len(opened), closed=closed, notices=notices)


@task(name="reviews-to-run", cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=5)
def reviews_to_run() -> Prepared:
    """The open reviews and their runs, opening and closing none: for a start between cycles of
    the runs a cycle had to defer (the server refused them) or that died since."""
    with read_only(engine()) as connection:
        return _prepared(reviews.open_review_runs(connection))


def _prepared(runs: list[tuple[int, str, str | None]]) -> Prepared:
    """The open reviews (`reviews.open_review_runs`) with and without a run (nothing opened,
    closed or notified)."""
    return Prepared(
        0,
        0,
        0,
        tuple((review_id, account_id) for review_id, account_id, run in runs if run is None),
        tuple((review_id, account_id, run) for review_id, account_id, run in runs if run is not None),
    )


@task(name="set-review-runs", cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=5)
def set_review_runs(runs: list[tuple[int, str]]) -> None:
    """Bind each review to the flow run that now works on it (a new run, or a replacement)."""
    with engine().begin() as connection:
        for review_id, flow_run_id in runs:
            reviews.set_review_run(connection, review_id=review_id, flow_run_id=flow_run_id)


@task(name="reviews-of-runs", cache_policy=NO_CACHE, persist_result=False)
def reviews_of_runs(flow_run_ids: list[str]) -> dict[str, ReviewState]:
    with engine().connect() as connection:
        return reviews.reviews_by_run(connection, flow_run_ids)


# -- a review's flow run ----------------------------------------------------------------------------


def decision_options(holds: frozenset[Hold], jurisdiction: str | None = None) -> tuple[str, ...]:
    """The decisions a reviewer may choose: where a repossession needs a court order (a military
    hold, GB's protected goods) none is offered: `settle_decision` would turn it into a referral
    to legal."""
    every = tuple(d.value for d in DecisionKind)
    rules = policy().profile(jurisdiction) if jurisdiction else None
    needed = court_order_needed(holds, rules)
    return tuple(d for d in every if d != DecisionKind.REPOSSESS) if needed else every


@task(name="decision-context", cache_policy=NO_CACHE, persist_result=False)
def decision_context(review_id: int, now: datetime) -> str:
    """The account's context shown above the ReviewDecision form, as markdown: days past due,
    amount to cure, jurisdiction, cure deadline, segment, holds, a settlement running and the last
    contacts. Counts,
    amounts and templates only: never a phone number, an address or a message's text."""
    with engine().connect() as connection:
        state = reviews.review_state(connection, review_id)
        assert state is not None, review_id
        context = account_context(connection, state.account_id)
        agreed = settlements.current_settlement(connection, state.account_id)
    barred = enforcement_barred(state.holds)
    lines = [
        f"### Review {state.review_id} of {state.account_id}",
        "",
        "| | |",
        "|---|---|",
        f"| days past due | {state.days_past_due} |",
        f"| amount to cure | {display(state.past_due, state.currency)} {state.currency} |",
        f"| balance | {display(state.balance, state.currency)} {state.currency} |",
        f"| jurisdiction | {state.jurisdiction} |",
        f"| cure deadline | {state.cure_deadline.isoformat() if state.cure_deadline else 'no notice owed'} |",
        f"| segment | {context.segment} |",
        f"| holds | {', '.join(sorted(state.holds)) or 'none'} |",
        f"| stage since | {state.stage_since.isoformat()} |",
        "",
    ]
    needed = court_order_needed(state.holds, policy().profile(state.jurisdiction))
    if needed:
        lines.append(f"**Court order needed** ({needed}): repossession is not offered; choose legal.")
    elif barred:
        lines.append(f"**Repossession barred** ({barred}): a repossess decision places no vendor order.")
    if agreed is not None and agreed.status == "active":
        lines.append(
            f"**Settlement agreed** ({display(agreed.amount, agreed.currency)} {agreed.currency} by "
            f"{agreed.pay_by.isoformat()}, agreed by {agreed.agreed_by}): a repossess decision places no "
            "vendor order while it runs."
        )
    lines += ["", "**Last contacts**", ""]
    if context.contacts:
        lines += ["| when | channel | template | status | reason |", "|---|---|---|---|---|"]
        lines += [
            f"| {c.at.isoformat()[:16]} | {c.channel} | {c.template} | {c.status} | {c.reason or ''} |"
            for c in context.contacts
        ]
    else:
        lines.append("none")
    return "\n".join(lines)


@task(name="open-review", cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=5)
def open_review(account_id: str, at: datetime, flow_run_id: str | None) -> ReviewState | None:
    """The account's current review (opened if the cycle has not yet), with this run recorded on it."""
    with engine().begin() as connection:
        return reviews.open_review(connection, account_id=account_id, at=at, flow_run_id=flow_run_id)


@task(name="send-cure-notice", cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=5)
def send_cure_notice(review_id: int, at: datetime) -> ReviewState:
    """Record the right-to-cure notice where the jurisdiction requires one, unless it went out
    before or a collection hold stops it; returns the review as it now stands."""
    with engine().begin() as connection:
        state = reviews.review_state(connection, review_id, lock=True)
        assert state is not None, review_id
        if _notice(connection, state, at):
            state = reviews.review_state(connection, review_id)
            assert state is not None
        return state


@task(name="load-review", cache_policy=NO_CACHE, persist_result=False)
def load_review(review_id: int) -> ReviewState:
    with engine().connect() as connection:
        state = reviews.review_state(connection, review_id)
    assert state is not None, review_id
    return state


def _decide(
    connection: Connection,
    state: ReviewState,
    *,
    decision: str,
    reviewer: str,
    reason: str,
    at: datetime,
    source: str,
) -> Decided:
    settled = settle_decision(
        DecisionKind(decision), holds=state.holds, rules=policy().profile(state.jurisdiction)
    )
    after, changed = reviews.record_decision(
        connection,
        review_id=state.review_id,
        settled=settled,
        reviewer=reviewer,
        reason=reason,
        at=at,
        source=source,
    )
    decision = after.decision or settled.decision.value
    decided = Decided(after, decision, settled.requested.value, settled.note, None, changed)
    if changed and settled.order_vehicle:
        assert after.decided_at is not None
        order = vendor_orders.create_vendor_order(
            connection, state=after, at=after.decided_at, reviewer=reviewer
        )
        # A payment received but not yet applied (the cycle applies it), or a settlement agreed,
        # was not in the reviewer's view: the order is withdrawn at once, before it reaches the
        # agency, not at a later cycle.
        if vendor_orders.cancel_vendor_orders(
            connection, as_of=after.decided_at, account_id=state.account_id
        ):
            note = (
                "order cancelled at once: a payment not yet applied or a settlement agreed overtook it "
                "(the timeline says which)"
            )
            return replace(decided, note=note, order_status="cancelled", order_reason=note)
        # One that cannot be sent (no VIN or mailing address) sent the review back to a person just
        # now (`cancel_vendor_orders`): the reviewer is told here, not left to find it in the list.
        written = assignments.list_assignments(connection, account_ids=[state.account_id])
        row = next((r for r in written if r.order_id == order), None)
        if row is None or row.status != "blocked":
            return replace(decided, order_id=order, order_status="placed")
        now = reviews.current_review(connection, state.account_id)
        back = now.review_id if now is not None and now.review_id != after.review_id else None
        return replace(
            decided, order_id=order, order_status="blocked", order_reason=row.reason, reopened_review_id=back
        )
    if changed and settled.decision is DecisionKind.REPOSSESS:
        # Approved while a hold bars enforcement (`settle_decision`): no order; the review goes back
        # to a person by the next refresh (`vendor_orders.cancel_vendor_orders`).
        return replace(decided, order_status="withheld", order_reason=enforcement_barred(state.holds))
    return decided


@task(name="record-decision", cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=5)
def record_decision(
    review_id: int, decision: str, reviewer: str, reason: str, at: datetime, source: str
) -> Decided:
    """Store the reviewer's decision (the first one stored stands) and, for an approved
    repossession that no hold forbids, place the vendor order; a military hold turns it into a
    referral to legal (SCRA)."""
    with engine().begin() as connection:
        state = reviews.review_state(connection, review_id, lock=True)
        assert state is not None, review_id
        if not state.closed and not state.in_review:
            # The account left review while the run waited (a payment's account run cured it; the
            # cycle closes such reviews only at its next run): nothing is left to decide, as
            # `decide_review` refuses. The review closes; the caller is told nothing was recorded.
            reviews.close_review(
                connection, review_id=review_id, reason=f"account is now {state.stage}", at=at
            )
            closed = reviews.review_state(connection, review_id)
            assert closed is not None
            return Decided(closed, decision, decision, None, None, False)
        return _decide(
            connection, state, decision=decision, reviewer=reviewer, reason=reason, at=at, source=source
        )


@task(name="close-review", cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=5)
def close_review(review_id: int, reason: str, at: datetime) -> bool:
    with engine().begin() as connection:
        return reviews.close_review(connection, review_id=review_id, reason=reason, at=at)


# -- the CLI ----------------------------------------------------------------------------------------


def decide_review(
    engine_: Engine,
    *,
    account_id: str,
    decision: str,
    reviewer: str,
    reason: str,
    at: datetime,
) -> Decided:
    """Record a decision given on the command line; ReviewError when there is no review to decide
    or it may not be decided yet. The caller resumes the waiting flow run."""
    if not reviewer.strip() or not reason.strip():
        raise ReviewError("a decision needs the reviewer's name and a reason")
    with engine_.begin() as connection:
        accounts.lock_accounts(connection, [account_id])
        state = reviews.current_review(connection, account_id)
        if state is None:
            raise ReviewError(f"account {account_id} has no repossession review")
        if state.closed and state.decision is None:
            raise ReviewError(f"review {state.review_id} of {account_id} is closed: {state.reason}")
        if state.closed:
            # Decided before (by the UI form, or this command run twice): report it, change nothing.
            assert state.decision is not None
            return Decided(state, state.decision, state.decision, None, None, False)
        why = refusal(state, at, decision)
        if why is not None:
            raise ReviewError(f"{account_id}: {why}")
        return _decide(
            connection,
            state,
            decision=decision,
            reviewer=reviewer.strip(),
            reason=reason.strip(),
            at=at,
            source="cli",
        )


def waiting(engine_: Engine, *, now: datetime) -> list[Waiting]:
    with engine_.connect() as connection:
        return waiting_list(connection, now=now)
