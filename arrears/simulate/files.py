"""Writing simulated accounts and payments as the import files of DESIGN §8 (CSV or JSON Lines)."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence

from arrears.simulate.payments import PAYMENT_COLUMNS, PaymentRow
from arrears.simulate.portfolio import ACCOUNT_COLUMNS, PortfolioRow

__all__ = ["write_accounts_file", "write_payments_file"]


def write_accounts_file(rows: Iterable[PortfolioRow], path: str | os.PathLike[str]) -> int:
    """Write an accounts file (DESIGN §8) row by row and return how many rows it holds.

    CSV, or JSON Lines when the name ends in `.jsonl`. Both spell every value as the CSV does
    (strings, "" for an empty optional column, flags `|`-separated), so that an importer reads
    either format through one path and money never passes through a float.
    """
    return _write(path, ACCOUNT_COLUMNS, (row.file_values() for row in rows))


def write_payments_file(rows: Iterable[PaymentRow], path: str | os.PathLike[str]) -> int:
    """Write a payments file (DESIGN §8), CSV or JSON Lines like `write_accounts_file`."""
    return _write(path, PAYMENT_COLUMNS, (row.file_values() for row in rows))


def _write(path: str | os.PathLike[str], columns: Sequence[str], values: Iterable[list[str]]) -> int:
    count = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        if os.fspath(path).endswith(".jsonl"):
            for v in values:
                f.write(json.dumps(dict(zip(columns, v, strict=False)), ensure_ascii=False))
                f.write("\n")
                count += 1
        else:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(columns)
            for v in values:
                writer.writerow(v)
                count += 1
    return count
