"""Storage on both databases: the Alembic schema is the models' schema, money and instants
round-trip exactly, and the audit trail refuses changes."""

import multiprocessing
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import SQLModel

from arrears.models import Account, AuditEvent, Borrower
from arrears.storage import get_engine, migrate, session_scope
from arrears.storage.bulk import insert_ignore
from arrears.storage.cycle import refresh_days_past_due
from arrears.storage.tables import message


def test_migrations_build_exactly_the_models_schema(engine: Engine) -> None:
    """Alembic's head and the SQLModel tables agree: autogenerate finds nothing to change."""
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), SQLModel.metadata) == []


def _account(**kw: object) -> Account:
    return Account(
        **{
            "account_id": "A-1",
            "borrower_id": "B-1",
            "jurisdiction": "CN",
            "timezone": "Asia/Shanghai",
            "currency": "CNY",
            "balance": Decimal("123456789.1234"),
            "installment_amount": Decimal("0.01"),
            "past_due_amount": Decimal("0.0001"),
            **kw,
        }
    )


def test_money_and_instants_round_trip_exactly(engine: Engine) -> None:
    """Decimals keep every digit and instants come back aware, in UTC."""
    since = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    with session_scope(engine) as session:
        session.add(Borrower(borrower_id="B-1", name="x"))
        session.flush()
        session.add(_account(stage_since=since))
    with session_scope(engine) as session:
        account = session.get(Account, "A-1")
        assert account is not None
        assert (account.balance, account.past_due_amount) == (Decimal("123456789.1234"), Decimal("0.0001"))
        assert account.stage_since == since and account.stage_since.tzinfo is not None


def test_audit_trail_is_append_only(engine: Engine) -> None:
    """The database refuses to update or delete an audit event."""
    with session_scope(engine) as session:
        session.add(AuditEvent(kind="note", detail="evidence"))
    for statement in ("UPDATE audit_event SET detail = 'changed'", "DELETE FROM audit_event"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(text(statement))
    with engine.connect() as connection:
        assert connection.execute(select(AuditEvent.__table__.c.detail)).scalars().all() == ["evidence"]  # type: ignore[attr-defined]


def test_refresh_derives_days_past_due_and_bucket_from_the_business_date(engine: Engine) -> None:
    """Days past due are replayable: the same oldest due date gives 29 then 30 days, and the bucket
    follows."""
    with session_scope(engine) as session:
        session.add(Borrower(borrower_id="B-1", name="x"))
        session.flush()
        session.add(_account(oldest_due_date=date(2026, 11, 1)))
    for day, dpd, bucket in (
        (date(2026, 11, 30), 29, "1-29"),
        (date(2026, 12, 1), 30, "30-59"),
        (date(2026, 10, 1), 0, "current"),
    ):
        with engine.begin() as connection:
            refresh_days_past_due(connection, business_date=day)
        with session_scope(engine) as session:
            account = session.get(Account, "A-1")
            assert account is not None and (account.days_past_due, account.bucket) == (dpd, bucket)


def test_audit_and_outbox_ids_go_past_32_bits(engine: Engine) -> None:
    """The audit trail and the outbox grow by about a row per account a day, and on PostgreSQL each
    outbox key a cycle finds already present still takes a number of the id's sequence: a serial
    `integer` (2**31 - 1) runs out within a few years of a million-account book. Their ids are
    64-bit on both databases (SQLite's rowid always was)."""
    big = 2**31 + 10
    with session_scope(engine) as session:
        session.add(Borrower(borrower_id="B-1", name="x"))
        session.flush()
        session.add(_account())
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            for table in ("audit_event", "message"):
                connection.execute(text(f"SELECT setval('{table}_id_seq', {big})"))
        else:
            connection.execute(
                AuditEvent.__table__.insert(),  # type: ignore[attr-defined]
                {"id": big, "at": datetime(2026, 1, 1, tzinfo=UTC), "kind": "x", "actor": "x", "detail": "x"},
            )
    with session_scope(engine) as session:
        event = AuditEvent(kind="note", detail="after two billion")
        session.add(event)
        session.flush()
        assert event.id == big + 1
    row = {
        "idempotency_key": "k-1",
        "account_id": "A-1",
        "channel": "sms",
        "address": "+8613900000000",
        "template": "t",
        "params": {},
        "body": "b",
        "stage": "reminder",
        "episode": 1,
        "not_before": datetime(2026, 1, 1, tzinfo=UTC),
        "status": "scheduled",
        "attempts": 0,
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.execute(message.insert(), {**row, "id": big, "idempotency_key": "k-0"})
        assert insert_ignore(connection, message, [row], key="idempotency_key") == {"k-1"}
        assert (
            connection.execute(select(message.c.id).where(message.c.idempotency_key == "k-1")).scalar()
            == big + 1
        )


def _migrate_at_once(url: str, barrier: Any, results: Any) -> None:
    from arrears.storage import get_engine, migrate

    engine = get_engine(url)
    barrier.wait()
    try:
        migrate(engine)
        results.put("ok")
    except Exception as error:
        results.put(f"{type(error).__name__}: {str(error).splitlines()[0]}")


def test_processes_started_together_on_an_older_revision_all_open_it(db_url: str) -> None:
    """After an upgrade of arrears, the processes that start together (the server, a command, a
    cycle) each find the database at the older revision: one upgrades it, the others then find it
    upgraded. On PostgreSQL all but one failed with "column ... already exists"."""
    engine = get_engine(db_url)
    if engine.dialect.name == "postgresql":  # the test's database comes at head: start it afresh
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    migrate(engine, "0005")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0005"
    engine.dispose()
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(3), context.Queue()
    processes = [context.Process(target=_migrate_at_once, args=(db_url, barrier, results)) for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [results.get(timeout=5) for _ in processes] == ["ok"] * 3
    with get_engine(db_url).connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), SQLModel.metadata) == []
