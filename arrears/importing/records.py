"""What an import reads and decides: the records of a file, checked rows and rejections.

The records built once per row of a file are `record`s: a frozen dataclass's guard would cost an
account row ~6 µs each time it is built, where a parsing worker reads it and again where the
importer unpickles it.
"""

from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from operator import attrgetter
from typing import Any, Generic, TypeVar

from arrears.records import record
from arrears.vocabulary import Hold

__all__ = [
    "ACCOUNT_OPTIONAL",
    "ACCOUNT_REQUIRED",
    "ADDRESS_COLUMNS",
    "COLUMNS",
    "MAY_BE_EMPTY",
    "PAYMENT_OPTIONAL",
    "PAYMENT_REQUIRED",
    "REJECT_COLUMNS",
    "REQUIRED",
    "AccountRow",
    "Checked",
    "Kind",
    "Line",
    "PaymentRow",
    "RawRow",
    "Rejection",
    "UnreadableFile",
]


class Kind(StrEnum):
    ACCOUNTS = "accounts"
    PAYMENTS = "payments"


ACCOUNT_REQUIRED = (
    "account_id",
    "borrower_name",
    "phone",
    "timezone",
    "jurisdiction",
    "currency",
    "balance",
    "installment_amount",
    "past_due_amount",
    "oldest_due_date",
)
# next_due_date is not in DESIGN §8 yet; the lifecycle's courtesy reminder reads it, and only the
# servicing system knows it.
# The borrower's mailing address: where written notices (the right-to-cure notice) are mailed.
ADDRESS_COLUMNS = ("address_line1", "address_line2", "city", "state", "postal_code", "country")
ACCOUNT_OPTIONAL = (
    "borrower_id",
    "alt_phone",
    "vin",
    "vehicle_value",
    "apr",
    "flags",
    "next_due_date",
    *ADDRESS_COLUMNS,
)
PAYMENT_REQUIRED = ("payment_id", "account_id", "amount", "received_at")
# A servicer's file that states the payment's currency is held to it: the amount is the account's
# currency, and a payment in another (USD to a KWD loan) is refused, not read as the account's.
PAYMENT_OPTIONAL = ("currency",)
MAY_BE_EMPTY = frozenset({"oldest_due_date"})  # required as a column, empty when the account is current

REQUIRED = {Kind.ACCOUNTS: ACCOUNT_REQUIRED, Kind.PAYMENTS: PAYMENT_REQUIRED}
COLUMNS = {
    Kind.ACCOUNTS: ACCOUNT_REQUIRED + ACCOUNT_OPTIONAL,
    Kind.PAYMENTS: PAYMENT_REQUIRED + PAYMENT_OPTIONAL,
}
# A rejects file starts with these; importing it again (after fixing it) skips them.
REJECT_COLUMNS = ("line", "field", "reason")


T = TypeVar("T")


def _pickled_by_position(cls: type[T]) -> type[T]:
    """Pickle instances as the class and its field values, rebuilt through `__init__`.

    Parsing workers (`arrears.importing.parallel`) send every checked row back to the importer:
    the pickling dataclasses give frozen slotted classes looks their fields up and sets them one
    by one on every row, and cost the importer's process more than a third of what parsing the
    row cost the worker.
    """
    values = attrgetter(*(f.name for f in fields(cls)))  # type: ignore[arg-type]

    def reduce(self: T) -> tuple[type[T], tuple[Any, ...]]:
        return cls, values(self)

    cls.__reduce__ = reduce  # type: ignore[assignment,method-assign]
    return cls


class UnreadableFile(Exception):
    """The file as a whole cannot be imported (missing, not CSV or JSON Lines, wrong columns)."""


@_pickled_by_position
@dataclass(frozen=True, slots=True)
class Rejection:
    line: int  # in the file: the header is line 1 of a CSV, the first record line 1 of JSON Lines
    field: str  # a column name, or "row" when the row as a whole could not be read
    reason: str


@record
class Line:
    """A data line of a file as read, before it is split into a record: what the importer hands a
    parsing worker, and keeps for a record the worker accepted (to split it again, should a rule
    across rows reject it)."""

    line: int
    text: str


@record
class RawRow:
    """One record as the file has it, before any check."""

    line: int
    values: Mapping[str, str]  # column -> text, "" for empty or null
    present: Collection[str]  # the columns this record carries (the header, for a CSV)
    original: tuple[str, ...]  # what a rejects file must reproduce, cell by cell
    problem: Rejection | None = None  # the record could not even be split into columns


@_pickled_by_position
@record
class AccountRow:
    line: int
    account_id: str
    borrower_id: str
    borrower_name: str
    phone: str  # E.164
    phone_region: str | None  # the number's own ISO 3166 region, not the jurisdiction's
    timezone: str
    jurisdiction: str
    currency: str
    balance: Decimal
    installment_amount: Decimal
    past_due_amount: Decimal
    oldest_due_date: date | None
    alt_phone: str | None = None
    alt_phone_region: str | None = None
    vin: str | None = None
    vehicle_value: Decimal | None = None
    apr: Decimal | None = None
    next_due_date: date | None = None
    address_line1: str | None = None
    address_line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None
    holds: frozenset[Hold] = frozenset()
    # No borrower_id was given: a new account gets `B-<account_id>`, a stored one keeps its
    # borrower (moving it would leave the borrower's opt-outs behind on the old contact points).
    borrower_defaulted: bool = False
    # Optional columns the record does not carry: their stored values stay as they are (an empty
    # cell clears a value; a missing column says nothing about it).
    absent: frozenset[str] = frozenset()


@_pickled_by_position
@record
class PaymentRow:
    line: int
    payment_id: str
    account_id: str
    amount: Decimal
    received_at: datetime  # aware, UTC
    currency: str | None = None  # as the file states it, if it does: must be the account's

    @property
    def content(self) -> tuple[str, Decimal, datetime]:
        """What must match for the same payment_id to count as the same payment."""
        return (self.account_id, self.amount, self.received_at)


R = TypeVar("R", AccountRow, PaymentRow)


@record
class Checked(Generic[R]):
    """A record and its verdict: a row, or the reasons it was rejected."""

    raw: RawRow | Line  # a Line only for a record a parsing worker accepted
    row: R | None
    rejections: tuple[Rejection, ...] = ()
