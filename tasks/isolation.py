"""Isolation (DESIGN §4): one account or one message that fails never fails its shard, batch or cycle.

The bulk steps call these helpers around the work they do for one account or one message. A
failure is caught for that item alone: its writes are rolled back to a savepoint (so the rest of
the step's writes stand), it is quarantined with its error (`arrears.storage.quarantine`), and
the later steps skip it until an operator retries it (`arrears quarantine retry`).

What is not caught: a failure of the whole step. The database going away or staying locked
(`OperationalError`, `InterfaceError`) is no fault of one account; it propagates, and Prefect's
retries and the cycle's exit code deal with it.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from arrears.lifecycle import Decision
from arrears.masking import mask_text
from arrears.storage import cycle, outbox, quarantine, read_only
from arrears.storage.cycle import ShardRow
from arrears.storage.outbox import DueMessage
from arrears.storage.quarantine import What
from tasks.database import engine
from tasks.logs import run_logger

__all__ = [
    "STEP_FAILURES",
    "Failure",
    "SetAside",
    "account_of",
    "bulk_or_each",
    "decide_each",
    "entry_state",
    "error_text",
    "guarded",
    "open_entry_ids",
    "quarantine_entries",
    "release_entry",
    "reopen_entry",
    "resolve_entry",
    "without_quarantined",
    "write_each",
    "write_shard",
]

T = TypeVar("T")
R = TypeVar("R")

# Failures of the whole step, never of one item: they propagate.
STEP_FAILURES: tuple[type[BaseException], ...] = (OperationalError, InterfaceError)


@dataclass(frozen=True, slots=True)
class Failure:
    what: What
    ref: str
    account_id: str | None
    step: str
    error: BaseException


@dataclass(slots=True)
class SetAside:
    """The items one step set aside, to be quarantined in the step's write transaction."""

    step: str
    failures: list[Failure] = field(default_factory=list)

    def add(self, what: What, ref: str, account_id: str | None, error: BaseException) -> None:
        self.failures.append(Failure(what, ref, account_id, self.step, error))
        run_logger("arrears.isolation").warning(
            "%s %s set aside in %s: %s: %s",
            what.value,
            ref,
            self.step,
            type(error).__name__,
            mask_text(str(error))[:200],
        )

    def account(self, account_id: str, error: BaseException) -> None:
        self.add(What.ACCOUNT, account_id, account_id, error)

    def message(self, message_id: int, account_id: str, error: BaseException) -> None:
        self.add(What.MESSAGE, str(message_id), account_id, error)

    def record(self, connection: Connection, *, at: datetime, cycle_id: int | None) -> int:
        """Quarantine every item set aside; returns how many."""
        for f in self.failures:
            _put(connection, f, at=at, cycle_id=cycle_id)
        return len(self.failures)


def _put(connection: Connection, failure: Failure, *, at: datetime, cycle_id: int | None) -> None:
    quarantine.put(
        connection,
        what=failure.what,
        ref=failure.ref,
        account_id=failure.account_id,
        step=failure.step,
        error_type=type(failure.error).__name__,
        error=str(failure.error) or repr(failure.error),
        at=at,
        cycle_id=cycle_id,
    )


def guarded(
    connection: Connection,
    work: Callable[[], T],
    *,
    what: What,
    ref: str,
    account_id: str | None,
    step: str,
    at: datetime,
    cycle_id: int | None,
) -> tuple[bool, T | None]:
    """Run `work` for one item in a savepoint: (True, its result), or, when it raises, its writes
    rolled back, the item quarantined, and (False, None)."""
    try:
        with connection.begin_nested():
            return True, work()
    except STEP_FAILURES:
        raise
    except Exception as error:
        aside = SetAside(step)
        aside.add(what, ref, account_id, error)
        aside.record(connection, at=at, cycle_id=cycle_id)
        return False, None


