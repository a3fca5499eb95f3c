"""Data access for the quarantine (DESIGN §4, isolation): what a failure set aside, and why.

An account, an inbound message or an outbox message that fails in a cycle step is recorded here
and skipped by the later steps, and by later cycles, until an operator retries it. One row per
item (`what`, `ref`): a second failure of the same item reopens its row rather than adding one.
Error texts are masked (`mask_text`) before they are stored: no phone number reaches the table.

A retry (`arrears quarantine retry`) is three commits: `release` sets `retrying_since`, and the
steps see the item again while it is set; the retried work; then `resolve`. Until `resolve`, and
for good when the retry never got there (it failed, the process was killed, the database went away
mid-retry), the entry is in quarantine: listed, counted, retried by `--all`. A step that sets the
item aside again (`put`) or a failed retry (`reopen`) clears `retrying_since`: the steps skip the
item again, and there is nothing left to resolve.

Every function takes the caller's connection and does not commit.
"""

from collections.abc import Collection, Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, and_, func, select, update

from arrears.masking import mask_text
from arrears.storage.bulk import among
from arrears.storage.tables import account, message, plan, quarantine, settlement
from arrears.vocabulary import Stage

__all__ = [
    "ERROR_TEXT_LIMIT",
    "What",
    "counts",
    "entries",
    "entry",
    "open_accounts",
    "open_refs",
    "plan_accounts",
    "put",
    "release",
    "reopen",
    "resolve",
    "settlement_accounts",
]

ERROR_TEXT_LIMIT = 2_000

# What the steps skip: an open entry, unless released for a retry (its own steps must see it).
_held = and_(quarantine.c.resolved.is_(False), quarantine.c.retrying_since.is_(None))


class What(StrEnum):
    ACCOUNT = "account"
    INBOUND = "inbound"  # an inbound message: `ref` is its callback id
    MESSAGE = "message"  # an outbox row: `ref` is its id


