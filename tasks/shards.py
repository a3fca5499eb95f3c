"""A shard of the daily cycle's advance, and the body that advances it.

Apart from the Prefect task (`tasks.cycle.advance_shard`): the body runs in the cycle's worker
processes (`tasks.workers`), which import this module and never Prefect.
"""

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Connection

from arrears.lifecycle import advance
from arrears.policy import Policy
from arrears.processes import collection_paused
from arrears.settings import get_settings
from arrears.storage import cycle as store
from arrears.storage import read_only
from tasks.database import engine, policy
from tasks.isolation import account_of, decide_each, write_shard

__all__ = ["Shard", "advance_rows", "load_rows"]


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


def advance_rows(shard: Shard, as_of: datetime, business_date: date, cycle_id: int | None) -> dict[str, int]:
    """The body of `advance_shard`: load, decide, write. Run in a worker process while the
    cycle has them (`tasks.workers`), so it takes only picklable values."""
    with collection_paused():  # the shard's rows and decisions live until they are written
        return _advance(shard, as_of, business_date, cycle_id)


def load_rows(
    connection: Connection, shard: Shard, as_of: datetime, business_date: date, rules: Policy
) -> list[store.ShardRow]:
    """The shard's accounts with every fact the rules read, and the contact history the caps count
    under `rules`: what the advance decides from, and an answer to a reply (`tasks.plan_options`)."""
    settings = get_settings()
    return store.load_shard(
        connection,
        lo=shard.lo,
        hi=shard.hi,
        business_date=business_date,
        lender=settings.lender_name,
        lender_timezone=settings.lender_timezone,
        since=as_of - rules.longest_cap_window(),
    )


def _advance(shard: Shard, as_of: datetime, business_date: date, cycle_id: int | None) -> dict[str, int]:
    rules = policy()
    with read_only(engine()) as connection:
        rows = load_rows(connection, shard, as_of, business_date, rules)
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
