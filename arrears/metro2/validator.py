"""Re-reading a Metro 2 character-format file and reporting every field that breaks the layout.

`validate(content)` returns a list of `Problem(record, field, reason)`, record numbers 1-based
as a text editor counts lines (the header is record 1); an empty list means the file passes.
It reads any file, ours or not, and never stops at the first problem.

What it checks:
- the file: ASCII, records of exactly 426 bytes (one per line, or back to back), a HEADER first
  and a TRAILER last, base segments between (appended segments are not written by arrears, so
  a longer record is reported as a length error);
- every record: the Record Descriptor Word is 0426; numeric fields are digits only; date fields
  are MMDDYYYY dates or all zeros; text fields are upper case and left-justified;
- header: Activity Date and Date Created present, Reporter Name present;
- base segment: Identification Number, Consumer Account Number and Surname present; Portfolio Type;
  Account Status a known code; Payment Rating present (0-6, G, L) exactly with statuses 05,
  13, 65, 88, 89, 94, 95 and blank otherwise; Payment History Profile 24 characters of 0-6, B,
  D, E, G, H, J, K, L, with nothing but B after a B; Compliance Condition Code blank or XA-XJ,
  XR; Consumer Information Indicator blank or a known code; ECOA Code known; Date of Account
  Information present; Date of First Delinquency present for the statuses that need it (61-65,
  71-84, 88, 89, 93-97, and 13 with a rating of 1-6, G or L), zero for 11 and 13 rated 0, and
  never after the Date of Account Information; a zero balance and nothing past due with 13 and
  61-64; an amount past due with 71-84; an Original Charge-off Amount with 97 and 64 only;
- trailer: Total Base Records and each Total of Status Code equal the counts in the file.

What it does not check: the address (an account may have none on file), fields arrears does
not fill (SSN, date of birth, date opened, terms), the J1/J2/K/L/N segments, and the packed
(366-byte) format.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime

from arrears.metro2.layout import BASE, HEADER, RECORD_LENGTH, STATUS_COUNTERS, TRAILER, Field, Layout
from arrears.metro2.status import DOFD_STATUSES, HISTORY_CHARS, RATING_CHARS, RATING_REQUIRED, STATUS_CODES

__all__ = ["Problem", "split_records", "validate"]

_TEXT = re.compile(r"^[A-Z0-9 \-'/&.,#]*$")
_CCC = frozenset({"", "XA", "XB", "XC", "XD", "XE", "XF", "XG", "XH", "XJ", "XR"})
_CII = frozenset({"", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ", "1A", "2A"})
_ECOA = frozenset("12357TWXZ")
_PORTFOLIO = frozenset("CIMORL")


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    record: int  # 1-based; 0 for the file as a whole
    field: str
    reason: str

    def __str__(self) -> str:
        return f"record {self.record}: {self.field}: {self.reason}"


def split_records(content: bytes) -> list[bytes]:
    """Records of a character-format file: one per line, or fixed 426-byte chunks without newlines."""
    if b"\n" in content:
        lines = content.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        return [line[:-1] if line.endswith(b"\r") else line for line in lines]
    return [content[i : i + RECORD_LENGTH] for i in range(0, len(content), RECORD_LENGTH)]


def _date(value: str) -> date | None:
    """The date in a MMDDYYYY field; None for all zeros; ValueError if it is neither."""
    if value == "0" * len(value):
        return None
    return datetime.strptime(value, "%m%d%Y").date()


class _Checker:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, n: int, name: str, reason: str) -> None:
        self.problems.append(Problem(n, name, reason))

    def fields(self, n: int, layout: Layout, record: str) -> dict[str, str]:
        """Kind checks of every field; returns the raw values by name."""
        values: dict[str, str] = {}
        for f in layout:
            value = f.slice(record)
            values[f.name] = value
            self._kind(n, f, value)
        return values

    def _kind(self, n: int, f: Field, value: str) -> None:
        if f.kind == "N":
            if not value.isdigit():
                self.add(n, f.name, f"{value!r} is not zero-filled digits")
        elif f.kind == "D":
            try:
                _date(value)
            except ValueError:
                self.add(n, f.name, f"{value!r} is not a MMDDYYYY date or zeros")
        elif f.kind == "T":
            if value.strip() and value != "0" * len(value):
                try:
                    datetime.strptime(value, "%m%d%Y%H%M%S")
                except ValueError:
                    self.add(n, f.name, f"{value!r} is not a MMDDYYYYHHMMSS time stamp or zeros")
        else:
            if not _TEXT.match(value):
                bad = "lower case" if value != value.upper() else "characters the format does not take"
                self.add(n, f.name, f"{value.strip()!r} has {bad}")
            elif value.strip() and value[0] == " ":
                self.add(n, f.name, f"{value!r} is not left-justified")

    def required(self, n: int, values: dict[str, str], *names: str) -> None:
        for name in names:
            value = values[name]
            if not value.strip() or (value.isdigit() and not value.strip("0")):
                self.add(n, name, "required and missing")

    # -- records --------------------------------------------------------------------------------

    def header(self, n: int, record: str) -> None:
        values = self.fields(n, HEADER, record)
        self.required(n, values, "Activity Date", "Date Created", "Reporter Name")

    def base(self, n: int, record: str, statuses: Counter[str]) -> None:
        values = self.fields(n, BASE, record)
        # A tradeline without a surname matches no consumer at the bureau.
        self.required(
            n,
            values,
            "Identification Number",
            "Consumer Account Number",
            "Date of Account Information",
            "Surname",
        )
        if values["Portfolio Type"] not in _PORTFOLIO:
            self.add(n, "Portfolio Type", f"{values['Portfolio Type']!r} is not C, I, M, O, R or L")
        status = values["Account Status"]
        statuses[status] += 1
        if status not in STATUS_CODES:
            self.add(n, "Account Status", f"{status!r} is not an Account Status code")
        rating = values["Payment Rating"]
        if status in RATING_REQUIRED:
            if rating == " " or rating not in RATING_CHARS:
                self.add(n, "Payment Rating", f"{rating!r}: status {status} needs a rating of 0-6, G or L")
        elif rating != " ":
            self.add(
                n,
                "Payment Rating",
                f"{rating!r} with status {status}: blank unless 05, 13, 65, 88, 89, 94, 95",
            )
        history = values["Payment History Profile"]
        wrong = sorted({c for c in history if c not in HISTORY_CHARS})
        if wrong:
            self.add(
                n,
                "Payment History Profile",
                f"characters {''.join(wrong)!r} are not 0-6, B, D, E, G, H, J, K, L",
            )
        elif "B" in history and history[history.index("B") :].strip("B"):
            self.add(n, "Payment History Profile", "history after a B (no history before this month)")
        if values["Compliance Condition Code"].strip() not in _CCC:
            self.add(
                n, "Compliance Condition Code", f"{values['Compliance Condition Code']!r} is not a known code"
            )
        if values["Consumer Information Indicator"].strip() not in _CII:
            self.add(
                n,
                "Consumer Information Indicator",
                f"{values['Consumer Information Indicator']!r} is not a known code",
            )
        if values["ECOA Code"] not in _ECOA:
            self.add(n, "ECOA Code", f"{values['ECOA Code']!r} is not 1, 2, 3, 5, 7, T, W, X or Z")
        self._amounts(n, status, values)
        self._first_delinquency(n, status, rating, values)

    def _amounts(self, n: int, status: str, values: dict[str, str]) -> None:
        def amount(name: str) -> int | None:
            return int(values[name]) if values[name].isdigit() else None

        balance, past_due, charge_off = (
            amount("Current Balance"),
            amount("Amount Past Due"),
            amount("Original Charge-off Amount"),
        )
        if status in ("13", "61", "62", "63", "64"):
            if balance:
                self.add(
                    n,
                    "Current Balance",
                    f"{balance} with status {status}: a paid or closed account owes nothing",
                )
            if past_due:
                self.add(
                    n,
                    "Amount Past Due",
                    f"{past_due} with status {status}: a paid or closed account owes nothing",
                )
        if status in ("71", "78", "80", "82", "83", "84") and past_due == 0:
            self.add(
                n,
                "Amount Past Due",
                f"zero with status {status}: a delinquent account has an amount past due",
            )
        if status in ("97", "64") and charge_off == 0:
            self.add(n, "Original Charge-off Amount", f"required with status {status}")
        elif status not in ("97", "64") and charge_off:
            self.add(
                n, "Original Charge-off Amount", f"{charge_off} with status {status}: only with 97 or 64"
            )

    def _first_delinquency(self, n: int, status: str, rating: str, values: dict[str, str]) -> None:
        try:
            first = _date(values["Date of First Delinquency"])
            information = _date(values["Date of Account Information"])
        except ValueError:
            return  # already reported as a bad date
        needed = status in DOFD_STATUSES or (status == "13" and rating in "123456GL" and rating != " ")
        if needed and first is None:
            self.add(
                n,
                "Date of First Delinquency",
                f"required with status {status}{' rated ' + rating if status == '13' else ''}",
            )
        elif first is not None and (status == "11" or (status == "13" and rating == "0")):
            self.add(
                n, "Date of First Delinquency", f"must be zero with status {status}: the account is current"
            )
        if first is not None and information is not None and first > information:
            self.add(n, "Date of First Delinquency", "after the Date of Account Information")

    def trailer(self, n: int, record: str, bases: int, statuses: Counter[str]) -> None:
        values = self.fields(n, TRAILER, record)

        def check(name: str, actual: int) -> None:
            value = values[name]
            if value.isdigit() and int(value) != actual:
                self.add(n, name, f"{int(value)} declared, {actual} in the file")

        check("Total Base Records", bases)
        check("Total of Status Code DA", statuses["DA"])
        check("Total of Status Code DF", statuses["DF"])
        for code in STATUS_COUNTERS:
            check(f"Total of Status Code {code}", statuses[code])


def validate(content: bytes) -> list[Problem]:
    """Every problem of the file, in record order (see the module docstring for what is checked)."""
    checker = _Checker()
    records = split_records(content)
    if not records:
        return [Problem(0, "file", "empty: a file needs a header and a trailer")]
    statuses: Counter[str] = Counter()
    bases = 0
    last = len(records)
    for n, raw in enumerate(records, start=1):
        if 1 < n < last:
            bases += 1  # a base segment by position, even if it cannot be read
        try:
            record = raw.decode("ascii")
        except UnicodeDecodeError:
            checker.add(n, "record", "bytes outside ASCII")
            continue
        if len(record) != RECORD_LENGTH:
            checker.add(
                n, "Record Descriptor Word", f"record is {len(record)} bytes, expected {RECORD_LENGTH}"
            )
            continue
        if record[:4] != "0426":
            checker.add(n, "Record Descriptor Word", f"{record[:4]!r}, expected '0426'")
        if n == 1:
            if HEADER["Record Identifier"].slice(record) != "HEADER":
                checker.add(n, "Record Identifier", "the first record must be the HEADER")
            else:
                checker.header(n, record)
        elif n == last:
            if TRAILER["Record Identifier"].slice(record) != "TRAILER":
                checker.add(n, "Record Identifier", "the last record must be the TRAILER")
            else:
                checker.trailer(n, record, bases, statuses)
        else:
            identifier = record[4:11]
            if identifier.startswith("HEADER") or identifier == "TRAILER":
                checker.add(n, "Record Identifier", f"{identifier.strip()} in the middle of the file")
            else:
                checker.base(n, record, statuses)
    if last == 1:
        checker.add(1, "Record Identifier", "no TRAILER: the file has one record")
    return sorted(checker.problems, key=lambda p: p.record)
