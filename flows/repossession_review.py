"""The repossession review (DESIGN §7): one flow run per review, waiting on the law and on a person.

A run sends the right-to-cure notice where the jurisdiction requires one, waits until the cure
period is over (and a promise to pay still running is judged: `tasks.review.refusal`), ends
itself (Cancelled) if the account cures or leaves review meanwhile, then waits for a
`ReviewDecision` (decision, reviewer, reason): given in the Prefect UI's form, or by
`arrears review decide`, which resumes the run through Prefect's API. The decision is stored in
our `Review` row and audit trail, where the lifecycle reads it.

Under a deployment the run is suspended while it waits (`suspend_flow_run`): it holds no process,
and on resume it re-runs from the top, reading back from our tables every step already done.
Without a deployment (tests, the demo) it pauses in its process instead (`pause_flow_run`).
Either way the waits are keyed (`cure-wait-1`, `cure-wait-2`, …, `decision`) so a re-run replays
the answers it already got, in order, and continues where it stopped.

The daily cycle's part (`start_reviews`, after advance) is bulk: reviews opened, closed and
notified in a few queries; then one run started per new review on the served deployment, and
runs woken that have something to do (their cure period ended, their account changed, or a
decision was recorded while the run could not be resumed). A review sent back to a person because
its approved order ended undone (closed by the agency without the car, called off while the
account stayed in review, blocked for want of data: `storage.vendor_orders`) is a new review, and
gets its run the same way. The cycle passes its own instant to the runs it starts and wakes, so
simulated days keep one timeline.

The flow is async on purpose: a sync flow run costs about a second of heartbeat teardown
(PREFECT.md), and a portfolio has many reviews.
"""

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import pydantic
from prefect import flow, get_run_logger
from prefect.client.schemas.objects import FlowRun
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.states import Cancelled, State
from pydantic import Field

from arrears.clock import business_date
from arrears.settings import get_settings
from flows._results import FAILURE_TEXT
from flows._waiting import (
    RunRequest,
    cancel_each,
    cycle_link,
    cycle_run_id,
    cycle_tags,
    dead_runs,
    deployment_exists,
    follow,
    now_of,
    pause_key,
    paused_runs,
    resume_each,
    start_runs,
    wait_for,
)
from tasks.agency import (
    agency_configured,
    assignments_waiting,
    assignments_working,
    push_assignments,
    track_assignments,
)
from tasks.database import installation
from tasks.letters import letters_in_the_post, send_letters, track_letters
from tasks.lifecycle_letters import (
    readdress_letters,
    write_arrears_notices,
    write_collection_notices,
    write_validation_notices,
)
from tasks.logs import run_logger
from tasks.mailing import mail_letters
from tasks.recovery import settle_recoveries
from tasks.review import (
    Decided,
    Prepared,
    ReviewState,
    close_review,
    decision_context,
    decision_options,
    load_review,
    open_review,
    prepare_reviews,
    record_decision,
    refusal,
    reviews_of_runs,
    reviews_to_run,
    send_cure_notice,
    set_review_runs,
)

__all__ = [
    "REVIEW_DEPLOYMENT",
    "ReviewDecision",
    "decision_form",
    "follow_letters_and_orders",
    "follow_orders",
    "repossession_review",
    "start_reviews",
    "start_waiting_reviews",
    "wake_reviews",
]

REVIEW_DEPLOYMENT = "repossession-review/review"


class ReviewDecision(RunInput):
    """The reviewer's decision at the end of a repossession review."""

    decision: Literal["repossess", "legal", "negotiate"] = Field(
        description="repossess: order the vehicle's recovery; legal: refer to court; "
        "negotiate: back to negotiation."
    )
    # `pattern`: more than blanks. Prefect's server checks the form's input against this schema, so
    # a name of spaces is refused in the form itself, as `arrears review decide` refuses it.
    reviewer: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"\S",
        description="Your name. Prefect's server has no users: arrears records the reviewer from this field.",
    )
    reason: str = Field(
        min_length=1, max_length=1000, pattern=r"\S", description="Why: kept in the account's audit trail."
    )


