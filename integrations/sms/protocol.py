"""The SMS provider kind: what the dispatch task hands a provider, and what it gets back.

Caller's duties: give every message an idempotency key that is unique and stable across runs
(the outbox key); before sending again a message whose outcome is unknown (an `UnknownOutcome`,
or a crash between the call and the write of its result), ask `status()` first.

Implementer's duties: translate every vendor answer into an `SmsResult` or an error of
`integrations.errors`; retry only what was not executed (`Transient`), capped; never put a secret
or a full phone number into a `repr`, a log line or an exception message.

The API is synchronous: callers are Prefect tasks running in worker threads. `send_batch` brings
its own bounded concurrency, so one call can carry a dispatch batch of thousands of messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import ClassVar, Literal, Protocol, Self, runtime_checkable

from integrations._masking import mask_phone
from integrations.callbacks import CallbackAnswer, UnreadableItem
from integrations.errors import ProviderError
from integrations.metadata import ProviderInfo

__all__ = [
    "SMS_STATUSES",
    "Callback",
    "DeliveryReport",
    "InboundMessage",
    "Outcome",
    "SmsProvider",
    "SmsRequest",
    "SmsResult",
    "SmsStatus",
    "UnreadableItem",
]

SmsStatus = Literal["queued", "sent", "delivered", "failed", "undelivered"]
SMS_STATUSES: frozenset[str] = frozenset({"queued", "sent", "delivered", "failed", "undelivered"})


@dataclass(frozen=True, slots=True, eq=True)
class SmsRequest:
    """One message to send. `body` is what the person reads; `template`/`params` are what a
    template-based vendor (Aliyun) needs, since it renders its own pre-approved text."""

    idempotency_key: str  # ours, unique per message; travels to the provider
    to: str  # E.164, e.g. "+8613900001111"
    template: str  # template code
    params: Mapping[str, str] = field(default_factory=dict)
    body: str = ""
    # The earliest it can have reached the provider (when it was decided), if the caller knows: a
    # lookup of a send whose answer was lost, by a process that did not make it (after a crash),
    # looks no further back on a vendor that keeps nothing of ours on a message (Twilio).
    since: datetime | None = None

    def __post_init__(self) -> None:
        if not self.idempotency_key:
            raise ValueError("an SMS request needs an idempotency key")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.params.items()):
            raise TypeError("SMS template params map str to str")
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    def __hash__(self) -> int:
        return hash(self.idempotency_key)

    def __repr__(self) -> str:  # the number is masked and the body left out: reprs reach logs
        return (
            f"SmsRequest(idempotency_key={self.idempotency_key!r}, to={mask_phone(self.to)!r}, "
            f"template={self.template!r}, params=<{len(self.params)}>, body=<{len(self.body)} chars>)"
        )


@dataclass(frozen=True, slots=True)
class SmsResult:
    """What the provider accepted: its id for the message and the status it reported."""

    idempotency_key: str
    provider_id: str
    status: SmsStatus
    accepted_at: datetime  # time-zone aware
    error_code: str | None = None  # the vendor's delivery error, for failed or undelivered
    # What the error says of the number, as a callback's `DeliveryReport` says it: a status lookup
    # (a receipt that never came) is applied as the callback would have been.
    number_cannot_text: bool = False
    recipient_opted_out: bool = False
    sender_fault: bool = False

    def __post_init__(self) -> None:
        if self.status not in SMS_STATUSES:
            raise ValueError(f"unknown SMS status {self.status!r}")
        if self.accepted_at.tzinfo is None:
            raise ValueError("accepted_at must be time-zone aware")


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """One status change told by the provider through a callback (may be late, repeated, out of order)."""

    provider_id: str  # matches `SmsResult.provider_id`
    status: SmsStatus
    at: datetime  # when the vendor says it happened, or when it reached us if it does not say
    error_code: str | None = None
    reference: str | None = None  # our reference as echoed by the vendor (Aliyun OutId), if any
    vendor_status: str | None = None  # the vendor's own word, for the audit trail
    # The vendor's reference shows another system sent it: a vendor account that sends for others
    # too (a lender's one-time passcodes) pushes their reports to the same URL. False when it
    # cannot tell.
    foreign: bool = False
    # The vendor says the number cannot take texts at all (Twilio's 30005, unknown handset, and
    # 30006, a landline or an unreachable carrier: "do not retry"), not that it failed this once.
    number_cannot_text: bool = False
    # The vendor says the recipient opted out at the carrier (Twilio's 21610: they texted STOP to
    # our sender): not a failed delivery, since the number works. The caller records the opt-out
    # as it records a STOP, in its own ledger (the law binds the lender, not the gateway).
    recipient_opted_out: bool = False
    # The vendor says the failure is about our message, our sender or our account, not the number:
    # the content filtered (Twilio's 30007, Aliyun's CONTENT_KEYWORD), a sender not registered or
    # verified (30034, 30032), a template or signature refused, a cap or a queue of ours (30022,
    # 30036), or a failure the vendor cannot explain (30008). Every number would fail alike: the
    # message is failed with its code, but the failure does not count against the number.
    sender_fault: bool = False
    # The number the message went to, where the vendor says (Twilio's `To`): an opt-out is the
    # number's, and a report may come before the send it is about is recorded. Not in the repr.
    recipient: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # A naive instant cannot be stored: the webhook would answer 500 to every push of it.
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError("at must be time-zone aware")


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message a person sent us (a reply, STOP, 退订), as the provider verified and read it."""

    sender: str  # E.164, whatever form the vendor gave it in (Aliyun: national digits)
    text: str  # as sent
    at: datetime  # when the vendor says it was sent, or when it reached us if it does not say
    message_id: str  # the vendor's id for it, or a digest of it: what makes a repeat a repeat
    recipient: str | None = None  # our number or code it was sent to, if the vendor says
    # The vendor's own reading of it, where the vendor says: STOP, START or HELP (Twilio's
    # OptOutType, sent when the lender configured Advanced Opt-Out keywords, "ALTO" among them).
    # The vendor stops or resumes sending to the number on it; arrears follows at once.
    vendor_keyword: str | None = None
    # Where the vendor holds what came with the words (an MMS: a photo of a receipt or of a
    # court's notice), for an agent to open; () for a text alone.
    media: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("at must be time-zone aware")
        if not self.message_id:
            raise ValueError("an inbound message needs an id")

    def __repr__(self) -> str:  # the number is masked and the text left out: reprs reach logs
        return (
            f"InboundMessage(sender={mask_phone(self.sender)!r}, text=<{len(self.text)} chars>, "
            f"at={self.at.isoformat()!r}, message_id={self.message_id!r})"
        )


