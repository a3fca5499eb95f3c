"""A vendor taken for down within one run: once `limit` calls in a row have failed, with no answer
between, the run makes no more, and what is left waits for the next run.

Each failed call has spent its client's retries (up to half a minute), so a run of a thousand bureau
pulls, or five hundred letters, against a vendor that does not answer would hold the cycle for an
hour to learn what the first few calls said. Any answer (a refusal too: the vendor is up) starts
the count again. Shared by the threads of a run.
"""

from threading import Lock

__all__ = ["FailuresInARow"]


class FailuresInARow:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._lock = Lock()
        self._failed = 0

    @property
    def tripped(self) -> bool:
        """Whether the vendor is taken for down: make no more calls this run."""
        with self._lock:
            return self._failed >= self._limit

    def record(self, *, failed: bool) -> None:
        """One call's outcome: failed (not executed, or its outcome unknown), or answered."""
        with self._lock:
            self._failed = self._failed + 1 if failed else 0
