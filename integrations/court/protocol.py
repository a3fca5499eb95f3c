"""The court kind: what the legal-referral task hands an e-filing provider, and what it gets back.

Caller's duties: give every filing an idempotency key that is unique and stable across runs (the
referral's key), so that submitting again after a crash or an `UnknownOutcome` returns the first
filing instead of opening a second case against the same borrower; keep the `filing_id` of the
receipt; treat callbacks as hints that may be late, repeated, out of order or lost, and poll
`status()` for filings that have been quiet too long.

Implementer's duties: translate every vendor answer into these types or an error of
`integrations.errors` (`Transient`, `Permanent`, `Duplicate`, `ConfigError`, `UnknownOutcome`,
`InvalidCallback`); retry only what was not executed, capped (`integrations.retries`); refuse a
callback whose signature does not verify or whose timestamp is more than five minutes off; never
put a secret, a party's national id or a document into a `repr`, a log line or an error message.

Statuses (ours; a vendor's own words travel in `vendor_status`):

    submitted → under_review → accepted → served → judgment
                     ├──────→ rejected    └──────→ objected             (a payment order only)
                     └──────→ cancelled                         (withdrawn before review ended)

`objected`: the respondent raised a written objection (书面异议) to a served payment order within
its 15 days (CN Civil Procedure Law, 督促程序): the order is void (支付令失效), and the case goes
to ordinary litigation unless the applicant does not agree, which is counsel's call. `reason`
holds what the court says of the objection. A payment order neither paid nor objected to in those
15 days takes effect (支付令生效) and is enforceable like a judgment (申请执行): that is `judgment`,
the court's own words (e.g. "order effective") in `vendor_status`; there is no separate status.

Statuses are added over time, backward-compatibly: a provider reports only those its gateway has
words for (none has to report `objected`; a gateway with no word for an objection says so and
leaves the caller to hear of it from counsel), and never a status missing from `FILING_STATUSES`
of the arrears it runs under (`FilingStatus` refuses it). Code reading statuses keeps a default
for a status it does not know.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import ClassVar, Literal, Protocol, Self, runtime_checkable

from integrations.callbacks import CallbackAnswer, UnreadableItem
from integrations.errors import Permanent
from integrations.metadata import ProviderInfo

__all__ = [
    "CASE_TYPES",
    "FILING_STATUSES",
    "PARTY_ROLES",
    "TERMINAL_STATUSES",
    "CaseType",
    "CourtProvider",
    "FilingDocument",
    "FilingEnvelope",
    "FilingNotFound",
    "FilingReceipt",
    "FilingStatus",
    "FilingStatusName",
    "Party",
]

FilingStatusName = Literal[
    "submitted", "under_review", "accepted", "rejected", "served", "judgment", "cancelled", "objected"
]
FILING_STATUSES: tuple[str, ...] = (
    "submitted",
    "under_review",
    "accepted",
    "rejected",
    "served",
    "judgment",
    "cancelled",
    "objected",  # added after the others: appended, so that their order stays as it was
)
# `objected` ends the filing: the payment order is void, and the suit that may follow is counsel's.
TERMINAL_STATUSES: frozenset[str] = frozenset({"rejected", "judgment", "cancelled", "objected"})

# deficiency: suit for the balance left after the repossessed vehicle's sale (US, GB);
# payment_order: 支付令 for a fixed, due amount (CN Civil Procedure Law, ch. 17);
# security_realisation: 实现担保物权, realising the car as security (CN Civil Procedure Law art. 207).
CaseType = Literal["deficiency", "payment_order", "security_realisation"]
CASE_TYPES: tuple[str, ...] = ("deficiency", "payment_order", "security_realisation")

PartyRole = Literal["plaintiff", "defendant", "applicant", "respondent"]
PARTY_ROLES: tuple[str, ...] = ("plaintiff", "defendant", "applicant", "respondent")
_CLAIMANTS = {"plaintiff", "applicant"}

MILITARY_AFFIDAVIT = "military_affidavit"  # document kind of the SCRA affidavit, 50 U.S.C. 3931(b)(1)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def _aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be time-zone aware")


def _mask(value: str) -> str:
    return "*" * max(0, len(value) - 2) + value[-2:] if len(value) > 4 else "*" * len(value)


@dataclass(frozen=True, slots=True)
class Party:
    """A party to the case. `national_id` (SSN, 身份证号…) is masked in `repr`; the address left out."""

    role: PartyRole
    name: str
    kind: Literal["person", "organization"] = "person"
    address: str = ""
    national_id: str | None = None

    def __post_init__(self) -> None:
        if self.role not in PARTY_ROLES:
            raise ValueError(f"unknown party role {self.role!r}")
        if self.kind not in ("person", "organization"):
            raise ValueError(f"unknown party kind {self.kind!r}")
        if not self.name.strip():
            raise ValueError("a party needs a name")

    def __repr__(self) -> str:
        nid = _mask(self.national_id) if self.national_id else None
        name = f"<{len(self.name)} chars>"
        return f"Party(role={self.role!r}, kind={self.kind!r}, name={name}, national_id={nid!r})"


@dataclass(frozen=True, slots=True)
class FilingDocument:
    """One document of the filing: give its bytes (`content`), or only its SHA-256 when the vendor
    already holds it. With both, they must agree; `sha256` is filled in from the bytes."""

    kind: str  # "complaint", "contract", "notice_of_sale", "deficiency_calculation", MILITARY_AFFIDAVIT…
    name: str  # file name, e.g. "complaint.pdf"
    sha256: str = ""
    content: bytes | None = None

    def __post_init__(self) -> None:
        if not self.kind or not self.name:
            raise ValueError("a filing document needs a kind and a name")
        given = self.sha256.lower()
        if self.content is not None:
            digest = hashlib.sha256(self.content).hexdigest()
            if given and given != digest:
                raise ValueError(f"sha256 of document {self.name!r} does not match its content")
            given = digest
        if not _SHA256.match(given):
            raise ValueError(f"document {self.name!r} needs its content or a hex SHA-256")
        object.__setattr__(self, "sha256", given)

    @classmethod
    def from_bytes(cls, kind: str, name: str, content: bytes) -> FilingDocument:
        return cls(kind=kind, name=name, content=content)

    @property
    def size(self) -> int | None:
        return None if self.content is None else len(self.content)

    def __repr__(self) -> str:  # never the content: it holds the borrower's personal data
        size = "by reference" if self.content is None else f"{len(self.content)} bytes"
        return f"FilingDocument(kind={self.kind!r}, name={self.name!r}, sha256={self.sha256[:12]!r}…, {size})"


@dataclass(frozen=True, slots=True)
class FilingEnvelope:
    """One filing to submit: a case of `case_type` at `court` (the vendor's court code) for
    `claim_amount` `currency`, with its parties and documents."""

    idempotency_key: str  # ours, unique per filing; travels to the provider
    court: str  # e.g. "US-CA-LASC", "CN-SH-PD"
    case_type: CaseType
    parties: Sequence[Party]
    claim_amount: Decimal
    currency: str  # ISO 4217
    documents: Sequence[FilingDocument]
    # True when an SCRA military-status affidavit is among the documents (50 U.S.C. 3931(b)(1):
    # no default judgment without it in a US court).
    military_affidavit: bool = False

    def __post_init__(self) -> None:
        if not self.idempotency_key:
            raise ValueError("a filing needs an idempotency key")
        if not self.court.strip():
            raise ValueError("a filing needs a court code")
        if self.case_type not in CASE_TYPES:
            raise ValueError(f"unknown case type {self.case_type!r}")
        object.__setattr__(self, "parties", tuple(self.parties))
        object.__setattr__(self, "documents", tuple(self.documents))
        if not isinstance(self.claim_amount, Decimal) or not self.claim_amount.is_finite():
            raise TypeError("claim_amount must be a finite Decimal")
        if self.claim_amount <= 0:
            raise ValueError("claim_amount must be positive")
        if not _CURRENCY.match(self.currency):
            raise ValueError(f"currency {self.currency!r} is not an ISO 4217 code")
        roles = {p.role for p in self.parties}
        if not roles & _CLAIMANTS or not roles - _CLAIMANTS:
            raise ValueError("a filing needs a plaintiff or applicant and a defendant or respondent")
        if not self.documents:
            raise ValueError("a filing needs at least one document")
        if self.military_affidavit and not any(d.kind == MILITARY_AFFIDAVIT for d in self.documents):
            raise ValueError(f"military_affidavit is set but no {MILITARY_AFFIDAVIT!r} document is attached")

    def __hash__(self) -> int:
        return hash(self.idempotency_key)

    def __repr__(self) -> str:
        return (
            f"FilingEnvelope(idempotency_key={self.idempotency_key!r}, court={self.court!r}, "
            f"case_type={self.case_type!r}, claim={self.claim_amount} {self.currency}, "
            f"parties=<{len(self.parties)}>, documents=<{len(self.documents)}>, "
            f"military_affidavit={self.military_affidavit})"
        )


@dataclass(frozen=True, slots=True)
class FilingReceipt:
    """What the provider accepted for review: its id for the filing."""

    idempotency_key: str
    filing_id: str
    status: FilingStatusName
    submitted_at: datetime  # time-zone aware

    def __post_init__(self) -> None:
        if self.status not in FILING_STATUSES:
            raise ValueError(f"unknown filing status {self.status!r}")
        _aware(self.submitted_at, "submitted_at")


@dataclass(frozen=True, slots=True)
class FilingStatus:
    """Where a filing stands, from a lookup or a callback. `at` is when the court says it happened."""

    filing_id: str
    status: FilingStatusName
    at: datetime  # time-zone aware
    reason: str | None = None  # why it was rejected or cancelled; what the court says of an objection
    case_number: str | None = None  # the court's docket number, once accepted
    vendor_status: str | None = None  # the vendor's own words, for the audit trail

    def __post_init__(self) -> None:
        if self.status not in FILING_STATUSES:
            raise ValueError(f"unknown filing status {self.status!r}")
        _aware(self.at, "at")

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class FilingNotFound(Permanent):
    """The provider has no filing with this id (a typo, another filer's id, or another environment)."""

    def __init__(self, filing_id: str, reason: str | None = None) -> None:
        super().__init__("filing.not_found", reason or f"no filing {filing_id!r}")
        self.filing_id = filing_id


@runtime_checkable
class CourtProvider(Protocol):
    """A provider of the court kind. Implementations live in `integrations.court.*` or in plugins
    registered under the `arrears.providers` entry-point group as `court.<name>`.

    Synchronous, like the SMS kind: callers are Prefect tasks in worker threads, and filings are
    few (dozens a day), so there is no batch call.
    """

    info: ClassVar[ProviderInfo]

    def submit(self, envelope: FilingEnvelope) -> FilingReceipt:
        """Submit a filing for review. A resend with the same idempotency key and content returns
        the first receipt; the same key with other content raises `Duplicate`."""
        ...

    def status(self, filing_id: str) -> FilingStatus:
        """The filing's current status; `FilingNotFound` (a `Permanent`) if the provider has none."""
        ...

    def parse_callback(
        self, headers: Mapping[str, str], body: bytes, *, url: str | None = None, event: str = "status"
    ) -> list[FilingStatus | UnreadableItem]:
        """Status changes from one inbound callback, oldest first, then an `UnreadableItem` for each
        event that cannot be read (the others are stored all the same). Raises `UnverifiedCallback`
        if the signature does not verify or its timestamp is over 5 minutes off, `InvalidCallback`
        if the body is not a list of events or `event` is not `status` (see `integrations.callbacks`)."""
        ...

    def acknowledge(self, event: str) -> CallbackAnswer:
        """The answer the gateway expects once the callback of `event` is stored."""
        ...

    def check_callbacks(self) -> None:
        """Raise `ConfigError` naming the setting if callbacks could not be verified (an empty secret)."""
        ...

    def close(self) -> None:
        """Release connections; the provider must not be used afterwards."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None: ...
