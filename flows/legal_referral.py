"""The legal referral (DESIGN §2, §7): one flow run per referral, from filing to judgment.

A run opens the referral with its facts (claim = balance + fees − sale proceeds; the contract,
the default and the notices referred to; the military-status affidavit in a US court), submits
the filing through the court provider, then follows it to judgment: by polling the court each
time it is woken, and by the court's callbacks (the webhook records those on the referral, and
the run reads them back). It waits between polls like a review waits for its reviewer:
suspended under a deployment, paused without one, keyed `court-wait-1`, `court-wait-2`, …

A hold that stops collection (bankruptcy, dispute, death, Breathing Space) keeps a drafted filing
back until it is lifted; one placed after the filing is put on record for counsel, who must tell
the court (the automatic stay), while the case is still followed. So is a military hold placed
after a filing whose affidavit swore the defendant is not in military service (SCRA).

It ends when the court ends the case (judgment: the lifecycle closes the account; in China a
payment order that took effect, neither paid nor objected to within 15 days of service, is one:
enforceable like a judgment), when the filing is rejected or the respondent objects to the payment
order (支付令失效; back to the legal team's queue with the court's reason: `arrears review list`,
where counsel decides whether to sue), or when the account pays, settles or cures (the filing is
withdrawn, or its dismissal left to counsel where the gateway cannot withdraw it any more). The
legal team's decisions end it too (`arrears referral close`: a suit off-system, none); a rejected
filing they refile (`arrears referral refile`) is a new referral, drafted from today's facts, which
a run woken on the old one files in its place, or `start_referral` starts a run for.
"""

from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Cancelled, State

from arrears.clock import business_date
from arrears.review import enforcement_barred
from arrears.settings import get_settings
from arrears.storage.referrals import MILITARY_HELD, REFERRAL_ENDED, REFERRAL_TO_LEGAL_TEAM, REFILED
from flows._results import FAILURE_TEXT
from flows._waiting import (
    RunRequest,
    cycle_run_id,
    cycle_tags,
    deployment_exists,
    follow,
    live_runs,
    now_of,
    pause_key,
    paused_runs,
    resume_each,
    start_run,
    start_runs,
)
from tasks.database import installation
from tasks.legal import (
    ReferralState,
    hold_filing,
    load_referral,
    open_referral,
    poll_filing,
    referral_accounts,
    referral_work,
    request_dismissal,
    submit_filing,
)
from tasks.logs import run_logger
from tasks.providers import court_session

__all__ = ["REFERRAL_DEPLOYMENT", "legal_referral", "start_referral", "start_referrals"]

REFERRAL_DEPLOYMENT = "legal-referral/referral"
_ENDED = REFERRAL_ENDED  # the run has nothing more to do
_DONE = _ENDED - {"rejected"}  # the case is over (a rejected filing goes back to the legal team)
# To the legal team: a rejected filing, a payment order objected to (counsel decides whether to sue;
# if the account pays, `arrears review list` still shows it: the court takes an objected order to
# litigation unless the applicant says no), a dismissal counsel must file.
_TO_LEGAL_TEAM = REFERRAL_TO_LEGAL_TEAM | {"dismissing"}


def _name() -> str:
    return f"referral {flow_run.parameters['account_id']}"


@flow(
    name="legal-referral",
    flow_run_name=_name,
    description="One legal referral: build the filing, submit it to the court, follow it to judgment.",
    persist_result=False,
    result_serializer=FAILURE_TEXT,
)
async def legal_referral(
    account_id: str, as_of: str | None = None, cycle_run: str | None = None
) -> dict[str, Any] | State:
    """Refer `account_id` to court, as of `as_of` (ISO 8601; now when omitted). `cycle_run` is
    the id of the daily cycle's flow run that started this one: the UI shows it with the
    parameters, and `arrears review list` links it."""
    now = now_of(as_of)
    with court_session():
        state = open_referral(account_id, now)
        if state is None:
            return Cancelled(message=f"{account_id} is not in legal referral, or there is nothing to claim")
        return await follow("court", state, now, step=_court_step, reload=_reload)


def _court_step(state: ReferralState, now: datetime) -> tuple[ReferralState, dict[str, Any] | None]:
    """The referral's next move (withdraw, submit or poll), then its outcome, or None while the
    case goes on."""
    if state.status == REFILED:  # the legal team refiled it: the new referral is this run's now
        refiled = open_referral(state.account_id, now)
        state = refiled if refiled is not None and refiled.referral_id != state.referral_id else state
    barred = enforcement_barred(state.holds)
    if state.paid and state.status not in _DONE:
        state = request_dismissal(state.referral_id, now)
    elif state.filing_id is None and state.status == "draft":
        # Under a bankruptcy, dispute, death or Breathing Space hold nothing is filed: the run
        # waits, woken by each cycle, and files once the hold is lifted.
        state = (
            hold_filing(state.referral_id, barred, now) if barred else submit_filing(state.referral_id, now)
        )
    elif state.filing_id is not None and state.status not in _ENDED:
        if barred:  # filed before the hold: counsel tells the court; the case is still followed
            hold_filing(state.referral_id, barred, now)
        if state.affidavit_outdated:  # SCRA: no default judgment on an untrue military affidavit
            hold_filing(state.referral_id, MILITARY_HELD, now)
        state = poll_filing(state.referral_id, now)
    if state.status not in _ENDED:
        return state, None
    get_run_logger().info("referral %s: %s", state.referral_id, state.status)
    queue = "legal team" if state.status in _TO_LEGAL_TEAM else None
    return state, {**state.as_json(), "queue": queue}