def decision_form(options: tuple[str, ...], context: str) -> type[ReviewDecision]:
    """The form a reviewer sees: the account's context above it, and only the decisions the
    account's holds allow."""
    form: type[ReviewDecision] = ReviewDecision
    if set(options) != {"repossess", "legal", "negotiate"}:
        allowed = Literal[options]  # type: ignore[valid-type]  # built from the account's holds
        form = pydantic.create_model(
            "ReviewDecision",
            __base__=ReviewDecision,
            decision=(allowed, Field(description=f"One of: {', '.join(options)} (the account's holds)")),
        )
    return form.with_initial_data(description=context)


def _name() -> str:
    return f"review {flow_run.parameters['account_id']}"


@flow(
    name="repossession-review",
    flow_run_name=_name,
    description="One repossession review: right-to-cure notice, cure period, a reviewer's decision.",
    persist_result=False,
    result_serializer=FAILURE_TEXT,
)
async def repossession_review(
    account_id: str, as_of: str | None = None, cycle_run: str | None = None
) -> dict[str, Any] | State:
    """Review `account_id`, as of `as_of` (ISO 8601; now when omitted). `cycle_run` is the id of
    the daily cycle's flow run that started this one: the UI shows it with the parameters and the
    decision form links back to it."""
    now = now_of(as_of)
    state = open_review(account_id, now, str(flow_run.id))
    if state is None:
        return Cancelled(message=f"{account_id} is not in repossession review")
    cured: _Ready | State = await follow("cure", state, now, step=_cure_period, reload=_reload)
    if isinstance(cured, State):
        return cured
    return await _decision(cured.state, cured.now, cycle_run)


@dataclass(frozen=True, slots=True)
class _Ready:
    """The cure period is over, or a decision is already recorded: the review, as of `now`."""

    state: ReviewState
    now: datetime


def _cure_period(state: ReviewState, now: datetime) -> tuple[ReviewState, _Ready | State | None]:
    """One look at the cure period: the notice sent where it is owed, then ready for the
    decision, cancelled, or (None) still to wait."""
    if state.decision is not None:  # recorded by `arrears review decide` meanwhile
        return state, _Ready(state, now)
    state = send_cure_notice(state.review_id, now)
    if state.letter_status == "pending":  # written by this step or the cycle, not yet sent
        # Its own letter only: thousands of reviews may wake at once, and the cycle mails the rest.
        send_letters(as_of=now, account_id=state.account_id)
        state = load_review(state.review_id)
    if state.closed or not state.in_review:
        if not state.closed:
            close_review(state.review_id, f"account is now {state.stage}", now)
        return state, Cancelled(message=f"review {state.review_id} closed: account is now {state.stage}")
    why = refusal(state, now)
    if why is None:
        return state, _Ready(state, now)
    get_run_logger().info("review %s waits: %s", state.review_id, why)
    return state, None


def _reload(state: ReviewState) -> ReviewState:
    return load_review(state.review_id)


async def _decision(state: ReviewState, now: datetime, cycle_run: str | None) -> dict[str, Any] | State:
    """The decision already recorded, or the one a reviewer gives now."""
    if state.decision is None:
        context = "\n\n".join(filter(None, [decision_context(state.review_id, now), cycle_link(cycle_run)]))
        form = decision_form(decision_options(state.holds, state.jurisdiction), context)
        answer = await wait_for(form, key="decision")
        at = max(now, datetime.now(UTC))
        # On one line and trimmed, as the CLI records them (a run suspended before the form
        # refused blanks may still be answered with them: the audit trail then says so).
        reviewer = " ".join(answer.reviewer.split()) or "(no name given in the form)"
        reason = answer.reason.strip() or "(no reason given in the form)"
        decided: Decided = record_decision(state.review_id, answer.decision, reviewer, reason, at, "prefect")
        if not decided.changed and decided.state.decision is None:
            # The review closed without a decision while the run waited (the account paid and left
            # review): the form's answer must not read as taken, in the run's log or on its page.
            why = decided.state.reason or "closed"
            get_run_logger().warning(
                "review %s: the form's decision (%s by %s) was NOT recorded: the review is %s",
                state.review_id,
                answer.decision,
                reviewer,
                why,
            )
            return Cancelled(
                message=f"review {state.review_id} {why} before the decision arrived: "
                f"{answer.decision} was not recorded"
            )
        stored = (decided.state.decision, decided.state.reviewer)
        if not decided.changed and stored[0] is not None and stored != (answer.decision, reviewer):
            # Another reviewer decided first (`arrears review decide` at the same moment): the first
            # decision stands, and the one who answered this form must not believe theirs was taken.
            get_run_logger().warning(
                "review %s: the form's decision (%s by %s) was NOT recorded: %s by %s was recorded "
                "first and stands",
                state.review_id,
                answer.decision,
                reviewer,
                stored[0],
                stored[1],
            )
    else:
        decided = Decided(state, state.decision, state.decision, None, None, False)
    if decided.order_id and agency_configured():
        push_assignments()  # the approved order goes to the agency now, not at the next cycle
    get_run_logger().info("review %s: %s", state.review_id, decided.decision)
    said = decided.order_said()
    if said:  # the form's reviewer reads the run's log: the order they approved is not under way
        get_run_logger().warning("review %s: %s", state.review_id, said)
    return decided.as_json()


