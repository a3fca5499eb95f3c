"""The refresh and advance steps of the daily cycle (DESIGN §4), and the cycle's own record:
one run at a time per database, a crashed run's row closed by the next."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypedDict

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Connection

from arrears.models import utcnow
from arrears.settings import get_settings
from arrears.storage import cycle as store
from arrears.storage import cycle_runs as runs
from arrears.storage import migrate, read_only
from arrears.storage.reports import portfolio_report
from tasks.database import engine
from tasks.drill import crash_point
from tasks.plans import refresh_plans
from tasks.promises import refresh_promises
from tasks.review import refresh_vendor_orders
from tasks.settlements import refresh_settlements
from tasks.shards import Shard, advance_rows
from tasks.workers import in_worker, start_workers

__all__ = [
    "CycleBackdated",
    "CycleRunning",
    "CycleStart",
    "Shard",
    "advance_shard",
    "begin_cycle",
    "close_cycle",
    "cycle_report",
    "fail_cycle",
    "plan_shards",
    "refresh",
    "refuse_backdated",
    "run_exclusively",
    "run_token",
    "start_shard_workers",
]

CycleRunning = runs.CycleRunning
CycleBackdated = runs.CycleBackdated


@contextmanager
def run_exclusively(what: str) -> Iterator[None]:
    """This database's run lock for a cycle or a dispatch run; `CycleRunning` if another holds it."""
    with runs.exclusive_run(engine(), what):
        yield


def run_token(cycle_id: int | None) -> str:
    """Who leases outbox rows: the cycle, or a dispatch run (one token per run)."""
    return f"cycle-{cycle_id}" if cycle_id is not None else f"dispatch-{uuid.uuid4().hex[:12]}"


class _Scope(TypedDict):
    """What every refresh step is told: the instant, the cycle, and the one account (None: all)."""

    as_of: datetime
    cycle_id: int | None
    account_id: str | None


@task(name="refresh", cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=5)
def refresh(
    as_of: datetime, business_date: date, cycle_id: int | None, account_id: str | None = None
) -> dict[str, int]:
    """Bring the facts up to date for every account still in play (or one), in one transaction.

    Payments first, because everything after judges by them: replies are read (promises, plan
    answers), pending promises are found kept or broken, active plans move on (a completed or
    re-aged plan brings the account current), settlements are judged (a paid one writes off the
    balance left), repossession orders that a payment, plan, settlement or hold overtook are
    cancelled; days past due are recomputed last, from the balances these left.
    """
    at = _Scope(as_of=as_of, cycle_id=cycle_id, account_id=account_id)
    with engine().begin() as connection:
        counts = {"payments_applied": store.apply_new_payments(connection, **at)}
        counts |= refresh_promises(connection, business_date=business_date, **at)
        counts |= refresh_plans(connection, business_date=business_date, **at)
        counts |= refresh_settlements(connection, business_date=business_date, **at)
        counts |= refresh_vendor_orders(connection, **at)
        counts["accounts_refreshed"] = store.refresh_days_past_due(
            connection, business_date=business_date, account_id=account_id
        )
    crash_point("refresh")
    return counts


def start_shard_workers(fan_out: str | None) -> None:
    """Inside `keeping_workers`, before the refresh: spawn the worker processes the advance will
    use (several shards, no fan-out), each importing the advance's and the dispatch's bodies as it
    starts (not Prefect: ~2 s of a core a process), on the core the refresh leaves free."""
    settings = get_settings()
    if fan_out or settings.shard_workers <= 1:
        return
    with read_only(engine()) as connection:
        if not store.several_shards(connection, size=settings.shard_size):
            return
    start_workers(settings.shard_workers, ("tasks.shards", "tasks.sending"))


@task(name="plan-shards", cache_policy=NO_CACHE, persist_result=False)
def plan_shards(size: int) -> list[Shard]:
    with engine().connect() as connection:
        starts = store.shard_starts(connection, size=size)
    return [Shard(i, lo, starts[i + 1] if i + 1 < len(starts) else None) for i, lo in enumerate(starts)]


