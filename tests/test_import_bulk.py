"""The bulk import path stores exactly what the checks read, on SQLite and PostgreSQL.

Rows go to the database as tuples in a stated column order, through each column's bind processor
(`arrears.storage.streaming`): a column out of order, a money value not scaled, an instant not in
UTC or a default not applied would store something else than the file says. These tests read a
generated portfolio back, row by row and column by column, after a first import and after a
changed file, in several chunks.
"""

import csv
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from arrears.importing import ADDRESS_COLUMNS, AccountRow, Kind, check_accounts, open_source
from arrears.models import Account, AccountHold, Borrower, ContactPoint
from arrears.simulate import generate_portfolio, write_accounts_file
from arrears.storage.importer import SERVICING_COLUMNS, run_import

NOW = datetime(2026, 11, 30, 1, tzinfo=UTC)
LATER = NOW + timedelta(hours=5)
account = Account.__table__  # type: ignore[attr-defined]
borrower = Borrower.__table__  # type: ignore[attr-defined]
contact = ContactPoint.__table__  # type: ignore[attr-defined]
hold = AccountHold.__table__  # type: ignore[attr-defined]


def _portfolio(path: Path, n: int = 1_200) -> Path:
    write_accounts_file(generate_portfolio(n, seed=11, business_date=date(2026, 12, 1)), path)
    return path


def _changed(source: Path, target: Path) -> Path:
    """The same portfolio a day later: balances moved, phones swapped, flags and addresses changed."""
    with source.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    shared = Counter(row["borrower_id"] for row in rows)
    for i, row in enumerate(rows):
        row |= dict.fromkeys(ADDRESS_COLUMNS, "")  # the generated addresses gone, but for those below
        if i % 3 == 0:
            row["balance"] = str(Decimal(row["balance"]) + Decimal("1.05"))
        if i % 7 == 0 and row["alt_phone"] and shared[row["borrower_id"]] == 1:
            row["phone"], row["alt_phone"] = row["alt_phone"], row["phone"]
        if i % 11 == 0:
            row["flags"] = "dispute" if not row["flags"] else ""
        if i % 13 == 0 and row["jurisdiction"].startswith("US"):
            row |= {
                "address_line1": "1 Main St",
                "city": "Springfield",
                "state": "ca",
                "postal_code": "90210",
            }
    with target.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return target


def _checked(path: Path) -> list[AccountRow]:
    with open_source(path, Kind.ACCOUNTS) as source:
        found = [item.row for item in check_accounts(source.rows())]
    assert all(row is not None for row in found)
    return [row for row in found if row is not None]


def _import(engine: Engine, path: Path, now: datetime) -> Any:
    with open_source(path, Kind.ACCOUNTS) as source:
        return run_import(engine, source, now=now, chunk_size=250)


def _assert_stored(
    engine: Engine, rows: list[AccountRow], *, created: datetime, updated: dict[str, datetime]
) -> None:
    with engine.connect() as connection:
        accounts = {r.account_id: r for r in connection.execute(select(account))}
        names = dict(connection.execute(select(borrower.c.borrower_id, borrower.c.name)).all())
        contacts: dict[str, dict[str, Any]] = {}
        for c in connection.execute(select(contact)):
            contacts.setdefault(c.borrower_id, {})[c.address] = c
        holds: dict[str, set[str]] = {}
        for h in connection.execute(select(hold).where(hold.c.lifted_at.is_(None))):
            holds.setdefault(h.account_id, set()).add(h.kind)
    assert len(accounts) == len(rows)
    for row in rows:
        stored = accounts[row.account_id]
        for name in SERVICING_COLUMNS:
            assert getattr(stored, name) == getattr(row, name), (row.line, name)
        # Lifecycle state starts as the model's defaults, stamped with the import's instant.
        assert (stored.stage, stored.episode, stored.bucket, stored.days_past_due) == (
            "cured",
            0,
            "current",
            0,
        )
        assert (stored.segment, stored.broken_promises, stored.ability) == ("self_cure", 0, None)
        assert stored.stage_since == created
        assert stored.updated_at == updated.get(row.account_id, created)
        assert names[row.borrower_id] == row.borrower_name
        primary = contacts[row.borrower_id][row.phone]
        assert (primary.is_primary, primary.region, primary.channel, primary.source) == (
            True,
            row.phone_region,
            "sms",
            "import",
        )
        assert (primary.valid, primary.verified, primary.failures, primary.opted_out_at) == (
            True,
            True,
            0,
            None,
        )
        assert [c.address for c in contacts[row.borrower_id].values() if c.is_primary] == [row.phone]
        if row.alt_phone:
            assert contacts[row.borrower_id][row.alt_phone].region == row.alt_phone_region
        assert holds.get(row.account_id, set()) == {h.value for h in row.holds}


def test_a_generated_portfolio_is_stored_as_read_then_as_changed(engine: Engine, tmp_path: Path) -> None:
    """Every column of every account, borrower, contact point and hold is what the file said, twice."""
    first = _portfolio(tmp_path / "accounts.csv")
    rows = _checked(first)
    summary = _import(engine, first, NOW)
    assert (summary.accepted, summary.rejected, summary.counts.created) == (len(rows), 0, len(rows))
    _assert_stored(engine, rows, created=NOW, updated={})

    later = _changed(first, tmp_path / "accounts-2.csv")
    changed_rows = _checked(later)
    before = {row.account_id: row for row in rows}
    moved = {
        row.account_id
        for row in changed_rows
        if any(getattr(row, name) != getattr(before[row.account_id], name) for name in SERVICING_COLUMNS)
    }
    summary = _import(engine, later, LATER)
    assert (summary.counts.updated, summary.counts.unchanged) == (len(moved), len(rows) - len(moved))
    assert summary.counts.holds_placed + summary.counts.holds_lifted > 0
    _assert_stored(engine, changed_rows, created=NOW, updated=dict.fromkeys(moved, LATER))

    again = _import(engine, later, LATER + timedelta(hours=1))
    assert again.counts.unchanged == len(rows)
    _assert_stored(engine, changed_rows, created=NOW, updated=dict.fromkeys(moved, LATER))


def test_sqlite_keeps_money_as_scaled_integers_and_instants_as_naive_utc(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    """On SQLite the bulk path writes what types.py writes: 1/10,000 units and naive UTC text."""
    path = _portfolio(tmp_path / "accounts.csv", n=50)
    rows = {row.account_id: row for row in _checked(path)}
    _import(sqlite_engine, path, NOW)
    with sqlite_engine.connect() as connection:
        stored = connection.exec_driver_sql(
            "SELECT account_id, balance, typeof(balance), apr, updated_at, oldest_due_date FROM account"
        ).all()
    for account_id, balance, kind, apr, updated_at, oldest in stored:
        row = rows[account_id]
        assert (kind, balance) == ("integer", int(row.balance * 10_000))
        assert apr == (None if row.apr is None else int(row.apr * 10_000))
        assert updated_at == "2026-11-30 01:00:00.000000"
        assert oldest == (None if row.oldest_due_date is None else row.oldest_due_date.isoformat())
