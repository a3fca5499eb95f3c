"""Reading and checking the servicing system's accounts and payments files (DESIGN §8).

The servicing system is the system of record, so a file it exports must never be half-read in
silence: every row either becomes a typed, checked row (`AccountRow`, `PaymentRow`) or a list of
`Rejection`s naming its line, field and reason, and `accepted + rejected == rows read` always.

Files are read one row at a time (CSV or JSON Lines), so a portfolio of any size is imported
in bounded memory; what is remembered across rows is only what the file-level rules need (the
first line of each account id, borrower and payment id). A file that cannot be read at all
raises `UnreadableFile` before any row is yielded, so the caller can refuse it with nothing stored.

Nothing here touches the database: storage is `arrears.storage.importer`.
"""

import codecs
import csv
import io
import json
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Generic, Literal, Self, TypeVar
from zoneinfo import available_timezones

import phonenumbers

from arrears.clock import parse_instant
from arrears.currencies import CURRENCY_MINOR_UNITS, ISO_4217
from arrears.jurisdictions import KNOWN_JURISDICTIONS, profile
from arrears.models import Account, Borrower, Payment
from arrears.storage.types import MONEY_SCALE
from arrears.vocabulary import Hold

__all__ = [
    "ACCOUNT_OPTIONAL",
    "ACCOUNT_REQUIRED",
    "CURRENCY_MINOR_UNITS",
    "ISO_4217",
    "PAYMENT_REQUIRED",
    "AccountRow",
    "Checked",
    "Kind",
    "PaymentRow",
    "RawRow",
    "Rejection",
    "RejectsWriter",
    "Source",
    "UnreadableFile",
    "check_accounts",
    "check_payments",
    "fits_currency",
    "open_source",
    "parse_account",
    "parse_payment",
    "rejects_path",
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
ACCOUNT_OPTIONAL = ("borrower_id", "alt_phone", "vin", "vehicle_value", "apr", "flags", "next_due_date")
PAYMENT_REQUIRED = ("payment_id", "account_id", "amount", "received_at")
_MAY_BE_EMPTY = frozenset({"oldest_due_date"})  # required as a column, empty when the account is current

_REQUIRED = {Kind.ACCOUNTS: ACCOUNT_REQUIRED, Kind.PAYMENTS: PAYMENT_REQUIRED}
_COLUMNS = {Kind.ACCOUNTS: ACCOUNT_REQUIRED + ACCOUNT_OPTIONAL, Kind.PAYMENTS: PAYMENT_REQUIRED}
# A rejects file starts with these; importing it again (after fixing it) skips them.
_REJECT_COLUMNS = ("line", "field", "reason")


# Money is Numeric(19, 4) on PostgreSQL and a signed 64-bit integer of 1/10^4 units on SQLite:
# below 10^14 fits both, so a huge amount is a rejection here rather than a failed chunk there.
_MONEY_LIMIT = Decimal(10) ** (18 - MONEY_SCALE)
_PLAIN_DECIMAL = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)", re.ASCII)  # no exponent, NaN, inf or separators
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_VIN = re.compile(r"[A-HJ-NPR-Z0-9]{17}", re.ASCII)  # ISO 3779: I, O and Q are never used


def _max_length(model: Any, column: str) -> int:
    """Lengths come from the schema: PostgreSQL refuses a longer value and would fail the chunk."""
    return int(model.__table__.c[column].type.length)


_ID_LENGTH = _max_length(Account, "account_id")
_BORROWER_ID_LENGTH = _max_length(Borrower, "borrower_id")
_NAME_LENGTH = _max_length(Borrower, "name")
_PAYMENT_ID_LENGTH = _max_length(Payment, "payment_id")


class UnreadableFile(Exception):
    """The file as a whole cannot be imported (missing, not CSV or JSON Lines, wrong columns)."""


@dataclass(frozen=True, slots=True)
class Rejection:
    line: int  # in the file: the header is line 1 of a CSV, the first record line 1 of JSON Lines
    field: str  # a column name, or "row" when the row as a whole could not be read
    reason: str


@dataclass(frozen=True, slots=True)
class RawRow:
    """One record as the file has it, before any check."""

    line: int
    values: Mapping[str, str]  # column -> text, "" for empty or null
    present: Collection[str]  # the columns this record carries (the header, for a CSV)
    original: tuple[str, ...]  # what a rejects file must reproduce, cell by cell
    problem: Rejection | None = None  # the record could not even be split into columns