def put(
    connection: Connection,
    *,
    what: What,
    ref: str,
    account_id: str | None,
    step: str,
    error_type: str,
    error: str,
    at: datetime,
    cycle_id: int | None = None,
) -> int:
    """Quarantine an item (or reopen its row) with its error, masked; returns the row's id."""
    values = {
        "account_id": account_id,
        "step": step,
        "error_type": error_type[:64],
        "error": mask_text(error)[:ERROR_TEXT_LIMIT],
        "at": at,
        "cycle_id": cycle_id,
        "resolved": False,
        "retrying_since": None,  # set aside again: a retry running now has nothing to confirm
    }
    if what is What.MESSAGE:
        # Its lease let go: a retry may take the row at once (it was never sent: it failed first).
        connection.execute(update(message).where(message.c.id == int(ref)).values(lease_until=None))
    found = connection.execute(
        select(quarantine.c.id).where(quarantine.c.what == what.value, quarantine.c.ref == ref)
    ).scalar()
    if found is not None:
        connection.execute(update(quarantine).where(quarantine.c.id == found).values(values))
        return int(found)
    result = connection.execute(
        quarantine.insert().values(what=what.value, ref=ref, retried_at=None, **values)
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def open_accounts(connection: Connection, account_ids: Iterable[str] | None = None) -> set[str]:
    """Accounts in quarantine (of `account_ids`, when given): the cycle leaves them alone."""
    query = select(quarantine.c.account_id).where(_held, quarantine.c.what == What.ACCOUNT.value)
    if account_ids is not None:
        ids = sorted(set(account_ids))
        if not ids:
            return set()
        query = query.where(among(quarantine.c.account_id, ids))
    return {a for a in connection.execute(query).scalars() if a is not None}


def open_refs(connection: Connection, what: What, refs: Collection[str] | None = None) -> set[str]:
    """The references of the open entries of one kind (among `refs`, when given), less those a
    retry released: the steps skip these."""
    query = select(quarantine.c.ref).where(_held, quarantine.c.what == what.value)
    if refs is not None:
        if not refs:
            return set()
        query = query.where(among(quarantine.c.ref, sorted(refs)))
    return set(connection.execute(query).scalars())


def entries(connection: Connection, *, include_resolved: bool = False) -> list[Any]:
    """The quarantine, oldest first (open entries only, unless `include_resolved`): those released
    for a retry not yet resolved are open."""
    query = select(quarantine).order_by(quarantine.c.id)
    if not include_resolved:
        query = query.where(quarantine.c.resolved.is_(False))
    return list(connection.execute(query).all())


def entry(connection: Connection, entry_id: int) -> Any | None:
    return connection.execute(select(quarantine).where(quarantine.c.id == entry_id)).first()


def release(connection: Connection, entry_id: int, *, at: datetime) -> bool:
    """Let the steps see the item again, for a retry starting at `at`; the entry stays open until
    `resolve`. False when the entry does not exist or is resolved. One a retry released and never
    resolved may be released again: that retry never finished."""
    done = connection.execute(
        update(quarantine)
        .where(quarantine.c.id == entry_id, quarantine.c.resolved.is_(False))
        .values(retried_at=at, retrying_since=at)
    )
    return bool(done.rowcount)


def resolve(connection: Connection, entry_id: int, *, since: datetime) -> bool:
    """The retry released at `since` committed its work: the entry is resolved. False when nothing
    awaits it: a step set the item aside again (`put`), the retry failed (`reopen`), or another
    retry released it since (that one resolves it)."""
    done = connection.execute(
        update(quarantine)
        .where(
            quarantine.c.id == entry_id,
            quarantine.c.resolved.is_(False),
            quarantine.c.retrying_since == since,
        )
        .values(resolved=True, retrying_since=None)
    )
    return bool(done.rowcount)


def reopen(connection: Connection, entry_id: int, *, error_type: str, error: str, at: datetime) -> None:
    """A retry failed outside the steps that quarantine on their own: the entry is open, with this
    error, and the steps skip its item again. A resolved entry is left alone."""
    connection.execute(
        update(quarantine)
        .where(quarantine.c.id == entry_id, quarantine.c.resolved.is_(False))
        .values(
            retrying_since=None,
            error_type=error_type[:64],
            error=mask_text(error)[:ERROR_TEXT_LIMIT],
            at=at,
        )
    )


def counts(connection: Connection, *, cycle_id: int | None = None) -> dict[str, Any]:
    """What the report shows: open entries by kind (those a retry released and did not resolve
    among them), and those the cycle `cycle_id` set aside."""
    by_what = {w.value: 0 for w in What}
    for what, n in connection.execute(
        select(quarantine.c.what, func.count())
        .where(quarantine.c.resolved.is_(False))
        .group_by(quarantine.c.what)
    ):
        by_what[what] = n
    in_cycle = (
        connection.execute(
            select(func.count()).select_from(quarantine).where(quarantine.c.cycle_id == cycle_id)
        ).scalar_one()
        if cycle_id is not None
        else 0
    )
    return {"open": by_what, "open_total": sum(by_what.values()), "this_cycle": in_cycle}


def settlement_accounts(connection: Connection) -> list[str]:
    """The accounts the settlements refresh works on (a running agreement): the candidates of its
    account-by-account path after a failure."""
    running = select(settlement.c.account_id).where(settlement.c.status == "active")
    return sorted(set(connection.execute(running).scalars()))


def plan_accounts(connection: Connection) -> list[str]:
    """The accounts the plans refresh works on (in restructuring, or with an active plan): the
    candidates of its account-by-account path after a failure."""
    in_stage = select(account.c.account_id).where(account.c.stage == Stage.RESTRUCTURING.value)
    active = select(plan.c.account_id).where(plan.c.status == "active")
    return sorted(set(connection.execute(in_stage.union(active)).scalars()))
