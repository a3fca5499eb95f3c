"""Storing imported rows, on SQLite and PostgreSQL: upserts that never touch lifecycle state."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select, update

from arrears.importing import AccountRow, Kind, PaymentRow, Rejection, open_source
from arrears.models import Account, AccountHold, AuditEvent, Borrower, ContactPoint, Payment
from arrears.storage.importer import (
    AccountCounts,
    ImportInterrupted,
    PaymentCounts,
    insert_payments,
    run_import,
    upsert_accounts,
)
from arrears.storage.inbound import Inbound, record_opt_out
from tests.factories import account_record, account_row, payment_row, write_csv

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=1)

account = Account.__table__  # type: ignore[attr-defined]
contact = ContactPoint.__table__  # type: ignore[attr-defined]
hold = AccountHold.__table__  # type: ignore[attr-defined]
audit = AuditEvent.__table__  # type: ignore[attr-defined]
payment = Payment.__table__  # type: ignore[attr-defined]
borrower = Borrower.__table__  # type: ignore[attr-defined]


def upsert(engine: Engine, *rows: AccountRow, now: datetime = NOW) -> AccountCounts:
    with engine.begin() as connection:
        return upsert_accounts(rows, connection=connection, now=now, origin="accounts.csv")


def pay(
    engine: Engine, *rows: PaymentRow, now: datetime = NOW
) -> tuple[PaymentCounts, dict[int, list[Rejection]]]:
    with engine.begin() as connection:
        return insert_payments(rows, connection=connection, now=now)


def one(engine: Engine, table: Any, **where: Any) -> Any:
    with engine.connect() as connection:
        return connection.execute(select(table).filter_by(**where)).one()


def every(engine: Engine, table: Any, **where: Any) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(select(table).filter_by(**where).order_by(*table.primary_key.columns)))


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def snapshot(engine: Engine) -> dict[str, list[Any]]:
    """Every row the import writes, to compare before and after."""
    return {t.name: every(engine, t) for t in (account, borrower, contact, hold, audit, payment)}


# ---------------------------------------------------------------------------------------------
# Accounts


def test_new_account_is_created_with_borrower_contacts_and_model_defaults(engine: Engine) -> None:
    """A new account gets its servicing fields, the model's lifecycle defaults, a borrower and its phones."""
    row = account_row(account_id="A-1", alt_phone="(415) 555-2671", vin="1HGCM82633A004352", apr="0.0899")
    assert upsert(engine, row) == AccountCounts(created=1, contacts_added=2)
    stored = one(engine, account, account_id="A-1")
    assert (stored.borrower_id, stored.balance, stored.oldest_due_date) == (
        "B-A-1",
        Decimal("18450.00"),
        date(2026, 10, 28),
    )
    assert (stored.vin, stored.apr, stored.currency, stored.timezone) == (
        "1HGCM82633A004352",
        Decimal("0.0899"),
        "USD",
        "America/Los_Angeles",
    )
    defaults = Account.model_fields
    assert stored.stage == defaults["stage"].default and stored.episode == defaults["episode"].default
    assert stored.stage_since == NOW and stored.updated_at == NOW
    assert one(engine, borrower, borrower_id="B-A-1").name == "Dana Whitfield"
    phones = {
        (c.address, c.is_primary, c.region, c.source, c.channel)
        for c in every(engine, contact, borrower_id="B-A-1")
    }
    assert phones == {
        ("+12133734253", True, "US", "import", "sms"),
        ("+14155552671", False, "US", "import", "sms"),
    }