@dataclass(frozen=True, slots=True)
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
    holds: frozenset[Hold] = frozenset()
    # No borrower_id was given: a new account gets `B-<account_id>`, a stored one keeps its
    # borrower (moving it would leave the borrower's opt-outs behind on the old contact points).
    borrower_defaulted: bool = False
    # Optional columns the record does not carry: their stored values stay as they are (an empty
    # cell clears a value; a missing column says nothing about it).
    absent: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class PaymentRow:
    line: int
    payment_id: str
    account_id: str
    amount: Decimal
    received_at: datetime  # aware, UTC

    @property
    def content(self) -> tuple[str, Decimal, datetime]:
        """What must match for the same payment_id to count as the same payment."""
        return (self.account_id, self.amount, self.received_at)


R = TypeVar("R", AccountRow, PaymentRow)


@dataclass(frozen=True, slots=True)
class Checked(Generic[R]):
    """A record and its verdict: a row, or the reasons it was rejected."""

    raw: RawRow
    row: R | None
    rejections: tuple[Rejection, ...] = ()


# ----------------------------------------------------------------------------------------------
# Reading


class Source:
    """An open accounts or payments file whose header (or first record) has been checked."""

    format: Literal["csv", "jsonl"]

    def __init__(self, path: Path, kind: Kind, binary: IO[bytes]) -> None:
        self.path = path
        self.kind = kind
        self._binary = binary
        self.size = path.stat().st_size
        self.columns: tuple[str, ...] = ()  # data columns in file order (without a rejects prefix)
        self.ignored_columns: tuple[str, ...] = ()  # columns that are not part of the contract

    @property
    def bytes_read(self) -> int:
        """How far reading has got, for a progress bar (the position of buffered reads)."""
        return self._binary.tell() if not self._binary.closed else self.size

    @property
    def rejects_header(self) -> tuple[str, ...]:
        """The columns of `original` in every RawRow, written after line, field, reason."""
        raise NotImplementedError

    def rows(self) -> Iterator[RawRow]:
        raise NotImplementedError

    def close(self) -> None:
        self._binary.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(path: Path, kind: Kind) -> Source:
    """Open `path` and check that it is a CSV or JSON Lines file of `kind`.

    The format follows the extension (.csv, .jsonl, .ndjson) or, failing that, the first
    character. Raises UnreadableFile with a message fit for one line.
    """
    try:
        binary = path.open("rb")
    except FileNotFoundError:
        raise UnreadableFile(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UnreadableFile(f"{path}: is a directory, not a file") from None
    except OSError as error:
        raise UnreadableFile(f"{path}: {error.strerror or error}") from None
    try:
        head = binary.peek(65536)[:65536]
        if b"\x00" in head:
            raise UnreadableFile(f"{path}: binary content, not a UTF-8 CSV or JSON Lines file")
        suffix = path.suffix.lower()
        is_jsonl = suffix in (".jsonl", ".ndjson") or (
            suffix != ".csv" and head.removeprefix(codecs.BOM_UTF8).lstrip().startswith(b"{")
        )
        source: Source = (
            _JsonlSource(path, kind, binary) if is_jsonl else _CsvSource(path, kind, binary, head)
        )
    except BaseException:
        binary.close()
        raise
    return source


def _text(binary: IO[bytes], newline: str | None) -> io.TextIOWrapper:
    # Undecodable bytes become lone surrogates instead of stopping the file: the row holding them
    # is rejected, and the rejects file writes the same bytes back.
    return io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline=newline)


