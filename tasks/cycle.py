"""The refresh and advance steps of the daily cycle (DESIGN §4)."""

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypedDict

from prefect import task
from prefect.cache_policies import NO_CACHE

from arrears.lifecycle import advance
from arrears.models import utcnow
from arrears.settings import get_settings
from arrears.storage import cycle as store
from arrears.storage import migrate, read_only
from tasks.database import engine, policy
from tasks.isolation import account_of, decide_each, write_shard
from tasks.plans import refresh_plans
from tasks.promises import refresh_promises
from tasks.review import refresh_vendor_orders

__all__ = ["Shard", "advance_shard", "close_cycle", "open_cycle", "plan_shards", "refresh"]


@dataclass(frozen=True, slots=True)
class Shard:
    """Accounts with lo <= account_id < hi (hi None: to the end)."""

    index: int
    lo: str
    hi: str | None

    @classmethod
    def single(cls, account_id: str) -> "Shard":
        """The shard holding exactly one account (lo == hi names a single key)."""
        return cls(0, account_id, account_id)


class _Scope(TypedDict):
    """What every refresh step is told: the instant, the cycle, and the one account (None: all)."""

    as_of: datetime
    cycle_id: int | None
    account_id: str | None


@task(name="refresh", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def refresh(
    as_of: datetime, business_date: date, cycle_id: int | None, account_id: str | None = None
) -> dict[str, int]:
    """Bring the facts up to date for every account still in play (or one), in one transaction.

    Payments first, because everything after judges by them: replies are read (promises, plan
    answers), pending promises are found kept or broken, active plans move on (a completed or
    re-aged plan brings the account current), repossession orders that a payment, plan or hold
    overtook are cancelled; days past due are recomputed last, from the balances these left.
    """
    at = _Scope(as_of=as_of, cycle_id=cycle_id, account_id=account_id)
    with engine().begin() as connection:
        counts = {"payments_applied": store.apply_new_payments(connection, **at)}
        counts |= refresh_promises(connection, business_date=business_date, **at)
        counts |= refresh_plans(connection, business_date=business_date, **at)
        counts |= refresh_vendor_orders(connection, **at)
        counts["accounts_refreshed"] = store.refresh_days_past_due(
            connection, business_date=business_date, account_id=account_id
        )
    return counts


@task(name="plan-shards", cache_policy=NO_CACHE)
def plan_shards(size: int) -> list[Shard]:
    with engine().connect() as connection:
        starts = store.shard_starts(connection, size=size)
    return [Shard(i, lo, starts[i + 1] if i + 1 < len(starts) else None) for i, lo in enumerate(starts)]


@task(
    name="advance-shard",
    task_run_name="advance-shard-{shard.index}",
    cache_policy=NO_CACHE,
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
    settings = get_settings()
    rules = policy()
    with read_only(engine()) as connection:
        rows = store.load_shard(
            connection,
            lo=shard.lo,
            hi=shard.hi,
            business_date=business_date,
            lender=settings.lender_name,
            since=as_of - rules.longest_cap_window(),
        )
    # Each decided message carries the body its compliance verdict was given on. An account in
    # quarantine is skipped; one whose decision or write raises is quarantined (tasks.isolation).
    rows, decisions, aside = decide_each(
        rows, lambda row: advance(row.view, row.facts, rules, as_of), account_of=account_of, step="advance"
    )
    with engine().begin() as connection:
        fresh = store.unchanged(connection, rows, lo=shard.lo, hi=shard.hi)
        kept = [(r, d) for r, d in zip(rows, decisions, strict=True) if r.view.account_id in fresh]
        counts = write_shard(connection, kept, aside=aside, now=as_of, cycle_id=cycle_id)
    return {**counts, "accounts": len(rows), "moved_meanwhile": len(rows) - len(kept)}


@task(name="open-cycle", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def open_cycle(as_of: datetime, business_date: date) -> int:
    """Bring the schema up to date and record the start of a cycle."""
    migrate(engine())
    with engine().begin() as connection:
        return store.start_cycle(connection, as_of=as_of, business_date=business_date)


@task(name="close-cycle", cache_policy=NO_CACHE)
def close_cycle(cycle_id: int, stats: dict[str, Any]) -> None:
    with engine().begin() as connection:
        store.finish_cycle(connection, cycle_id=cycle_id, finished_at=utcnow(), stats=stats)
