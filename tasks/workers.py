"""Worker processes for the CPU-bound steps of the daily cycle: advance and dispatch.

Deciding a shard is pure Python: in one process the GIL lets every shard thread share one core,
however many threads the task runner has. While a cycle advances, `worker_processes` keeps a
pool of spawned processes (spawned, not forked: the parent runs threads) and `in_worker` runs a
shard's load, decide and write there; the task run, its retries and its counts stay in the
flow's process, so the Prefect UI shows the same shard tasks either way. Dispatch does the same
with its batches after the first (lease, send-time checks, send, record): there every SQLite
call of a batch in the run's process also waited for the GIL behind the bureau pulls' threads.
Each process opens its own connection from the same settings (they inherit the environment) and
its own provider from the open session's config; on SQLite the writes still take turns, the
loading and deciding do not.

Without a pool (one worker configured, a one-shard portfolio, a single shard run on a worker,
the test suite's default) the function runs in the calling thread.
"""

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context
from typing import ParamSpec, TypeVar

from arrears.processes import collect_rarely, leave_with_parent

__all__ = ["in_own_process", "in_worker", "run_process", "worker_processes"]

P = ParamSpec("P")
R = TypeVar("R")

_pool: ProcessPoolExecutor | None = None


@contextmanager
def worker_processes(count: int) -> Iterator[None]:
    """Inside the block, `in_worker` runs its function in one of `count` processes (count <= 1:
    in the caller). The processes stop when the block ends."""
    global _pool
    if count <= 1 or _pool is not None:
        yield
        return
    with _spawned(count) as pool:
        _pool = pool
        try:
            yield
        finally:
            _pool = None


_owner: int | None = None  # in a worker process: the process whose run it works for


def run_process() -> int:
    """The process of the run this code works for: the pool's owner in a worker, else this one.
    A crash drill (`tasks.cycle.crash_point`) kills it, as a kill -9 of the cycle would."""
    return _owner if _owner is not None else os.getpid()


def _spawned(count: int) -> ProcessPoolExecutor:
    """`count` processes spawned (not forked: the parent runs threads), each leaving with its parent."""
    return ProcessPoolExecutor(
        max_workers=count,
        mp_context=get_context("spawn"),
        initializer=_start_worker,
        initargs=(os.getpid(),),
    )


def _start_worker(parent: int) -> None:
    """Each worker leaves as soon as its parent is gone. A cycle killed with kill -9 cannot stop
    its pool, and a pool worker waits on its task queue forever (holding the dead cycle's
    stdout, and a database connection): the next cycle must not find it there. A worker does
    bulk work only (a shard, a batch), so it collects garbage rarely (`collect_rarely`)."""
    global _owner
    _owner = parent
    leave_with_parent(parent)
    collect_rarely()


def in_own_process(function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """`function(*args, **kwargs)` in a process spawned for it alone (it exits with its parent):
    for a long step of many threads waiting on a vendor, whose GIL would otherwise be the run's,
    every SQLite call of the other steps queuing behind its threads."""
    with _spawned(1) as one:
        return one.submit(function, *args, **kwargs).result()


def in_worker(function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """`function(*args, **kwargs)` in a worker process if a pool is open, else here. The function
    must be importable by name and its arguments and result picklable."""
    pool = _pool
    if pool is None:
        return function(*args, **kwargs)
    return pool.submit(function, *args, **kwargs).result()