def _bad_text(values: Iterable[str]) -> bool:
    try:
        "".join(values).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class _CsvSource(Source):
    format = "csv"

    def __init__(self, path: Path, kind: Kind, binary: IO[bytes], head: bytes) -> None:
        super().__init__(path, kind, binary)
        first_line = head.removeprefix(codecs.BOM_UTF8).split(b"\n", 1)[0]
        # Spreadsheets in much of Europe save with semicolons; a header never holds the separator.
        delimiter = max(",;\t", key=lambda candidate: first_line.count(candidate.encode()))
        self._stream = _text(binary, newline="")
        self._reader = csv.reader(self._stream, delimiter=delimiter, strict=False)
        try:
            header = next(self._reader)
        except StopIteration:
            raise UnreadableFile(f"{path}: empty file, no header") from None
        except csv.Error as error:
            raise UnreadableFile(f"{path}: not a CSV file ({error})") from None
        header = [name.strip() for name in header]
        self._skip = len(_REJECT_COLUMNS) if tuple(header[:3]) == _REJECT_COLUMNS else 0
        self.columns = tuple(header[self._skip :])
        if _bad_text(self.columns):
            raise UnreadableFile(f"{path}: the header is not UTF-8 text")
        seen: set[str] = set()
        for name in self.columns:
            if name in seen:
                raise UnreadableFile(f"{path}: column {name!r} appears twice in the header")
            seen.add(name)
        missing = [name for name in _REQUIRED[kind] if name not in seen]
        if missing:
            raise UnreadableFile(f"{path}: missing required columns for {kind}: {', '.join(missing)}")
        contract = set(_COLUMNS[kind])
        self.ignored_columns = tuple(name for name in self.columns if name not in contract)
        self._present = frozenset(self.columns)

    @property
    def rejects_header(self) -> tuple[str, ...]:
        return self.columns

    def rows(self) -> Iterator[RawRow]:
        reader, width, skip = self._reader, len(self.columns), self._skip
        while True:
            line = reader.line_num + 1  # where the record starts; a quoted cell may span lines
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                yield RawRow(line, {}, self._present, (), Rejection(line, "row", f"unreadable CSV: {error}"))
                continue
            if not cells:
                continue  # a blank line is not a row
            cells = cells[skip:]
            original = tuple(cells)
            problem = None
            if len(cells) != width:
                problem = Rejection(line, "row", f"has {len(cells)} fields, the header has {width}")
            values = dict(zip(self.columns, cells, strict=False))
            if problem is None and _bad_text(cells):
                bad = next(name for name, cell in values.items() if _bad_text((cell,)))
                problem = Rejection(line, bad, "not valid UTF-8 text")
            yield RawRow(line, values, self._present, original, problem)


class _JsonlSource(Source):
    """JSON Lines: one object per line. The first record stands for a header: if it lacks a
    required key, the file is taken for the wrong kind and refused whole."""

    format = "jsonl"

    def __init__(self, path: Path, kind: Kind, binary: IO[bytes]) -> None:
        super().__init__(path, kind, binary)
        self.columns = _COLUMNS[kind]
        self._stream = _text(binary, newline=None)
        self._first: tuple[int, str] | None = None
        for number, text in enumerate(self._stream, start=1):
            if text.strip():
                self._first = (number, text)
                break
        if self._first is None:
            return  # no records: nothing to import, nothing wrong
        number, text = self._first
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            raise UnreadableFile(f"{path}: line {number} is not a JSON object: not a JSON Lines file")
        missing = [k for k in _REQUIRED[kind] if k not in record and k not in _MAY_BE_EMPTY]
        if missing:
            raise UnreadableFile(
                f"{path}: line {number} lacks fields required for {kind}: {', '.join(missing)}"
            )
        contract = set(self.columns)
        self.ignored_columns = tuple(k for k in record if k not in contract)

    @property
    def rejects_header(self) -> tuple[str, ...]:
        return (*self.columns, "json")

    def rows(self) -> Iterator[RawRow]:
        if self._first is None:
            return
        start, first = self._first
        yield self._record(start, first)
        for number, text in enumerate(self._stream, start=start + 1):
            if text.strip():
                yield self._record(number, text)

    def _record(self, line: int, text: str) -> RawRow:
        text = text.rstrip("\r\n")
        problem = None
        values: dict[str, str] = {}
        try:
            # Numbers stay text, so money is never a float and NaN or 1e3 are rejected as such.
            record = json.loads(text, parse_float=str, parse_int=str, parse_constant=str)
        except ValueError as error:
            record, problem = (
                None,
                Rejection(line, "row", f"not a JSON object: {getattr(error, 'msg', error)}"),
            )
        if record is not None and not isinstance(record, dict):
            problem = Rejection(line, "row", "not a JSON object")
        elif isinstance(record, dict):
            for key, value in record.items():
                if value is None:
                    values[key] = ""
                elif isinstance(value, str):
                    values[key] = value
                elif key == "flags" and isinstance(value, list) and all(isinstance(v, str) for v in value):
                    values[key] = "|".join(value)
                elif problem is None:
                    problem = Rejection(line, key, f"expected text or a number, got {json.dumps(value)}")
            if problem is None and _bad_text(values.values()):
                problem = Rejection(line, "row", "not valid UTF-8 text")
        original = (*(_writable(values.get(name, "")) for name in self.columns), text)
        return RawRow(line, values, frozenset(values), original, problem)


