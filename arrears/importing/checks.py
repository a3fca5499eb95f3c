"""Checking records: one row on its own (`parse_account`, `parse_payment`), then the rules that
span a file (`check_accounts`, `check_payments`). Nothing here reads a file or the database."""

import re
import unicodedata
from collections.abc import Collection, Iterable, Iterator, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import phonenumbers

from arrears.clock import parse_instant
from arrears.compliance.content import ContentFinding, screen_address, screen_envelope, screen_name
from arrears.currencies import CURRENCY_MINOR_UNITS, ISO_4217
from arrears.importing.phones import international
from arrears.importing.records import (
    ACCOUNT_OPTIONAL,
    ADDRESS_COLUMNS,
    AccountRow,
    Checked,
    Line,
    PaymentRow,
    RawRow,
    Rejection,
)
from arrears.jurisdictions import KNOWN_JURISDICTIONS, profile
from arrears.models import Account, Borrower, Payment, utcnow
from arrears.storage.types import MONEY_SCALE
from arrears.vocabulary import Hold

__all__ = [
    "YEARS_BACK_AT_MOST",
    "check_accounts",
    "check_parsed_accounts",
    "check_parsed_payments",
    "check_payments",
    "earliest_date",
    "fits_currency",
    "parse_account",
    "parse_payment",
    "read_account",
    "read_payment",
]

# Money is Numeric(19, 4) on PostgreSQL and a signed 64-bit integer of 1/10^4 units on SQLite:
# below 10^14 fits both, so a huge amount is a rejection here rather than a failed chunk there.
_MONEY_LIMIT = Decimal(10) ** (18 - MONEY_SCALE)
_PLAIN_DECIMAL = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)", re.ASCII)  # no exponent, NaN, inf or separators
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_VIN = re.compile(r"[A-HJ-NPR-Z0-9]{17}", re.ASCII)  # ISO 3779: I, O and Q are never used
# A due date or a payment more than this many years before the import is a placeholder, not a
# date of a loan still serviced: 1900-01-01 and 1970-01-01 are the null dates of spreadsheets and
# servicing databases, and a 1900 oldest due date, stored, charges the account off on its first
# cycle. No court of our profiles enforces a debt that old: China's Civil Code art. 188 protects
# no right after 20 years, England's Limitation Act 1980 s.5 gives a contract 6, US states give a
# written one at most 15; and the longest auto loans run 8 years.
YEARS_BACK_AT_MOST = 20
# The longest auto loans run 8 years: a next due date further ahead is no instalment of one but a
# placeholder (9999-12-31, the "no date" of many databases), which would hold the courtesy
# reminder back for good.
_NEXT_DUE_AHEAD_AT_MOST = timedelta(days=366 * 10)


def _max_length(model: Any, column: str) -> int:
    """Lengths come from the schema: PostgreSQL refuses a longer value and would fail the chunk."""
    return int(model.__table__.c[column].type.length)


# What an id may not hold: characters nobody sees or can type at the CLI, so that "A-\u200b1" would
# be an account of its own beside A-1 (as a BOM once made one): what `str.isprintable` refuses,
# Unicode's controls (Cc), format characters (Cf: zero-width space and joiners, soft hyphen, BOM,
# bidi marks), separators other than the space (Zs, Zl, Zp: the no-break space, the ideographic
# space), private-use and unassigned code points (Co, Cn). Those that are white space (a tab, a
# no-break space) are stripped from the ends of a cell, as a space is; inside an id, any of them
# rejects the row. One C-level test an id (~0.1 us): the files run to a million rows.
_NOT_SHOWN = {"Cc": "a control character", "Co": "a private-use character", "Cn": "an unassigned code point"}


_ID_LENGTH = _max_length(Account, "account_id")
_BORROWER_ID_LENGTH = _max_length(Borrower, "borrower_id")
_NAME_LENGTH = _max_length(Borrower, "name")
_PAYMENT_ID_LENGTH = _max_length(Payment, "payment_id")
_DERIVED = "B-"  # a record without a borrower_id is its own borrower's, B-<account_id>


