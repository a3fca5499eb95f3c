"""What every worker process of ours does on start: leave with the process it works for.

The daily cycle's shard workers (`tasks.workers`) and the importer's parsing workers
(`arrears.importing.parallel`) are spawned `ProcessPoolExecutor` processes. A pool's owner killed
with kill -9 cannot stop its pool, and a pool worker waits on its task queue forever (holding the
dead owner's stdout, and whatever it opened): the next run must not find it there.
"""

import os
import threading
import time

__all__ = ["leave_with_parent"]


def leave_with_parent(parent: int, *, every: float = 0.5) -> None:
    """Exit this process as soon as `parent` is no longer its parent (it died, and the process
    was handed to init). Call it from a pool's initializer; it returns at once."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