def _writable(value: str) -> str:
    """A JSON escape such as \\ud800 cannot be written as UTF-8; the json column keeps the original."""
    try:
        value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


# ----------------------------------------------------------------------------------------------
# Checking one row


@cache
def _zones() -> frozenset[str]:
    # `localtime` and `Factory` are files of the system's zone database, not places.
    return frozenset(available_timezones()) - {"localtime", "Factory", "posixrules"}


def fits_currency(amount: Decimal, currency: str) -> bool:
    """Whether `amount` is exact in the currency's minor units (10.50 USD yes, 10.5 JPY no)."""
    return _places(amount) <= CURRENCY_MINOR_UNITS.get(currency, MONEY_SCALE)


def _places(value: Decimal) -> int:
    """Decimal places that matter: 10.50 has one. Exact, unlike normalize(), at any length."""
    if value == 0:
        return 0
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite: _PLAIN_DECIMAL admits no NaN or infinity
    text = "".join(map(str, digits))
    return max(0, -exponent - (len(text) - len(text.rstrip("0"))))


class _Fields:
    """Reads the cells of one record, collecting every rejection instead of stopping at the first."""

    def __init__(self, line: int, values: Mapping[str, str]) -> None:
        self.line = line
        self.values = values
        self.rejections: list[Rejection] = []

    def reject(self, name: str, reason: str) -> None:
        self.rejections.append(Rejection(self.line, name, reason))

    def optional(self, name: str) -> str:
        return self.values.get(name, "").strip()

    def required(self, name: str, max_length: int | None = None) -> str | None:
        value = self.optional(name)
        if not value:
            self.reject(name, "required")
            return None
        if max_length is not None and len(value) > max_length:
            self.reject(name, f"longer than {max_length} characters")
            return None
        return value

    def choice(self, name: str, allowed: Collection[str], what: str, listed: bool = False) -> str | None:
        value = self.required(name)
        if value is not None and value not in allowed:
            known = f"; known: {', '.join(sorted(allowed))}" if listed else ""
            self.reject(name, f"unknown {what} {value!r}{known}")
            return None
        return value

    def amount(
        self, name: str, currency: str | None, *, required: bool = True, positive: bool = False
    ) -> Decimal | None:
        text = self.optional(name)
        if not text:
            if required:
                self.reject(name, "required")
            return None
        if not _PLAIN_DECIMAL.fullmatch(text):
            self.reject(name, f"not a plain decimal number: {text!r}")
            return None
        value = Decimal(text)
        if value < 0 or (positive and value == 0):
            self.reject(name, "must be above zero" if positive else "must not be negative")
        elif value >= _MONEY_LIMIT:
            self.reject(name, f"too large (at most {len(str(_MONEY_LIMIT)) - 1} digits before the point)")
        elif currency is not None and not fits_currency(value, currency):
            self.reject(
                name, f"more decimal places than {currency} allows ({CURRENCY_MINOR_UNITS[currency]})"
            )
        elif currency is None and _places(value) > MONEY_SCALE:
            self.reject(name, f"more than {MONEY_SCALE} decimal places")
        else:
            return value + 0  # + 0 turns -0 into 0
        return None

    def day(self, name: str) -> date | None:
        text = self.optional(name)
        if not text:
            return None
        try:
            if not _ISO_DATE.fullmatch(text):
                raise ValueError
            return date.fromisoformat(text)
        except ValueError:
            self.reject(name, f"not a valid date (YYYY-MM-DD): {text!r}")
            return None

    def phone(self, name: str, region: str | None, *, required: bool = True) -> tuple[str, str | None] | None:
        """E.164 and the number's region. The number itself never appears in a reason (DESIGN §9)."""
        text = self.optional(name)
        if not text:
            if required:
                self.reject(name, "required")
            return None
        if region is None and not text.startswith("+"):
            return None  # a local number needs the jurisdiction's region; its rejection says why
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            self.reject(name, "not a phone number")
            return None
        # is_valid_number() would look the region up again: it is the slowest part of an import.
        number_region = phonenumbers.region_code_for_number(number)
        if number_region is None or not phonenumbers.is_valid_number_for_region(number, number_region):
            where = f" for region {region}" if region and not text.startswith("+") else ""
            self.reject(name, f"not a valid phone number{where}")
            return None
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), number_region


