"""The single-account path (DESIGN §4): the cycle's own steps for one account, on an event.

A payment, an inbound reply or a court status change runs this flow for its account, so the
account does not wait for tomorrow's cycle. It is rare by design: the daily cycle never starts
one flow run per account. Each run leaves the account's timeline as an artifact
(`tasks.timelines`): where operations read one account in the Prefect UI.

It is also how a quarantined item is retried (`retry_quarantined`, for `arrears quarantine
retry`): the item is released, its account goes through this path, and the item is resolved
once that committed, when nothing set it aside again.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from arrears.clock import as_of_or_now, business_date
from arrears.settings import get_settings
from flows._results import FAILURE_TEXT
from flows.daily_cycle import run_dispatch
from tasks import isolation
from tasks.cycle import Shard, advance_shard, refresh
from tasks.database import engine
from tasks.inbound import reattribute_reply
from tasks.timelines import publish_timeline

__all__ = ["account_lifecycle", "retry_quarantined"]


def _name() -> str:
    return f"account {flow_run.parameters['account_id']}"


@flow(
    name="account-lifecycle",
    flow_run_name=_name,
    description="Refresh, advance and dispatch one account.",
    persist_result=False,
    result_serializer=FAILURE_TEXT,
)
def account_lifecycle(account_id: str, as_of: str | None = None, reason: str = "event") -> dict[str, Any]:
    """Bring one account up to date as of `as_of` (now when omitted); `reason` names the event."""
    instant = as_of_or_now(as_of)
    day = business_date(instant, get_settings().lender_timezone)
    refreshed = refresh(instant, day, None, account_id)
    advanced = advance_shard(Shard.single(account_id), instant, day, None)
    dispatched = run_dispatch(instant, None, account_id, live=as_of is None)
    publish_timeline(account_id)  # the account's artifact: its timeline in the Prefect UI
    return {"account_id": account_id, "refresh": refreshed, "advance": advanced, "dispatch": dispatched}


def retry_quarantined(entry_ids: Sequence[int], as_of: str | None = None) -> list[dict[str, Any]]:
    """Retry quarantined items one by one; each result says whether it is `resolved` now.

    An account, an outbox message or a reply goes through `account_lifecycle` for its account (a
    reply is read again by its refresh); a reply from a number several accounts share is first
    attributed again, and stays in quarantine while it still cannot be. Entries that are not open
    are reported as such and left alone.

    An entry is resolved only once its account's path returned (its work committed): a retry that
    raises, the database gone in its middle included, leaves it in quarantine, with the new error
    when the database takes it."""
    results = []
    for entry_id in entry_ids:
        now = datetime.now(UTC)
        try:
            entry = isolation.release_entry(entry_id, at=now)
        except isolation.STEP_FAILURES as error:  # the database away before anything ran: unchanged
            said = f"not retried: {isolation.error_text(error)}"
            results.append(
                {"id": entry_id, "resolved": False, "error_type": type(error).__name__, "error": said}
            )
            continue
        if entry is None:
            results.append({"id": entry_id, "resolved": False, "error": "no open quarantine entry"})
            continue
        account_id = entry["account_id"]
        try:
            if account_id is None:  # an unattributed reply
                account_id = reattribute_reply(engine(), callback_id=entry["ref"], at=now)
                if account_id is None:
                    raise LookupError("ambiguous sender: the number still belongs to several open accounts")
            account_lifecycle(account_id, as_of=as_of, reason="quarantine retry")
            state = isolation.resolve_entry(entry_id, since=now)
        except Exception as error:  # the item failed again outside the steps that quarantine it
            state = isolation.reopen_entry(entry_id, error, at=now)
        merged = {**entry, **(state or {})}
        results.append({**merged, "account_id": account_id or merged["account_id"]})
    return results
