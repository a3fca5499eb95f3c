"""The legal referral (DESIGN §2, §7): one flow run per referral, from filing to judgment.

A run opens the referral with its facts (claim = balance + fees − sale proceeds; the contract,
the default and the notices referred to; the military-status affidavit in a US court), submits
the filing through the court provider, then follows it to judgment: by polling the court each
time it is woken, and by the court's callbacks (the webhook records those on the referral, and
the run reads them back). It waits between polls like a review waits for its reviewer:
suspended under a deployment, paused without one, keyed `court-wait-1`, `court-wait-2`, …

It ends when the court ends the case (judgment: the lifecycle closes the account), when the
filing is rejected (back to the legal team's queue with the court's reason: `arrears review
list`), or when the account pays or settles (the filing is withdrawn, or its dismissal left to
counsel where the gateway cannot withdraw it any more).
"""

from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Cancelled, State

from flows.repossession_review import (
    Wake,
    deployment_exists,
    later_of,
    now_of,
    paused_runs,
    runs_in,
    wait_for,
)
from tasks.legal import (
    load_referral,
    open_referral,
    poll_filing,
    referral_work,
    referrals_followed,
    request_dismissal,
    submit_filing,
)
from tasks.providers import court_session

__all__ = ["REFERRAL_DEPLOYMENT", "legal_referral", "start_referrals"]

REFERRAL_DEPLOYMENT = "legal-referral/referral"
_DONE = frozenset({"judgment", "settled", "dismissed", "dismissing", "cancelled"})


def _name() -> str:
    return f"referral {flow_run.parameters['account_id']}"


@flow(
    name="legal-referral",
    flow_run_name=_name,
    description="One legal referral: build the filing, submit it to the court, follow it to judgment.",
)
async def legal_referral(account_id: str, as_of: str | None = None) -> dict[str, Any] | State:
    """Refer `account_id` to court, as of `as_of` (ISO 8601; now when omitted)."""
    log = get_run_logger()
    now = now_of(as_of)
    with court_session():
        state = open_referral(account_id, now)
        if state is None:
            return Cancelled(message=f"{account_id} is not in legal referral, or there is nothing to claim")
        waits = 0
        while True:
            if state.paid and state.status not in _DONE:
                state = request_dismissal(state.referral_id, now)
            elif state.filing_id is None and state.status == "draft":
                state = submit_filing(state.referral_id, now)
            elif state.filing_id is not None and state.status not in _DONE and state.status != "rejected":
                state = poll_filing(state.referral_id, now)
            if state.status in _DONE or state.status == "rejected":
                log.info("referral %s: %s", state.referral_id, state.status)
                queue = "legal team" if state.status in ("rejected", "dismissing") else None
                return {**state.as_json(), "queue": queue}
            waits += 1
            wake = await wait_for(Wake, key=f"court-wait-{waits}")
            now = later_of(now, wake.as_of)
            state = load_referral(state.referral_id)


def start_referrals(
    instant: datetime,
    as_of: str | None,
    *,
    deployment: str = REFERRAL_DEPLOYMENT,
) -> dict[str, int]:
    """After advance: start a run for each account in legal referral that no live run works on
    (a new referral, or one whose run died before the case ended: restarted at most once a day,
    it reads back what was done), on `deployment` when it is served; then wake every waiting
    referral run to poll its court."""
    from prefect.deployments import run_deployment
    from prefect.flow_runs import resume_flow_run

    counts = {"referral_runs_started": 0, "referral_runs_woken": 0}
    work = referral_work()
    following = referrals_followed()
    if deployment_exists(deployment):
        live = {str(run.name) for run in _live_runs("legal-referral")}
        for account_id, episode, referral_id, status in work:
            if f"referral {account_id}" in live or (status in _DONE or status == "rejected"):
                continue
            key = f"referral-{account_id.lower()}-{episode}"
            if referral_id is not None:  # opened before: its run ended without finishing the case
                key += f"-restart-{instant:%Y%m%d}"
            run_deployment(
                deployment,
                parameters={"account_id": account_id, "as_of": as_of},
                flow_run_name=f"referral {account_id}",
                tags=["stage:legal_referral", f"account:{account_id.lower()}"],
                idempotency_key=key,
                timeout=0,
                as_subflow=False,
            )
            counts["referral_runs_started"] += 1
    for run in paused_runs("legal-referral"):
        key = str(run.state.state_details.pause_key or "") if run.state else ""
        # Only runs following one of our open referrals (an account that has since paid is one:
        # its run, woken, asks for the dismissal).
        mine = (run.parameters or {}).get("account_id") in following
        if key.startswith("court-wait") and mine:
            resume_flow_run(run.id, run_input={"as_of": as_of})
            counts["referral_runs_woken"] += 1
    return counts


def _live_runs(flow_name: str) -> list[Any]:
    """Runs of `flow_name` that have not ended (scheduled, pending, running, paused)."""
    from prefect.client.schemas.objects import StateType

    return runs_in(
        flow_name,
        [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED, StateType.CANCELLING],
    )