def parse_account(
    line: int, values: Mapping[str, str], present: Collection[str] | None = None
) -> AccountRow | list[Rejection]:
    """Check one accounts record on its own; `check_accounts` adds the rules across rows."""
    f = _Fields(line, values)
    present = values.keys() if present is None else present
    account_id = f.required("account_id", _ID_LENGTH)
    given_borrower_id = f.optional("borrower_id")
    borrower_id = given_borrower_id or (f"B-{account_id}" if account_id else None)
    if borrower_id is not None and len(borrower_id) > _BORROWER_ID_LENGTH:
        f.reject("borrower_id", f"longer than {_BORROWER_ID_LENGTH} characters")
    borrower_name = f.required("borrower_name", _NAME_LENGTH)
    jurisdiction = f.choice("jurisdiction", KNOWN_JURISDICTIONS, "jurisdiction", listed=True)
    region = profile(jurisdiction).phone_region if jurisdiction else None
    phone = f.phone("phone", region)
    alt_phone = f.phone("alt_phone", region, required=False)
    timezone = f.choice("timezone", _zones(), "IANA time zone")
    currency = f.choice("currency", ISO_4217, "ISO 4217 currency code")
    balance = f.amount("balance", currency)
    installment = f.amount("installment_amount", currency)
    past_due = f.amount("past_due_amount", currency)
    vehicle_value = f.amount("vehicle_value", currency, required=False)
    apr = f.amount("apr", None, required=False)  # a rate, not money: only storage's 4 places bind it
    oldest_due = f.day("oldest_due_date")
    next_due = f.day("next_due_date")
    if balance is not None and past_due is not None and past_due > balance:
        f.reject("past_due_amount", f"{past_due} exceeds the balance {balance}")
    if past_due is not None and f.optional("oldest_due_date") == "":
        if past_due > 0:
            f.reject("oldest_due_date", "required when past_due_amount is above zero")
    elif past_due == 0 and oldest_due is not None:
        f.reject("oldest_due_date", "must be empty when past_due_amount is zero")
    vin = f.optional("vin").upper() or None
    if vin is not None and not _VIN.fullmatch(vin):
        f.reject("vin", "not a VIN: 17 letters and digits, without I, O or Q")
    holds: set[Hold] = set()
    for flag in filter(None, (part.strip() for part in f.optional("flags").split("|"))):
        try:
            holds.add(Hold(flag))
        except ValueError:
            f.reject("flags", f"unknown hold flag {flag!r}; known: {', '.join(h.value for h in Hold)}")
    if f.rejections:
        return f.rejections
    assert account_id and borrower_id and borrower_name and phone and jurisdiction and timezone and currency
    assert balance is not None and installment is not None and past_due is not None
    return AccountRow(
        line=line,
        account_id=account_id,
        borrower_id=borrower_id,
        borrower_name=borrower_name,
        phone=phone[0],
        phone_region=phone[1],
        timezone=timezone,
        jurisdiction=jurisdiction,
        currency=currency,
        balance=balance,
        installment_amount=installment,
        past_due_amount=past_due,
        oldest_due_date=oldest_due,
        # The same number twice is one contact point, the primary one.
        alt_phone=alt_phone[0] if alt_phone and alt_phone[0] != phone[0] else None,
        alt_phone_region=alt_phone[1] if alt_phone and alt_phone[0] != phone[0] else None,
        vin=vin,
        vehicle_value=vehicle_value,
        apr=apr,
        next_due_date=next_due,
        holds=frozenset(holds),
        borrower_defaulted=not given_borrower_id,
        absent=frozenset(column for column in ACCOUNT_OPTIONAL if column not in present),
    )