@cache
def _zones() -> frozenset[str]:
    # `localtime` and `Factory` are files of the system's zone database, not places.
    return frozenset(available_timezones()) - {"localtime", "Factory", "posixrules"}


# Zone names that are a fixed offset from UTC, not a region: they keep no daylight saving, so a
# borrower's contact hours (Reg F 1006.6(b)(1): 8:00 to 21:00 their time) would be an hour off for
# half the year wherever their region keeps it. EST is New York's winter time (Panama's all year),
# Etc/GMT+5 the same offset (POSIX signs: five hours behind). The zones of US rules that do change
# (EST5EDT) and the other short names of regions (PRC, Japan) are links to a region's zone.
_FIXED_OFFSET = frozenset(
    {"EST", "MST", "HST", "UTC", "UCT", "GMT", "GMT0", "GMT+0", "GMT-0", "Greenwich", "Universal", "Zulu"}
)
# The region zone an offset most often stands for in a servicing file: an example, not a guess.
_REGION_OF_OFFSET = {
    -10: "Pacific/Honolulu",
    -8: "America/Los_Angeles",
    -7: "America/Denver",
    -6: "America/Chicago",
    -5: "America/New_York",
    0: "Europe/London",
    8: "Asia/Shanghai",
}


@lru_cache(maxsize=64)
def _fixed_offset(zone: str) -> str | None:
    """Why `zone` (a known zone name) is no borrower's zone, or None for a region's."""
    if zone not in _FIXED_OFFSET and not zone.startswith("Etc/"):
        return None
    offset = ZoneInfo(zone).utcoffset(datetime(2026, 1, 1)) or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    utc = f"UTC{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    region = _REGION_OF_OFFSET.get(minutes // 60) if minutes % 60 == 0 else None
    return (
        f"{zone!r} is a fixed offset ({utc}), not a region's time zone: it keeps no daylight saving, "
        "so contact hours would be an hour off half the year where the borrower's region keeps it; "
        "give the zone of the borrower's region (Area/City)"
        + (f", such as {region}" if region else ", as America/New_York or Asia/Shanghai are")
    )


def earliest_date(today: date) -> date:
    """The earliest date an import on `today` takes: `YEARS_BACK_AT_MOST` years before it."""
    year = today.year - YEARS_BACK_AT_MOST
    return (
        today.replace(year=year, day=28) if (today.month, today.day) == (2, 29) else today.replace(year=year)
    )


def fits_currency(amount: Decimal, currency: str) -> bool:
    """Whether `amount` is exact in the currency's minor units (10.50 USD yes, 10.5 JPY no)."""
    return _places(amount) <= CURRENCY_MINOR_UNITS.get(currency, MONEY_SCALE)