def _reload(state: ReferralState) -> ReferralState:
    return load_referral(state.referral_id)


def start_referrals(
    instant: datetime,
    as_of: str | None,
    cycle_id: int | None = None,
    *,
    deployment: str = REFERRAL_DEPLOYMENT,
) -> dict[str, int]:
    """After advance: start a run for each account in legal referral that no live run works on
    (a new referral, or one whose run died before the case ended: restarted at most once a day,
    it reads back what was done), on `deployment` when it is served, in bounded batches that
    never fail the cycle; then wake every waiting referral run to poll its court."""
    work = referral_work()
    ours = referral_accounts()
    counts = {"referral_runs_started": 0, "referral_runs_deferred": 0}
    if deployment_exists(deployment):
        counts = _start(deployment, work, instant, as_of, cycle_id)
    return {**counts, "referral_runs_woken": _wake(ours, as_of)}


def _start(
    deployment: str,
    work: list[tuple[str, int, int | None, str | None]],
    instant: datetime,
    as_of: str | None,
    cycle_id: int | None,
) -> dict[str, int]:
    """One run per referral that no live run follows and whose case has not ended."""
    live = {str(run.name) for run in live_runs("legal-referral")}
    tags = cycle_tags(business_date(instant, get_settings().lender_timezone).isoformat(), cycle_id)
    cycle_run = cycle_run_id()
    base = f"{installation()}-referral"  # namespaced: one Prefect server may serve several databases
    requests: list[RunRequest] = []
    for account_id, episode, referral_id, status in work:
        if f"referral {account_id}" in live or status in _ENDED:
            continue
        key = f"{base}-{account_id.lower()}-{episode}"
        if referral_id is not None:  # opened before: its run ended without finishing the case
            key += f"-restart-{instant:%Y%m%d}"
        requests.append(
            RunRequest(
                key,
                f"referral {account_id}",
                {"account_id": account_id, "as_of": as_of, "cycle_run": cycle_run},
                ("stage:legal_referral", f"account:{account_id.lower()}", *tags),
            )
        )
    started = start_runs(deployment, requests, bind=lambda runs: None)  # found again by name
    if started.error:
        run_logger().warning(
            "referral runs: %d started, %d deferred to the next cycle (%s)",
            started.created,
            started.deferred,
            started.error,
        )
    return {"referral_runs_started": started.created, "referral_runs_deferred": started.deferred}


def _wake(ours: set[str], as_of: str | None) -> int:
    """Resume the runs waiting on their court, so each polls it once more, or ends with a case a
    callback ended while it waited."""
    # Only runs of this database's referrals. Open ones poll (an account that has since paid asks
    # for the dismissal); ended ones (a judgment or a rejection by callback) finish. One that cannot
    # be resumed now is left to the next cycle, never failing this one (`resume_each`).
    return resume_each(
        [
            (run, {"as_of": as_of})
            for run in paused_runs("legal-referral")
            if pause_key(run).startswith("court-wait") and (run.parameters or {}).get("account_id") in ours
        ]
    )


def start_referral(account_id: str, as_of: str | None, *, deployment: str = REFERRAL_DEPLOYMENT) -> str:
    """Set the account's referral going now rather than at the next cycle (`arrears referral
    refile`): a run waiting on its court is woken (it takes up the account's present referral), a
    live one is left to do so, else one is started on `deployment` when it is served. Says what
    was done; raises what Prefect raises (the caller says the next cycle does it instead)."""
    name = f"referral {account_id}"
    live = live_runs("legal-referral", [name])
    waiting = [r for r in live if pause_key(r).startswith("court-wait")]
    if waiting:
        resume_each([(waiting[0], {"as_of": as_of})])
        return f"run {waiting[0].id} woken: it files the referral now"
    if live:
        return f"run {live[0].id} is live on the account: it files the referral at its next step"
    if not deployment_exists(deployment):
        return f"{deployment} is not served here (arrears serve): the referral is filed once a run starts"
    work = {a: (episode, referral_id) for a, episode, referral_id, _ in referral_work.fn()}
    episode, referral_id = work.get(account_id, (0, None))
    run = start_run(
        deployment,
        parameters={"account_id": account_id, "as_of": as_of, "cycle_run": None},
        name=name,
        tags=["stage:legal_referral", f"account:{account_id.lower()}"],
        # One run per referral: the cycle's `_start` finds it live by name and starts none beside it.
        key=f"{installation()}-referral-{account_id.lower()}-{episode}-referral-{referral_id}",
    )
    return f"run {run.id} started: it files the referral"