def parse_payment(line: int, values: Mapping[str, str]) -> PaymentRow | list[Rejection]:
    """Check one payments record on its own. Its currency is the account's, checked when stored."""
    f = _Fields(line, values)
    payment_id = f.required("payment_id", _PAYMENT_ID_LENGTH)
    account_id = f.required("account_id", _ID_LENGTH)
    amount = f.amount("amount", None, positive=True)  # a payment of nothing moves nothing
    received_at = None
    text = f.required("received_at")
    if text is not None:
        try:
            received_at = parse_instant(text)
        except ValueError as error:
            f.reject("received_at", str(error))
    if f.rejections:
        return f.rejections
    assert payment_id and account_id and amount is not None and received_at is not None
    return PaymentRow(
        line=line, payment_id=payment_id, account_id=account_id, amount=amount, received_at=received_at
    )


# ----------------------------------------------------------------------------------------------
# Checking across rows


def check_accounts(records: Iterable[RawRow]) -> Iterator[Checked[AccountRow]]:
    """Check each record and the rules that span the file, lazily, in file order.

    A repeated account_id is rejected naming the first line. A borrower shared by several
    accounts must keep one name and one phone: otherwise every import would flip them back
    and forth, and importing the same file twice would not change nothing.
    """
    first_line: dict[str, int] = {}
    borrowers: dict[str, tuple[int, int, int]] = {}  # borrower_id -> line, hash of name, of phone
    for raw in records:
        if raw.problem is not None:
            yield Checked(raw, None, (raw.problem,))
            continue
        result = parse_account(raw.line, raw.values, raw.present)
        rejections = result if isinstance(result, list) else []
        account_id = raw.values.get("account_id", "").strip()
        if account_id:
            first = first_line.setdefault(account_id, raw.line)
            if first != raw.line:
                rejections.append(Rejection(raw.line, "account_id", f"duplicate of line {first}"))
        if isinstance(result, AccountRow) and not rejections:
            seen = borrowers.setdefault(
                result.borrower_id, (raw.line, hash(result.borrower_name), hash(result.phone))
            )
            for name, index, value in (
                ("borrower_name", 1, result.borrower_name),
                ("phone", 2, result.phone),
            ):
                if seen[index] != hash(value):
                    rejections.append(
                        Rejection(
                            raw.line, name, f"differs from line {seen[0]} for borrower {result.borrower_id}"
                        )
                    )
        if rejections:
            yield Checked(raw, None, tuple(rejections))
        else:
            assert isinstance(result, AccountRow)
            yield Checked(raw, result)


def check_payments(records: Iterable[RawRow]) -> Iterator[Checked[PaymentRow]]:
    """Check each record lazily; a payment_id seen before must carry the same payment.

    The same payment twice is accepted (storing it is idempotent); a different one under the
    same id is rejected naming the first line.
    """
    first: dict[str, tuple[int, int]] = {}  # payment_id -> line, hash of content
    for raw in records:
        if raw.problem is not None:
            yield Checked(raw, None, (raw.problem,))
            continue
        result = parse_payment(raw.line, raw.values)
        if isinstance(result, list):
            yield Checked(raw, None, tuple(result))
            continue
        line, content = first.setdefault(result.payment_id, (raw.line, hash(result.content)))
        if content != hash(result.content):
            yield Checked(raw, None, (Rejection(raw.line, "payment_id", f"conflicts with line {line}"),))
        else:
            yield Checked(raw, result)


# ----------------------------------------------------------------------------------------------
# Rejects


def rejects_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.rejects.csv")


class RejectsWriter:
    """Writes rejected records beside the input: line, field, reason, then the record as it was.

    One line per rejected record (several rejections are joined with "; "), so the rejects file
    counts what the summary counts and, once fixed, can be imported again as it is: the importer
    skips its first three columns. The file is created only when there is something to write.
    """

    def __init__(self, path: Path, header: tuple[str, ...]) -> None:
        self.path = path
        self.header = header
        self.written = 0
        self._file: IO[str] | None = None
        self._writer: Any = None

    def write(self, raw: RawRow, rejections: Iterable[Rejection]) -> None:
        if self._file is None:
            self._file = self.path.open("w", encoding="utf-8", errors="surrogateescape", newline="")
            self._writer = csv.writer(self._file)
            self._writer.writerow((*_REJECT_COLUMNS, *self.header))
        rejections = list(rejections)
        self._writer.writerow(
            (
                raw.line,
                "; ".join(r.field for r in rejections),
                "; ".join(r.reason for r in rejections),
                *raw.original,
            )
        )
        self.written += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