def _text_places(text: str) -> int:
    """`_places` of the plain decimal `text` (what `_PLAIN_DECIMAL` admits), read off the text:
    the digits after the point, less its trailing zeros. Decimal's as_tuple() costs ten times more."""
    point = text.find(".")
    return 0 if point < 0 else len(text[point + 1 :].rstrip("0"))


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

    def identifier(self, name: str, max_length: int | None = None, *, required: bool = True) -> str | None:
        """An id as operators will type it (`required`, or `optional`: "" when empty): one with a
        character they cannot see is rejected, naming it and its place (1 is the id's first)."""
        value = self.required(name, max_length) if required else self.optional(name)
        if value and not value.isprintable():
            at, char = next((n, c) for n, c in enumerate(value, start=1) if not c.isprintable())
            what = unicodedata.name(char, "") or _NOT_SHOWN.get(unicodedata.category(char), "unnamed")
            self.reject(
                name,
                f"contains an invisible character U+{ord(char):04X} ({what}) at position {at}: retype the id",
            )
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
        elif currency is not None and _text_places(text) > CURRENCY_MINOR_UNITS.get(currency, MONEY_SCALE):
            self.reject(
                name, f"more decimal places than {currency} allows ({CURRENCY_MINOR_UNITS[currency]})"
            )
        elif currency is None and _text_places(text) > MONEY_SCALE:
            self.reject(name, f"more than {MONEY_SCALE} decimal places")
        else:
            return value + 0  # + 0 turns -0 into 0
        return None

    def day(self, name: str) -> date | None:
        text = self.optional(name)
        if not text:
            return None
        day = _iso_date(text)
        if day is None:
            self.reject(name, f"not a valid date (YYYY-MM-DD): {text!r}")
        return day

    def phone(self, name: str, region: str | None, *, required: bool = True) -> tuple[str, str | None] | None:
        """E.164 and the number's region. The number itself never appears in a reason (DESIGN §9)."""
        text = self.optional(name)
        if not text:
            if required:
                self.reject(name, "required")
            return None
        if text.startswith("+"):
            found = international(text)  # "+digits", as servicing systems export: 10 times faster
            if found is False:
                self.reject(name, "not a valid phone number")
                return None
            if found is not None:
                return found
        elif region is None:
            return None  # a local number needs the jurisdiction's region; its rejection says why
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            self.reject(name, "not a phone number")
            return None
        if number.extension:
            # "626-241-1110 ext. 5" is a switchboard: a text reaches whoever reads the main line,
            # never the extension, and tells a third party of the debt (FDCPA 1692c(b)).
            self.reject(name, "has an extension: a text cannot reach an extension; give a number of its own")
            return None
        # is_valid_number() would look the region up again: it is the slowest part of an import.
        number_region = phonenumbers.region_code_for_number(number)
        national = (
            region is not None
            and not text.startswith("+")
            and (number.country_code == phonenumbers.country_code_for_region(region))
        )
        if national and number_region is not None and number_region != region:
            # Written without its country code, the number must be the jurisdiction's: a number of
            # another region sharing the code (+1 for the US and Canada) is not re-homed there.
            self.reject(
                name,
                f"not a phone number of region {region} (the jurisdiction's); "
                "a number of another region needs its country code (+...)",
            )
            return None
        if number_region is None or not phonenumbers.is_valid_number_for_region(number, number_region):
            where = f" for region {region}" if national else ""
            self.reject(name, f"not a valid phone number{where}")
            return None
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), number_region


@lru_cache(maxsize=4_096)
def _iso_date(text: str) -> date | None:
    """The date `text` names (YYYY-MM-DD), None if none. Cached: a file holds few distinct dates."""
    if not _ISO_DATE.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


# Borrowers' names repeat (a portfolio has many a Wang Wei and John Smith): each is screened once.
# A name is printed in a letter's window too: no word there may tell the post of a debt.
def _screened_name(name: str) -> ContentFinding | None:
    return screen_name(name) or screen_envelope(name)


_screen_name = lru_cache(maxsize=65_536)(_screened_name)


# One object for every record without holds: pickled once per chunk a worker sends back, not
# once per record (an empty frozenset costs more to unpickle than all of a record's amounts).
_NO_HOLDS: frozenset[Hold] = frozenset()


@lru_cache(maxsize=256)
def _absent(present: frozenset[str]) -> frozenset[str]:
    """The optional columns a record does not carry. Cached: every line of a CSV has the same."""
    return frozenset(column for column in ACCOUNT_OPTIONAL if column not in present) - (
        # The address is stated as a whole: a file with some of its columns replaces all of them.
        frozenset(ADDRESS_COLUMNS) if any(c in present for c in ADDRESS_COLUMNS) else frozenset()
    )


