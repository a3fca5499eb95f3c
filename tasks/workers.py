"""Worker processes for the CPU-bound steps of the daily cycle: advance and dispatch.

Deciding a shard is pure Python: in one process the GIL lets every shard thread share one core,
however many threads the task runner has. While a cycle advances, `worker_processes` keeps a
pool of spawned processes (spawned, not forked: the parent runs threads) and `in_worker` runs a
shard's load, decide and write there; the task run, its retries and its counts stay in the
flow's process, so the Prefect UI shows the same shard tasks either way. Dispatch does the same
with its batches after the first (lease, send-time checks, send, record): there every SQLite
call of a batch in the run's process also waited for the GIL behind the bureau pulls' threads.
In the daily cycle both are the same processes, spawned once (`keeping_workers`), before the
refresh (`start_workers`). Each process opens its own connection from the same settings (they
inherit the environment) and its own provider from the open session's config; on SQLite the
writes still take turns, the loading and deciding do not.

Without a pool (one worker configured, a one-shard portfolio, a single shard run on a worker,
the test suite's default) the function runs in the calling thread.
"""

import importlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from multiprocessing import get_context
from typing import ParamSpec, TypeVar

from arrears.processes import collect_rarely, leave_with_parent

__all__ = [
    "in_own_process",
    "in_worker",
    "keeping_workers",
    "run_process",
    "start_workers",
    "worker_processes",
]

P = ParamSpec("P")
R = TypeVar("R")

_pool: ProcessPoolExecutor | None = None  # the pool `in_worker` uses, inside `worker_processes`
_pool_size = 0  # its processes
_keeping = False  # inside `keeping_workers`
_kept: tuple[int, ProcessPoolExecutor] | None = None  # a pool between two blocks, with its size


@contextmanager
def worker_processes(count: int) -> Iterator[None]:
    """Inside the block, `in_worker` runs its function in one of `count` processes (count <= 1:
    in the caller). The processes stop when the block ends, unless `keeping_workers` keeps them."""
    global _pool, _pool_size
    if count <= 1 or _pool is not None:
        yield
        return
    pool = _take_kept(count) or _spawned(count)
    clean = False
    try:
        _pool, _pool_size = pool, count
        yield
        clean = True
    finally:
        current, _pool = _pool or pool, None  # a pool that broke was replaced (`in_worker`)
        _put_back(count, current, clean)


@contextmanager
def keeping_workers() -> Iterator[None]:
    """Inside the block, the processes a `worker_processes` block started serve the next block of
    the same size instead of stopping: the daily cycle spawns its workers once for the advance
    and the dispatch (a spawned worker's start and imports cost about 3 s on two cores). Those of
    a block that raised are not kept. The kept processes stop when this block ends."""
    global _keeping
    if _keeping:
        yield
        return
    _keeping = True
    try:
        yield
    finally:
        _keeping = False
        kept = _take_kept(None)
        if kept is not None:
            kept.shutdown()


def start_workers(count: int, modules: Sequence[str] = ()) -> None:
    """Inside `keeping_workers`: spawn now the `count` processes the next `worker_processes(count)`
    block will use, each importing `modules` as it starts. A process's start and imports take
    about 2.5 s of a core; started ahead of a step that uses one core (the cycle's refresh), they
    overlap it instead of delaying the block's first shards. Outside `keeping_workers`, with a
    pool already kept or open, or for count <= 1: nothing."""
    global _kept
    if not _keeping or count <= 1 or _kept is not None or _pool is not None:
        return
    pool = _spawned(count, modules)
    # A pool spawns a process for each task submitted while none is idle: one task each.
    for _ in range(count):
        pool.submit(os.getpid)
    _kept = (count, pool)


def _take_kept(count: int | None) -> ProcessPoolExecutor | None:
    """The kept pool if it has `count` processes (None: whatever its size), else None (a kept
    pool of another size is stopped)."""
    global _kept
    kept, _kept = _kept, None
    if kept is None:
        return None
    size, pool = kept
    if count is None or size == count:
        return pool
    pool.shutdown()
    return None


def _put_back(count: int, pool: ProcessPoolExecutor, clean: bool) -> None:
    global _kept
    if _keeping and clean:
        _kept = (count, pool)
    else:
        pool.shutdown()


_owner: int | None = None  # in a worker process: the process whose run it works for


def run_process() -> int:
    """The process of the run this code works for: the pool's owner in a worker, else this one.
    A crash drill (`tasks.drill.crash_point`) kills it, as a kill -9 of the cycle would."""
    return _owner if _owner is not None else os.getpid()


def _spawned(count: int, modules: Sequence[str] = ()) -> ProcessPoolExecutor:
    """`count` processes spawned (not forked: the parent runs threads), each leaving with its
    parent, each importing `modules` first."""
    return ProcessPoolExecutor(
        max_workers=count,
        mp_context=get_context("spawn"),
        initializer=_start_worker,
        initargs=(os.getpid(), tuple(modules)),
    )


def _start_worker(parent: int, modules: tuple[str, ...] = ()) -> None:
    """Each worker leaves as soon as its parent is gone. A cycle killed with kill -9 cannot stop
    its pool, and a pool worker waits on its task queue forever (holding the dead cycle's
    stdout, and a database connection): the next cycle must not find it there. A worker does
    bulk work only (a shard, a batch), so it collects garbage rarely (`collect_rarely`)."""
    global _owner
    _owner = parent
    leave_with_parent(parent)
    collect_rarely()
    for name in modules:
        importlib.import_module(name)


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
    try:
        future = pool.submit(function, *args, **kwargs)
    except BrokenProcessPool:
        # A worker died (killed, out of memory): its shard or batch failed, and the task's retry
        # comes here. A broken pool refuses every submission, so the retries would fail at once and
        # the whole cycle with them: start the block's processes again and run it there.
        future = _replaced(pool).submit(function, *args, **kwargs)
    return future.result()


_replacing = threading.Lock()


def _replaced(broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
    """The block's pool in place of `broken` (another thread may have replaced it already)."""
    global _pool
    with _replacing:
        if _pool is broken:
            broken.shutdown(wait=False, cancel_futures=True)
            _pool = _spawned(_pool_size)
        if _pool is None:  # the block ended meanwhile
            raise BrokenProcessPool("the worker processes' block has ended")
        return _pool
