"""`execute_many` stores exactly what SQLAlchemy's own executemany stores (types, JSON, values fixed
in the statement), `insert_ignore` reports only the keys it inserted, and `among` selects what
`in_` selects with one bound value however many keys, on SQLite and PostgreSQL."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, bindparam, event, select, true, update

from arrears.storage.bulk import among, execute_many, insert_ignore, range_starts
from arrears.storage.tables import account, audit, contact, message
from tests.factories import account_record, write_csv


def _events(n: int, first: int) -> list[dict[str, object]]:
    shanghai = ZoneInfo("Asia/Shanghai")
    return [
        {
            "account_id": f"A-{first + i}",
            # aware instants in two zones: both stored as the same UTC instant
            "at": datetime(2026, 12, 1, 9, tzinfo=shanghai)
            if i % 2
            else datetime(2026, 12, 1, 1, tzinfo=UTC),
            "kind": "transition",
            "detail": f"reminder → negotiation {i} «引号»",
            "data": {"from": "reminder", "amount": str(Decimal("12.50")), "list": [i, None]},
            "actor": "arrears",
            "cycle_id": None if i % 3 else 7,
        }
        for i in range(n)
    ]


def test_execute_many_stores_what_sqlalchemy_stores(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(audit.insert(), _events(5, 0))
        execute_many(connection, audit.insert(), _events(5, 100))
        rows = connection.execute(
            select(audit.c.at, audit.c.kind, audit.c.detail, audit.c.data, audit.c.actor, audit.c.cycle_id)
            .where(audit.c.account_id.like("A-%"))
            .order_by(audit.c.id)
        ).all()
    assert rows[:5] == rows[5:]
    assert rows[0].at == datetime(2026, 12, 1, 1, tzinfo=UTC) == rows[1].at
    assert rows[0].data == {"from": "reminder", "amount": "12.50", "list": [0, None]}


def test_execute_many_updates_with_values_fixed_in_the_statement(engine: Engine, tmp_path) -> None:
    from arrears.importing import Kind, open_source
    from arrears.storage.importer import run_import

    path = write_csv(tmp_path / "a.csv", [account_record(account_id=f"B-{i}") for i in range(3)])
    run_import(engine, open_source(path, Kind.ACCOUNTS))
    since = datetime(2026, 12, 1, 1, tzinfo=UTC)
    with engine.begin() as connection:
        execute_many(
            connection,
            update(account)
            .where(account.c.account_id == bindparam("key"))
            .values(stage=bindparam("stage"), stage_since=bindparam("since"), segment="hardship"),
            [{"key": f"B-{i}", "stage": "negotiation", "since": since + timedelta(days=i)} for i in range(3)],
        )
        rows = connection.execute(
            select(account.c.stage, account.c.stage_since, account.c.segment).order_by(account.c.account_id)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("negotiation", since + timedelta(days=i), "hardship") for i in range(3)
    ]


def test_insert_ignore_reports_only_new_keys(engine: Engine, tmp_path) -> None:
    from arrears.importing import Kind, open_source
    from arrears.storage.importer import run_import

    path = write_csv(tmp_path / "a.csv", [account_record(account_id="C-1")])
    run_import(engine, open_source(path, Kind.ACCOUNTS))
    now = datetime(2026, 12, 1, 1, tzinfo=UTC)

    def row(key: str, body: str) -> dict[str, object]:
        return {
            "idempotency_key": key,
            "account_id": "C-1",
            "channel": "sms",
            "address": "+14155550100",
            "template": "reminder",
            "params": {"name": "Li"},
            "body": body,
            "stage": "reminder",
            "episode": 0,
            "not_before": now,
            "status": "scheduled",
            "reason": None,
            "attempts": 0,
            "created_at": now,
        }

    with engine.begin() as connection:
        assert insert_ignore(connection, message, [row("k1", "first")], key="idempotency_key") == {"k1"}
        # k1 exists; k2 twice in one call: the first one wins
        new = insert_ignore(
            connection,
            message,
            [row("k1", "again"), row("k2", "one"), row("k2", "two")],
            key="idempotency_key",
        )
        stored = dict(connection.execute(select(message.c.idempotency_key, message.c.body)).all())
    assert new == {"k2"}
    assert stored == {"k1": "first", "k2": "one"}


def test_among_selects_what_in_selects_with_one_bound_value(engine: Engine) -> None:
    with engine.begin() as connection:
        execute_many(connection, audit.insert(), _events(40, 0))
        ids = connection.execute(select(audit.c.id).order_by(audit.c.id)).scalars().all()
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with engine.connect() as connection:
        for column, keys in (
            (audit.c.account_id, {"A-3", "A-17", "A-39", "«no such»"}),
            (audit.c.id, ids[::3]),
            (audit.c.id, []),
        ):

            def read(where: object) -> list[int]:
                return (
                    connection.execute(select(audit.c.id).where(where).order_by(audit.c.id)).scalars().all()
                )

            assert read(among(column, keys)) == read(column.in_(keys))
            assert read(~among(column, keys)) == read(column.not_in(keys))
        statements.clear()
        for n in (3, 3_000):  # one statement, one bound value, whatever the number of keys
            connection.execute(select(audit.c.id).where(among(audit.c.id, range(n)))).all()
    assert statements[0] == statements[1]
    assert statements[0].count("?") + statements[0].count("%(") == 1


def test_among_is_served_by_the_index(sqlite_engine: Engine) -> None:
    """SQLite looks the keys up in the index rather than scanning the table: a predicate written
    as `(...) = 1` (SQLAlchemy's way with a boolean on SQLite) scanned every contact point."""
    query = select(contact.c.address).where(
        among(contact.c.borrower_id, ["B-1", "B-2"]), contact.c.channel == "sms"
    )
    sent: list[tuple[str, object]] = []
    event.listen(sqlite_engine, "before_cursor_execute", lambda *args: sent.append((args[2], args[3])))
    with sqlite_engine.connect() as connection:
        connection.execute(query).all()
        statement, parameters = sent[-1]
        plan = [row[3] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
    assert any(step.startswith("SEARCH contact_point USING") for step in plan), plan
    assert not any(step.startswith("SCAN contact_point") for step in plan), plan


def test_an_accounts_holds_in_the_audit_trail_are_found_without_reading_its_other_events(
    sqlite_engine: Engine,
) -> None:
    """Each dispatch batch's re-check reads its accounts' hold and opt-out events. An account's
    history grows every day (transitions, messages, reviews): indexed by account and instant
    alone, every event of the account was read to keep those of three kinds (0.31 s a batch at
    sixty events an account, against 0.035 s searched by kind as well)."""
    from arrears.storage.compliance import hold_intervals, sent_among

    sent: list[tuple[str, object]] = []
    event.listen(sqlite_engine, "before_cursor_execute", lambda *args: sent.append((args[2], args[3])))
    with sqlite_engine.connect() as connection:
        hold_intervals(connection, sent_among([1, 2, 3]))
        statement, parameters = next((q, p) for q, p in sent if "FROM audit_event" in q)
        plan = [row[3] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
    assert any(
        step.startswith("SEARCH audit_event USING INDEX ix_audit_account_kind_at (account_id=? AND kind=?)")
        for step in plan
    ), plan


def test_the_replies_of_the_last_days_are_found_without_reading_the_whole_audit_trail(
    sqlite_engine: Engine,
) -> None:
    """Every refresh reads the replies of the last days. Indexed by account and by cycle alone,
    the audit trail was scanned whole for them: 0.14 s at 1.1 million events (a 200,000-account
    portfolio's eighth day), and the trail grows by millions of events a day at a million accounts."""
    from arrears.storage.promises import unread_replies

    sent: list[tuple[str, object]] = []
    event.listen(sqlite_engine, "before_cursor_execute", lambda *args: sent.append((args[2], args[3])))
    with sqlite_engine.connect() as connection:
        unread_replies(connection, as_of=datetime(2026, 12, 1, tzinfo=UTC))
        statement, parameters = next((q, p) for q, p in sent if "FROM audit_event" in q)
        plan = [row[3] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
    searched = "SEARCH audit_event USING INDEX ix_audit_kind_at (kind=?"
    assert any(step.startswith(searched) for step in plan), plan
    assert not any(step.startswith("SCAN audit_event") for step in plan), plan


def test_driver_values_processes_repeating_values_once_and_every_value_right(sqlite_engine: Engine) -> None:
    """The memo is for columns whose values repeat (a shard's instants); over distinct amounts it
    costs more than it saves and is left out (benchmarks/importing.py), with the same values."""
    from sqlalchemy.types import TypeDecorator

    from arrears.storage.bulk import driver_values
    from arrears.storage.types import Money

    calls: list[object] = []

    class Counted(TypeDecorator[Decimal]):
        impl = Money
        cache_ok = True

        def process_bind_param(self, value: object, dialect: object) -> object:
            calls.append(value)
            return value

    dialect = sqlite_engine.dialect
    repeating = [Decimal("12.50"), Decimal("7")] * 100
    assert driver_values(dialect, Counted(), repeating) == [125_000, 70_000] * 100
    assert len(calls) == 2
    calls.clear()
    distinct = [Decimal(i) / 100 for i in range(200)]
    assert driver_values(dialect, Counted(), distinct) == [i * 100 for i in range(200)]
    assert len(calls) == 200
    calls.clear()
    # Distinct at first, then one value again and again: processed each time, still right.
    assert driver_values(dialect, Counted(), distinct[:64] + [Decimal(1)] * 10) == [
        *(i * 100 for i in range(64)),
        *[10_000] * 10,
    ]


def test_driver_values_encodes_a_shared_json_document_once() -> None:
    """A document many rows share (a common transition's audit data) is encoded once; equal
    documents that are not the same object are each encoded, and every row gets its text."""
    import json

    from sqlalchemy import JSON, create_engine

    from arrears.storage.bulk import driver_values

    encoded: list[object] = []

    def dumps(document: object) -> str:
        encoded.append(document)
        return json.dumps(document)

    dialect = create_engine("sqlite://", json_serializer=dumps).dialect
    shared = {"from": "reminder", "to": "negotiation"}
    documents = [shared] * 100 + [{"from": "reminder", "to": "negotiation"} for _ in range(3)] + [{"n": 1}]
    assert driver_values(dialect, JSON(), documents) == [json.dumps(shared)] * 103 + ['{"n": 1}']
    assert len(encoded) == 5


def test_insert_rows_with_ids_gives_each_row_its_own_id_in_order(engine: Engine) -> None:
    """The ids returned are those the rows were stored under, in the order of the rows, after
    rows written before and the top one deleted."""
    from arrears.storage.streaming import insert_rows_with_ids
    from arrears.storage.tables import quarantine

    columns = ("what", "ref", "step", "error_type", "error", "at", "resolved")
    at = datetime(2026, 12, 1, 1, tzinfo=UTC)

    def rows(first: int, n: int) -> list[tuple[object, ...]]:
        return [("test", f"row {i}", "advance", "E", "e", at, False) for i in range(first, first + n)]

    with engine.begin() as connection:
        earlier = insert_rows_with_ids(connection, quarantine, columns, rows(0, 3))
        connection.execute(quarantine.delete().where(quarantine.c.id == earlier[-1]))
        ids = insert_rows_with_ids(connection, quarantine, columns, rows(3, 50))
        stored = dict(connection.execute(select(quarantine.c.id, quarantine.c.ref)).all())
    assert len(set(ids)) == 50 and min(ids) > earlier[1]
    assert [stored[i] for i in earlier[:2] + ids] == [f"row {i}" for i in (0, 1, *range(3, 53))]


def test_range_starts_gives_the_first_range_its_own_size(engine: Engine) -> None:
    """23 rows in ranges of 10: starts at rows 0, 10, 20; with a first range of 3 rows: 0, 3, 13
    (the rest keep their size, nothing is left out); a first range as large as the rest changes
    nothing."""
    with engine.begin() as connection:
        execute_many(connection, audit.insert(), _events(23, 0))
        ids = list(connection.execute(select(audit.c.id).order_by(audit.c.id)).scalars())

        def starts(**kw: int) -> list[int]:
            return range_starts(connection, audit.c.id, true(), size=10, **kw)

        assert starts() == [ids[0], ids[10], ids[20]] == starts(first=10)
        assert starts(first=3) == [ids[0], ids[3], ids[13]]
        assert starts(first=30) == [ids[0]]


def test_a_bulk_writer_keeps_a_larger_page_cache_and_gives_the_default_back(sqlite_engine: Engine) -> None:
    """An import keeps `import_cache_mib` of pages on its connection: with SQLite's 2 MiB, the pages
    of an index written all over (the contact points' numbers) went out to the WAL and back a
    chunk. The pooled connection goes back to the next user with the cache it had."""
    from arrears.storage.engine import bulk_cache

    def cache(connection: Any) -> int:
        return int(connection.connection.dbapi_connection.execute("PRAGMA cache_size").fetchone()[0])

    with sqlite_engine.connect() as connection:
        before = cache(connection)
        with bulk_cache(connection, 64), connection.begin():
            assert cache(connection) == -64 * 1024
            connection.execute(select(audit.c.id).limit(1)).all()
        assert cache(connection) == before != -64 * 1024