def parse_account(
    line: int, values: Mapping[str, str], present: Collection[str] | None = None
) -> AccountRow | list[Rejection]:
    """Check one accounts record on its own; `check_accounts` adds the rules across rows."""
    f = _Fields(line, values)
    present = values.keys() if present is None else present
    account_id = f.identifier("account_id", _ID_LENGTH)
    given_borrower_id = f.identifier("borrower_id", required=False)
    borrower_id = (
        None if given_borrower_id is None else given_borrower_id or (account_id and f"{_DERIVED}{account_id}")
    )
    if borrower_id is not None and len(borrower_id) > _BORROWER_ID_LENGTH:
        if given_borrower_id:
            f.reject("borrower_id", f"longer than {_BORROWER_ID_LENGTH} characters")
        else:
            # The file gave no borrower_id: the fault is the account_id's length, which the file can fix.
            f.reject(
                "account_id",
                f"longer than {_BORROWER_ID_LENGTH - len(_DERIVED)} characters without a borrower_id: "
                f"the borrower id made of it, {_DERIVED}<account_id>, would be longer than the "
                f"{_BORROWER_ID_LENGTH} characters a borrower id may have; give a borrower_id",
            )
    borrower_name = f.required("borrower_name", _NAME_LENGTH)
    if borrower_name is not None:
        finding = _screen_name(borrower_name)
        if finding is not None:
            # The name is rendered into every message: a threat or an insult in it would be sent;
            # and printed on every letter's envelope, where no word may tell of the debt.
            f.reject("borrower_name", f"{finding.rule}: {finding.detail}")
            borrower_name = None
    jurisdiction = f.choice("jurisdiction", KNOWN_JURISDICTIONS, "jurisdiction", listed=True)
    region = profile(jurisdiction).phone_region if jurisdiction else None
    phone = f.phone("phone", region)
    alt_phone = f.phone("alt_phone", region, required=False)
    timezone = f.choice("timezone", _zones(), "IANA time zone")
    if timezone is not None and (fixed := _fixed_offset(timezone)) is not None:
        f.reject("timezone", fixed)
        timezone = None
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
    address = _address(f, jurisdiction)
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
        **address,
        holds=frozenset(holds) if holds else _NO_HOLDS,
        borrower_defaulted=not given_borrower_id,
        absent=_absent(present if isinstance(present, frozenset) else frozenset(present)),
    )


_POSTAL = {"US": re.compile(r"^\d{5}(-\d{4})?$"), "CN": re.compile(r"^\d{6}$")}
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_ADDRESS_LENGTH = {"address_line1": 200, "address_line2": 200, "city": 100, "state": 64, "postal_code": 16}


def _address(f: "_Fields", jurisdiction: str | None) -> dict[str, str | None]:
    """The mailing address columns, checked together: none, or a line, a city, a postal code
    valid for the country (the jurisdiction's when not given) and, in the US, a state."""
    if f.values.keys().isdisjoint(ADDRESS_COLUMNS):
        return dict.fromkeys(ADDRESS_COLUMNS)  # most files have no address columns at all
    values = {name: " ".join(f.optional(name).split()) or None for name in ADDRESS_COLUMNS}
    if not any(values.values()):
        return values
    for name, limit in _ADDRESS_LENGTH.items():
        value = values[name]
        if value is not None and len(value) > limit:
            f.reject(name, f"longer than {limit} characters")
        elif value is not None:
            # Printed in a letter's window: no threat or insult, nor a word that tells the post of
            # the debt ("c/o DEBT COLLECTIONS DEPT"), as for the name above it.
            finding = screen_address(value)
            if finding is not None:
                f.reject(name, f"{finding.rule}: {finding.detail}")
    country = (values["country"] or (jurisdiction or "").split("-")[0]).upper()
    if not _COUNTRY.fullmatch(country):
        f.reject("country", "not an ISO 3166-1 alpha-2 country code")
    values["country"] = country
    for name in ("address_line1", "city", "postal_code"):
        if values[name] is None:
            f.reject(name, "required when a mailing address is given")
    if country == "US":
        state = (values["state"] or "").upper()
        if not re.fullmatch(r"[A-Z]{2}", state):
            f.reject("state", "a US address needs its two-letter state code")
        values["state"] = state or None
    postal, pattern = values["postal_code"], _POSTAL.get(country)
    if postal is not None and pattern is not None and not pattern.fullmatch(postal):
        f.reject("postal_code", f"not a postal code of {country}")
    return values


