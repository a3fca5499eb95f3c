"""The agency kind: what the repossession task hands a repossession agency, and what it gets back.

Why a kind of its own: an approved repossession is an order to people with a tow truck, and the
finding regulators make most often in auto servicing is a car taken after the borrower paid, got
an extension or filed for bankruptcy, because the order was never cancelled at the agency. So an
assignment is sent once under our idempotency key, followed by signed status webhooks, and
cancelled there the moment a payment, plan or hold overtakes it (`cancel`), with the agency's
answer saying whether it was still possible.

Caller's duties: give every assignment an idempotency key unique and stable across runs (the
review decision's key), so that assigning again after a crash or an `UnknownOutcome` returns the
first assignment instead of sending a second agency after the car; keep the `assignment_id`;
treat webhooks as hints that may be late, repeated, out of order or lost, and poll `status()`.

Implementer's duties: translate every vendor answer into these types or an error of
`integrations.errors`; retry only what was not executed, capped; refuse a webhook whose signature
does not verify or whose timestamp is more than five minutes off; never put a secret, a VIN, an
address or a name into a `repr`, a log line or an error message.

Statuses (ours; the vendor's own words travel in `vendor_status`):

    assigned → accepted → located → recovered → closed
        └─────────┴──────────┴──→ cancelled          (a cure, a plan, a hold: before recovery)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Literal, Protocol, Self, runtime_checkable

from integrations.errors import Permanent
from integrations.metadata import ProviderInfo

__all__ = [
    "ASSIGNMENT_STATUSES",
    "CANCELLABLE_STATUSES",
    "TERMINAL_STATUSES",
    "AgencyProvider",
    "Assignment",
    "AssignmentNotCancellable",
    "AssignmentNotFound",
    "AssignmentRequest",
    "AssignmentStatus",
    "AssignmentStatusName",
    "KnownAddress",
    "LenderContact",
    "Vehicle",
]

AssignmentStatusName = Literal["assigned", "accepted", "located", "recovered", "closed", "cancelled"]
ASSIGNMENT_STATUSES: tuple[str, ...] = ("assigned", "accepted", "located", "recovered", "closed", "cancelled")
TERMINAL_STATUSES: frozenset[str] = frozenset({"closed", "cancelled"})
# Once the car is recovered, cancelling is no longer the agency's to do: the car is on its lot,
# and what follows is a redemption or a sale under UCC 9-611/9-614, not a cancelled order.
CANCELLABLE_STATUSES: frozenset[str] = frozenset({"assigned", "accepted", "located"})
_VIN = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")  # ISO 3779: 17 characters, no I, O or Q


def _aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be time-zone aware")


def _mask(value: str) -> str:
    return "*" * max(0, len(value) - 4) + value[-4:]


@dataclass(frozen=True, slots=True)
class Vehicle:
    """The car to recover; the VIN is masked in `repr` but for its last four characters."""

    vin: str
    year: int
    make: str
    model: str
    colour: str = ""
    plate: str = ""

    def __post_init__(self) -> None:
        if not _VIN.match(self.vin.upper()):
            raise ValueError("a VIN has 17 characters, digits and capitals except I, O and Q")
        object.__setattr__(self, "vin", self.vin.upper())
        if not 1950 <= self.year <= 2100:
            raise ValueError(f"model year {self.year} is not plausible")

    def __repr__(self) -> str:
        return f"Vehicle(vin={_mask(self.vin)!r}, year={self.year}, make={self.make!r}, model={self.model!r})"


@dataclass(frozen=True, slots=True)
class KnownAddress:
    """Where the car or the borrower may be: `kind` is home, work, alternate or last_seen."""

    kind: str
    line1: str
    city: str
    postal_code: str
    state: str = ""
    country: str = "US"
    line2: str = ""

    def __post_init__(self) -> None:
        if not self.line1.strip() or not self.city.strip():
            raise ValueError("a known address needs a first line and a city")

    def __repr__(self) -> str:
        return f"KnownAddress(kind={self.kind!r}, country={self.country!r})"


@dataclass(frozen=True, slots=True)
class LenderContact:
    """Who at the lender the agency calls (the recovery desk, not the borrower's collector)."""

    name: str
    phone: str
    email: str = ""


@dataclass(frozen=True, slots=True)
class AssignmentRequest:
    """One repossession order: recover `vehicle` of account `account_reference`."""

    idempotency_key: str  # ours, unique per assignment; travels to the provider
    account_reference: str  # the lender's case number (our account id, namespaced)
    vehicle: Vehicle
    borrower_name: str
    addresses: Sequence[KnownAddress]
    lender: LenderContact
    order_type: Literal["involuntary", "voluntary"] = "involuntary"
    notes: str = ""  # for the agent: gate codes, hours; never the debt's details

    def __post_init__(self) -> None:
        if not self.idempotency_key or not self.account_reference:
            raise ValueError("an assignment needs an idempotency key and an account reference")
        if not self.borrower_name.strip():
            raise ValueError("an assignment needs the borrower's name")
        object.__setattr__(self, "addresses", tuple(self.addresses))
        if not self.addresses:
            raise ValueError("an assignment needs at least one known address")
        if self.order_type not in ("involuntary", "voluntary"):
            raise ValueError(f"unknown order type {self.order_type!r}")

    def __hash__(self) -> int:
        return hash(self.idempotency_key)

    def __repr__(self) -> str:
        return (
            f"AssignmentRequest(idempotency_key={self.idempotency_key!r}, "
            f"account_reference={self.account_reference!r}, vehicle={self.vehicle!r}, "
            f"addresses=<{len(self.addresses)}>, order_type={self.order_type!r})"
        )


@dataclass(frozen=True, slots=True)
class AssignmentStatus:
    """Where an assignment stands, from a lookup, a cancel or a webhook; `at` is when it happened."""

    assignment_id: str
    status: AssignmentStatusName
    at: datetime  # time-zone aware
    event_id: str = ""  # the vendor's id of a webhook event: a repeat carries the same one
    reason: str | None = None  # why it was cancelled or closed
    recovered_at: datetime | None = None
    recovery_location: str | None = None  # where the car was taken (a city, a lot)
    condition: str | None = None  # the agent's condition report, in brief
    vendor_status: str | None = None  # the vendor's own words, for the audit trail
    # What the agent found in the car and holds for the borrower to claim back (the recovery
    # report's personal-property inventory), one item each.
    personal_property: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in ASSIGNMENT_STATUSES:
            raise ValueError(f"unknown assignment status {self.status!r}")
        _aware(self.at, "at")
        if self.recovered_at is not None:
            _aware(self.recovered_at, "recovered_at")
        object.__setattr__(self, "personal_property", tuple(self.personal_property))

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def cancellable(self) -> bool:
        return self.status in CANCELLABLE_STATUSES


@dataclass(frozen=True, slots=True)
class Assignment:
    """What the agency accepted: its id for the assignment and its first status."""

    idempotency_key: str
    assignment_id: str
    status: AssignmentStatusName
    assigned_at: datetime  # time-zone aware

    def __post_init__(self) -> None:
        if self.status not in ASSIGNMENT_STATUSES:
            raise ValueError(f"unknown assignment status {self.status!r}")
        _aware(self.assigned_at, "assigned_at")


class AssignmentNotFound(Permanent):
    """The agency has no assignment with this id."""

    def __init__(self, assignment_id: str, reason: str | None = None) -> None:
        super().__init__("assignment.not_found", reason or f"no assignment {assignment_id!r}")
        self.assignment_id = assignment_id


class AssignmentNotCancellable(Permanent):
    """Too late to cancel: the car is recovered (or the assignment closed). `status` says which;
    the caller must now handle a recovered car (redemption, notice of sale), not an order."""

    def __init__(self, assignment_id: str, status: str, reason: str | None = None) -> None:
        super().__init__("assignment.not_cancellable", reason or f"assignment is already {status}")
        self.assignment_id = assignment_id
        self.status = status


@runtime_checkable
class AgencyProvider(Protocol):
    """A provider of the agency kind. Implementations live in `integrations.agency.*` or in plugins
    registered under the `arrears.providers` entry-point group as `agency.<name>`."""

    info: ClassVar[ProviderInfo]

    def assign(self, request: AssignmentRequest) -> Assignment:
        """Send a repossession order. A resend with the same key and content returns the first
        assignment; the same key with other content raises `Duplicate`."""
        ...

    def cancel(self, assignment_id: str, reason: str) -> AssignmentStatus:
        """Call the agency off; cancelling twice is harmless. `AssignmentNotCancellable` once the
        car is recovered or the assignment closed; `AssignmentNotFound` for an unknown id."""
        ...

    def status(self, assignment_id: str) -> AssignmentStatus:
        """The assignment's current status; `AssignmentNotFound` (a `Permanent`) if there is none."""
        ...

    def parse_callback(
        self, headers: Mapping[str, str], body: bytes, *, url: str | None = None
    ) -> list[AssignmentStatus]:
        """Status changes from one inbound webhook, oldest first. Raises `InvalidCallback` if the
        body is malformed, the signature does not verify, or its timestamp is over 5 minutes off."""
        ...

    def close(self) -> None:
        """Release connections; the provider must not be used afterwards."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None: ...
