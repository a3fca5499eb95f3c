"""Dispatch: send due outbox rows through the SMS provider, checking compliance again at send time.

Before any batch, the rows an earlier (crashed) try may have sent are looked up at the provider
(`reconcile_in_doubt`): a send found there is recorded as sent, and so counts against the caps of
every verdict that follows; the others are released as never sent. Lookups go by the provider id
or by our own reference (the idempotency key, and `ref`, derived from it, in every request),
never by matching text.

Each batch is a task run here whose body (`tasks.sending.send_batch`: lease, re-check, send,
record) runs in a worker process while the run has them. A batch that finds the provider down
is an outage: the flow then stops sending, marks the rest waiting, and makes the outage loud
(DESIGN §5).
"""

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from arrears.models import utcnow
from arrears.storage import outbox, read_only
from integrations.errors import ConfigError, ProviderError
from integrations.sms.protocol import SmsResult
from tasks.database import engine, installation, policy
from tasks.drill import crash_due
from tasks.logs import run_logger
from tasks.providers import current_sms, sms_config
from tasks.sending import Batch, found_outcome, look_up, outage_reason, recheck_recorded, send_batch, went_at
from tasks.workers import in_worker

__all__ = [
    "announce_outage",
    "dispatch_batch",
    "mark_outage_waiting",
    "plan_dispatch",
    "reconcile_in_doubt",
]


@task(name="plan-dispatch", cache_policy=NO_CACHE, persist_result=False)
def plan_dispatch(
    as_of: datetime,
    size: int,
    account_id: str | None = None,
    owner: str | None = None,
    first: int | None = None,
) -> list[Batch]:
    """The due rows in batches of at most `size`; the first of at most `first`, where given."""
    with read_only(engine()) as connection:
        ranges = outbox.due_batches(connection, now=as_of, size=size, account_id=account_id, first=first)
    return [Batch(i, lo, hi, account_id, owner) for i, (lo, hi) in enumerate(ranges)]


@task(
    name="dispatch-batch",
    task_run_name="dispatch-sms-{batch.index}",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=2,
    retry_delay_seconds=[10, 60],
    # One stable tag: an operator may cap concurrent batches with a tag limit on it
    # (`prefect concurrency-limit create channel:sms 2`). Every tagged task run asks the server for
    # slots, so nothing else in the cycle is tagged (PREFECT.md).
    tags=["channel:sms"],
)
def dispatch_batch(batch: Batch, as_of: datetime, cycle_id: int | None, live: bool = False) -> dict[str, int]:
    """Send one batch; returns counts by outcome status. `live`: checked and sent at the wall
    clock, not `as_of` (`tasks.sending`).

    The body runs in a worker process while the run has them (`tasks.workers`), with a provider
    of the same config: leasing, checking and recording a batch is Python and SQLite, and in the
    run's own process each SQLite call waits for the GIL behind the bureau pulls and the other
    batches' threads. The task run, its retries and its counts stay here."""
    done = in_worker(send_batch, batch, as_of, cycle_id, sms_config(), crash_due("dispatch"), live)
    _log_refused_numbers(done.refused)
    return done.counts


@task(
    name="reconcile-in-doubt", cache_policy=NO_CACHE, persist_result=False, retries=1, retry_delay_seconds=10
)
def reconcile_in_doubt(as_of: datetime, cycle_id: int | None, owner: str) -> dict[str, int]:
    """Before any verdict: take over the leases of dead runs, look up every row they (or an
    unknown outcome) may have sent, record the sends found, release the rest as never sent.

    Runs under the database's run lock, so no other cycle or dispatch is sending meanwhile."""
    with engine().begin() as connection:
        outbox.expire_dead_leases(connection, owner=owner)
        rows = outbox.in_doubt(connection, wall=utcnow())
    counts = {"in_doubt": len(rows), "found_sent": 0, "lookups_failed": 0}
    if not rows:
        return counts
    provider = current_sms()
    ours = installation()

    def asked(row: Any) -> SmsResult | ProviderError | None:
        try:
            return look_up(provider, row, ours)
        except ConfigError:
            raise
        except ProviderError as failed:
            return failed

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(asked, rows))
    found = [
        found_outcome(
            row, result, provider.info.name, went_at(result, as_of, simulated=provider.info.simulated)
        )
        for row, result in zip(rows, results, strict=True)
        if isinstance(result, SmsResult)
    ]
    never = [row.id for row, result in zip(rows, results, strict=True) if result is None]
    with engine().begin() as connection:
        outbox.record_outcomes(
            connection,
            outcomes=found,
            at=as_of,
            cycle_id=cycle_id,
            unreachable_after=policy().segmentation.unreachable_after_failures,
        )
        outbox.clear_doubt(connection, ids=never)
    recheck_recorded(found, as_of, cycle_id, policy())
    counts["found_sent"] = len(found)
    counts["lookups_failed"] = sum(isinstance(r, ProviderError) for r in results)
    return counts


@task(name="mark-outage-waiting", cache_policy=NO_CACHE, persist_result=False)
def mark_outage_waiting(as_of: datetime, provider: str, account_id: str | None = None) -> int:
    """The rows an outage kept from being tried: they wait, scheduled, with the provider as reason."""
    with engine().begin() as connection:
        return outbox.mark_waiting(
            connection, now=as_of, reason=outage_reason(provider), account_id=account_id
        )


def announce_outage(outage: dict[str, Any], as_of: datetime) -> None:
    """Make an outage loud for operations: a warning in the run's log and an
    `arrears.provider.outage` event, for an automation to alert on (DESIGN §9)."""
    provider, waiting = outage["provider"], outage["waiting"]
    log = run_logger("arrears.dispatch")
    log.warning("SMS provider %s could not be reached: %d messages wait", provider, waiting)
    emit_event(
        "arrears.provider.outage",
        resource={
            "prefect.resource.id": f"arrears.provider.sms.{provider}",
            "prefect.resource.name": provider,
        },
        payload={"kind": "sms", "provider": provider, "waiting": waiting, "as_of": as_of.isoformat()},
    )


def _log_refused_numbers(refused: list[tuple[int, str, str]]) -> None:
    """Tell operations which numbers a provider refused (masked), in the run's log."""
    if not refused:
        return
    log = run_logger("arrears.dispatch")
    for message_id, number, reason in refused:
        log.warning("message %s to %s: %s", message_id, number, reason)
