"""One cycle at a time per database, and the record of every run (DESIGN §4).

A cycle or a dispatch run takes this database's run lock (`exclusive_run`: an advisory lock on
PostgreSQL, a file lock beside a SQLite database); with the lock held, a cycle row still marked
running is surely a dead run's and is closed as `crashed`. The unique `running` column refuses a
second running row even where the lock cannot reach (another host on a shared file system).
Each function takes the caller's connection and does not commit, except `exclusive_run`, which
holds its own connection for the lock.
"""

import fcntl
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.exc import IntegrityError

from arrears.storage._common import inserted_id
from arrears.storage.engine import database_file
from arrears.storage.tables import cycle_run

__all__ = [
    "CycleBackdated",
    "CycleRunning",
    "close_crashed_cycles",
    "exclusive_run",
    "finish_cycle",
    "finished_cycle",
    "latest_cycle",
    "run_owner",
    "start_cycle",
]


class CycleRunning(RuntimeError):
    """Another cycle (or dispatch) is running on this database: this one must not start."""


class CycleBackdated(RuntimeError):
    """A cycle already ran as of a later instant: this one, earlier, must not start. It would
    recompute days past due backwards and text borrowers with yesterday's (or 1970's) facts."""


# One lock per database, whatever the instant: cycles and dispatch runs of one database never
# overlap, so a lease or a running row left behind is surely a dead run's (DESIGN §4).
_ADVISORY_KEY = 0x61727265617273  # "arrears"
_local_locks: dict[str, threading.Lock] = {}
_RUNNING = "cycle"


_held: dict[str, int] = {}  # databases whose run lock this process holds, and how deep
_held_guard = threading.Lock()


@contextmanager
def exclusive_run(engine: Engine, what: str) -> Iterator[None]:
    """Hold this database's run lock while inside the block, or raise `CycleRunning` at once.

    The lock dies with its holder: a PostgreSQL session advisory lock (released when the
    connection drops), an flock on a file beside a SQLite database (released when the process
    dies). So a killed run never blocks the next one, and a lock that is free proves that every
    `running` row and every run-owned lease left behind belongs to a run that is gone. Within a
    process the lock is re-entrant (the CLI takes it, then the flow it calls).
    """
    key = str(engine.url)
    with _held_guard:
        nested = key in _held
        if nested:
            _held[key] += 1
    if not nested:
        with _acquire(engine, what):
            with _held_guard:
                _held[key] = 1
            try:
                yield
            finally:
                with _held_guard:
                    _held.pop(key, None)
        return
    try:
        yield
    finally:
        with _held_guard:
            _held[key] -= 1


@contextmanager
def _acquire(engine: Engine, what: str) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            got = connection.execute(select(func.pg_try_advisory_lock(_ADVISORY_KEY))).scalar()
            if not got:
                raise CycleRunning(_running_message(engine, what))
            try:
                yield
            finally:
                connection.execute(select(func.pg_advisory_unlock(_ADVISORY_KEY)))
        return
    path = database_file(str(engine.url))
    if path is None:  # in memory: this process only
        lock = _local_locks.setdefault(str(engine.url), threading.Lock())
        if not lock.acquire(blocking=False):
            raise CycleRunning(_running_message(engine, what))
        try:
            yield
        finally:
            lock.release()
        return
    fd = os.open(path.resolve().with_name(path.name + ".run-lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CycleRunning(_running_message(engine, what)) from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _running_message(engine: Engine, what: str) -> str:
    with engine.connect() as connection:
        row = connection.execute(
            select(cycle_run.c.id, cycle_run.c.as_of, cycle_run.c.started_at, cycle_run.c.owner).where(
                cycle_run.c.running.is_not(None)
            )
        ).first()
    if row is None:
        return f"a cycle or dispatch is running on this database: this {what} did not start"
    return (
        f"a cycle is running on this database (cycle {row.id} as of {row.as_of:%Y-%m-%dT%H:%M:%SZ}, "
        f"started {row.started_at:%Y-%m-%dT%H:%M:%SZ} by {row.owner or 'unknown'}): this {what} did not start"
    )


def run_owner() -> str:
    """Who runs: host and process id, for people reading a running or crashed row."""
    return f"{socket.gethostname()}:{os.getpid()}"[:128]


def close_crashed_cycles(connection: Connection, *, now: datetime) -> list[int]:
    """Close as `crashed` every cycle row still running. Call it only under `exclusive_run`: the
    lock being free proves their runs are gone. Returns their ids."""
    ids = list(connection.execute(select(cycle_run.c.id).where(cycle_run.c.running.is_not(None))).scalars())
    if ids:
        connection.execute(
            update(cycle_run)
            .where(cycle_run.c.id.in_(ids))
            .values(status="crashed", running=None, finished_at=now)
        )
    return ids


def finished_cycle(connection: Connection, *, as_of: datetime) -> int | None:
    """The id of a cycle that already finished for exactly this instant, if any."""
    return connection.execute(
        select(func.max(cycle_run.c.id)).where(cycle_run.c.as_of == as_of, cycle_run.c.status == "finished")
    ).scalar()


def finished_since(connection: Connection, *, since: datetime) -> int | None:
    """The id of the latest cycle that finished as of `since` or later, if any."""
    return connection.execute(
        select(func.max(cycle_run.c.id)).where(cycle_run.c.as_of >= since, cycle_run.c.status == "finished")
    ).scalar()


def latest_cycle(connection: Connection) -> tuple[datetime, str] | None:
    """The latest instant any cycle ran as of (finished, failed, crashed or running), and its status."""
    row = connection.execute(
        select(cycle_run.c.as_of, cycle_run.c.status).order_by(cycle_run.c.as_of.desc()).limit(1)
    ).first()
    return None if row is None else (row.as_of, row.status)


def start_cycle(connection: Connection, *, as_of: datetime, business_date: date, owner: str = "") -> int:
    """Record a running cycle; a second running row is refused by the unique `running` column."""
    try:
        with connection.begin_nested():
            result = connection.execute(
                cycle_run.insert().values(
                    as_of=as_of,
                    business_date=business_date,
                    stats={},
                    status="running",
                    running=_RUNNING,
                    owner=owner or run_owner(),
                )
            )
    except IntegrityError:
        raise CycleRunning("a cycle is running on this database: this cycle did not start") from None
    return inserted_id(result)


def finish_cycle(
    connection: Connection,
    *,
    cycle_id: int,
    finished_at: datetime,
    stats: dict[str, Any],
    status: str = "finished",
) -> None:
    connection.execute(
        update(cycle_run)
        .where(cycle_run.c.id == cycle_id)
        .values(finished_at=finished_at, stats=stats, status=status, running=None)
    )
