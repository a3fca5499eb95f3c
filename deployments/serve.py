"""Deployments of arrears' flows with their schedules, for `arrears serve` (one process) and
`prefect.yaml` (work pools). Both come from `deployments()` and the same settings.

Concurrency is bounded at both levels (the operator check of 2026-12-02: an unbounded runner
started 94 review runs at once, 11.3 GB): the served process runs at most `SERVE_LIMIT` flow runs
at a time, and each deployment has its own limit, so that thousands of review runs queue as
Scheduled instead of starting together. A suspended run holds no slot (Prefect releases a
deployment's slot when a run leaves Running). `prefect.yaml` declares the same limits; both
numbers live in deployments/limits.py.
"""

import threading
from datetime import UTC, timedelta
from typing import Any

from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
from prefect.schedules import Interval

from arrears.settings import get_settings
from deployments.limits import CONCURRENCY, SERVE_LIMIT
from deployments.schedules import cycle_schedule, furnishing_schedule
from flows.account_lifecycle import account_lifecycle
from flows.bureau_furnishing import bureau_furnishing
from flows.daily_cycle import cycle_shard, daily_cycle, dispatch_outbox
from flows.legal_referral import REFERRAL_DEPLOYMENT, legal_referral
from flows.repossession_review import REVIEW_DEPLOYMENT, repossession_review

__all__ = [
    "CONCURRENCY",
    "OUTBOX_INTERVAL",
    "SERVE_LIMIT",
    "deployments",
    "describe_schedule",
    "name_upcoming_runs",
    "serve_all",
]

# Deferred messages become due at the borrower's 08:00; a quarter-hour sweep sends them promptly.
OUTBOX_INTERVAL = timedelta(minutes=15)


def deployments() -> list[Any]:
    settings = get_settings()
    served = [
        daily_cycle.to_deployment(
            name="daily",
            schedules=[cycle_schedule(settings)],
            tags=["arrears", "cycle"],
            description=f"The daily cycle at {settings.cycle_cron} ({settings.lender_timezone}).",
        ),
        dispatch_outbox.to_deployment(
            name="outbox",
            schedules=[Interval(OUTBOX_INTERVAL)],
            tags=["arrears", "dispatch"],
            description="Sends outbox messages as they become due; looks up receipts that never came.",
        ),
        cycle_shard.to_deployment(
            name="shard",
            tags=["arrears", "cycle"],
            description="One shard of a fanned-out cycle: `daily_cycle(fan_out='cycle-shard/shard')`.",
        ),
        bureau_furnishing.to_deployment(
            name="monthly",
            schedules=[furnishing_schedule(settings)],
            tags=["arrears", "bureau"],
            description="Furnish the previous month's Metro 2 file to the credit bureau.",
        ),
        account_lifecycle.to_deployment(
            name="account",
            tags=["arrears", "account"],
            description="One account, on an event (payment, reply, court status).",
        ),
        # Started by the daily cycle, one run per review or referral; they wait suspended (no process).
        repossession_review.to_deployment(
            name=REVIEW_DEPLOYMENT.split("/")[1],
            tags=["arrears", "review"],
            description="One repossession review: cure notice, cure period, a person's ReviewDecision.",
        ),
        legal_referral.to_deployment(
            name=REFERRAL_DEPLOYMENT.split("/")[1],
            tags=["arrears", "legal"],
            description="One legal referral: filing through the court provider, followed to judgment.",
        ),
    ]
    return [_limited(d) for d in served]


def _limited(deployment: Any) -> Any:
    deployment.concurrency_limit = CONCURRENCY[deployment.name]
    return deployment


def describe_schedule(schedule: Any) -> str:
    """A schedule as people read it: `cron 0 9 * * * (Asia/Shanghai)`, `every 15 minutes`."""
    if isinstance(schedule, CronSchedule):
        return f"cron {schedule.cron} ({schedule.timezone or 'UTC'})"
    if isinstance(schedule, IntervalSchedule):
        seconds = int(schedule.interval.total_seconds())
        for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
            if seconds % size == 0:
                n = seconds // size
                return f"every {n} {unit}{'s' if n != 1 else ''}"
        return f"every {seconds} seconds"
    return str(schedule)


def name_upcoming_runs() -> int:
    """Name the scheduled runs of the daily cycle, the outbox sweep and the monthly furnishing for
    their work, as they will be named when they start (`daily-cycle 2026-12-03`, `dispatch
    2026-12-03T01:15Z`, `bureau-furnishing 2026-11`): Prefect's scheduler gives them random
    names until then. Returns how many it renamed."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    from arrears.clock import business_date
    from arrears.metro2 import Period

    zone = get_settings().lender_timezone
    names = {
        "daily-cycle/daily": lambda when: f"daily-cycle {business_date(when, zone).isoformat()}",
        "dispatch-outbox/outbox": lambda when: f"dispatch {when.astimezone(UTC):%Y-%m-%dT%H:%MZ}",
        # The month before the run's business date: what `bureau_furnishing` furnishes then.
        "bureau-furnishing/monthly": lambda when: (
            f"bureau-furnishing {Period.of(business_date(when, zone)) - 1}"
        ),
    }
    renamed = 0
    with get_client(sync_client=True) as client:
        for deployment, name_of in names.items():
            deployment_id = client.read_deployment_by_name(deployment).id
            for run in client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
                ),
                limit=200,
            ):
                when = run.expected_start_time or run.next_scheduled_start_time
                if when is not None and run.name != name_of(when):
                    client.update_flow_run(run.id, name=name_of(when))
                    renamed += 1
    return renamed


def _keep_naming(stop: threading.Event, every: float = 60.0) -> None:
    while not stop.wait(every):
        try:
            name_upcoming_runs()
        except Exception:  # a server restarting: the next round names them
            continue


def serve_all(limit: int = SERVE_LIMIT) -> None:
    """Serve every deployment from this process until interrupted, at most `limit` runs at once;
    upcoming runs are named for their work every minute, automations applied first."""
    from prefect import serve

    from deployments.automations import apply_automations

    apply_automations()
    stop = threading.Event()
    threading.Thread(target=_keep_naming, args=(stop,), name="name-upcoming-runs", daemon=True).start()
    try:
        serve(*deployments(), limit=limit)
    finally:
        stop.set()
