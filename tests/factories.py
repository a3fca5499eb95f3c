"""Factories for test data, shared by the whole suite (STYLE.md).

Each factory returns a valid thing by default and takes keyword overrides for the one detail a
test is about, so a test states only what matters to it. Add factories for new kinds of rows
here rather than building them inline in tests.
"""

import csv
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from arrears.importing import AccountRow, PaymentRow, parse_account, parse_payment

__all__ = [
    "account_record",
    "account_row",
    "accounts_records",
    "payment_record",
    "payment_row",
    "unique_id",
    "write_csv",
    "write_jsonl",
]

_counter = itertools.count(1)


def unique_id(prefix: str) -> str:
    """An id no other call in this test session returns, e.g. `A-17`."""
    return f"{prefix}-{next(_counter)}"


def account_record(**overrides: str | None) -> dict[str, str]:
    """One valid row of an accounts file (DESIGN §8), as the file's text: a US-CA borrower 30 days
    behind on one instalment. Pass `account_id=...` to control the id; any column may be
    overridden, and a value of None drops the column."""
    record = {
        "account_id": unique_id("A"),
        "borrower_name": "Dana Whitfield",
        "phone": "(213) 373-4253",
        "timezone": "America/Los_Angeles",
        "jurisdiction": "US-CA",
        "currency": "USD",
        "balance": "18450.00",
        "installment_amount": "412.50",
        "past_due_amount": "412.50",
        "oldest_due_date": "2026-10-28",
    }
    return {k: v for k, v in (record | overrides).items() if v is not None}


def payment_record(**overrides: str | None) -> dict[str, str]:
    """One valid row of a payments file; pass `account_id=...` to match a stored account."""
    record = {
        "payment_id": unique_id("P"),
        "account_id": "A-1",
        "amount": "412.50",
        "received_at": "2026-11-20T10:15:00-08:00",
    }
    return {k: v for k, v in (record | overrides).items() if v is not None}


def account_row(line: int = 2, **overrides: str) -> AccountRow:
    """A checked accounts row, as `parse_account` makes it from `account_record(**overrides)`."""
    result = parse_account(line, account_record(**overrides))
    assert isinstance(result, AccountRow), result
    return result


def payment_row(line: int = 2, **overrides: str) -> PaymentRow:
    """A checked payments row, as `parse_payment` makes it from `payment_record(**overrides)`."""
    result = parse_payment(line, payment_record(**overrides))
    assert isinstance(result, PaymentRow), result
    return result


def accounts_records(count: int, *, prefix: str = "A") -> Iterable[dict[str, str]]:
    """`count` distinct valid accounts rows, lazily: a portfolio of any size in bounded memory.

    Phones, jurisdictions and balances vary so that parsing does real work; a few rows carry
    holds and an alternate phone.
    """
    places = [
        ("US-CA", "America/Los_Angeles", "USD", "(213) 373-{:04d}"),
        ("US-IA", "America/Chicago", "USD", "(515) 281-{:04d}"),
        ("CN", "Asia/Shanghai", "CNY", "138{:04d}8000"),
        ("GB", "Europe/London", "GBP", "020 7946 {:04d}"),
    ]
    for n in range(count):
        jurisdiction, zone, currency, phone = places[n % len(places)]
        behind = n % 3 != 0
        yield {
            "account_id": f"{prefix}-{n:07d}",
            "borrower_name": f"Borrower {n}",
            "phone": phone.format(n % 10_000),
            "timezone": zone,
            "jurisdiction": jurisdiction,
            "currency": currency,
            "balance": f"{10_000 + n % 9_000}.{n % 100:02d}",
            "installment_amount": "350.00",
            "past_due_amount": "350.00" if behind else "0",
            "oldest_due_date": "2026-10-15" if behind else "",
            "alt_phone": phone.format((n + 1) % 10_000) if n % 10 == 0 else "",
            "vin": "1HGCM82633A004352" if n % 2 else "",
            "vehicle_value": "15000.00" if n % 2 else "",
            "apr": "0.0899",
            "flags": "dispute" if n % 97 == 0 else "",
        }


def write_csv(path: Path, records: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None) -> Path:
    """Write records as a CSV file with a header; columns default to the first record's keys
    (records lacking a column get an empty cell)."""
    records = iter(records)
    first = next(records, None)
    if columns is None:
        columns = list(first) if first is not None else []
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(columns), restval="")
        writer.writeheader()
        for record in itertools.chain([first] if first is not None else [], records):
            writer.writerow(record)
    return path


def write_jsonl(path: Path, records: Iterable[Mapping[str, Any]]) -> Path:
    """Write records as JSON Lines, one object per line."""
    with path.open("w", encoding="utf-8") as file:
        for record in records:
            file.write(json.dumps(record) + "\n")
    return path
