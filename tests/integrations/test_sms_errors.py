"""The provider error tree: classes, flags, text and pickling."""

import pickle

import pytest

from integrations.errors import (
    ConfigError,
    Duplicate,
    InvalidAddress,
    OptedOut,
    Permanent,
    ProviderError,
    RecipientThrottled,
    Transient,
    UnknownOutcome,
)

ERRORS = [
    Transient("throttled", retry_after=2.5, code="20429", idempotency_key="k"),
    RecipientThrottled(
        "flow control", retry_after=60, code="isv.BUSINESS_LIMIT_CONTROL", idempotency_key="k"
    ),
    Permanent("21602", "no body", idempotency_key="k"),
    InvalidAddress("21211", "bad number", idempotency_key="k"),
    OptedOut("21610", "unsubscribed", idempotency_key="k"),
    Duplicate("reused", provider_id="SM1", idempotency_key="k"),
    ConfigError("refused", code="20003", outcomes=[None]),
    UnknownOutcome("no answer", code="http_500", idempotency_key="k"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_pickles_with_its_attributes(error: ProviderError) -> None:
    """Every error survives pickling (Prefect stores task exceptions) with its class and attributes."""
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert copy.__dict__ == error.__dict__
    assert str(copy) == str(error)


def test_tree() -> None:
    """InvalidAddress and OptedOut are Permanent, RecipientThrottled is Transient (retried alike);
    every error is a ProviderError."""
    assert issubclass(InvalidAddress, Permanent) and issubclass(OptedOut, Permanent)
    assert issubclass(RecipientThrottled, Transient)
    assert all(isinstance(e, ProviderError) for e in ERRORS)
    assert not isinstance(UnknownOutcome("x"), Transient)  # never retried blindly


def test_only_invalid_address_invalidates_the_contact_point() -> None:
    """The invalid_address flag is set by InvalidAddress alone."""
    assert [e.invalid_address for e in ERRORS if isinstance(e, Permanent)] == [False, True, False]


def test_text_carries_the_vendor_code() -> None:
    """str() shows the vendor code before the reason, for logs and the outbox's reason column."""
    assert str(InvalidAddress("21211", "bad number")) == "[21211] bad number"
    assert str(UnknownOutcome("no answer")) == "no answer"