def test_update_changes_servicing_fields_and_never_lifecycle_state(engine: Engine) -> None:
    """An update rewrites balances and dates but leaves stage, episode, segment and the rest alone."""
    upsert(engine, account_row(account_id="A-1"))
    lifecycle = {
        "stage": "negotiation",
        "stage_since": NOW - timedelta(days=3),
        "episode": 2,
        "segment": "strategic",
        "ability": 0.7,
        "willingness": 0.2,
        "broken_promises": 1,
        "days_past_due": 31,
        "bucket": "31-60",
    }
    with engine.begin() as connection:
        connection.execute(update(account).where(account.c.account_id == "A-1").values(**lifecycle))
    counts = upsert(
        engine,
        account_row(
            account_id="A-1", balance="18000.00", past_due_amount="825.00", oldest_due_date="2026-09-28"
        ),
        now=LATER,
    )
    assert counts.updated == 1
    stored = one(engine, account, account_id="A-1")
    assert (stored.balance, stored.past_due_amount, stored.oldest_due_date) == (
        Decimal("18000.00"),
        Decimal("825.00"),
        date(2026, 9, 28),
    )
    assert {name: getattr(stored, name) for name in lifecycle} == lifecycle
    assert stored.updated_at == LATER


def test_importing_the_same_rows_twice_changes_nothing(engine: Engine) -> None:
    """A second import of the same rows updates no row, moves no updated_at, adds no event or hold."""
    rows = [
        account_row(account_id=f"A-{n}", flags="dispute" if n == 1 else "", alt_phone="(415) 555-2671")
        for n in range(3)
    ]
    upsert(engine, *rows)
    before = snapshot(engine)
    counts = upsert(engine, *rows, now=LATER)
    assert counts == AccountCounts(unchanged=3)
    assert snapshot(engine) == before


def test_flag_places_a_hold_with_an_audit_event(engine: Engine) -> None:
    """A flag without an active hold of its kind places one, sourced `import`, with an audit event."""
    upsert(engine, account_row(account_id="A-1", flags="dispute"))
    [placed] = every(engine, hold, account_id="A-1")
    assert (placed.kind, placed.source, placed.placed_at, placed.lifted_at) == (
        "dispute",
        "import",
        NOW,
        None,
    )
    [event_] = every(engine, audit, account_id="A-1")
    assert event_.kind == "hold" and event_.data["action"] == "placed" and event_.data["hold"] == "dispute"


def test_flag_gone_lifts_the_import_hold_with_an_audit_event(engine: Engine) -> None:
    """An import hold whose flag is no longer in the file is lifted, and the lift is audited."""
    upsert(engine, account_row(account_id="A-1", flags="dispute|military"))
    counts = upsert(engine, account_row(account_id="A-1", flags="military"), now=LATER)
    assert (counts.holds_placed, counts.holds_lifted) == (0, 1)
    lifted = {h.kind: h.lifted_at for h in every(engine, hold, account_id="A-1")}
    assert lifted == {"dispute": LATER, "military": None}
    assert [e.data["action"] for e in every(engine, audit, account_id="A-1")] == [
        "placed",
        "placed",
        "lifted",
    ]


def test_holds_placed_elsewhere_are_never_lifted_or_doubled(engine: Engine) -> None:
    """A webhook's hold stays without the flag, and the flag adds no second hold of its kind."""
    upsert(engine, account_row(account_id="A-1", flags=""))
    with engine.begin() as connection:
        connection.execute(
            hold.insert().values(account_id="A-1", kind="sms_opt_out", source="webhook", placed_at=NOW)
        )
        connection.execute(
            hold.insert().values(account_id="A-1", kind="bankruptcy", source="agent", placed_at=NOW)
        )
    counts = upsert(engine, account_row(account_id="A-1", flags="bankruptcy"), now=LATER)
    assert (counts.holds_placed, counts.holds_lifted) == (0, 0)
    assert {(h.kind, h.lifted_at) for h in every(engine, hold, account_id="A-1")} == {
        ("sms_opt_out", None),
        ("bankruptcy", None),
    }


def test_file_without_flags_column_leaves_holds_alone(engine: Engine) -> None:
    """No flags column says nothing about holds: import holds stay active."""
    upsert(engine, account_row(account_id="A-1", flags="deceased"))
    upsert(engine, account_row(account_id="A-1"), now=LATER)  # the record has no flags column
    assert [h.lifted_at for h in every(engine, hold, account_id="A-1")] == [None]