@task(
    name="advance-shard",
    task_run_name="advance-shard-{shard.index}",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=2,
    retry_delay_seconds=5,
)
def advance_shard(shard: Shard, as_of: datetime, business_date: date, cycle_id: int | None) -> dict[str, int]:
    """Decide for every account of the shard and store the outcome in one transaction.

    Loading and deciding happen outside the write transaction, so shards overlap; the write
    keeps only the decisions whose account has not moved since it was loaded. Re-running a
    shard is safe: transitions already taken are not taken again (the stored stage has moved)
    and outbox keys already present are skipped.
    """
    counts = in_worker(advance_rows, shard, as_of, business_date, cycle_id)
    crash_point("advance")
    return counts


@dataclass(frozen=True, slots=True)
class CycleStart:
    """What opening a cycle found: the new cycle's id, or the cycle that already finished for this
    instant (then nothing runs); and the rows of crashed runs it closed."""

    cycle_id: int | None
    finished: int | None = None
    crashed: list[int] = field(default_factory=list)


def _not_backdated(task: Any, task_run: Any, state: Any) -> bool:
    """Retry opening the cycle on a database error, never on a refusal that waiting cannot change."""
    return not isinstance(state.result(raise_on_failure=False), CycleBackdated)


@task(
    name="open-cycle",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=_not_backdated,
)
def begin_cycle(as_of: datetime, business_date: date, due: datetime | None = None) -> CycleStart:
    """Bring the schema up to date, close the rows of crashed runs, and record the start of a
    cycle, unless one already finished for exactly this instant, or (given `due`, when a
    scheduled run was due) one finished as of `due` or later: a run that starts late finds its
    day's cycle already done by an earlier late run or a manual one. `CycleBackdated` if one ran
    as of a later instant (days past due, stages and messages only move forward in time). Call
    it under `run_exclusively` (tests and benchmarks that drive the steps one by one call `.fn`
    directly)."""
    migrate(engine())
    with engine().begin() as connection:
        crashed = runs.close_crashed_cycles(connection, now=utcnow())
        finished = runs.finished_cycle(connection, as_of=as_of)
        if finished is None and due is not None:
            finished = runs.finished_since(connection, since=due)
        if finished is not None:
            return CycleStart(None, finished, crashed)
        _refuse_backdated(connection, as_of)
        started = runs.start_cycle(connection, as_of=as_of, business_date=business_date)
        return CycleStart(started, None, crashed)


def refuse_backdated(as_of: datetime) -> None:
    """`CycleBackdated` where `begin_cycle` would refuse a cycle as of `as_of` given on the command
    line: the CLI asks under `run_exclusively`, before the flow starts, so a refusal that changes
    nothing is one line, not Prefect's ERROR logs and a Failed flow run. `begin_cycle` asks again
    (a deployment's run comes without the CLI)."""
    with read_only(engine()) as connection:
        if runs.finished_cycle(connection, as_of=as_of) is None:
            _refuse_backdated(connection, as_of)


def _refuse_backdated(connection: Connection, as_of: datetime) -> None:
    """Days past due, stages and messages only move forward in time: no cycle before the latest."""
    latest = runs.latest_cycle(connection)
    if latest is not None and latest[0] > as_of:
        raise CycleBackdated(
            f"a cycle already ran as of {latest[0].isoformat()} ({latest[1]}): a cycle as of "
            f"{as_of.isoformat()} would go back in time; nothing was done"
        )


@task(name="close-cycle", cache_policy=NO_CACHE, persist_result=False)
def close_cycle(cycle_id: int, stats: dict[str, Any]) -> None:
    with engine().begin() as connection:
        runs.finish_cycle(connection, cycle_id=cycle_id, finished_at=utcnow(), stats=stats)


def cycle_report(cycle_id: int) -> dict[str, Any]:
    """The portfolio report of a cycle, read only (no artifact, no event): for a rerun that found
    its instant's cycle finished."""
    with read_only(engine()) as connection:
        return portfolio_report(connection, cycle_id=cycle_id).as_json()


def fail_cycle(cycle_id: int, error: BaseException) -> None:
    """Close the row of a cycle that raised: not running any more, and not finished."""
    with engine().begin() as connection:
        runs.finish_cycle(
            connection,
            cycle_id=cycle_id,
            finished_at=utcnow(),
            stats={"error": type(error).__name__},
            status="failed",
        )