def without_quarantined(rows: list[DueMessage]) -> list[DueMessage]:
    """Leased outbox rows less those in quarantine, themselves or through their account. The
    lease of those left is let go: an operator's retry minutes later (its single-account path)
    must not find them leased to the run that left them."""
    if not rows:
        return rows
    with read_only(engine()) as connection:
        held = quarantine.open_refs(connection, What.MESSAGE, {str(r.id) for r in rows})
        accounts = quarantine.open_accounts(connection, {r.account_id for r in rows})
    if not held and not accounts:  # the usual batch: two reads, nothing to write
        return rows
    left = [r for r in rows if str(r.id) in held or r.account_id in accounts]
    with engine().begin() as connection:
        outbox.let_go(connection, ids=[r.id for r in left], doubtful=[r.id for r in left if r.in_doubt])
    return [r for r in rows if str(r.id) not in held and r.account_id not in accounts]


def decide_each(
    items: Sequence[T], decide: Callable[[T], R], *, account_of: Callable[[T], str], step: str
) -> tuple[list[T], list[R], SetAside]:
    """Decide for each item whose account is not in quarantine: the items decided, their
    decisions, and the accounts whose decision raised (to be recorded with the step's writes)."""
    with read_only(engine()) as connection:
        held = quarantine.open_accounts(connection, (account_of(i) for i in items))
    kept: list[T] = []
    decided: list[R] = []
    aside = SetAside(step)
    for item in items:
        account_id = account_of(item)
        if account_id in held:
            continue
        try:
            decision = decide(item)
        except Exception as error:  # the pure rules raised for this account: a bug or bad data
            aside.account(account_id, error)
            continue
        kept.append(item)
        decided.append(decision)
    return kept, decided, aside


def write_each(
    connection: Connection,
    items: Sequence[T],
    write: Callable[[Sequence[T]], dict[str, int]],
    *,
    account_of: Callable[[T], str],
    aside: SetAside,
    at: datetime,
    cycle_id: int | None,
) -> dict[str, int]:
    """Write all items in one go; if that raises, write them one by one, each in its own
    savepoint, quarantining the accounts whose write fails. Records what `aside` holds too.

    Returns the summed counts of the writes, with `quarantined`."""
    counts: dict[str, int] = {}
    try:
        with connection.begin_nested():
            counts = write(items)
    except STEP_FAILURES:
        raise
    except Exception:
        for item in items:
            try:
                with connection.begin_nested():
                    _add(counts, write([item]))
            except STEP_FAILURES:
                raise
            except Exception as error:
                aside.account(account_of(item), error)
    counts["quarantined"] = aside.record(connection, at=at, cycle_id=cycle_id)
    return counts


def account_of(row: ShardRow) -> str:
    return row.view.account_id


def write_shard(
    connection: Connection,
    kept: Sequence[tuple[ShardRow, Decision]],
    *,
    aside: SetAside,
    now: datetime,
    cycle_id: int | None,
) -> dict[str, int]:
    """A shard's decisions written together (`write_decisions`), through `write_each`."""

    def write(pairs: Sequence[tuple[ShardRow, Decision]]) -> dict[str, int]:
        return cycle.write_decisions(
            connection,
            rows=[r for r, _ in pairs],
            decisions=[d for _, d in pairs],
            texts={},
            now=now,
            cycle_id=cycle_id,
        )

    return write_each(
        connection,
        kept,
        write,
        account_of=lambda pair: account_of(pair[0]),
        aside=aside,
        at=now,
        cycle_id=cycle_id,
    )


def bulk_or_each(
    connection: Connection,
    run: Callable[[str | None], dict[str, int]],
    *,
    candidates: Callable[[], Sequence[str]],
    step: str,
    at: datetime,
    cycle_id: int | None,
    account_id: str | None = None,
) -> dict[str, int]:
    """A bulk refresh step for the whole portfolio (`run(None)`) or one account (`run(id)`).

    In a savepoint; if it raises, it runs again account by account over `candidates()` (those it
    works on, less the accounts in quarantine), each in its own savepoint, and the accounts that
    still raise are quarantined. The slow path costs a few queries per candidate, on the day
    something is wrong only."""
    try:
        with connection.begin_nested():
            return run(account_id)
    except STEP_FAILURES:
        raise
    except Exception as error:
        if account_id is not None:
            aside = SetAside(step)
            aside.account(account_id, error)
            return {"quarantined": aside.record(connection, at=at, cycle_id=cycle_id)}
    every = list(candidates())
    held = quarantine.open_accounts(connection, every)
    counts: dict[str, int] = {}
    aside = SetAside(step)
    for one in every:
        if one in held:
            continue
        try:
            with connection.begin_nested():
                _add(counts, run(one))
        except STEP_FAILURES:
            raise
        except Exception as error:
            aside.account(one, error)
    counts["quarantined"] = aside.record(connection, at=at, cycle_id=cycle_id)
    return counts


