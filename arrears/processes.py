"""What every worker process of ours does on start: leave with the process it works for, and
collect garbage rarely; and a pause of the collector for a step that keeps what it builds.

The daily cycle's shard workers (`tasks.workers`) and the importer's parsing workers
(`arrears.importing.parallel`) are spawned `ProcessPoolExecutor` processes. A pool's owner killed
with kill -9 cannot stop its pool, and a pool worker waits on its task queue forever (holding the
dead owner's stdout, and whatever it opened): the next run must not find it there.
"""

import gc
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "YOUNG_COLLECTION_EVERY",
    "collect_rarely",
    "collecting_rarely",
    "collection_paused",
    "leave_with_parent",
]

# Allocations between two collections of the youngest generation in bulk work (Python's: 700).
YOUNG_COLLECTION_EVERY = 100_000


def leave_with_parent(parent: int, *, every: float = 0.5) -> None:
    """Exit this process as soon as `parent` is no longer its parent (it died, and the process
    was handed to init). Call it from a pool's initializer; it returns at once."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def collect_rarely() -> None:
    """Run Python's cyclic garbage collector a hundred times less often in this process.

    Bulk work allocates a dozen objects per record, account or message, almost none in a
    reference cycle, and keeps a chunk, shard or batch of them alive: with the default threshold
    the collector runs every 700 allocations and scans what is alive again and again (and, at
    every tenth of its older collections, every object the imports made). Measured: 15-18% of an
    import's CPU, 20% of a shard's advance and 10-15% of a dispatch batch's. Nothing of ours
    waits for the collector to be freed: the objects leave with their last reference.
    """
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *gc.get_threshold()[1:])


@contextmanager
def collecting_rarely() -> Iterator[None]:
    """`collect_rarely` inside the block only (for a long-lived process); the previous threshold
    is put back after."""
    before = gc.get_threshold()
    collect_rarely()
    try:
        yield
    finally:
        gc.set_threshold(*before)


_pause = threading.Lock()
_pausing = 0  # blocks inside `collection_paused`, in any thread
_enabled_before = True  # whether the collector ran before the first of them


@contextmanager
def collection_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block: for a step that builds its objects, keeps
    them all and drops them together at its end (a shard's advance, a dispatch batch, the reviews
    a cycle opens). Even collecting rarely, each young collection scanned the 100,000 objects made
    since the last, nearly all of them alive until the shard is written: ~4 µs of CPU an account
    (timed by `gc.callbacks`, 20,000 accounts). Objects leave with their last reference as ever;
    those in reference cycles (a caught exception and its frames: a few hundred a shard) wait for
    the collector's next run after the block. The collector runs again once the last such block
    of the process, in whichever thread, ends; in a process whose other threads work meanwhile
    (the cycle's own, without worker processes) their cyclic garbage waits as long."""
    global _pausing, _enabled_before
    with _pause:
        if _pausing == 0:
            _enabled_before = gc.isenabled()
            gc.disable()
        _pausing += 1
    try:
        yield
    finally:
        with _pause:
            _pausing -= 1
            if _pausing == 0 and _enabled_before:
                gc.enable()