# -- the daily cycle's part ---------------------------------------------------------------------------


def follow_letters_and_orders(as_of: datetime | None = None) -> dict[str, int]:
    """`follow_orders` and then `tasks.mailing.mail_letters`: what `arrears dispatch` runs after
    its dispatch, so a one-off cycle and dispatch keep letters and orders moving."""
    counts = Counter(follow_orders(as_of))
    counts.update(mail_letters(as_of))  # recoveries settled before and after the letters add up
    return dict(counts)


def follow_orders(as_of: datetime | None = None) -> dict[str, int]:
    """Send the repossession orders placed or cancelled since last time and look up assignments
    whose webhooks have not come, and letters in the post (a mailed event starts a cure period,
    which the reviews' wake reads); move on the accounts whose car was recovered (closed, or the
    notice of sale written first); write the 催收函 of accounts that entered legal referral, the
    notices of sums in arrears GB accounts are owed and the validation notices of US-CA accounts
    sent their first message, and again the letters an import gave an address or that waited too
    long. The cycle runs it with the reviews, and mails the letters beside its dispatch
    (`tasks.mailing`); `arrears dispatch` after its own (`follow_letters_and_orders`), so a first
    text it sends is followed by its notice at once."""
    counts: dict[str, int] = {}
    if agency_configured() and assignments_waiting():
        counts |= push_assignments()
    if agency_configured() and assignments_working():
        counts |= track_assignments()
    if letters_in_the_post():
        counts |= track_letters()
    settled = settle_recoveries(as_of)  # a notice of sale written here is mailed by `mail_letters`
    now = as_of or datetime.now(UTC)
    counts |= readdress_letters(now)  # letters that waited for an address an import has brought
    counts |= write_collection_notices(now)  # the 催收函 of CN accounts in legal referral
    counts |= write_arrears_notices(now)  # the notices of sums in arrears of GB accounts (CCA s.86B)
    counts |= write_validation_notices(now)  # the validation notices of US-CA accounts (Reg F 1006.34)
    return counts | settled


def start_reviews(
    instant: datetime,
    as_of: str | None,
    cycle_id: int | None = None,
    *,
    deployment: str = REVIEW_DEPLOYMENT,
) -> dict[str, int]:
    """After advance: open, close and notify reviews in bulk; start a run for each new review on
    `deployment` (when it is served); wake the runs that have something to do. `as_of` is the
    cycle's own parameter (None in production: the runs then use the clock)."""
    served = deployment_exists(deployment)
    prepared = prepare_reviews(instant, cycle_id, name_runs=served)
    counts = follow_orders(instant) | {
        "reviews_opened": prepared.opened,
        "reviews_closed": prepared.closed,
        "cure_notices": prepared.notices,
        "review_runs_started": 0,
        "review_runs_woken": 0,
        "review_runs_cancelled": 0,
    }
    if served:
        counts |= _start(deployment, prepared, instant, as_of, cycle_id)
    # Runs paused in a process (no deployment) are woken the same way as suspended ones.
    counts["review_runs_woken"], counts["review_runs_cancelled"] = wake_reviews(instant, as_of)
    return counts


