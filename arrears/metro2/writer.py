"""Writing Metro 2 character-format files: header, base segments, trailer, one record per line.

Every value goes through `format_record`, which knows the field's kind from the layout: text
upper case, left-justified and blank-filled (transliterated to ASCII by `anyascii`, characters
the format does not take blanked); numbers right-justified and zero-filled; money in whole dollars
with the cents dropped; dates MMDDYYYY, zeros when absent. A value that does not fit its field is
a `DoesNotFit` error, except free text (names, addresses), which is cut at the field's length as
the CRRG allows.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from anyascii import anyascii

from arrears.metro2.layout import BASE, HEADER, RECORD_LENGTH, STATUS_COUNTERS, TRAILER, Layout

__all__ = [
    "DoesNotFit",
    "Furnisher",
    "format_record",
    "header_record",
    "text",
    "trailer_record",
    "whole_dollars",
    "write_file",
]

_CUTTABLE = frozenset(
    {
        "Surname",
        "First Name",
        "Middle Name",
        "First Line of Address",
        "Second Line of Address",
        "City",
        "Reporter Name",
        "Reporter Address",
        "Software Vendor Name",
    }
)
_NOT_ALLOWED = re.compile(r"[^A-Z0-9 \-'/&.,#]")


class DoesNotFit(ValueError):
    """A value too long for its field: the account's record cannot be written as it stands (the
    file's builder skips that account with this reason, instead of failing the whole month)."""


@dataclass(frozen=True, slots=True)
class Furnisher:
    """Who reports: the lender as the bureaus know it."""

    identification_number: str  # assigned by the bureaus, repeated in every base segment
    reporter_name: str
    reporter_address: str = ""
    reporter_telephone: str = ""  # ten digits
    equifax_program: str = ""
    experian_program: str = ""
    transunion_program: str = ""
    innovis_program: str = ""
    software_vendor: str = "ARREARS"
    software_version: str = "1"


def text(value: object) -> str:
    """Upper-case ASCII, left-justified: letters transliterated (José → JOSE, Sørensen → SORENSEN,
    Strauß → STRAUSS), characters the format does not take blanked.

    NFKD folding dropped every letter without an ASCII decomposition (ø, ß, ł, æ), which furnished
    another consumer's name (SRENSEN, STRAU); anyascii transliterates them as a person would.
    Pictographs (emoji, ©: Unicode's "other symbols") are blanked, not spelled out as anyascii
    would (a name with 😀 in it is not DANA GRINNING). Leading blanks are stripped: a text field
    is left-justified, and a blanked first character ("(Dana)") made a record our validator refused.
    """
    shown = "".join(" " if unicodedata.category(c) == "So" else c for c in str(value))
    return _NOT_ALLOWED.sub(" ", anyascii(shown).upper()).lstrip()


def whole_dollars(amount: Decimal | int | None) -> int:
    """Whole dollars, cents dropped (never rounded up: a balance is not reported higher than it is)."""
    if amount is None:
        return 0
    return int(Decimal(amount).to_integral_value(rounding=ROUND_DOWN))


def _format(layout: Layout, name: str, value: Any) -> str:
    field = layout[name]
    if field.kind == "A":
        written = text(value) if value is not None else ""
        if len(written) > field.length:
            if name not in _CUTTABLE:
                raise DoesNotFit(f"{layout.name} {name}: {written!r} is longer than {field.length}")
            written = written[: field.length]
        return written.ljust(field.length)
    if field.kind == "N":
        number = 0 if value in (None, "") else int(value)
        if number < 0:
            raise ValueError(f"{layout.name} {name}: {number} is negative")
        written = str(number).zfill(field.length)
        if len(written) > field.length:
            raise DoesNotFit(f"{layout.name} {name}: {number} does not fit {field.length} digits")
        return written
    if field.kind == "D":
        if value is None:
            return "0" * field.length
        if not isinstance(value, date):
            raise TypeError(f"{layout.name} {name}: a date is needed, not {value!r}")
        return value.strftime("%m%d%Y")
    if value is None:  # T: time stamp
        return "0" * field.length
    if not isinstance(value, datetime):
        raise TypeError(f"{layout.name} {name}: an instant is needed, not {value!r}")
    return value.strftime("%m%d%Y%H%M%S")


def format_record(layout: Layout, values: Mapping[str, Any]) -> str:
    """One 426-character record; fields not given are blank (text) or zero (numbers, dates)."""
    unknown = set(values) - {f.name for f in layout}
    if unknown:
        raise KeyError(f"{layout.name} has no field {', '.join(sorted(unknown))}")
    record = "".join(_format(layout, f.name, values.get(f.name)) for f in layout)
    assert len(record) == RECORD_LENGTH, (layout.name, len(record))
    return record


def header_record(furnisher: Furnisher, *, activity_date: date, created: date) -> str:
    return format_record(
        HEADER,
        {
            "Record Descriptor Word": RECORD_LENGTH,
            "Record Identifier": "HEADER",
            "Innovis Program Identifier": furnisher.innovis_program,
            "Equifax Program Identifier": furnisher.equifax_program,
            "Experian Program Identifier": furnisher.experian_program,
            "TransUnion Program Identifier": furnisher.transunion_program,
            "Activity Date": activity_date,
            "Date Created": created,
            "Reporter Name": furnisher.reporter_name,
            "Reporter Address": furnisher.reporter_address,
            "Reporter Telephone Number": furnisher.reporter_telephone or None,
            "Software Vendor Name": furnisher.software_vendor,
            "Software Version Number": furnisher.software_version,
        },
    )


def trailer_record(base_records: Iterable[str]) -> str:
    """The trailer of these base segments: their count, and counts by status and filled field."""
    statuses: Counter[str] = Counter()
    total = ssn = dob = phone = ecoa_z = 0
    for record in base_records:
        total += 1
        statuses[BASE["Account Status"].slice(record)] += 1
        ssn += BASE["Social Security Number"].slice(record).strip("0") != ""
        dob += BASE["Date of Birth"].slice(record).strip("0") != ""
        phone += BASE["Telephone Number"].slice(record).strip("0") != ""
        ecoa_z += BASE["ECOA Code"].slice(record) == "Z"
    values: dict[str, Any] = {
        "Record Descriptor Word": RECORD_LENGTH,
        "Record Identifier": "TRAILER",
        "Total Base Records": total,
        "Total of Status Code DF": statuses["DF"],
        "Total of Status Code DA": statuses["DA"],
        "Total of ECOA Code Z": ecoa_z,
        "Total Social Security Numbers (All Segments)": ssn,
        "Total Social Security Numbers (Base Segments)": ssn,
        "Total Dates of Birth (All Segments)": dob,
        "Total Dates of Birth (Base Segments)": dob,
        "Total Telephone Numbers (All Segments)": phone,
    }
    for code in STATUS_COUNTERS:
        values[f"Total of Status Code {code}"] = statuses[code]
    return format_record(TRAILER, values)


def write_file(
    furnisher: Furnisher, *, activity_date: date, created: date, base_records: Iterable[str]
) -> bytes:
    """The whole file: header, the base segments in the order given, trailer; LF after each record."""
    records = list(base_records)
    lines = [
        header_record(furnisher, activity_date=activity_date, created=created),
        *records,
        trailer_record(records),
    ]
    return ("\n".join(lines) + "\n").encode("ascii")
