"""The letters kind: what a legal-notice task hands a print-and-mail provider, and what it gets back.

Why a kind of its own: a right-to-cure notice or a 催收函 only counts once it is in the post, and
its legal clock starts from the provider's `mailed` event, never from our decision to write it.
So a letter is a PDF we rendered (its SHA-256 is our evidence), sent once under our idempotency
key, and then followed by tracking events until it is delivered or returned to sender.

Caller's duties: give every letter an idempotency key that is unique and stable across runs (the
letter row's key), so that sending again after a crash or an `UnknownOutcome` returns the first
letter instead of mailing a second one; before sending again a letter whose outcome is unknown,
ask `find()` by that key (a vendor keeps a key for a while only: Lob for 24 hours, after which the
same request mails a second letter); keep the letter `id`; store the PDF's SHA-256; treat
tracking webhooks as hints that may be late, repeated, out of order or lost, and poll `status()`
for letters that have been quiet too long.

Implementer's duties: translate every vendor answer into these types or an error of
`integrations.errors` (`Transient`, `Permanent` or `InvalidAddress` for an address the vendor
cannot mail to, `Duplicate`, `ConfigError`, `UnknownOutcome`, `InvalidCallback`); retry only what
was not executed, capped (`integrations.retries`); refuse a webhook whose signature does not
verify or whose timestamp is more than five minutes off; never put a secret, an address or the
PDF into a `repr`, a log line or an error message; say where the vendor hands letters to the post
(`posts_in`, a class attribute: the countries whose post delivers them as domestic mail; None for
anywhere, as a sandbox that reaches no one). A notice served when it would be delivered counts on
that (`posting_countries`); a provider that does not say is taken to post from its sender's country.

Statuses (ours; the vendor's event names travel in `TrackingEvent.vendor_event`):

    created → mailed → in_transit → delivered
                           └──────→ returned_to_sender
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import ClassVar, Literal, Protocol, Self, cast, runtime_checkable

from integrations.errors import Permanent
from integrations.metadata import ProviderInfo

__all__ = [
    "LETTER_STATUSES",
    "MAIL_TYPES",
    "TERMINAL_STATUSES",
    "TRACKING_KINDS",
    "Letter",
    "LetterNotFound",
    "LetterRequest",
    "LetterStatusName",
    "LettersProvider",
    "MailType",
    "PostalAddress",
    "TrackingEvent",
    "TrackingKind",
    "posting_countries",
]

TrackingKind = Literal["mailed", "in_transit", "delivered", "returned_to_sender"]
TRACKING_KINDS: tuple[str, ...] = ("mailed", "in_transit", "delivered", "returned_to_sender")
LetterStatusName = Literal["created", "mailed", "in_transit", "delivered", "returned_to_sender"]
LETTER_STATUSES: tuple[str, ...] = ("created", *TRACKING_KINDS)
TERMINAL_STATUSES: frozenset[str] = frozenset({"delivered", "returned_to_sender"})
# How far along each status is: a late `in_transit` never moves a delivered letter back.
_RANK = {"created": 0, "mailed": 1, "in_transit": 2, "delivered": 3, "returned_to_sender": 3}

# A certified letter carries a USPS tracking number and proof of mailing: what counsel asks for
# when a notice's receipt may be contested (US-MA c.255B §20A counts from the notice's delivery).
MailType = Literal[
    "usps_first_class", "usps_first_class_certified", "usps_first_class_certified_return_receipt"
]
MAIL_TYPES: tuple[str, ...] = (
    "usps_first_class",
    "usps_first_class_certified",
    "usps_first_class_certified_return_receipt",
)
_PDF_MAGIC = b"%PDF-"
_COUNTRY = re.compile(r"^[A-Z]{2}$")


def _aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be time-zone aware")


@dataclass(frozen=True, slots=True)
class PostalAddress:
    """A postal address; `repr` shows only the country and postal code's first characters (PII)."""

    name: str
    line1: str
    city: str
    postal_code: str
    country: str = "US"  # ISO 3166-1 alpha-2
    state: str = ""  # US state, CN province
    line2: str = ""

    def __post_init__(self) -> None:
        for name in ("name", "line1", "city", "postal_code"):
            if not getattr(self, name).strip():
                raise ValueError(f"a postal address needs {name}")
        if not _COUNTRY.match(self.country):
            raise ValueError(f"country {self.country!r} is not an ISO 3166-1 alpha-2 code")
        if self.country == "US" and not self.state.strip():
            raise ValueError("a US address needs a state")

    def __repr__(self) -> str:
        return f"PostalAddress(country={self.country!r}, postal_code={self.postal_code[:2]!r}…)"


