"""On SQLite, money and instants are converted by single functions rather than SQLAlchemy's chain
of the impl's processor and ours (`arrears.storage.types`): they must store and read exactly what
that chain does."""

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Column, Engine, Integer, MetaData, Table, create_engine, insert, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.types import TypeDecorator

from arrears.storage.types import Money, UTCDateTime

DIALECT = sqlite.dialect()
# SQLAlchemy's own chain: the impl's processor (DateTime's text, BigInteger's none) with our
# `process_bind_param` / `process_result_value`; what the fast functions replace.
# Both taken from the types as SQLite sees them (`dialect_impl`), as SQLAlchemy takes them.
INSTANT, MONEY = UTCDateTime().dialect_impl(DIALECT), Money().dialect_impl(DIALECT)
CHAIN_BIND = TypeDecorator.bind_processor(INSTANT, DIALECT)
CHAIN_READ = TypeDecorator.result_processor(INSTANT, DIALECT, None)
MONEY_CHAIN_READ = TypeDecorator.result_processor(MONEY, DIALECT, None)
MONEY_CHAIN_BIND = TypeDecorator.bind_processor(MONEY, DIALECT)
FAST_BIND = INSTANT.bind_processor(DIALECT)
FAST_READ = INSTANT.result_processor(DIALECT, None)
MONEY_FAST_READ = MONEY.result_processor(DIALECT, None)
MONEY_FAST_BIND = MONEY.bind_processor(DIALECT)

instants = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.builds(
        timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
    ),
)


def test_the_fast_functions_are_the_ones_sqlite_uses() -> None:
    assert FAST_BIND is not None and FAST_READ is not None and MONEY_FAST_READ is not None
    assert FAST_BIND is not CHAIN_BIND and FAST_READ is not CHAIN_READ


@given(instants)
def test_an_instant_is_stored_and_read_as_sqlalchemys_chain_does(instant: datetime) -> None:
    assert FAST_BIND is not None and FAST_READ is not None and CHAIN_BIND and CHAIN_READ
    stored = FAST_BIND(instant)
    assert stored == CHAIN_BIND(instant)
    read = FAST_READ(stored)
    assert read == CHAIN_READ(stored) == instant
    assert read is not None and read.tzinfo is UTC


@given(st.integers(min_value=-(10**18), max_value=10**18))
def test_money_is_read_as_dividing_and_quantizing_reads_it(scaled: int) -> None:
    assert MONEY_FAST_READ is not None and MONEY_CHAIN_READ is not None
    fast, chained = MONEY_FAST_READ(scaled), MONEY_CHAIN_READ(scaled)
    assert fast == chained and str(fast) == str(chained)  # the same value to the same places


@given(
    st.one_of(
        st.decimals(min_value=-(10**14), max_value=10**14, allow_nan=False, allow_infinity=False, places=6),
        st.decimals(min_value=-(10**14), max_value=10**14, allow_nan=False, allow_infinity=False),
        st.integers(min_value=-(10**14), max_value=10**14),
    )
)
def test_money_is_stored_as_sqlalchemys_chain_stores_it(amount: Decimal | int) -> None:
    assert MONEY_FAST_BIND is not None and MONEY_CHAIN_BIND is not None
    assert MONEY_FAST_BIND is not MONEY_CHAIN_BIND
    assert MONEY_FAST_BIND(amount) == MONEY_CHAIN_BIND(amount)  # rounded half to even, to 4 places
    assert MONEY_FAST_BIND(None) is None


def test_text_not_written_by_arrears_is_read_in_utc() -> None:
    assert FAST_READ is not None
    assert FAST_READ(None) is None
    assert FAST_READ("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)  # a date alone
    assert FAST_READ("2026-11-01 10:00") == datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert FAST_READ("2026-11-01 10:00:00.5") == datetime(2026, 11, 1, 10, 0, 0, 500000, tzinfo=UTC)
    assert all(FAST_READ(s).tzinfo is UTC for s in ("2026-11-01", "2026-11-01 10:00:00"))  # type: ignore[union-attr]


def test_a_naive_instant_is_refused() -> None:
    assert FAST_BIND is not None
    try:
        FAST_BIND(datetime(2026, 11, 1))
    except ValueError as error:
        assert "naive" in str(error)
    else:
        raise AssertionError("a naive instant was stored")


def test_a_real_sqlite_database_keeps_what_is_written(tmp_path) -> None:
    engine: Engine = create_engine(f"sqlite:///{tmp_path / 't.db'}")
    rows = Table(
        "rows",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("at", UTCDateTime()),
        Column("amount", Money()),
    )
    rows.metadata.create_all(engine)
    shanghai = timezone(timedelta(hours=8))
    written = [
        {
            "id": 1,
            "at": datetime(2026, 12, 1, 9, 30, 0, 123456, tzinfo=shanghai),
            "amount": Decimal("1234.5"),
        },
        {"id": 2, "at": None, "amount": None},
        {"id": 3, "at": datetime(2026, 12, 1, tzinfo=UTC), "amount": Decimal("-0.00015")},
    ]
    with engine.begin() as connection:
        connection.execute(insert(rows), written)
    with engine.connect() as connection:
        raw = connection.execute(text("SELECT at, amount FROM rows ORDER BY id")).all()
        read = connection.execute(select(rows.c.at, rows.c.amount).order_by(rows.c.id)).all()
    assert [tuple(r) for r in raw] == [
        ("2026-12-01 01:30:00.123456", 12345000),
        (None, None),
        ("2026-12-01 00:00:00.000000", -2),
    ]
    assert read[0] == (datetime(2026, 12, 1, 1, 30, 0, 123456, tzinfo=UTC), Decimal("1234.5000"))
    assert read[1] == (None, None)
    assert read[2] == (datetime(2026, 12, 1, tzinfo=UTC), Decimal("-0.0002"))
    assert str(read[0][1]) == "1234.5000" and read[0][0].tzinfo is UTC
