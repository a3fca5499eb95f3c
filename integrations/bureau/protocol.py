"""The credit-bureau provider kind: what the bureau tasks hand a provider, and what they get back.

Two operations (DESIGN §6): `pull` a consumer's profile (score band, income estimate, phones
found by skip tracing, addresses, bankruptcy and deceased indicators), and `furnish` the monthly
Metro 2 file.

Caller's duties: give every request an idempotency key that is unique and stable across runs
(a retried task sends the same key, so the bureau answers with the first result instead of a
second inquiry or a second submission); record the permissible purpose with each pull
(FCRA 604(a)(3)(A): review or collection of an account, which ends once the account is paid and
closed); refuse to furnish a file our own validator rejects.

Implementer's duties: translate every vendor answer into a result or an error of
`integrations.errors`; retry only what was not executed (`Transient`), capped in attempts and
time; after an unknown outcome, look the request up by its key before sending it again; never
put a secret, a full national id or a full phone number into a `repr`, a log line or an error.

The API is synchronous: callers are Prefect tasks running in worker threads.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import ClassVar, Literal, Protocol, Self, runtime_checkable

from integrations._masking import mask_phone
from integrations.bureau._masking import mask_national_id
from integrations.metadata import ProviderInfo

__all__ = [
    "COLLECTION_PURPOSE",
    "PERMISSIBLE_PURPOSES",
    "SCORE_BANDS",
    "Address",
    "Bankruptcy",
    "BureauProfile",
    "BureauProvider",
    "FoundPhone",
    "FurnishError",
    "FurnishRequest",
    "FurnishResult",
    "LineType",
    "PullRequest",
]

# FCRA 604(a)(3)(A): "in connection with a credit transaction ... review or collection of an
# account of, the consumer". The only purpose arrears pulls for; it lapses once the account is
# paid and closed, which the caller checks before pulling.
COLLECTION_PURPOSE = "604(a)(3)(A)"
PERMISSIBLE_PURPOSES: dict[str, str] = {
    COLLECTION_PURPOSE: "review or collection of an account (FCRA 604(a)(3)(A))",
    "604(a)(2)": "written instructions of the consumer (FCRA 604(a)(2))",
}
SCORE_BANDS: tuple[str, ...] = ("A", "B", "C", "D", "E")  # A best, E worst

LineType = Literal["mobile", "landline", "voip", "unknown"]
_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


@dataclass(frozen=True, slots=True)
class PullRequest:
    """One profile to pull: who (name plus a national id and/or a phone), why, under which key."""

    idempotency_key: str
    account_ref: str  # our account id: the bureau echoes it back, so a report is traced to its account
    name: str
    purpose: str  # a key of PERMISSIBLE_PURPOSES
    national_id: str | None = None  # SSN in the US; masked in every repr
    phone: str | None = None  # E.164

    def __post_init__(self) -> None:
        if not self.idempotency_key:
            raise ValueError("a bureau pull needs an idempotency key")
        if not self.account_ref or not self.name.strip():
            raise ValueError("a bureau pull needs the account reference and the consumer's name")
        if not (self.national_id or self.phone):
            raise ValueError("a bureau pull needs a national id or a phone number to match the consumer")
        if not self.purpose:
            raise ValueError("a bureau pull needs its permissible purpose (FCRA 604)")

    def __repr__(self) -> str:  # name left out, id and phone masked: reprs reach logs
        phone = mask_phone(self.phone) if self.phone else None
        return (
            f"PullRequest(idempotency_key={self.idempotency_key!r}, account_ref={self.account_ref!r}, "
            f"purpose={self.purpose!r}, national_id={mask_national_id(self.national_id)!r}, phone={phone!r})"
        )


@dataclass(frozen=True, slots=True)
class FoundPhone:
    """A number the bureau associates with the consumer (skip tracing), with its confidence."""

    number: str  # E.164
    confidence: float  # 0..1
    line_type: LineType = "unknown"
    carrier: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError("a phone's confidence lies between 0 and 1")

    def __repr__(self) -> str:
        masked = mask_phone(self.number)
        return f"FoundPhone({masked!r}, confidence={self.confidence}, line_type={self.line_type!r})"


@dataclass(frozen=True, slots=True)
class Address:
    line1: str
    city: str
    region: str  # state or province code
    postal_code: str
    country: str = "US"
    line2: str | None = None
    reported_on: date | None = None

    def __repr__(self) -> str:  # the street is personal data: region and country only
        return f"Address(region={self.region!r}, country={self.country!r})"


@dataclass(frozen=True, slots=True)
class Bankruptcy:
    chapter: int | None  # 7, 11, 13 … or None when the bureau does not say
    filed_on: date | None = None


@dataclass(frozen=True, slots=True)
class BureauProfile:
    """What a pull returns; `bankruptcy` is None when the bureau reports no bankruptcy."""

    idempotency_key: str
    report_id: str  # the bureau's id of the report
    account_ref: str
    purpose: str
    score_band: str  # A (best) .. E (worst)
    income_estimate: Decimal | None
    phones: tuple[FoundPhone, ...]
    addresses: tuple[Address, ...]
    bankruptcy: Bankruptcy | None
    deceased: bool
    pulled_at: datetime  # time-zone aware
    unreadable_phones: int = 0  # phone entries of the answer that could not be read, left out

    def __post_init__(self) -> None:
        if self.score_band not in SCORE_BANDS:
            raise ValueError(f"unknown score band {self.score_band!r}")
        if self.pulled_at.tzinfo is None:
            raise ValueError("pulled_at must be time-zone aware")
        object.__setattr__(self, "phones", tuple(self.phones))
        object.__setattr__(self, "addresses", tuple(self.addresses))

    @property
    def bankrupt(self) -> bool:
        return self.bankruptcy is not None


@dataclass(frozen=True, slots=True)
class FurnishRequest:
    """One Metro 2 file for one reporting period (`YYYY-MM`)."""

    idempotency_key: str
    period: str
    content: bytes = field(repr=False)  # names, balances and statuses of every account: never printed

    def __post_init__(self) -> None:
        if not self.idempotency_key:
            raise ValueError("a furnishing needs an idempotency key")
        if not _PERIOD.match(self.period):
            raise ValueError(f"period {self.period!r} is not YYYY-MM")
        if not self.content:
            raise ValueError("a furnishing needs a file")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    def __repr__(self) -> str:
        return (
            f"FurnishRequest(idempotency_key={self.idempotency_key!r}, period={self.period!r}, "
            f"content=<{len(self.content)} bytes sha256:{self.sha256[:12]}>)"
        )


@dataclass(frozen=True, slots=True)
class FurnishError:
    """One problem the bureau found in a furnished file: record number (1-based), field, reason."""

    record: int
    field: str
    reason: str


@dataclass(frozen=True, slots=True)
class FurnishResult:
    """The bureau's answer to a furnishing. `accepted` False is an answer, not an error: the file
    arrived and was refused for the `errors` listed; nothing of it is on anyone's credit file."""

    idempotency_key: str
    submission_id: str
    period: str
    accepted: bool
    records: int  # records the bureau read, header and trailer included
    errors: tuple[FurnishError, ...]
    received_at: datetime  # time-zone aware

    def __post_init__(self) -> None:
        if self.received_at.tzinfo is None:
            raise ValueError("received_at must be time-zone aware")
        object.__setattr__(self, "errors", tuple(self.errors))


@runtime_checkable
class BureauProvider(Protocol):
    """A provider of the bureau kind. Implementations live in `integrations.bureau.*` or in plugins
    registered under the `arrears.providers` entry-point group as `bureau.<name>`."""

    info: ClassVar[ProviderInfo]

    def pull(self, request: PullRequest) -> BureauProfile:
        """Pull the consumer's profile; raise a `ProviderError` subclass if there is none to give.

        The same key again returns the first report (no second inquiry). Errors: `Permanent` for a
        purpose the bureau refuses or no file found (code `no_record`), `Duplicate` for a key
        reused with another subject, `ConfigError` for refused credentials, `Transient` when
        throttled or unavailable, `UnknownOutcome` when the lookup after a failure failed too.
        """
        ...

    def furnish(self, request: FurnishRequest) -> FurnishResult:
        """Submit one Metro 2 file; the same key again returns the first submission's result."""
        ...

    def close(self) -> None:
        """Release connections; the provider must not be used afterwards."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None: ...