@dataclass(frozen=True, slots=True)
class LetterRequest:
    """One letter to print and mail: `pdf` (as rendered by `arrears.letters.render`) to `recipient`."""

    idempotency_key: str  # ours, unique per letter; travels to the provider
    recipient: PostalAddress
    sender: PostalAddress  # the lender's return address, printed in the window
    pdf: bytes
    mail_type: MailType = "usps_first_class"
    description: str = ""  # for the vendor's dashboard: a letter kind, never personal data
    sha256: str = field(default="", init=False)

    def __post_init__(self) -> None:
        if not self.idempotency_key:
            raise ValueError("a letter needs an idempotency key")
        if not self.pdf.startswith(_PDF_MAGIC):
            raise ValueError("a letter's file must be a PDF")
        if self.mail_type not in MAIL_TYPES:
            raise ValueError(f"unknown mail type {self.mail_type!r}")
        object.__setattr__(self, "sha256", hashlib.sha256(self.pdf).hexdigest())

    @property
    def certified(self) -> bool:
        return self.mail_type != "usps_first_class"

    def __hash__(self) -> int:
        return hash(self.idempotency_key)

    def __repr__(self) -> str:  # never the PDF nor the addresses: they hold the borrower's data
        return (
            f"LetterRequest(idempotency_key={self.idempotency_key!r}, mail_type={self.mail_type!r}, "
            f"description={self.description!r}, pdf=<{len(self.pdf)} bytes, sha256 {self.sha256[:12]}…>)"
        )


@dataclass(frozen=True, slots=True)
class TrackingEvent:
    """One step of a letter through the post, from a lookup or a webhook; `at` is when it happened."""

    letter_id: str
    kind: TrackingKind
    at: datetime  # time-zone aware
    event_id: str = ""  # the vendor's id: a webhook delivered twice carries the same one
    vendor_event: str = ""  # the vendor's own words ("letter.in_local_area"), for the audit trail
    location: str | None = None  # a ZIP code or facility, when the vendor gives one
    # The key the letter was sent under, where the vendor's event carries it (Lob's metadata):
    # tells the letters we mailed from those another system mailed through the same account.
    idempotency_key: str = ""

    def __post_init__(self) -> None:
        if self.kind not in TRACKING_KINDS:
            raise ValueError(f"unknown tracking event kind {self.kind!r}")
        _aware(self.at, "at")


@dataclass(frozen=True, slots=True)
class Letter:
    """What the provider holds for one letter: its id, where it stands, and its tracking so far."""

    id: str
    idempotency_key: str
    status: LetterStatusName
    created_at: datetime  # time-zone aware
    mailed_at: datetime | None = None  # the legal clock of a notice starts here
    expected_delivery: date | None = None
    tracking: Sequence[TrackingEvent] = ()
    mail_type: str = ""
    tracking_number: str | None = None  # USPS number of a certified letter

    def __post_init__(self) -> None:
        if self.status not in LETTER_STATUSES:
            raise ValueError(f"unknown letter status {self.status!r}")
        _aware(self.created_at, "created_at")
        if self.mailed_at is not None:
            _aware(self.mailed_at, "mailed_at")
        object.__setattr__(self, "tracking", tuple(sorted(self.tracking, key=lambda e: e.at)))

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @staticmethod
    def furthest(events: Sequence[TrackingEvent]) -> LetterStatusName:
        """The status a letter with these tracking events has reached (`created` with none)."""
        status: LetterStatusName = "created"
        for event in events:
            if _RANK[event.kind] >= _RANK[status]:
                status = event.kind
        return status


class LetterNotFound(Permanent):
    """The provider has no letter with this id (a typo, another account's id, another environment)."""

    def __init__(self, letter_id: str, reason: str | None = None) -> None:
        super().__init__("letter.not_found", reason or f"no letter {letter_id!r}")
        self.letter_id = letter_id


_UNSAID = object()  # a provider without `posts_in`


def posting_countries(provider: object, sender: PostalAddress) -> frozenset[str] | None:
    """The countries where `provider` hands a letter from `sender` to the post, its own domestic
    mail (a letter to any other country is international mail from there); None: wherever the
    letter goes. The provider's `posts_in` where it says; else the sender's country."""
    declared: object = getattr(type(provider), "posts_in", _UNSAID)
    if declared is _UNSAID:
        return frozenset({sender.country})
    return None if declared is None else frozenset(cast("Iterable[str]", declared))


@runtime_checkable
class LettersProvider(Protocol):
    """A provider of the letters kind. Implementations live in `integrations.letters.*` or in
    plugins registered under the `arrears.providers` entry-point group as `letters.<name>`.

    Synchronous, like the other kinds: callers are Prefect tasks in worker threads, and letters
    are few (a notice per account entering review), so there is no batch call.
    """

    info: ClassVar[ProviderInfo]

    def send(self, request: LetterRequest) -> Letter:
        """Print and mail a letter. A resend with the same idempotency key and content returns the
        first letter; the same key with other content raises `Duplicate`; an address the vendor
        cannot mail to raises `InvalidAddress` (a `Permanent`)."""
        ...

    def status(self, letter_id: str) -> Letter:
        """The letter with its tracking so far; `LetterNotFound` (a `Permanent`) if there is none."""
        ...

    def find(self, idempotency_key: str) -> Letter | None:
        """The letter sent under our `idempotency_key` (the first, should there be more), with its
        tracking so far, or None when the provider has none. A read, safe to repeat."""
        ...

    def parse_callback(
        self, headers: Mapping[str, str], body: bytes, *, url: str | None = None
    ) -> list[TrackingEvent]:
        """Tracking events from one inbound webhook, oldest first (empty for a vendor event that is
        not a tracking step, such as a rendered proof). Raises `InvalidCallback` if the body is
        malformed, the signature does not verify, or its timestamp is over 5 minutes off."""
        ...

    def close(self) -> None:
        """Release connections; the provider must not be used afterwards."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None: ...