def parse_payment(line: int, values: Mapping[str, str]) -> PaymentRow | list[Rejection]:
    """Check one payments record on its own. Its currency is the account's, checked when stored
    (with the file's `currency`, where it states one)."""
    f = _Fields(line, values)
    payment_id = f.identifier("payment_id", _PAYMENT_ID_LENGTH)
    account_id = f.identifier("account_id", _ID_LENGTH)
    amount = f.amount("amount", None, positive=True)  # a payment of nothing moves nothing
    currency = None
    if f.optional("currency"):
        currency = f.choice("currency", ISO_4217, "ISO 4217 currency code")
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
        line=line,
        payment_id=payment_id,
        account_id=account_id,
        amount=amount,
        received_at=received_at,
        currency=currency,
    )


# ----------------------------------------------------------------------------------------------
# Checking across rows


_HASH_MASK = (1 << 64) - 1  # str hashes are signed 64-bit: masked, they are 64 bits and distinct


def _pack(line: int, name: int, phone: int) -> int:
    return (line << 128) | ((name & _HASH_MASK) << 64) | (phone & _HASH_MASK)


def _unpack(packed: int) -> tuple[int, int, int]:
    return packed >> 128, (packed >> 64) & _HASH_MASK, packed & _HASH_MASK


def read_account(raw: RawRow) -> AccountRow | list[Rejection] | None:
    """`parse_account` of one record as read; None for a record that could not be split into
    columns (its `problem` is its verdict). What a parsing worker runs, record by record."""
    return None if raw.problem is not None else parse_account(raw.line, raw.values, raw.present)


def read_payment(raw: RawRow) -> PaymentRow | list[Rejection] | None:
    """`parse_payment` of one record as read, as `read_account` is for accounts."""
    return None if raw.problem is not None else parse_payment(raw.line, raw.values)


def check_accounts(records: Iterable[RawRow], *, today: date | None = None) -> Iterator[Checked[AccountRow]]:
    """Check each record and the rules that span the file, lazily, in file order.

    A repeated account_id is rejected naming the first line. A borrower shared by several
    accounts must keep one name and one phone: otherwise every import would flip them back
    and forth, and importing the same file twice would not change nothing. Dates are held to
    the import's date, `today` (UTC's, by default): see `_implausible_dates`.
    """
    return check_parsed_accounts(((raw, read_account(raw)) for raw in records), today=today)


def check_parsed_accounts(
    parsed: Iterable[tuple[RawRow | Line, AccountRow | list[Rejection] | None]], *, today: date | None = None
) -> Iterator[Checked[AccountRow]]:
    """`check_accounts` for records already parsed on their own (`read_account`, maybe in
    another process): the rules across rows, in file order."""
    today = today or utcnow().date()
    earliest, latest_due = earliest_date(today), today + _A_DAY
    first_line: dict[str, int] = {}
    # borrower_id -> line, hash of name, hash of phone, packed in one int: a tuple of three ints
    # costs 150 bytes more per borrower, 150 MB at a million.
    borrowers: dict[str, int] = {}
    for raw, result in parsed:
        if isinstance(raw, RawRow) and raw.problem is not None:
            yield Checked(raw, None, (raw.problem,))
            continue
        assert result is not None
        rejections = result if isinstance(result, list) else []
        if isinstance(result, AccountRow):
            account_id = result.account_id  # what parsing made of the cell: the cell stripped
        else:
            assert isinstance(raw, RawRow)  # a record a worker refused comes back whole
            account_id = raw.values.get("account_id", "").strip()
        if account_id:
            first = first_line.setdefault(account_id, raw.line)
            if first != raw.line:
                rejections.append(Rejection(raw.line, "account_id", f"duplicate of line {first}"))
        if isinstance(result, AccountRow) and not rejections:
            rejections += _implausible_dates(result, earliest, latest_due)
        if isinstance(result, AccountRow) and not rejections:
            packed = _pack(raw.line, hash(result.borrower_name), hash(result.phone))
            earlier = borrowers.setdefault(result.borrower_id, packed)
            if earlier != packed:  # not the borrower's first account: that one has another line
                rejections += _unlike_first(result, *_unpack(earlier))
        if rejections:
            yield Checked(raw, None, tuple(rejections))
        else:
            assert isinstance(result, AccountRow)
            yield Checked(raw, result)