def test_absent_optional_column_keeps_the_stored_value_and_empty_clears_it(engine: Engine) -> None:
    """A missing vin column keeps the stored vin; an empty vin cell clears it."""
    upsert(engine, account_row(account_id="A-1", vin="1HGCM82633A004352", vehicle_value="9000"))
    assert upsert(engine, account_row(account_id="A-1"), now=LATER).unchanged == 1
    assert one(engine, account, account_id="A-1").vin == "1HGCM82633A004352"
    upsert(engine, account_row(account_id="A-1", vin="", vehicle_value="9000"), now=LATER)
    assert one(engine, account, account_id="A-1").vin is None


def test_new_phone_becomes_primary_and_the_old_one_stays_with_its_opt_out(engine: Engine) -> None:
    """A changed phone becomes the one primary number; the old one stays, opt-out included."""
    upsert(engine, account_row(account_id="A-1", phone="(213) 373-4253"))
    with engine.begin() as connection:
        connection.execute(update(contact).values(opted_out_at=NOW))
    counts = upsert(engine, account_row(account_id="A-1", phone="(415) 555-2671"), now=LATER)
    assert (counts.contacts_added, counts.contacts_changed) == (1, 1)
    phones = {(c.address, c.is_primary, c.opted_out_at) for c in every(engine, contact, borrower_id="B-A-1")}
    assert phones == {("+12133734253", False, NOW), ("+14155552671", True, None)}


def test_number_opted_out_under_another_borrower_stays_opted_out_for_a_new_one(engine: Engine) -> None:
    """A number that texted STOP is opted out for the next borrower the file gives it (a second loan)."""
    upsert(engine, account_row(account_id="A-1", phone="(213) 373-4253"))
    with engine.begin() as connection:
        record_opt_out(
            connection,
            inbound=Inbound(
                address="+12133734253",
                text="STOP",
                at=NOW,
                provider="sandbox",
                callback_id="c-1",
                keyword="STOP",
            ),
        )
    counts = upsert(
        engine,
        account_row(account_id="A-2", phone="(213) 373-4253", alt_phone="(415) 555-2671"),
        now=LATER,
    )
    assert counts.contacts_added == 2
    phones = {(c.address, c.opted_out_at) for c in every(engine, contact, borrower_id="B-A-2")}
    assert phones == {("+12133734253", NOW), ("+14155552671", None)}


def test_a_first_load_looks_up_no_number_yet_a_later_file_finds_an_opt_out(
    engine: Engine, tmp_path: Path
) -> None:
    """Into an empty database nothing can have opted out while SQLite's import holds the write lock:
    a first load reads no opt-out at all. A later file still gives a new borrower the number's STOP."""
    read: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "opted_out_number" in statement and "contact_point" in statement:  # `opted_out_numbers`
            read.append(statement)

    def run(name: str, *records: dict[str, str]) -> None:
        with open_source(write_csv(tmp_path / name, list(records)), Kind.ACCOUNTS) as source:
            assert run_import(engine, source, now=NOW).accepted == len(records)

    event.listen(engine, "before_cursor_execute", record)
    try:
        run("first.csv", account_record(account_id="A-1", phone="(213) 373-4253"))
        first_load = len(read)
        with engine.begin() as connection:
            inbound = Inbound(
                address="+12133734253", text="STOP", at=NOW, provider="sandbox", callback_id="c"
            )
            record_opt_out(connection, inbound=inbound)
        run("second.csv", account_record(account_id="A-2", phone="(213) 373-4253"))
    finally:
        event.remove(engine, "before_cursor_execute", record)
    # PostgreSQL's transactions let a STOP commit in the middle of a file: it always looks.
    assert first_load == (0 if engine.dialect.name == "sqlite" else 1)
    assert len(read) > first_load
    assert one(engine, contact, borrower_id="B-A-2").opted_out_at == NOW


