"""The Metro 2 character format (426-byte records): every field of the three records we write.

Positions are 0-based starts and lengths, as in ../shared/domain/metro2.md and the CDIA Credit
Reporting Resource Guide (CRRG); the open-source moov-io/metro2 validator uses the same table.
Each layout covers its 426 bytes exactly, with no gap and no overlap (the tests hold it to that).

Field kinds decide how a value is written and checked:
- `A` alphanumeric: upper case, left-justified, blank-filled;
- `N` numeric: right-justified, zero-filled digits (money in whole dollars);
- `D` date: MMDDYYYY, or all zeros when there is none;
- `T` time stamp: MMDDYYYYHHMMSS, or all zeros.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

__all__ = ["BASE", "HEADER", "RECORD_LENGTH", "STATUS_COUNTERS", "TRAILER", "Field", "Layout"]

RECORD_LENGTH = 426
Kind = Literal["A", "N", "D", "T"]


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    start: int
    length: int
    kind: Kind

    @property
    def end(self) -> int:
        return self.start + self.length

    def slice(self, record: str) -> str:
        return record[self.start : self.end]


class Layout:
    """The fields of one record type, by name and in order."""

    def __init__(self, name: str, fields: list[tuple[str, int, int, Kind]]) -> None:
        self.name = name
        self.fields: tuple[Field, ...] = tuple(Field(*f) for f in fields)
        self._by_name = {f.name: f for f in self.fields}

    def __getitem__(self, name: str) -> Field:
        return self._by_name[name]

    def __iter__(self) -> Iterator[Field]:
        return iter(self.fields)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name


HEADER = Layout(
    "header",
    [
        ("Record Descriptor Word", 0, 4, "N"),
        ("Record Identifier", 4, 6, "A"),  # HEADER
        ("Cycle Identifier", 10, 2, "A"),
        ("Innovis Program Identifier", 12, 10, "A"),
        ("Equifax Program Identifier", 22, 10, "A"),
        ("Experian Program Identifier", 32, 5, "A"),
        ("TransUnion Program Identifier", 37, 10, "A"),
        ("Activity Date", 47, 8, "D"),
        ("Date Created", 55, 8, "D"),
        ("Program Date", 63, 8, "D"),
        ("Program Revision Date", 71, 8, "D"),
        ("Reporter Name", 79, 40, "A"),
        ("Reporter Address", 119, 96, "A"),
        ("Reporter Telephone Number", 215, 10, "N"),
        ("Software Vendor Name", 225, 40, "A"),
        ("Software Version Number", 265, 5, "A"),
        ("PRBC Program Identifier", 270, 10, "A"),
        ("Reserved", 280, 146, "A"),
    ],
)

BASE = Layout(
    "base segment",
    [
        ("Record Descriptor Word", 0, 4, "N"),
        ("Processing Indicator", 4, 1, "N"),
        ("Time Stamp", 5, 14, "T"),
        ("Correction Indicator", 19, 1, "N"),
        ("Identification Number", 20, 20, "A"),
        ("Cycle Identifier", 40, 2, "A"),
        ("Consumer Account Number", 42, 30, "A"),
        ("Portfolio Type", 72, 1, "A"),
        ("Account Type", 73, 2, "A"),
        ("Date Opened", 75, 8, "D"),
        ("Credit Limit", 83, 9, "N"),
        ("Highest Credit or Original Loan Amount", 92, 9, "N"),
        ("Terms Duration", 101, 3, "A"),
        ("Terms Frequency", 104, 1, "A"),
        ("Scheduled Monthly Payment Amount", 105, 9, "N"),
        ("Actual Payment Amount", 114, 9, "N"),
        ("Account Status", 123, 2, "A"),
        ("Payment Rating", 125, 1, "A"),
        ("Payment History Profile", 126, 24, "A"),
        ("Special Comment", 150, 2, "A"),
        ("Compliance Condition Code", 152, 2, "A"),
        ("Current Balance", 154, 9, "N"),
        ("Amount Past Due", 163, 9, "N"),
        ("Original Charge-off Amount", 172, 9, "N"),
        ("Date of Account Information", 181, 8, "D"),
        ("Date of First Delinquency", 189, 8, "D"),
        ("Date Closed", 197, 8, "D"),
        ("Date of Last Payment", 205, 8, "D"),
        ("Interest Type Indicator", 213, 1, "A"),
        ("Reserved", 214, 17, "A"),
        ("Surname", 231, 25, "A"),
        ("First Name", 256, 20, "A"),
        ("Middle Name", 276, 20, "A"),
        ("Generation Code", 296, 1, "A"),
        ("Social Security Number", 297, 9, "N"),
        ("Date of Birth", 306, 8, "D"),
        ("Telephone Number", 314, 10, "N"),
        ("ECOA Code", 324, 1, "A"),
        ("Consumer Information Indicator", 325, 2, "A"),
        ("Country Code", 327, 2, "A"),
        ("First Line of Address", 329, 32, "A"),
        ("Second Line of Address", 361, 32, "A"),
        ("City", 393, 20, "A"),
        ("State", 413, 2, "A"),
        ("Postal/Zip Code", 415, 9, "A"),
        ("Address Indicator", 424, 1, "A"),
        ("Residence Code", 425, 1, "A"),
    ],
)

# The trailer counts statuses in this order, each in a 9-digit field from position 74.
STATUS_COUNTERS: tuple[str, ...] = (
    "05",
    "11",
    "13",
    "61",
    "62",
    "63",
    "64",
    "65",
    "71",
    "78",
    "80",
    "82",
    "83",
    "84",
    "88",
    "89",
    "93",
    "94",
    "95",
    "96",
    "97",
)

TRAILER = Layout(
    "trailer",
    [
        ("Record Descriptor Word", 0, 4, "N"),
        ("Record Identifier", 4, 7, "A"),  # TRAILER
        ("Total Base Records", 11, 9, "N"),
        ("Reserved 1", 20, 9, "A"),
        ("Total of Status Code DF", 29, 9, "N"),
        ("Total Associated Consumer Segments (J1)", 38, 9, "N"),
        ("Total Associated Consumer Segments (J2)", 47, 9, "N"),
        ("Block Count", 56, 9, "N"),
        ("Total of Status Code DA", 65, 9, "N"),
        *((f"Total of Status Code {code}", 74 + 9 * i, 9, "N") for i, code in enumerate(STATUS_COUNTERS)),
        ("Total of ECOA Code Z", 263, 9, "N"),
        ("Total Employment Segments", 272, 9, "N"),
        ("Total Original Creditor Segments", 281, 9, "N"),
        ("Total Purchased From/Sold To Segments", 290, 9, "N"),
        ("Total Mortgage Information Segments", 299, 9, "N"),
        ("Total Specialized Payment Information Segments", 308, 9, "N"),
        ("Total Change Segments", 317, 9, "N"),
        ("Total Social Security Numbers (All Segments)", 326, 9, "N"),
        ("Total Social Security Numbers (Base Segments)", 335, 9, "N"),
        ("Total Social Security Numbers (J1 Segments)", 344, 9, "N"),
        ("Total Social Security Numbers (J2 Segments)", 353, 9, "N"),
        ("Total Dates of Birth (All Segments)", 362, 9, "N"),
        ("Total Dates of Birth (Base Segments)", 371, 9, "N"),
        ("Total Dates of Birth (J1 Segments)", 380, 9, "N"),
        ("Total Dates of Birth (J2 Segments)", 389, 9, "N"),
        ("Total Telephone Numbers (All Segments)", 398, 9, "N"),
        ("Reserved 2", 407, 19, "A"),
    ],
)
