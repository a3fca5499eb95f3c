"""Retrying transient provider errors: explicit, capped in attempts and in time, Retry-After honoured.

Only `Transient` is retried here (the request was not executed). `UnknownOutcome` never is: the
message may have gone out, so the client reconciles by status lookup instead. Longer outages are
left to the caller (Prefect task retries, the next cycle), which is why the total time is capped.

Tests call `set_testing(True)` (or run inside `testing()`, as every contract suite's tests do):
the schedule is computed exactly as in production, but nothing sleeps, so a burst of 429s costs no
wall time and no test has to monkeypatch `time.sleep`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from integrations.errors import Transient

__all__ = ["RetryPolicy", "call_with_retries", "is_testing", "next_wait", "set_testing", "testing"]

T = TypeVar("T")

_testing = threading.Event()


def set_testing(testing: bool = True) -> None:
    """Turn waiting between attempts off (tests) or back on; attempts and caps are unchanged."""
    if testing:
        _testing.set()
    else:
        _testing.clear()


def is_testing() -> bool:
    return _testing.is_set()


@contextmanager
def testing() -> Iterator[None]:
    """Waits off for the block, then back as they were: a contract suite wraps each of its tests in
    it, so a plugin's own test run does not sleep through every Retry-After either."""
    was = is_testing()
    set_testing(True)
    try:
        yield
    finally:
        set_testing(was)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard a client tries before handing a `Transient` error back to its caller."""

    attempts: int = 4  # including the first
    total_seconds: float = 30.0  # the budget of one call, waits included
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    jitter: float = 0.1  # fraction of the backoff, added at random so clients do not retry in step

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.total_seconds <= 0:
            raise ValueError("a retry policy needs at least one attempt and a positive time budget")


def next_wait(error: Transient, attempt: int, policy: RetryPolicy) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): Retry-After wins over backoff."""
    if error.retry_after is not None:
        return max(0.0, error.retry_after)
    backoff = min(policy.max_backoff, policy.initial_backoff * 2 ** (attempt - 1))
    return backoff * (1 + random.uniform(0, policy.jitter))


def _sleep(seconds: float) -> None:
    if not _testing.is_set():
        time.sleep(seconds)


def call_with_retries(fn: Callable[[], T], policy: RetryPolicy) -> T:
    """Call `fn`, retrying `Transient` only; re-raise the last error once a cap would be exceeded.

    A wait that would end past the time budget is not started: the caller gets the `Transient`
    (with its `retry_after`) at once and reschedules, rather than blocking a worker thread.
    """

    def wait(state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        assert isinstance(error, Transient)
        return next_wait(error, state.attempt_number, policy)

    def stop(state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= policy.attempts:
            return True
        elapsed = state.seconds_since_start or 0.0
        if _testing.is_set():
            elapsed += state.idle_for  # the waits that were skipped count as if they had happened
        return elapsed + (state.upcoming_sleep or 0.0) > policy.total_seconds

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(Transient),
        wait=wait,
        stop=stop,
        sleep=_sleep,
        reraise=True,
    )
    return retrying(fn)