def start_waiting_reviews(
    instant: datetime, as_of: str | None, deployment: str | None = None
) -> dict[str, int]:
    """Between cycles (the outbox run, every quarter hour under `arrears serve`): start the runs
    a cycle had to defer because the server refused them, and replace those that died since, so
    that a refusal costs a review minutes, not a day. Opens, closes and notifies nothing."""
    deployment = deployment or REVIEW_DEPLOYMENT  # read at call time: a test serves its own
    if not deployment_exists(deployment):
        return {}
    prepared = reviews_to_run()
    if not (prepared.without_run or prepared.with_run):
        return {}
    counts = _start(deployment, prepared, instant, as_of, None)
    return {k: v for k, v in counts.items() if v}


def _start(
    deployment: str, prepared: Prepared, instant: datetime, as_of: str | None, cycle_id: int | None
) -> dict[str, int]:
    """One run per review without a live one, started in bounded batches that never fail the
    cycle; a run that crashed, failed or never started is replaced and its review rebound."""
    dead = dead_runs([run_id for _, _, run_id in prepared.with_run])
    # The installation id namespaces the key: a key is unique across the whole Prefect server,
    # which may serve more than one arrears database (staging, tests).
    base = f"{installation()}-review"
    todo = [
        (review_id, account_id, f"{base}-{account_id.lower()}-{review_id}")
        for review_id, account_id in prepared.without_run
    ]
    todo += [
        (review_id, account_id, f"{base}-{account_id.lower()}-{review_id}-after-{run_id}")
        for review_id, account_id, run_id in prepared.with_run
        if run_id in dead
    ]
    tags = cycle_tags(business_date(instant, get_settings().lender_timezone).isoformat(), cycle_id)
    cycle_run = cycle_run_id()
    reviews = {key: review_id for review_id, _, key in todo}
    requests = [
        RunRequest(
            key,
            f"review {account_id}",
            {"account_id": account_id, "as_of": as_of, "cycle_run": cycle_run},
            ("stage:repossession_review", f"account:{account_id.lower()}", *tags),
        )
        for _, account_id, key in todo
    ]
    started = start_runs(
        deployment, requests, bind=lambda runs: set_review_runs([(reviews[k], r) for k, r in runs.items()])
    )
    if started.error:
        run_logger().warning(
            "review runs: %d started, %d deferred to the next outbox run or cycle (%s)",
            started.created,
            started.deferred,
            started.error,
        )
    return {
        "review_runs_started": started.created,
        "review_runs_found": started.found,
        "review_runs_replaced": len(dead),
        "review_runs_deferred": started.deferred,
    }


def wake_reviews(instant: datetime, as_of: str | None) -> tuple[int, int]:
    """Resume the paused review runs that can move on; cancel those with nothing left to wait for.
    A run that cannot be resumed now (resumed meanwhile by its reviewer, refused by the server) is
    left to the next cycle: it never fails this one (`resume_each`)."""
    runs = paused_runs("repossession-review")
    if not runs:
        return 0, 0
    reviews = reviews_of_runs([str(r.id) for r in runs])
    wakes: list[tuple[FlowRun, dict[str, Any]]] = []
    ended: list[tuple[FlowRun, str]] = []
    for run in runs:
        review = reviews.get(str(run.id))
        key = pause_key(run)
        if review is None:
            continue
        if key.startswith("cure-wait"):
            if review.closed or not review.in_review or refusal(review, instant) is None:
                wakes.append((run, {"as_of": as_of}))
        elif key == "decision":
            if review.decision is not None:
                # Decided on the command line while the run could not be resumed: hand it over now.
                given = {
                    "decision": review.decision,
                    "reviewer": review.reviewer or "unknown",
                    "reason": review.reason or "recorded in arrears",
                }
                wakes.append((run, given))
            elif review.closed or not review.in_review:
                ended.append((run, f"account is now {review.stage}"))
    return resume_each(wakes), cancel_each(ended)