def _indexes(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as connection:
        found = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name"
        return [(name, sql) for name, sql in connection.exec_driver_sql(found)]


def test_a_first_load_builds_its_indexes_once_its_rows_are_in(sqlite_engine: Engine, tmp_path: Path) -> None:
    """On SQLite a first load writes its accounts and numbers without their secondary indexes and
    builds them, as defined, once the rows are in; a load stopped half-way keeps them; a later file
    writes through them."""
    schema = _indexes(sqlite_engine)
    secondary = {name for name, sql in schema if " ON account " in sql or " ON contact_point " in sql}
    assert secondary >= {"ix_account_borrower_id", "ix_contact_point_address"}
    seen: list[str] = []
    event.listen(sqlite_engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    path = write_csv(tmp_path / "accounts.csv", [account_record(account_id=f"A-{n}") for n in range(5)])

    with open_source(path, Kind.ACCOUNTS) as source, pytest.raises(ImportInterrupted):  # after a chunk
        run_import(sqlite_engine, source, chunk_size=2, now=NOW, stop_requested=lambda: "stopped")
    assert _indexes(sqlite_engine) == schema and count(sqlite_engine, account) == 0

    seen.clear()
    with open_source(path, Kind.ACCOUNTS) as source:
        run_import(sqlite_engine, source, chunk_size=2, now=NOW)
    dropped = {s.split('"')[1] for s in seen if s.startswith("DROP INDEX")}
    built = [n for n, s in enumerate(seen) if s.startswith("CREATE INDEX")]
    written = ('INSERT INTO "account"', 'INSERT INTO "contact_point"')
    inserts = [n for n, s in enumerate(seen) if s.startswith(written)]
    assert dropped == secondary and len(built) == len(secondary)
    assert len(inserts) == 6 and max(inserts) < min(built)  # three chunks, each its accounts and numbers
    assert _indexes(sqlite_engine) == schema

    seen.clear()
    path = write_csv(tmp_path / "more.csv", [account_record(account_id="A-9")])
    with open_source(path, Kind.ACCOUNTS) as source:
        run_import(sqlite_engine, source, now=LATER)
    assert not [s for s in seen if "INDEX" in s] and _indexes(sqlite_engine) == schema


def test_alt_phone_named_as_phone_is_promoted_not_added(engine: Engine) -> None:
    """When the alternate number becomes the phone, that contact point turns primary; none is added."""
    upsert(engine, account_row(account_id="A-1", phone="(213) 373-4253", alt_phone="(415) 555-2671"))
    counts = upsert(engine, account_row(account_id="A-1", phone="(415) 555-2671", alt_phone=""), now=LATER)
    assert (counts.contacts_added, counts.contacts_changed) == (0, 2)
    phones = {(c.address, c.is_primary) for c in every(engine, contact, borrower_id="B-A-1")}
    assert phones == {("+12133734253", False), ("+14155552671", True)}


def test_borrower_rename_updates_the_borrower(engine: Engine) -> None:
    """The servicing system's borrower name replaces the stored one."""
    upsert(engine, account_row(account_id="A-1"))
    upsert(engine, account_row(account_id="A-1", borrower_name="Dana W. Whitfield"), now=LATER)
    assert one(engine, borrower, borrower_id="B-A-1").name == "Dana W. Whitfield"


def test_account_without_borrower_id_keeps_its_stored_borrower(engine: Engine) -> None:
    """A file without borrower_id does not move a stored account to a new `B-` borrower."""
    upsert(engine, account_row(account_id="A-1", borrower_id="C-77"))
    assert upsert(engine, account_row(account_id="A-1"), now=LATER) == AccountCounts(unchanged=1)
    assert one(engine, account, account_id="A-1").borrower_id == "C-77"
    assert count(engine, borrower) == 1


def test_accounts_of_one_borrower_share_its_contact_points(engine: Engine) -> None:
    """Two accounts of one borrower in one chunk make one borrower and one primary number."""
    upsert(
        engine,
        account_row(account_id="A-1", borrower_id="C-1"),
        account_row(account_id="A-2", borrower_id="C-1"),
    )
    assert count(engine, borrower) == 1 and count(engine, contact) == 1


def test_a_chunk_reads_with_one_query_per_table(engine: Engine) -> None:
    """Reading what exists costs the same few queries for 2 rows as for 200: never one per row."""

    def selects(rows: list[AccountRow]) -> int:
        seen: list[str] = []

        def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT"):
                seen.append(statement)

        event.listen(engine, "before_cursor_execute", record)
        try:
            upsert(engine, *rows)
        finally:
            event.remove(engine, "before_cursor_execute", record)
        return len(seen)

    small = selects([account_row(account_id=f"S-{n}", flags="") for n in range(2)])
    large = selects([account_row(account_id=f"L-{n}", flags="") for n in range(200)])
    assert small == large == 5  # accounts, borrowers, contact points, opted-out numbers, holds


# ---------------------------------------------------------------------------------------------
# Payments


def test_payment_is_inserted_unapplied(engine: Engine) -> None:
    """A new payment is stored as received, with applied_at empty for the cycle's refresh."""
    upsert(engine, account_row(account_id="A-1"))
    counts, rejected = pay(engine, payment_row(payment_id="P-1", account_id="A-1"))
    assert (counts, rejected) == (PaymentCounts(inserted=1), {})
    stored = one(engine, payment, payment_id="P-1")
    assert (stored.amount, stored.received_at, stored.applied_at) == (
        Decimal("412.50"),
        datetime(2026, 11, 20, 18, 15, tzinfo=UTC),
        None,
    )


def test_same_payment_again_is_accepted_and_changes_nothing(engine: Engine) -> None:
    """The same payment_id and content again is accepted as already stored; nothing is written."""
    upsert(engine, account_row(account_id="A-1"))
    pay(engine, payment_row(payment_id="P-1", account_id="A-1"))
    with engine.begin() as connection:  # the cycle applied it meanwhile
        connection.execute(update(payment).values(applied_at=LATER))
    before = snapshot(engine)
    same = payment_row(payment_id="P-1", account_id="A-1", received_at="2026-11-20T18:15:00Z")  # same instant
    assert pay(engine, same) == (PaymentCounts(already_stored=1), {})
    assert snapshot(engine) == before


def test_payment_id_with_different_content_conflicts(engine: Engine) -> None:
    """A stored payment_id with another amount is rejected on payment_id."""
    upsert(engine, account_row(account_id="A-1"))
    pay(engine, payment_row(payment_id="P-1", account_id="A-1"))
    _, rejected = pay(engine, payment_row(line=9, payment_id="P-1", account_id="A-1", amount="1.00"))
    assert rejected == {9: [Rejection(9, "payment_id", "conflicts with stored payment")]}
    assert one(engine, payment, payment_id="P-1").amount == Decimal("412.50")


def test_payment_for_an_unknown_account_is_rejected(engine: Engine) -> None:
    """A payment must belong to a stored account."""
    counts, rejected = pay(engine, payment_row(line=3, account_id="NOPE"))
    assert counts.inserted == 0 and [r.field for r in rejected[3]] == ["account_id"]
    assert count(engine, payment) == 0


def test_payment_finer_than_the_accounts_currency_is_rejected(engine: Engine) -> None:
    """A payment's decimal places are checked against its account's currency."""
    upsert(
        engine,
        account_row(
            account_id="J-1",
            jurisdiction="CN",
            timezone="Asia/Tokyo",
            currency="JPY",
            phone="138 0013 8000",
            balance="90000",
            installment_amount="3000",
            past_due_amount="3000",
        ),
    )
    _, rejected = pay(engine, payment_row(line=2, account_id="J-1", amount="3000.50"))
    assert rejected[2] == [Rejection(2, "amount", "more decimal places than JPY allows (0)")]


def test_payment_stated_in_another_currency_than_its_accounts_is_rejected(
    engine: Engine, tmp_path: Path
) -> None:
    """A payments file with a `currency` column saying USD for a KWD account was imported as KWD
    (the column was read past as ignored): 50 USD stored as 50 KWD. The stated currency must be
    the account's; a row that leaves it empty, or a file without the column, is the account's."""
    upsert(
        engine,
        account_row(
            account_id="K-1",
            currency="KWD",
            balance="1000.000",
            installment_amount="100.125",
            past_due_amount="100.125",
        ),
    )
    path = write_csv(
        tmp_path / "payments.csv",
        [
            {
                "payment_id": p,
                "account_id": "K-1",
                "amount": "50.000",
                "currency": c,
                "received_at": "2026-11-27T10:00:00+00:00",
            }
            for p, c in (("P-USD", "USD"), ("P-KWD", "KWD"), ("P-NONE", ""), ("P-XYZ", "XYZ"))
        ],
    )
    summary = run_import(engine, open_source(path, Kind.PAYMENTS), now=NOW)
    assert (summary.accepted, summary.rejected, summary.ignored_columns) == (2, 2, ())
    reasons = {r.line: (r.field, r.reason) for r in summary.first_rejections}
    assert reasons[2] == (
        "currency",
        "USD is not the account's currency (KWD): a payment is imported in the account's currency",
    )
    assert reasons[5] == ("currency", "unknown ISO 4217 currency code 'XYZ'")
    with engine.connect() as c:
        stored = c.execute(select(payment.c.payment_id).order_by(payment.c.payment_id)).scalars().all()
    assert stored == ["P-KWD", "P-NONE"]


def test_payment_received_more_than_a_month_after_the_import_is_rejected(engine: Engine) -> None:
    """A payment dated 2062 in a 2026 file would wait unapplied for 36 years while the borrower
    who paid is pursued: it is refused on received_at, naming the days; one value-dated a month
    ahead is taken."""
    upsert(engine, account_row(account_id="A-1"))
    typo = payment_row(line=4, payment_id="P-1", account_id="A-1", received_at="2062-11-29T09:00:00Z")
    month = payment_row(line=5, payment_id="P-2", account_id="A-1", received_at="2026-12-29T09:00:00Z")
    counts, rejected = pay(engine, typo, month, now=NOW)
    [refused] = rejected[4]
    assert refused.field == "received_at" and refused.reason.startswith("13150 days after this import")
    assert counts == PaymentCounts(inserted=1) and 5 not in rejected
    assert [p.payment_id for p in every(engine, payment)] == ["P-2"]


# ---------------------------------------------------------------------------------------------
# A whole file


def test_run_import_stores_in_chunks_and_counts_every_row(engine: Engine, tmp_path: Path) -> None:
    """Across several chunks, accepted plus rejected equals rows read; rejects go to the rejects file."""
    records = [account_record(account_id=f"A-{n}") for n in range(10)]
    records[4]["currency"] = "XYZ"
    records[8]["account_id"] = "A-0"
    path = write_csv(tmp_path / "accounts.csv", records)
    with open_source(path, Kind.ACCOUNTS) as source:
        summary = run_import(engine, source, chunk_size=3, now=NOW)
    assert (summary.read, summary.accepted, summary.rejected) == (10, 8, 2)
    assert isinstance(summary.counts, AccountCounts) and summary.counts.created == 8
    assert count(engine, account) == 8
    assert summary.rejects_file == tmp_path / "accounts.csv.rejects.csv"
    lines = summary.rejects_file.read_text().splitlines()
    assert [line.split(",")[:2] for line in lines[1:]] == [["6", "currency"], ["10", "account_id"]]


def test_run_import_of_payments_rejects_what_storage_refuses(engine: Engine, tmp_path: Path) -> None:
    """Rejections found against the database are counted and written like any other."""
    upsert(engine, account_row(account_id="A-1"))
    path = write_csv(
        tmp_path / "payments.csv",
        [
            {"payment_id": "P-1", "account_id": "A-1", "amount": "10", "received_at": "2026-11-20T10:00:00Z"},
            {
                "payment_id": "P-2",
                "account_id": "A-404",
                "amount": "10",
                "received_at": "2026-11-20T10:00:00Z",
            },
        ],
    )
    with open_source(path, Kind.PAYMENTS) as source:
        summary = run_import(engine, source, now=NOW)
    assert (summary.read, summary.accepted, summary.rejected) == (2, 1, 1)
    assert summary.first_rejections[0].field == "account_id"


def test_clean_import_removes_a_stale_rejects_file(engine: Engine, tmp_path: Path) -> None:
    """A rejects file from an earlier run is removed once the file imports cleanly."""
    path = write_csv(tmp_path / "accounts.csv", [account_record()])
    stale = tmp_path / "accounts.csv.rejects.csv"
    stale.write_text("line,field,reason\n")
    with open_source(path, Kind.ACCOUNTS) as source:
        summary = run_import(engine, source, now=NOW)
    assert summary.rejected == 0 and summary.rejects_file is None and not stale.exists()
