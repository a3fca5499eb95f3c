"""The crash drill: a kill -9 of the run at a named point, for the crash tests and the chaos
benchmark (benchmarks/chaos.py).

ARREARS_CRASH_AT="dispatch:2" makes the process SIGKILL itself the second time it reaches the
point named `dispatch` (no clean-up runs, as with a machine or OOM kill); ARREARS_CRASH_SIGNAL=SIGINT
sends Ctrl-C's signal instead. The points: `refresh`,
`advance` (after a shard), `dispatch` (after a batch was sent, before its outcomes are written),
`letters` (after the provider took a letter, before it is recorded) and `report`. Unset in production:
then a check of one environment variable is all it costs. Apart from the Prefect tasks, as the
worker processes call it and never import Prefect.
"""

import os
import signal
import threading

from tasks.workers import run_process

__all__ = ["crash", "crash_due", "crash_point"]

_crash_counts: dict[str, int] = {}
_crash_guard = threading.Lock()


def crash_point(name: str) -> None:
    """A crash drill: kill -9 of the run here, at the nth time it passes (ARREARS_CRASH_AT=name:n)."""
    if crash_due(name):
        crash()


def crash_due(name: str) -> bool:
    """Whether this pass of `name` is the drill's: counted in the process that calls it, so a
    step whose body runs in a worker process counts in the run's process and carries the answer."""
    wanted = os.environ.get("ARREARS_CRASH_AT")
    if not wanted:
        return False
    point, _, nth = wanted.partition(":")
    if point != name:
        return False
    with _crash_guard:
        _crash_counts[name] = _crash_counts.get(name, 0) + 1
        return _crash_counts[name] == int(nth or 1)


def crash() -> None:
    """kill -9 of the run's process, also from a worker process (which then goes with it). With
    ARREARS_CRASH_SIGNAL=SIGINT, a Ctrl-C of the run's process instead: it stops as it would."""
    sent = signal.Signals[os.environ.get("ARREARS_CRASH_SIGNAL") or "SIGKILL"]
    os.kill(run_process(), sent)
    if sent is signal.SIGKILL:
        os.kill(os.getpid(), signal.SIGKILL)