# The import's date is UTC's; the lender's may be a day ahead of it (UTC+14).
_A_DAY = timedelta(days=1)


def _implausible_dates(row: AccountRow, earliest: date, latest_due: date) -> list[Rejection]:
    """The dates of `row` no servicing system can send on the import's date: a placeholder (see
    `YEARS_BACK_AT_MOST`), or an oldest unpaid due date still to come (an instalment not yet due is
    not past due; stored, the account would count as current while owing). Not per parsed row in a
    worker: only the importer knows its date."""
    found = []
    for name, day in (("oldest_due_date", row.oldest_due_date), ("next_due_date", row.next_due_date)):
        if day is not None and day < earliest:
            found.append(
                Rejection(
                    row.line,
                    name,
                    f"{day} is more than {YEARS_BACK_AT_MOST} years before this import: a placeholder "
                    "(1900-01-01, 1970-01-01), not a due date",
                )
            )
    if row.next_due_date is not None and row.next_due_date > latest_due + _NEXT_DUE_AHEAD_AT_MOST:
        found.append(
            Rejection(
                row.line,
                "next_due_date",
                f"{row.next_due_date} is more than 10 years after this import: a placeholder "
                "(9999-12-31), not an instalment of an auto loan",
            )
        )
    oldest = row.oldest_due_date
    if oldest is not None and oldest > latest_due:
        found.append(
            Rejection(
                row.line,
                "oldest_due_date",
                f"{oldest} is after this import's date ({latest_due - _A_DAY}): an instalment not yet "
                "due is not past due; is the year right?",
            )
        )
    return found


def _unlike_first(row: AccountRow, line: int, name: int, phone: int) -> list[Rejection]:
    """What in `row` differs from the borrower's first account, given by its line and hashes."""
    return [
        Rejection(row.line, field, f"differs from line {line} for borrower {row.borrower_id}")
        for field, first, value in (("borrower_name", name, row.borrower_name), ("phone", phone, row.phone))
        if first != hash(value) & _HASH_MASK
    ]


def check_payments(records: Iterable[RawRow]) -> Iterator[Checked[PaymentRow]]:
    """Check each record lazily; a payment_id seen before must carry the same payment.

    The same payment twice is accepted (storing it is idempotent); a different one under the
    same id is rejected naming the first line.
    """
    return check_parsed_payments((raw, read_payment(raw)) for raw in records)


def check_parsed_payments(
    parsed: Iterable[tuple[RawRow | Line, PaymentRow | list[Rejection] | None]],
) -> Iterator[Checked[PaymentRow]]:
    """`check_payments` for records already parsed on their own (`read_payment`)."""
    first: dict[str, tuple[int, int]] = {}  # payment_id -> line, hash of content
    for raw, result in parsed:
        if isinstance(raw, RawRow) and raw.problem is not None:
            yield Checked(raw, None, (raw.problem,))
            continue
        assert result is not None
        if isinstance(result, list):
            yield Checked(raw, None, tuple(result))
            continue
        line, content = first.setdefault(result.payment_id, (raw.line, hash(result.content)))
        if content != hash(result.content):
            yield Checked(raw, None, (Rejection(raw.line, "payment_id", f"conflicts with line {line}"),))
        else:
            yield Checked(raw, result)