Callback = DeliveryReport | InboundMessage | UnreadableItem
Outcome = SmsResult | ProviderError


@runtime_checkable
class SmsProvider(Protocol):
    """A provider of the SMS kind. Implementations live in `integrations.sms.*` or in plugins
    registered under the `arrears.providers` entry-point group as `sms.<name>`."""

    info: ClassVar[ProviderInfo]

    def send(self, request: SmsRequest) -> SmsResult:
        """Send one message; raise a `ProviderError` subclass if it was not accepted."""
        ...

    def send_batch(self, requests: Sequence[SmsRequest]) -> list[SmsResult | ProviderError]:
        """Send many messages with bounded concurrency; one outcome per request, in the same order.

        A single message's failure is an outcome, never an exception. Raises `ConfigError` (with
        `outcomes` filled in) when the provider refuses the credentials or the account's settings.
        """
        ...

    def status(self, request: SmsRequest, provider_id: str | None = None) -> SmsResult | None:
        """The provider's record of `request`, or None if it has none (never executed: safe to send).

        With `provider_id` (from an earlier `SmsResult`) the lookup is exact; without it, the
        provider searches its recent messages to the same number. Neither vendor can look a message
        up by our idempotency key alone, hence the request rather than a bare key.
        """
        ...

    def parse_callback(
        self, headers: Mapping[str, str], body: bytes, *, url: str | None = None, event: str = "status"
    ) -> list[Callback]:
        """Verify one callback as the vendor authenticates it, then read it.

        `url` is the full URL the vendor called, query included (a Twilio signature covers it, an
        Aliyun callback carries its token in it); `event` is the last part of the webhook route:
        `status` (delivery reports) or `inbound` (messages people sent us). Raises
        `UnverifiedCallback` when the callback does not prove it comes from the vendor (checked
        first), `InvalidCallback` when it is authentic but not what the event expects. An item of
        a batch that cannot be read comes back as an `UnreadableItem` in its place, so that the
        others are stored (`integrations.callbacks`).
        """
        ...

    def acknowledge(self, event: str) -> CallbackAnswer:
        """The answer the vendor expects once the callback of `event` is stored."""
        ...

    def check_callbacks(self) -> None:
        """Raise `ConfigError` naming the setting if callbacks could not be authenticated (an
        empty signing key or token): the webhook server refuses to start rather than trust forgeries."""
        ...

    def close(self) -> None:
        """Release connections and threads; the provider must not be used afterwards."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None: ...
