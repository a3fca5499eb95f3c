"""The schedules of the daily cycle and the monthly furnishing, from the settings: one place for
`arrears serve` (deployments/serve.py) and for `prefect deploy` of deployments/prefect.yaml,
whose build step `schedules_step` hands them to the file's `{{ schedules.* }}` placeholders.

A literal cron in prefect.yaml would deploy the cycle at 09:00 Shanghai for every lender: a
scheduler in New York who set `ARREARS_CYCLE_CRON` and `ARREARS_LENDER_TIMEZONE` got them in
`arrears serve` only. A cron that cannot be read is refused before anything is deployed, naming
the setting, instead of as Prefect's traceback from inside the deployment.
"""

from typing import Any

from prefect.schedules import Cron

from arrears.settings import Settings, get_settings

__all__ = ["FURNISHING_CRON", "InvalidSchedule", "cycle_schedule", "furnishing_schedule", "schedules_step"]

# The 3rd of each month, in the lender's zone: the previous month's last cycle has run (its default period).
FURNISHING_CRON = "0 6 3 * *"


class InvalidSchedule(ValueError):
    """A schedule setting Prefect cannot read; the message names the setting."""


def cycle_schedule(settings: Settings) -> Any:
    """The daily cycle's cron in the lender's zone: Cron keeps local wall-clock time across DST."""
    try:
        return Cron(settings.cycle_cron, timezone=settings.lender_timezone)
    except ValueError as error:
        raise InvalidSchedule(f"cycle_cron (ARREARS_CYCLE_CRON): {error}") from None


def furnishing_schedule(settings: Settings) -> Any:
    return Cron(FURNISHING_CRON, timezone=settings.lender_timezone)


def schedules_step() -> dict[str, str]:
    """`prefect deploy`'s build step (a Python step, run in the `prefect` process): the schedules
    as prefect.yaml names them, `{{ schedules.cycle_cron }}`, `{{ schedules.furnishing_cron }}`
    and `{{ schedules.timezone }}`. Raises, stopping the deploy, on a cron Prefect cannot read."""
    settings = get_settings()
    cycle, furnishing = cycle_schedule(settings), furnishing_schedule(settings)
    print(f"daily cycle: cron {cycle.cron} ({cycle.timezone}); furnishing: cron {furnishing.cron}")
    return {"cycle_cron": cycle.cron, "furnishing_cron": furnishing.cron, "timezone": cycle.timezone}
