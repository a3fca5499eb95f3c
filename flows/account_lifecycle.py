"""The single-account path (DESIGN §4): the cycle's own steps for one account, on an event.

A payment, an inbound reply or a court status change runs this flow for its account, so the
account does not wait for tomorrow's cycle. It is rare by design: the daily cycle never starts
one flow run per account.
"""

from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from arrears.clock import as_of_or_now, business_date
from arrears.settings import get_settings
from flows.daily_cycle import run_dispatch
from tasks.cycle import Shard, advance_shard, refresh

__all__ = ["account_lifecycle"]


def _name() -> str:
    return f"account {flow_run.parameters['account_id']}"


@flow(name="account-lifecycle", flow_run_name=_name, description="Refresh, advance and dispatch one account.")
def account_lifecycle(account_id: str, as_of: str | None = None, reason: str = "event") -> dict[str, Any]:
    """Bring one account up to date as of `as_of` (now when omitted); `reason` names the event."""
    instant = as_of_or_now(as_of)
    day = business_date(instant, get_settings().lender_timezone)
    refreshed = refresh(instant, day, None, account_id)
    advanced = advance_shard(Shard.single(account_id), instant, day, None)
    dispatched = run_dispatch(instant, None, account_id)
    return {"account_id": account_id, "refresh": refreshed, "advance": advanced, "dispatch": dispatched}
