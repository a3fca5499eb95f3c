"""Retry policy: only Transient, capped in attempts and time, Retry-After first, no waiting in tests."""

import math
import time

import pytest

from integrations.errors import MAX_RETRY_AFTER, Transient, UnknownOutcome
from integrations.retries import RetryPolicy, call_with_retries, next_wait, set_testing


def _failing(errors: list[Exception], then: str = "ok"):
    calls = []

    def fn() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return then

    return fn, calls


def test_retry_after_wins_over_backoff() -> None:
    """A provider's Retry-After is the wait, whatever the attempt number."""
    policy = RetryPolicy()
    assert next_wait(Transient("x", retry_after=7), 3, policy) == 7


def test_backoff_grows_and_is_capped() -> None:
    """Without Retry-After the wait doubles per attempt, plus jitter, up to max_backoff."""
    policy = RetryPolicy(initial_backoff=1, max_backoff=3, jitter=0.1)
    waits = [next_wait(Transient("x"), n, policy) for n in (1, 2, 3, 4)]
    assert 1 <= waits[0] <= 1.1 and 2 <= waits[1] <= 2.2
    assert 3 <= waits[2] <= 3.3 and 3 <= waits[3] <= 3.3


def test_transient_is_retried_until_success() -> None:
    """Two Transient errors then success: three calls and the result."""
    fn, calls = _failing([Transient("a"), Transient("b")])
    assert call_with_retries(fn, RetryPolicy(attempts=4)) == "ok"
    assert len(calls) == 3


def test_unknown_outcome_is_never_retried() -> None:
    """UnknownOutcome reaches the caller after one call: a blind retry could send twice."""
    fn, calls = _failing([UnknownOutcome("maybe")])
    with pytest.raises(UnknownOutcome):
        call_with_retries(fn, RetryPolicy(attempts=4))
    assert len(calls) == 1


def test_attempts_are_capped() -> None:
    """After `attempts` Transient errors the last one is re-raised."""
    fn, calls = _failing([Transient(str(n)) for n in range(10)])
    with pytest.raises(Transient, match="2"):
        call_with_retries(fn, RetryPolicy(attempts=3))
    assert len(calls) == 3


def test_total_time_is_capped_counting_skipped_waits() -> None:
    """Waits count against the time budget even in testing mode: 10 s waits fit twice in 25 s."""
    fn, calls = _failing([Transient("x", retry_after=10) for _ in range(10)])
    with pytest.raises(Transient):
        call_with_retries(fn, RetryPolicy(attempts=10, total_seconds=25))
    assert len(calls) == 3


def test_wait_beyond_budget_is_not_started() -> None:
    """A Retry-After longer than the budget hands the error back at once, with its hint."""
    fn, calls = _failing([Transient("x", retry_after=3600)])
    with pytest.raises(Transient) as caught:
        call_with_retries(fn, RetryPolicy(attempts=4, total_seconds=30))
    assert len(calls) == 1 and caught.value.retry_after == 3600


@pytest.mark.parametrize(
    ("hint", "kept"),
    [(1e12, MAX_RETRY_AFTER), (math.inf, MAX_RETRY_AFTER), (-3, 0.0), (math.nan, None), (90, 90)],
)
def test_a_transient_error_never_carries_a_wait_beyond_an_hour(hint: float, kept: float | None) -> None:
    """Whoever builds the error (a plugin reading its vendor's hint its own way included), its
    `retry_after` is within [0, an hour], or None (our backoff) when it is no number at all."""
    assert Transient("x", retry_after=hint).retry_after == kept


def test_production_mode_really_waits() -> None:
    """With testing off, a Retry-After of 0.2 s is slept."""
    set_testing(False)
    fn, _ = _failing([Transient("x", retry_after=0.2)])
    started = time.monotonic()
    call_with_retries(fn, RetryPolicy())
    assert time.monotonic() - started >= 0.2


def test_testing_mode_does_not_wait() -> None:
    """With testing on, a Retry-After of 5 s costs no wall time."""
    fn, _ = _failing([Transient("x", retry_after=5)])
    started = time.monotonic()
    call_with_retries(fn, RetryPolicy())
    assert time.monotonic() - started < 1
