"""The errors every provider client raises, whatever its vendor.

Vendor errors are translated at the boundary, in the client, into this tree, so that the tasks
above decide what to do from the class alone and never from a vendor's code:

    ProviderError                      base: something the provider said or did not say
     ├── Transient(retry_after)        not executed; safe to send again, after `retry_after` seconds
     │    └── RecipientThrottled       only this recipient is held back (per-number flow control):
     │                                 the provider is up and answering, so this is no outage
     ├── Permanent(code, reason)       executed and refused; sending again cannot help
     │    ├── InvalidAddress           the contact point is invalid: mark it so, do not retry
     │    └── OptedOut                 the recipient opted out at the carrier: record the opt-out
     ├── Duplicate                     the idempotency key was already used for another request
     ├── ConfigError                   credentials or settings are wrong: stop, page a person
     ├── UnknownOutcome                may or may not have been executed: look the message up
     │                                 (`SmsProvider.status`) before anything is sent again
     └── InvalidCallback               an inbound callback is malformed: answer 400
          └── UnverifiedCallback       it does not prove it comes from the vendor: answer 403

A provider's hint to wait (`retry_after`, Retry-After) is taken at most `MAX_RETRY_AFTER`.

Messages carry no secret and no full phone number: they end up in logs and Prefect's UI.
Every error pickles (Prefect may store a task's exception) with all its attributes.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "MAX_RETRY_AFTER",
    "ConfigError",
    "Duplicate",
    "InvalidAddress",
    "InvalidCallback",
    "OptedOut",
    "Permanent",
    "ProviderError",
    "RecipientThrottled",
    "Transient",
    "UnknownOutcome",
    "UnverifiedCallback",
    "bounded_retry_after",
]

# DESIGN §5: Retry-After is honoured, "capped in attempts and time". A longer hint (a gateway's bug,
# a far-future date, `inf`) would park a message for years, or overflow the datetime its next try is
# computed as and lose the record of a whole dispatch batch; after an hour the message is simply
# tried again, and a provider still unavailable says so again.
MAX_RETRY_AFTER = 3600.0


def bounded_retry_after(seconds: float | None) -> float | None:
    """A provider's wait hint within [0, `MAX_RETRY_AFTER`] seconds; None for none or not a number
    (NaN), which leaves the wait to our backoff."""
    if seconds is None or math.isnan(seconds):
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


def _restore(cls: type[ProviderError], state: dict[str, Any]) -> ProviderError:
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("reason", ""))
    error.__dict__.update(state)
    return error


class ProviderError(Exception):
    """Base of every provider error; `code` is the vendor's own code when there is one."""

    def __init__(self, reason: str, *, code: str | None = None, idempotency_key: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.idempotency_key = idempotency_key

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), dict(self.__dict__)))

    def __str__(self) -> str:
        return f"[{self.code}] {self.reason}" if self.code else self.reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class Transient(ProviderError):
    """The provider did not execute the request (throttled, unavailable, unreachable): send again later.

    `retry_after` is the provider's own hint in seconds (Retry-After), or None for our backoff; it is
    bounded here (`bounded_retry_after`), so that no client, a plugin's included, hands the outbox
    a wait it cannot add to a date.
    """

    def __init__(
        self,
        reason: str,
        *,
        retry_after: float | None = None,
        code: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        super().__init__(reason, code=code, idempotency_key=idempotency_key)
        self.retry_after = bounded_retry_after(retry_after)


class RecipientThrottled(Transient):
    """The provider holds back this recipient for now (flow control per number, signature and
    template, such as Aliyun's `isv.BUSINESS_LIMIT_CONTROL`): it is up and answering.

    The message waits and is tried again like any `Transient`, but it is no sign of an outage:
    dispatch does not stop for it (DESIGN §5 keeps the loud path for a provider that is down)."""


class Permanent(ProviderError):
    """The provider refused the request for a reason that sending it again cannot change."""

    def __init__(self, code: str, reason: str, *, idempotency_key: str | None = None) -> None:
        super().__init__(reason, code=code, idempotency_key=idempotency_key)

    @property
    def invalid_address(self) -> bool:
        """True when the contact point itself is unusable, so the caller should mark it invalid."""
        return False


class InvalidAddress(Permanent):
    """The number is malformed, unassigned or not a mobile: the contact point must be marked invalid."""

    @property
    def invalid_address(self) -> bool:
        return True


class OptedOut(Permanent):
    """The recipient opted out at the carrier (STOP): the caller records an `sms_opt_out` hold."""


class Duplicate(ProviderError):
    """The idempotency key was already used with different content, or twice in one batch.

    A resend of the *same* request is not a Duplicate: the provider answers with the first result.
    """

    def __init__(
        self,
        reason: str,
        *,
        provider_id: str | None = None,
        code: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        super().__init__(reason, code=code, idempotency_key=idempotency_key)
        self.provider_id = provider_id


class ConfigError(ProviderError):
    """Credentials, sender or account settings are wrong; nothing will succeed until a person fixes them.

    When raised by `send_batch`, `outcomes` holds one entry per request of the batch: its result or
    error if it was attempted before the batch stopped, None if it was not. Results there were sent.
    """

    def __init__(
        self,
        reason: str,
        *,
        code: str | None = None,
        idempotency_key: str | None = None,
        outcomes: list[Any] | None = None,
    ) -> None:
        super().__init__(reason, code=code, idempotency_key=idempotency_key)
        self.outcomes = outcomes


class UnknownOutcome(ProviderError):
    """The request may have been executed (5xx, timeout after sending): reconcile by status lookup first."""


class InvalidCallback(ProviderError):
    """An inbound callback is malformed (not the vendor's shape, a field missing): answer 400.

    Nothing changes; the vendor is told the callback will never be taken as it is."""


class UnverifiedCallback(InvalidCallback):
    """An inbound callback whose signature or token is missing or wrong: answer 403, change nothing.

    Raised before the body is read for anything else, so a forgery learns nothing about our parsing."""
