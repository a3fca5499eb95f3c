"""Deployments of arrears' flows with their schedules, for `arrears serve` (one process) and
`prefect.yaml` (work pools). Both come from `deployments()` and the same settings."""

from datetime import timedelta
from typing import Any

from prefect.schedules import Cron, Interval

from arrears.settings import get_settings
from flows.account_lifecycle import account_lifecycle
from flows.bureau_furnishing import bureau_furnishing
from flows.daily_cycle import cycle_shard, daily_cycle, dispatch_outbox
from flows.legal_referral import REFERRAL_DEPLOYMENT, legal_referral
from flows.repossession_review import REVIEW_DEPLOYMENT, repossession_review

__all__ = ["OUTBOX_INTERVAL", "deployments", "serve_all"]

# Deferred messages become due at the borrower's 08:00; a quarter-hour sweep sends them promptly.
OUTBOX_INTERVAL = timedelta(minutes=15)


def deployments() -> list[Any]:
    settings = get_settings()
    return [
        daily_cycle.to_deployment(
            name="daily",
            schedules=[Cron(settings.cycle_cron, timezone=settings.lender_timezone)],
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
            # The 3rd of each month: the previous month's last cycle has run (its default period).
            schedules=[Cron("0 6 3 * *", timezone=settings.lender_timezone)],
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


def serve_all() -> None:
    """Serve every deployment from this process until interrupted."""
    from prefect import serve

    serve(*deployments())