def _add(totals: dict[str, int], counts: dict[str, int]) -> None:
    for key, value in counts.items():
        totals[key] = totals.get(key, 0) + value


# -- the operators' side (`arrears quarantine`) -------------------------------------------------


def quarantine_entries(*, include_resolved: bool = False) -> list[dict[str, Any]]:
    """The quarantine as JSON-ready rows, oldest first."""
    with read_only(engine()) as connection:
        rows = quarantine.entries(connection, include_resolved=include_resolved)
    return [_as_json(r) for r in rows]


def _as_json(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "what": r.what,
        "ref": r.ref,
        "account_id": r.account_id,
        "step": r.step,
        "error_type": r.error_type,
        "error": r.error,
        "at": r.at.isoformat(),
        "cycle_id": r.cycle_id,
        "retried_at": r.retried_at.isoformat() if r.retried_at else None,
        # Released for a retry that has not resolved it (yet, or ever: it never finished).
        "retrying_since": r.retrying_since.isoformat() if r.retrying_since else None,
        "resolved": bool(r.resolved),
    }


def release_entry(entry_id: int, *, at: datetime) -> dict[str, Any] | None:
    """Let the steps see a quarantined item again, for its retry (the entry stays open until
    `resolve_entry`); None if it is not open."""
    with engine().begin() as connection:
        if not quarantine.release(connection, entry_id, at=at):
            return None
        row = quarantine.entry(connection, entry_id)
    return _as_json(row)


def resolve_entry(entry_id: int, *, since: datetime) -> dict[str, Any] | None:
    """After the retry released at `since` committed its work: the entry resolved, unless a step set
    its item aside again (it is open, with that step's error). None if there is no such entry."""
    with engine().begin() as connection:
        quarantine.resolve(connection, entry_id, since=since)
        row = quarantine.entry(connection, entry_id)
    return None if row is None else _as_json(row)


def entry_state(entry_id: int) -> dict[str, Any] | None:
    with read_only(engine()) as connection:
        row = quarantine.entry(connection, entry_id)
    return None if row is None else _as_json(row)


def reopen_entry(entry_id: int, error: BaseException, *, at: datetime) -> dict[str, Any]:
    """A retry that raised outside the steps that quarantine by themselves: open again, with its
    error; what the entry says now. When the database refuses that too (gone away mid-retry), the
    entry stays as the retry released it, in quarantine all the same: the error is returned, said to
    be not recorded."""
    error_type, text = type(error).__name__, error_text(error)
    said: dict[str, Any] = {"id": entry_id, "resolved": False, "error_type": error_type, "error": text}
    try:
        with engine().begin() as connection:
            quarantine.reopen(connection, entry_id, error_type=error_type, error=text, at=at)
            row = quarantine.entry(connection, entry_id)
    except STEP_FAILURES as unrecorded:
        return said | {"error": f"{text} (not recorded: {error_text(unrecorded)})"}
    return said if row is None else _as_json(row)


def error_text(error: BaseException) -> str:
    """An error's text, masked; the database's in one line: the driver's words, without the
    statement and the parameters SQLAlchemy adds to them (a borrower's name may be among them)."""
    if isinstance(error, DBAPIError):
        error = error.orig if error.orig is not None else error
        text = next(iter(str(error).splitlines()), "")
    else:
        text = str(error)
    return mask_text(text or repr(error))[: quarantine.ERROR_TEXT_LIMIT]


def open_entry_ids() -> list[int]:
    return [e["id"] for e in quarantine_entries()]
